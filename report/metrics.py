"""The run's stored metrics as ``MetricRecord``s with lookups by name and identity, for the report's
sections."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from accord.analysis.catalogue import MetricName
from accord.analysis.results import MetricRecord
from accord.report.format import is_number

METRIC_COLUMNS = ["name", "slice", "model", "template", "value", "ci_low", "ci_high", "pvalue", "n", "details"]


def _float(x: Any) -> float | None:
    return float(x) if is_number(x) else None


def rows_from_frame(metrics: pd.DataFrame) -> list[MetricRecord]:
    """Metric records from the report's metrics frame (NaN -> None, n -> int)."""
    out = []
    for rec in metrics.to_dict(orient="records"):
        n = rec.get("n")
        out.append(MetricRecord(
            name=str(rec["name"]), slice=str(rec["slice"]), model=str(rec["model"] or ""),
            template=str(rec["template"] or ""), value=_float(rec.get("value")), ci_low=_float(rec.get("ci_low")),
            ci_high=_float(rec.get("ci_high")), pvalue=_float(rec.get("pvalue")),
            n=int(n) if is_number(n) else None, details=rec.get("details") or {}))
    return out


def metrics_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The report's metrics frame: one row per metric, n as a nullable integer."""
    df = pd.DataFrame(list(rows), columns=METRIC_COLUMNS)
    for col in ("value", "ci_low", "ci_high", "pvalue"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["n"] = pd.to_numeric(df["n"], errors="coerce").astype("Int64")
    for col in ("slice", "model", "template"):
        df[col] = df[col].fillna("").astype(str)
    df["details"] = pd.Series([d if isinstance(d, dict) else {} for d in df["details"]], index=df.index, dtype=object)
    return df


class MetricIndex:
    """Lookups over the run's metric rows."""

    def __init__(self, rows: list[MetricRecord]) -> None:
        self.rows = rows
        self._by_name: dict[str, list[MetricRecord]] = {}
        self._by_key: dict[tuple[str, str, str, str], MetricRecord] = {}
        for row in rows:
            self._by_name.setdefault(row.name, []).append(row)
            self._by_key.setdefault((row.name, row.slice, row.model, row.template), row)

    @classmethod
    def from_frame(cls, metrics: pd.DataFrame) -> MetricIndex:
        return cls(rows_from_frame(metrics))

    def has(self, name: str) -> bool:
        return name in self._by_name

    def all(self, name: str, *, slice_: str | None = None, model: str | None = None,
            template: str | None = None) -> list[MetricRecord]:
        return [r for r in self._by_name.get(name, [])
                if (slice_ is None or r.slice == slice_) and (model is None or r.model == model)
                and (template is None or r.template == template)]

    def one(self, name: str, slice_: str = "all", model: str = "", template: str = "") -> MetricRecord | None:
        return self._by_key.get((name, slice_, model, template))

    def value(self, name: str, slice_: str = "all", model: str = "", template: str = "") -> float | None:
        row = self.one(name, slice_, model, template)
        return None if row is None else row.value

    def raters(self) -> list[tuple[str, str]]:
        """The LLM raters (model, template, no persona) in the order the suite reported them."""
        seen: dict[tuple[str, str], None] = {}
        for row in self._by_name.get(MetricName.PEARSON_R_VS_MEAN, []):
            if row.slice == "all" and row.model:
                seen.setdefault(row.rater, None)
        return list(seen)


def rater_label(rater: tuple[str, str]) -> str:
    return f"{rater[0]} · {rater[1]}"
