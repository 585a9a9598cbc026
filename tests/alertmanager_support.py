"""A real Alertmanager (Debian's prometheus-alertmanager) for the tests: free loopback ports, a temporary
config and storage path, clustering off, stopped by its own process id."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port

BINARY = "prometheus-alertmanager"


def alertmanager_binary() -> str | None:
    return shutil.which(BINARY) or shutil.which("alertmanager")


@dataclass
class Alertmanager:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, config: str) -> None:
        exe = alertmanager_binary()
        if exe is None:
            raise RuntimeError(f"{BINARY} is not installed (apt-get install prometheus-alertmanager)")
        cfg = self.workdir / "alertmanager.yml"
        cfg.write_text(config)
        with (self.workdir / "alertmanager.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [exe, f"--config.file={cfg}", f"--storage.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                 "--log.level=warn"],
                stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {self.proc.returncode}: "
                                   f"{(self.workdir / 'alertmanager.log').read_text()[-2000:]}")
            time.sleep(0.05)  # polling a child process that has no readiness signal
        raise RuntimeError("alertmanager was not ready within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: what Alertmanager holds as active (or silenced, inhibited)."""
        resp = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=5)
        resp.raise_for_status()
        result: list[dict[str, Any]] = resp.json()
        return result

    def silences(self) -> list[dict[str, Any]]:
        """``GET /api/v2/silences``, active ones only."""
        resp = httpx.get(f"{self.url}/api/v2/silences", timeout=5)
        resp.raise_for_status()
        return [s for s in resp.json() if s["status"]["state"] == "active"]

    def amtool(self, *args: str) -> str:
        """amtool against this Alertmanager (skipped by the caller when amtool is missing)."""
        exe = shutil.which("amtool")
        assert exe is not None
        return subprocess.run([exe, f"--alertmanager.url={self.url}", *args], capture_output=True, text=True,
                              check=True, timeout=20).stdout


@contextlib.contextmanager
def alertmanager(config: str) -> Iterator[Alertmanager]:
    with tempfile.TemporaryDirectory(prefix="hw-am-") as d:
        am = Alertmanager(free_port(), Path(d))
        am.start(config)
        try:
            yield am
        finally:
            am.stop()
