"""Number formatting for the run report: what a reader sees of a value, an interval, a p-value, a share.

Integers print as integers, undefined values as an en dash, negative numbers with a true minus sign."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

import numpy as np

MINUS = "\u2212"
DASH = "\u2013"


def is_number(x: Any) -> TypeGuard[float]:
    """A finite real number (not None, not NaN, not a bool). The checker takes it as a float from then on (a
    numeric string passes too: a caller that does arithmetic converts with float() first)."""
    if x is None or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def num(x: Any, digits: int = 2) -> str:
    """A value with ``digits`` decimals (integers stay integers); '–' when undefined."""
    if not is_number(x):
        return DASH
    if isinstance(x, (int, np.integer)) or digits == 0:
        text = f"{round(float(x)):d}"
    else:
        text = f"{float(x):.{digits}f}"
        if float(text) == 0.0:
            text = text.lstrip("-")
    return text.replace("-", MINUS)


def meaning(run: dict[str, Any]) -> tuple[str, str, bool]:
    """What 0 and 1 stand for in this run (the campaign's analysis.meaning), and whether it was given; by
    default safe and unsafe."""
    given = run.get("meaning") or {}
    if given.get("low") and given.get("high"):
        return str(given["low"]), str(given["high"]), True
    return "safe", "unsafe", False


def count(x: Any) -> str:
    """A count: an integer with thousands separators; '–' when undefined."""
    if not is_number(x):
        return DASH
    return f"{round(float(x)):,d}"


def share(x: Any, digits: int = 0) -> str:
    """A share in [0, 1] as a percentage ('13%')."""
    if not is_number(x):
        return DASH
    return f"{100 * float(x):.{digits}f}%"


def percent(x: Any, digits: int = 0) -> str:
    """A value already in percent (0-100) as '13%'."""
    if not is_number(x):
        return DASH
    return f"{float(x):.{digits}f}%"


def pvalue(p: Any) -> str:
    """'0.004', '< 0.001'; '–' when undefined."""
    if not is_number(p):
        return DASH
    p = float(p)
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def p_phrase(p: Any, name: str = "p") -> str:
    """'p = 0.04' / 'p < 0.001' for running text."""
    text = pvalue(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def interval(low: Any, high: Any, digits: int = 2) -> str:
    """'−0.38 to 0.75' for running text; '' when either end is undefined."""
    if not (is_number(low) and is_number(high)):
        return ""
    return f"{num(low, digits)} to {num(high, digits)}"


def bracket(low: Any, high: Any, digits: int = 3) -> str:
    """'[−0.382, 0.750]' for tables; '' when either end is undefined."""
    if not (is_number(low) and is_number(high)):
        return ""
    return f"[{num(low, digits)}, {num(high, digits)}]"


def plain(text: str) -> str:
    """A label for a plot: matplotlib would read '$...$' as math, so dollar signs are escaped."""
    return str(text).replace("$", r"\$")
