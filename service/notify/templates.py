"""Message text for Slack (mrkdwn) and Telegram (HTML): ``{field}`` placeholders filled with escaped alert
values. Only plain names are substituted (no attribute access, no format specs), so a template cannot reach
anything but the alert's own fields."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import Any

from hedgewatch.service.alerts import Alert, iso

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
TELEGRAM_MAX_CHARS = 4096  # sendMessage rejects longer texts


def slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters: only &, < and > must be escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def telegram_escape(text: str) -> str:
    """Telegram's HTML parse mode accepts only these entities: &lt; &gt; &amp; &quot;."""
    return html.escape(text, quote=True).replace("&#x27;", "'")


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.6g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return "" if v is None else str(v)


def fields(alert: Alert) -> dict[str, str]:
    """The flat name -> text mapping a template can use."""
    f: dict[str, str] = {
        "id": alert.id, "fingerprint": alert.fingerprint, "rule": alert.rule, "index": alert.index,
        "status": alert.status, "STATUS": alert.status.upper(), "severity": alert.severity,
        "summary": alert.summary, "startsAt": iso(alert.starts_at) or "", "endsAt": iso(alert.ends_at) or "",
        "generatorURL": alert.generator_url, "hedge_text": "",
    }
    f["starts_at"], f["ends_at"] = f["startsAt"], f["endsAt"]  # the names of earlier templates
    f.update({f"label_{k}": v for k, v in alert.labels.items()})
    f.update({f"annotation_{k}": v for k, v in alert.annotations.items()})
    f.update({f"value_{k}": _num(v) for k, v in alert.values.items()})
    h = alert.hedge
    if h is not None:
        f.update(hedge_from_ratio=_num(h.from_ratio), hedge_to_ratio=_num(h.to_ratio),
                 hedge_notional_usd=_num(h.notional_usd), hedge_contracts=_num(h.contracts),
                 hedge_side=h.side)
        f["hedge_text"] = (f" — hedge {h.from_ratio:.0%} → {h.to_ratio:.0%}: {h.side} {h.contracts:g} "
                           f"contracts (${h.notional_usd:,.0f})")
    return f


def render(template: str, alert: Alert, escape: Callable[[str], str]) -> str:
    """Fill ``template``'s placeholders with the alert's escaped values; unknown names become empty."""
    values = fields(alert)
    return PLACEHOLDER.sub(lambda m: escape(values.get(m.group(1), "")), template)


def message(title_tpl: str, line_tpl: str, alerts: Sequence[Alert], escape: Callable[[str], str],
            bullet: str = "• ") -> str:
    """One notification for a group: a title from the group's first alert (its status FIRING while any alert
    fires), then one line per alert when there are several."""
    lead = alerts[0]
    firing = [a for a in alerts if a.status == "firing"]
    if firing and lead.status != "firing":
        lead = firing[0]
    title = render(title_tpl, lead, escape)
    if len(alerts) == 1:
        return f"{title}\n{render(line_tpl, lead, escape)}"
    lines = [f"{bullet}{'' if a.status == lead.status else '[' + a.status.upper() + '] '}"
             f"{render(line_tpl, a, escape)}" for a in alerts]
    return "\n".join([f"{title} — {len(alerts)} alerts", *lines])


def truncate(text: str, limit: int = TELEGRAM_MAX_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 2].rsplit("\n", 1)[0] + "\n…"
