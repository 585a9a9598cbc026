"""Headless Chromium driven over the DevTools protocol: open a page, collect console errors and uncaught
exceptions, evaluate an expression, take a full-page screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import websockets

from tests.support import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-port=0",
         "--remote-allow-origins=*")
ARTIFACTS = Path(os.environ.get("HEDGEWATCH_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))


@dataclass
class Page:
    errors: list[str] = field(default_factory=list)
    value: Any = None
    screenshot: bytes = b""


class Cdp:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.loaded = asyncio.Event()

    async def pump(self) -> None:
        async for raw in self.ws:
            msg = orjson.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                fut = self.pending.pop(msg["id"])
                if "error" in msg:
                    fut.set_exception(RuntimeError(str(msg["error"])))
                else:
                    fut.set_result(msg.get("result"))
            elif "method" in msg:
                self.events.append(msg)
                if msg["method"] == "Page.loadEventFired":
                    self.loaded.set()

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        i = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        msg: dict[str, Any] = {"id": i, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        await self.ws.send(orjson.dumps(msg).decode())
        return await asyncio.wait_for(fut, 30)


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(str(p.get("exceptionDetails", {}).get("text")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(str(p["entry"].get("text")))
    return out


async def open_page(path: Path, expression: str, *, width: int = 1200, after_load: str | None = None,
                    clip_height: int | None = None) -> Page:
    """Load ``path`` (a file), return console errors, ``expression``'s value and a screenshot."""
    profile, proc, log = await asyncio.to_thread(_launch)
    uri = await asyncio.to_thread(lambda: path.resolve().as_uri())
    try:
        url = await _devtools_url(proc, log)
        async with websockets.connect(url, max_size=None) as ws:
            cdp = Cdp(ws)
            async with asyncio.TaskGroup() as tg:
                pump = tg.create_task(cdp.pump(), name="cdp")
                target = await cdp.call("Target.createTarget", url="about:blank")
                attached = await cdp.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
                s = attached["sessionId"]
                for domain in ("Runtime", "Log", "Page"):
                    await cdp.call(f"{domain}.enable", s)
                await cdp.call("Emulation.setDeviceMetricsOverride", s, width=width, height=1000,
                               deviceScaleFactor=1, mobile=False)
                await cdp.call("Page.navigate", s, url=uri)
                await asyncio.wait_for(cdp.loaded.wait(), 30)
                if after_load:
                    await cdp.call("Runtime.evaluate", s, expression=after_load)
                res = await cdp.call("Runtime.evaluate", s, expression=expression, returnByValue=True)
                clip = {} if clip_height is None else {
                    "clip": {"x": 0, "y": 0, "width": width, "height": clip_height, "scale": 1}}
                shot = await cdp.call("Page.captureScreenshot", s, format="png", captureBeyondViewport=True, **clip)
                page = Page(_errors(cdp.events), res["result"].get("value"), base64.b64decode(shot["data"]))
                pump.cancel()
        return page
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def _launch() -> tuple[str, subprocess.Popen[bytes], Path]:
    """Start the browser with a fresh profile, its log to a file."""
    profile = tempfile.mkdtemp(prefix="hw-chromium-")
    log = Path(profile) / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=err)
    return profile, proc, log


async def _devtools_url(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30.0) -> str:
    """The browser's DevTools address, from the line it logs once listening."""
    async with asyncio.timeout(timeout_s):
        while True:
            text = await asyncio.to_thread(log.read_text, errors="replace")
            m = re.search(r"DevTools listening on (ws://\S+)", text)
            if m:
                return m.group(1)
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited ({proc.returncode}) before its DevTools endpoint was up")
            await asyncio.sleep(0.05)
