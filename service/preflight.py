"""What ``run`` and ``notify`` would refuse at start, found before they start: ``hedgewatch check`` reports it
all, ``hedgewatch run`` stops on it with one line per problem instead of failing half-way.

The config models already validate every value on its own (types, ranges, finite numbers); this adds what
needs the outside world: secret files readable and their values usable (a Redis URL that parses, no control
character), the outbox directory usable, and a contract-mode futures leg that can be priced (a dated contract
subscribed and not expired).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from hedgewatch.service.config import Config
from hedgewatch.service.errors import Problem, SecretError
from hedgewatch.service.futures_leg import leg_problems
from hedgewatch.service.statefile import directory_problem


def secret_problems(cfg: Config, file: str) -> list[Problem]:
    """Every configured secret, resolved and checked as its user will: one problem per unusable one, naming
    the setting (and a file it is read from), never the value."""
    from hedgewatch.service.notify.destinations import check_url, telegram_token

    checks: list[Callable[[], object]] = [cfg.redis.resolved_url]
    slack, telegram = cfg.notify.slack, cfg.notify.telegram
    if slack is not None:
        checks.append(lambda: check_url(slack.resolved_url(), "notify.slack.webhook_url"))
    if telegram is not None:
        checks.append(lambda: telegram_token(telegram))
    problems = []
    for resolve in checks:
        try:
            resolve()
        except SecretError as exc:
            problems.append(Problem(file, None, None, "", str(exc)))
    return problems


def outbox_problems(cfg: Config, file: str) -> list[Problem]:
    """The outbox and local state copy need a directory that exists or can be created, and is writable;
    only when there is a Redis to deliver to (without one neither is used)."""
    if cfg.redis.url is None and cfg.redis.url_file is None:
        return []
    why = directory_problem(Path(cfg.redis.outbox_dir))
    return [] if why is None else [Problem(file, None, None, "redis.outbox_dir", why)]


def preflight(cfg: Config, file: str, now: float | None = None) -> list[Problem]:
    """Everything ``run`` would fail on at start that the config models cannot see (``now``: the clock's
    time, for a dated contract's expiry)."""
    now = time.time() if now is None else now
    return secret_problems(cfg, file) + outbox_problems(cfg, file) + leg_problems(cfg, file, now)
