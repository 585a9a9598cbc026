"""``hedgewatch simulate``'s module: prints pasteable sources, serves them, exits 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from ruamel.yaml import YAML

from tests.support import REPO


def test_simulate_prints_sources_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-m", "hedgewatch.connectors.simulator", "default.yaml"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            # a comment, "sources:" and 3 x 7 lines (the venue's spot endpoints included)
            lines = [proc.stdout.readline() for _ in range(23)]
            doc = YAML(typ="safe").load("".join(lines))
            assert [s["exchange"] for s in doc["sources"]] == ["binanceusdm", "bybit", "okx"]
            assert doc["sources"][0]["symbols"] == ["BTC", "ETH", "SOL", "DEFI"]
            assert all(s["ws_url"].startswith("ws://127.0.0.1:") for s in doc["sources"])
            assert doc["sources"][0]["spot_ws_url"] == doc["sources"][0]["ws_url"] + "/spot"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
