"""Annotation templates: the ``pct`` filter keeps small rates readable."""

from __future__ import annotations

import pytest

from hedgewatch.rules.templates import parse_template


@pytest.mark.parametrize(("value", "text"), [
    (0.0005, "0.05%"), (0.002, "0.20%"), (0.0214, "2.14%"), (0.5, "50.00%"), (0, "0.00%"),
    # a slightly negative funding rate per 8 h: two significant digits, never "-0.00%" or "-0.01%"
    (-0.00005, "-0.005%"), (-0.000049, "-0.0049%"), (0.000214, "0.021%"), (None, "n/a"),
])
def test_pct_renders_ratios_as_percentages(value: float | None, text: str) -> None:
    t = parse_template("funding {{ .f | pct }}")
    assert t.render(None, "HW", {}, {"f": value}) == f"funding {text}"
