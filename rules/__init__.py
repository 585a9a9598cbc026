"""Rule files, their expressions, engine and tests."""

from __future__ import annotations

from pathlib import Path

RULESETS = Path(__file__).parent / "rulesets"


def named_rule_file(arg: str, *, test: bool = False) -> str:
    """``arg`` itself when it is a file (or already ``builtin:``); else a bundled rule set named by it
    (``default`` is ``builtin:default``, its unit tests ``rules/rulesets/default.test.yaml`` when ``test``)."""
    if arg.startswith("builtin:") or Path(arg).exists():
        return arg
    name = arg.removesuffix(".yaml").removesuffix(".test")
    bundled = RULESETS / f"{name}{'.test' if test else ''}.yaml"
    if "/" in name or not bundled.is_file():
        return arg
    return str(bundled) if test else f"builtin:{name}"
