"""Result containers of the analysis package.

`MetricRecord` is the one row type of a metric: `accord.analysis.suite.compute_all` returns it, the
post-processing layer stores it, and the report reads the stored rows back as it; the other dataclasses
are the scipy-style results of the individual functions (attribute access like ``res.statistic``,
``res.pvalue``, ``res.confidence_interval``).

Every value that leaves this package through a `MetricRecord` is a plain Python float/int/str/bool
(never a numpy scalar) and never NaN: an undefined value is ``None`` with ``details["reason"]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accord.analysis.catalogue import metric_name

REASON_CHARS = 160   # a reason cut to a readable length (some reasons list the offending values)


@dataclass
class MetricRecord:
    """One computed metric for one (slice, model, template); ``name`` is one of the catalogue's
    (``accord.analysis.catalogue.MetricName``: ``catalogued`` checks records before they are stored)."""

    name: str
    value: float | None
    slice: str = "all"
    model: str = ""
    template: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    pvalue: float | None = None
    n: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.value = clean_float(self.value)
        self.ci_low = clean_float(self.ci_low)
        self.ci_high = clean_float(self.ci_high)
        self.pvalue = clean_float(self.pvalue)
        self.n = None if self.n is None else int(self.n)
        self.details = json_safe(self.details)
        if self.value is None and "reason" not in self.details and "skipped" not in self.details:
            self.details["reason"] = "undefined"

    def key(self) -> tuple[str, str, str, str]:
        """Identity of the record inside one suite run: (name, slice, model, template)."""
        return (self.name, self.slice, self.model, self.template)

    @property
    def rater(self) -> tuple[str, str]:
        return (self.model, self.template)

    @property
    def reason(self) -> str:
        """Why the value is undefined or the metric skipped ('' when it is defined)."""
        if self.value is not None:
            return ""
        return str(self.details.get("reason") or self.details.get("skipped") or "undefined")

    @property
    def short_reason(self) -> str:
        """The reason, cut to a readable length."""
        reason = self.reason
        return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS].rstrip() + "…"

    @property
    def p_adjusted(self) -> float | None:
        return self.detail("p_adjusted_bh")

    def detail(self, key: str) -> float | None:
        """A numeric detail, None when absent, not a number or not finite."""
        value = self.details.get(key)
        if value is None or isinstance(value, bool):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) else None

    @property
    def ci_includes_zero(self) -> bool | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low <= 0.0 <= self.ci_high

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "slice": self.slice, "model": self.model, "template": self.template,
                "value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "pvalue": self.pvalue,
                "n": self.n, "details": self.details}


def catalogued(records: list[MetricRecord]) -> list[MetricRecord]:
    """``records`` when every name is in the metric catalogue; a ValueError naming the first that is not."""
    for record in records:
        metric_name(record.name)
    return records


@dataclass(frozen=True)
class ConfidenceInterval:
    low: float
    high: float

    def __iter__(self) -> Iterator[float]:  # allows ``low, high = res.confidence_interval``
        yield self.low
        yield self.high


@dataclass
class CorrelationResult:
    """A correlation coefficient with its bootstrap confidence interval.

    ``statistic`` is NaN and ``reason`` is set when the coefficient is undefined (fewer than three
    paired observations or a constant input)."""

    statistic: float
    pvalue: float
    confidence_interval: ConfidenceInterval
    n: int
    method: str = "pearson"
    reason: str | None = None
    bootstrap_distribution: np.ndarray | None = None


@dataclass
class BootstrapResult:
    """A bootstrap confidence interval for an arbitrary statistic."""

    statistic: float
    confidence_interval: ConfidenceInterval
    standard_error: float
    n: int
    method: str


@dataclass
class PermutationResult:
    """Permutation test of one statistic: the observed value, its null distribution and p-value."""

    statistic: float
    pvalue: float
    null_distribution: np.ndarray
    n_permutations: int
    alternative: str


@dataclass
class AnnotatorBaseline:
    """Each annotator's agreement with the other annotators (the human baseline)."""

    annotator_ids: list[str]
    r: np.ndarray  # Pearson r per annotator, NaN when undefined
    n_items: np.ndarray  # items each r is computed on
    median: float
    q25: float
    q75: float
    n_defined: int
    leave_one_out: bool

    def percentile_of(self, r_value: float) -> float:
        """Percentile (0-100) of ``r_value`` among the defined annotator r's (ties count half)."""
        defined = self.r[~np.isnan(self.r)]
        if defined.size == 0 or not np.isfinite(r_value):
            return float("nan")
        below = float(np.sum(defined < r_value))
        ties = float(np.sum(defined == r_value))
        return 100.0 * (below + 0.5 * ties) / float(defined.size)


@dataclass
class BinaryScores:
    accuracy: float
    precision: float
    recall: float
    f1: float
    n: int
    n_positive_reference: int
    n_positive_predicted: int


def clean_float(value: Any) -> float | None:
    """Convert numpy scalars to float and NaN/inf to None."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metric value must be a number or None, got {value!r}") from exc
    if math.isnan(f) or math.isinf(f):
        return None
    return f


def json_safe(obj: Any) -> Any:
    """Recursively convert ``obj`` to JSON-serialisable builtins (NaN/inf -> None)."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return clean_float(obj)
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, ConfidenceInterval):
        return [clean_float(obj.low), clean_float(obj.high)]
    raise TypeError(f"value of type {type(obj).__name__} is not JSON-serialisable: {obj!r}")
