"""Real HTTP servers on loopback playing Slack incoming webhooks and the Telegram Bot API, with scripted
failures (429 with Retry-After / retry_after, 500s, redirects, ``{"ok": false}``), slow answers, and a way to
hold one request open (a crash mid-send)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() when the request arrived
    path: str
    body: dict[str, Any]
    status: int

    @property
    def text(self) -> str:
        return str(self.body.get("text", ""))


class FakeChat:
    """One server answers both protocols: paths with ``/bot`` are Telegram, anything else a Slack webhook."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.received: list[Received] = []
        # responses to give, in order, before the default 200
        self.script: deque[tuple[int, dict[str, str], bytes]] = deque()
        self.delays: deque[float] = deque()  # seconds to wait before answering, request by request
        self.hold_request: int | None = None  # 1-based number of the request to hold open
        self.held = threading.Event()  # set once the held request arrived
        self.release = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def ok(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.status == 200]

    def _respond(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes, bool, float]:
        with self.lock:
            n = len(self.received) + 1
            delay = self.delays.popleft() if self.delays else 0.0
            if self.script:
                status, headers, payload = self.script.popleft()
            elif "/bot" in path:
                status, headers, payload = 200, {}, b'{"ok":true,"result":{"message_id":1}}'
            else:
                status, headers, payload = 200, {}, b"ok"
            self.received.append(Received(time.monotonic(), path, body, status))
            return status, headers, payload, n == self.hold_request, delay

    def start(self) -> None:
        chat = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real services
            disable_nagle_algorithm = True  # else headers and body in two writes wait on a delayed ACK
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, headers, payload, hold, delay = chat._respond(self.path, json.loads(raw or b"{}"))
                if hold:
                    chat.held.set()
                    chat.release.wait(30)
                if delay:
                    chat.stopping.wait(delay)  # a slow service; set free at stop
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting: what a slow service sees too

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-chat",
                         daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def fake_chat() -> Iterator[FakeChat]:
    chat = FakeChat()
    chat.start()
    try:
        yield chat
    finally:
        chat.stop()
