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
from urllib.parse import parse_qs


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


class FakeBotApi:
    """The Telegram Bot API as a bot that is talked to sees it: ``getMe``, long-polled ``getUpdates`` fed by
    :meth:`say`, ``sendMessage`` recorded; any other method answers ``true``. Requests are form-encoded (as
    python-telegram-bot sends them) or JSON."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []  # sendMessage parameters
        self.calls: list[str] = []  # method names, in order
        self.cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._next = 1
        self._stopping = False

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def say(self, chat_id: int, text: str, chat_type: str = "private") -> int:
        """A user writes ``text`` in chat ``chat_id``; returns the update id."""
        with self.cond:
            uid = self._next
            self._next += 1
            msg: dict[str, Any] = {"message_id": uid, "date": int(time.time()), "text": text,
                                   "chat": {"id": chat_id, "type": chat_type},
                                   "from": {"id": abs(chat_id), "is_bot": False, "first_name": "user"}}
            if text.startswith("/"):
                msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
            self.updates.append({"update_id": uid, "message": msg})
            self.cond.notify_all()
            return uid

    def replies_to(self, chat_id: int) -> list[str]:
        with self.cond:
            return [str(m.get("text", "")) for m in self.sent if str(m.get("chat_id")) == str(chat_id)]

    def _answer(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return {"id": 4242, "is_bot": True, "first_name": "hedgewatch", "username": "hedgewatch_bot"}
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            timeout = min(float(params.get("timeout") or 0), 5.0)
            deadline = time.monotonic() + timeout
            with self.cond:
                while True:
                    fresh = [u for u in self.updates if u["update_id"] >= offset]
                    left = deadline - time.monotonic()
                    if fresh or left <= 0 or self._stopping:
                        return fresh
                    self.cond.wait(left)
        if method == "sendMessage":
            with self.cond:
                self.sent.append(params)
                self.cond.notify_all()
            chat = int(params["chat_id"])
            return {"message_id": 10_000 + len(self.sent), "date": int(time.time()),
                    "chat": {"id": chat, "type": "private"}, "text": params.get("text", "")}
        return True

    def start(self) -> None:
        api = self
        prefix = f"/bot{self.token}/"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if not self.path.startswith(prefix):
                    return self._send(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                method = self.path[len(prefix):].split("?")[0]
                with api.cond:
                    api.calls.append(method)
                params = _params(raw, self.headers.get("content-type", ""))
                self._send(200, {"ok": True, "result": api._answer(method, params)})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-bot-api",
                         daemon=True).start()

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _params(raw: bytes, content_type: str) -> dict[str, Any]:
    if not raw:
        return {}
    if "json" in content_type:
        parsed: dict[str, Any] = json.loads(raw)
        return parsed
    out: dict[str, Any] = {}
    for k, v in parse_qs(raw.decode(), keep_blank_values=True).items():
        try:
            out[k] = json.loads(v[0])
        except ValueError:
            out[k] = v[0]
    return out


@contextmanager
def fake_bot_api(token: str) -> Iterator[FakeBotApi]:
    api = FakeBotApi(token)
    api.start()
    try:
        yield api
    finally:
        api.stop()
