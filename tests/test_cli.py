"""The command line as an operator meets it: one line per fatal error, --version, --log-level, --log-format,
help without stray metavars. Each case runs ``python -m service`` as a separate process."""

from __future__ import annotations

import json
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support import REPO, RedisServer, free_port

# venues that refuse at once: the daemon starts, logs, and retries in the background
QUIET = """\
sources:
  - {exchange: binanceusdm, symbols: [BTC], ws_url: "ws://127.0.0.1:1/ws", rest_url: "http://127.0.0.1:1"}
index: {constituents: [BTC]}
"""


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp), **extra}


def _cli(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hedgewatch.service", *args], cwd=tmp, env=_env(tmp, **env),
                          capture_output=True, text=True, timeout=60)


def test_a_busy_http_port_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    cfg = tmp_path / "hw.yaml"
    cfg.write_text(QUIET)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _cli(tmp_path, "run", "-c", str(cfg), HEDGEWATCH__HTTP__PORT=str(port))
        assert r.returncode == 1
        assert r.stderr == f"hedgewatch: {cfg}: http.port: cannot listen on 127.0.0.1:{port}: address already in use\n"
        debug = _cli(tmp_path, "--debug", "run", "-c", str(cfg), HEDGEWATCH__HTTP__PORT=str(port))
        assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
        assert debug.stderr.endswith(r.stderr)


def test_unreadable_files_and_missing_secrets_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    r = _cli(tmp_path, "run", "-c", str(tmp_path / "adir"))
    assert (r.returncode, r.stderr) == (1, f"{tmp_path / 'adir'}: cannot read: Is a directory\n")
    r = _cli(tmp_path, "check", str(tmp_path / "missing.yaml"))
    assert (r.returncode, r.stderr) == (1, f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory\n")

    rules = tmp_path / "rules.yaml"
    rules.mkdir()
    cfg = tmp_path / "hw.yaml"
    cfg.write_text(QUIET + f"rules: {{files: [{rules}]}}\n")
    for cmd in (["check", str(cfg)], ["run", "-c", str(cfg)]):
        r = _cli(tmp_path, *cmd)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and str(rules) in r.stderr, r.stderr
        assert "Traceback" not in r.stderr

    cfg.write_text(QUIET + f"redis: {{url_file: {tmp_path / 'nope'}, outbox_dir: {tmp_path / 'out'}}}\n")
    for cmd in (["check", str(cfg)], ["run", "-c", str(cfg)]):
        r = _cli(tmp_path, *cmd)
        assert (r.returncode, r.stderr) == (
            1, f"{cfg}: redis.url: cannot read secret file {tmp_path / 'nope'}: No such file or directory\n")


def test_version_and_help_without_stray_metavars(tmp_path: Path) -> None:
    r = _cli(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.startswith("hedgewatch ") and r.stdout.split()[1][0].isdigit()
    for cmd in ([], ["demo"], ["check"], ["notify"], ["backtest"]):
        r = _cli(tmp_path, *cmd, "--help")
        assert r.returncode == 0 and "<bool>" not in r.stdout, r.stdout
    top = _cli(tmp_path, "--help").stdout
    assert "--log-level" in top and "LEVEL" in top and "text|json" in top and "--debug" in top
    bad = _cli(tmp_path, "--log-level", "verbose", "check")
    assert bad.returncode == 2 and "verbose" in bad.stderr


def _start_lines(tmp: Path, *args: str, until: str, config: str = QUIET + "log_level: DEBUG\n",
                 env: dict[str, str] | None = None,
                 during: Callable[[], None] | None = None) -> list[str]:
    """stderr lines of ``hedgewatch ARGS run`` up to the first one containing ``until``; then ``during()``
    while it runs, then SIGTERM and the rest of its lines."""
    cfg = tmp / "hw.yaml"
    cfg.write_text(config)
    env = {"HEDGEWATCH__HTTP__PORT": str(free_port()), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "hedgewatch.service", *args, "run", "-c", str(cfg)], cwd=tmp,
                            env=_env(tmp, **env), stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and not any(until in line for line in lines):
            if sel.select(deadline - time.monotonic()):
                line = proc.stderr.readline()
                if not line:
                    break
                lines.append(line.rstrip("\n"))
        assert any(until in line for line in lines), lines
        if during is not None:
            during()
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
        lines += [ln for ln in (rest or "").splitlines() if ln]
    return lines


def test_log_format_json_and_log_level_override(tmp_path: Path) -> None:
    lines = _start_lines(tmp_path, "--log-format", "json", "--log-level", "info", until="running index")
    records = [json.loads(line) for line in lines]
    assert all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    assert records[0]["time"].endswith("Z") and "T" in records[0]["time"]
    # the config asks for DEBUG; --log-level INFO wins
    assert {r["level"] for r in records} <= {"INFO", "WARNING", "ERROR"}
    assert any(r["logger"] == "hedgewatch" and r["message"].startswith("running index") for r in records)


def test_text_logs_by_default(tmp_path: Path) -> None:
    lines = _start_lines(tmp_path, until="running index")
    assert not lines[0].startswith("{") and " hedgewatch: running index" in next(
        line for line in lines if "running index" in line)


def test_outbox_and_state_copy_live_in_the_user_state_directory(tmp_path: Path, redis_srv: RedisServer) -> None:
    """Without redis.outbox_dir a daemon run from any folder keeps its outbox and state copy in
    $XDG_STATE_HOME/hedgewatch/<INDEX>, says so at start and in /state, and leaves nothing in the folder."""
    work, xdg = tmp_path / "work", tmp_path / "xdg"
    work.mkdir()
    port = free_port()
    shown: dict[str, object] = {}

    def state() -> None:
        shown.update(httpx.get(f"http://127.0.0.1:{port}/state", timeout=5).json())

    lines = _start_lines(work, until="running index", config=QUIET, during=state,
                         env={"HEDGEWATCH__HTTP__PORT": str(port), "HEDGEWATCH__REDIS__URL": redis_srv.url,
                              "XDG_STATE_HOME": str(xdg)})
    where = xdg / "hedgewatch" / "HW"
    assert any(f"outbox and state copy in {where}" in line for line in lines), lines
    assert shown["state_dir"] == str(where)
    assert shown["pipeline"]["redis"]["server"] == redis_srv.url  # type: ignore[index]
    assert (where / "state-HW.json").is_file() and (where / "id").is_file()
    assert list(work.iterdir()) == [work / "hw.yaml"]


def test_a_busy_notifier_metrics_port_is_one_line_naming_the_setting(tmp_path: Path,
                                                                      redis_srv: RedisServer) -> None:
    cfg = tmp_path / "hw.yaml"
    cfg.write_text(QUIET + f"redis: {{url: '{redis_srv.url}'}}\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _cli(tmp_path, "notify", "-c", str(cfg), HEDGEWATCH__NOTIFY__METRICS_PORT=str(port))
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-1] == (f"hedgewatch: notify.metrics_port: cannot listen on 127.0.0.1:{port}: "
                                         "address already in use")
    assert "Traceback" not in r.stderr


def test_check_refuses_a_rule_naming_an_asset_the_config_does_not_know(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("groups:\n  - name: g\n    rules:\n      - name: Nope\n"
                     "        expr: asset_price('NOPE') > 1\n        action: notify\n")
    cfg = tmp_path / "hw.yaml"
    cfg.write_text(QUIET + f"rules: {{files: ['{rules}']}}\n")
    r = _cli(tmp_path, "check", str(cfg))
    assert r.returncode == 1
    assert str(rules) in r.stderr and "NOPE" in r.stderr and "Traceback" not in r.stderr
