"""CSV exports that a spreadsheet opens as data, never as formulas.

A cell whose text begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by Excel, LibreOffice
and Google Sheets as a formula (``=HYPERLINK(...)``, ``=cmd|...``): item ids, rated texts and model answers are
chosen by others, so every such text cell is written with a leading ``'``, which the spreadsheet shows as text.
Numbers stay numbers. Parquet exports are written raw."""

from __future__ import annotations

from typing import Any

from pandas.api.types import is_object_dtype, is_string_dtype

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value`` as a CSV cell: text that a spreadsheet would run as a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def neutralise_frame(frame: Any) -> Any:
    """A copy of a pandas DataFrame whose text cells (and column names) are neutralised."""
    out = frame.copy()
    for column in out.columns:
        if is_object_dtype(out[column]) or is_string_dtype(out[column]):
            out[column] = out[column].map(neutralise)
    out.columns = [neutralise(str(c)) for c in out.columns]
    return out
