"""Annotation templates, in the small Prometheus-like dialect rule files use:
``{{ $value }}``, ``{{ $index }}``, ``{{ $labels.name }}``, ``{{ .signal }}`` (any input of the rule, or a
field of a transition for event rules) and one optional filter: ``| printf "%.2f"``, ``| pct`` (a ratio as a
percentage) or ``| humanize`` (1.2M). Templates are parsed at load time; rendering cannot run code."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hedgewatch.service.errors import HedgewatchError

_SEGMENT = re.compile(r"\{\{(.*?)\}\}", re.S)
_REF = re.compile(r"^(\$value|\$index|\$labels\.[A-Za-z_]\w*|\.[A-Za-z_][\w.]*)$")
_PRINTF = re.compile(r'^printf\s+"(%[-+ 0#]?\d*(?:\.\d+)?[dfgeEs%])"$')


class TemplateError(HedgewatchError, ValueError):
    """A template problem, at a 0-based ``offset`` in the template text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def _humanize(v: Any) -> str:
    if not isinstance(v, int | float):
        return str(v)
    for size, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.4g}"


def _pct(v: Any) -> str:
    """A ratio as a percentage: two decimals, or two significant digits below 0.1% (a funding rate of
    -0.005% per 8 h must not read "-0.01%" or "-0.00%")."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return _default(v)
    p = v * 100
    if p == 0 or abs(p) >= 0.1:
        return f"{p:.2f}%"
    digits = 1 - math.floor(math.log10(abs(p)))
    return f"{p:.{digits}f}".rstrip("0") + "%"


def _default(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _filter(text: str, offset: int) -> Callable[[Any], str]:
    text = text.strip()
    if text == "pct":
        return _pct
    if text == "humanize":
        return _humanize
    m = _PRINTF.match(text)
    if m:
        fmt = m.group(1)

        def printf(v: Any) -> str:
            try:
                return fmt % v
            except (TypeError, ValueError):
                return _default(v)

        return printf
    raise TemplateError(f"unknown filter '{text}' (use printf \"%.2f\", pct or humanize)", offset)


@dataclass(frozen=True)
class Template:
    parts: tuple[str | tuple[str, Callable[[Any], str]], ...]
    refs: tuple[str, ...]

    def render(self, value: Any, index: str, labels: dict[str, str], values: dict[str, Any]) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            ref, fmt = part
            if ref == "$value":
                v: Any = value
            elif ref == "$index":
                v = index
            elif ref.startswith("$labels."):
                v = labels.get(ref[8:], "")
            else:
                v = values.get(ref[1:])
            out.append(fmt(v))
        return "".join(out)


def parse_template(text: str) -> Template:
    """Parse ``text``; raises TemplateError with the offset of the bad segment."""
    parts: list[str | tuple[str, Callable[[Any], str]]] = []
    refs: list[str] = []
    pos = 0
    for m in _SEGMENT.finditer(text):
        parts.append(text[pos:m.start()])
        inner, _, filt = m.group(1).partition("|")
        ref = inner.strip()
        if not _REF.match(ref):
            raise TemplateError(f"cannot render '{{{{{m.group(1)}}}}}': use $value, $index, $labels.x "
                                "or .signal", m.start())
        parts.append((ref, _filter(filt, m.start()) if filt else _default))
        refs.append(ref)
        pos = m.end()
    rest = text[pos:]
    if "{{" in rest:
        raise TemplateError("unclosed '{{'", pos + rest.index("{{"))
    parts.append(rest)
    return Template(tuple(p for p in parts if p != ""), tuple(refs))
