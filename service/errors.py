"""The one exception tree of hedgewatch. Foreign errors are translated at the boundary
(``raise ConfigError(...) from exc``) so callers catch ours, never a library's.

HedgewatchError
├── ConfigError          a config or rule file is invalid; carries every problem with file, line and field
├── SecretError          a secret the config needs is missing or unreadable (its value is never in the message)
├── FeedError            a venue connection failed or broke
│   └── ProtocolError    a venue said something we do not understand (bad ack, unknown frame)
├── ExprError            a rule expression does not compile (rules/expr.py), at a line and column
├── TemplateError        an annotation template does not parse (rules/templates.py), at an offset
├── IndexError_, WeightingError   an index or its weights cannot be built (service/index.py, weights.py)
├── RetryLater, GiveUp   a notification was not delivered: try again, or never (service/notify/)
├── ListenError          a port or socket cannot be listened on (busy, forbidden); names the setting
├── StorageError         a directory hedgewatch keeps files in (the alert outbox) cannot be used
├── RejectedMessage      one inbound message was malformed or absurd; counted and skipped, never fatal
└── ClosedError          an object was used after it was closed (we closed it, not the peer)
"""

from __future__ import annotations

from dataclasses import dataclass


class HedgewatchError(Exception):
    """Root of every error hedgewatch raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: where it is and what is wrong."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(HedgewatchError):
    """A configuration or rule file is invalid. ``problems`` lists every error found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SecretError(HedgewatchError):
    """A secret is missing or unreadable. The message names the setting, never the value."""


class FeedError(HedgewatchError):
    """A venue connection failed or was broken by the peer."""


class ProtocolError(FeedError):
    """A venue sent something that does not follow its protocol (e.g. a subscription was refused)."""


class ListenError(HedgewatchError):
    """A port or socket hedgewatch must listen on cannot be used; the message names the setting."""


class StorageError(HedgewatchError):
    """A directory hedgewatch keeps its files in cannot be used; the message names the setting and path."""


class RejectedMessage(HedgewatchError):
    """An inbound message was malformed or absurd. ``reason`` is a short, low-cardinality label
    (``malformed``, ``missing_field``, ``non_numeric``, ``non_positive``, ``absurd``, ...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ClosedError(HedgewatchError):
    """Raised when an object is used after we closed it."""
