"""A local copy of the persisted rule and hedge state, next to the alert outbox.

The state lives in Redis (``hedgewatch:state:<INDEX>``), written with every snapshot. A stop while Redis
is unreachable cannot write it there, and a Redis that restarts without persistence forgets it: the next
start would restore an older state (or none) and fire again what had already fired, or apply an
``adjust_hedge`` twice. So the daemon also writes the state to this file when it stops, and at start
restores whichever copy is newer by ``saved_at``.

To reset the persisted state by hand, delete both the Redis key and this file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)


def directory_problem(directory: Path) -> str | None:
    """Why ``directory`` cannot hold the outbox and the state copy, or None when it can: it is a writable
    directory, or the nearest part of it that exists is one (so it can be created)."""
    path = directory.expanduser()
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{path}: {existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{path}: {existing} is not writable"
    return None


def safe_name(index: str) -> str:
    """The index name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", index) or "_"


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The user's state directory for hedgewatch (XDG Base Directory): ``$XDG_STATE_HOME/hedgewatch`` when
    that is an absolute path, else ``~/.local/state/hedgewatch``."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "hedgewatch"
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".local" / "state" / "hedgewatch"


def default_outbox_dir(index: str, env: Mapping[str, str] | None = None) -> Path:
    """Where the outbox and the state copy of ``index`` live unless ``redis.outbox_dir`` says: one folder
    per index in the user's state directory, whatever the working directory (two daemons of different
    indexes never share an outbox; two of the same index on one machine need their own ``outbox_dir``)."""
    return default_state_dir(env) / safe_name(index)


def state_path(directory: str | Path, index: str) -> Path:
    """``<directory>/state-<index>.json``, the index name made safe for a file name."""
    return Path(directory) / f"state-{safe_name(index)}.json"


def save(path: Path, state: dict[str, Any]) -> None:
    """Replace the file atomically (write, fsync, rename, fsync the directory). Blocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(state))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when absent or unreadable (logged). Blocking."""
    try:
        value = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("local state copy %s is unreadable (%s); ignoring it", path, type(exc).__name__)
        return None
    return value if isinstance(value, dict) else None


def newer(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The state with the later ``saved_at`` (``a`` on a tie or when neither says)."""
    if a is None or b is None:
        return a or b

    def when(s: dict[str, Any]) -> float:
        t = s.get("saved_at")
        return float(t) if isinstance(t, int | float) else float("-inf")

    return b if when(b) > when(a) else a
