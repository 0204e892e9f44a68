"""Run every metric the data supports and return them as `MetricRecord`s.

``compute_all(human, annotators, llm, items, options)`` is the entry point used by post-processing.
Each metric is computed in a guard: a metric that is undefined for the data (a constant rater, a group
of one, no parsed answers ...) becomes a record with ``value=None`` and ``details["reason"]``; a metric
that does not apply at all (no attributes, no personas, no subject models) is omitted or recorded with
``details["skipped"]``. Random streams are derived from ``options.seed`` and the record's identity, so
a re-run with the same seed returns identical records.

Record names (slice "all" unless noted; model/template '' for human-only metrics):

human-only: n_human_ratings, annotator_loo_r_median (or annotator_full_mean_r_median),
krippendorff_alpha_{nominal,ordinal,interval}, fleiss_kappa, group_irr / group_xrr / group_gai
(slice = group), and per category the annotator baseline.
per LLM rater: {pearson_r,spearman_r,kendall_tau}_vs_mean (+ _two_way), llm_percentile_among_annotators,
krippendorff_delta_alpha_{level}, cohen_kappa_vs_majority, cohen_kappa_linear_vs_majority,
{accuracy,precision,recall,f1}_vs_{majority,expert}, jsd_mean (slice all and per group),
group_pearson_r (slice = group), group_r_gap (slice = attribute), idiosyncratic_sd_within_groups,
min_detectable_r_difference (slice "G1 vs G2"), persona_gap_pearson_r, persona_gap_direction_accuracy,
persona_drift_mean_abs, persona_within_human_bounds (slice = persona),
failure_rate, refusal_rate, failure_bias_chi2, refusal_bias_chi2 (slice = metadata column),
test_retest_r, label_flip_rate, format_consistency_cs, format_consistency_css (template "a|b"),
position_bias_flip_rate, subject_ranking_kendall_tau, and the main alignment metrics per category.
Per group (human-only): group_mean_rating (slice = group), group_mean_difference (slice "G1 vs G2",
item-matched, single attributes). Per LLM rater: alt_test_winning_rate and alt_test_advantage_probability
(slice "all" and per group; `accord.analysis.alt_test`).
Numeric annotator attributes are binned first (``bins``; age bands / quartiles by default).
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

from typing import Any, cast

import numpy as np
import pandas as pd
from accord.analysis import (
    agreement,
    alt_test,
    association,
    baseline,
    binary,
    comparison,
    consistency,
    correlation,
    disparity,
    distribution,
    failures,
    persona,
    prevalence,
    soft_labels,
    subjects,
)
from accord.analysis.group_means import bin_numeric_attributes, group_means
from accord.analysis.frames import (
    GroupDefinition,
    HumanMatrix,
    LLMScores,
    RaterKey,
    binary_expert_labels,
    build_groups,
    build_human_matrix,
    build_llm_scores,
    item_metadata,
    normalise_llm,
)
from accord.analysis.resampling import benjamini_hochberg, derive_rng, resample_counts
from accord.analysis.results import AnnotatorBaseline, CorrelationResult, MetricRecord, catalogued

log = logging.getLogger(__name__)

COUNTS_CACHE_SIZE = 64
CORRELATION_NAMES = {"pearson": "pearson_r_vs_mean", "spearman": "spearman_r_vs_mean",
                     "kendall": "kendall_tau_vs_mean"}


@dataclass
class SuiteOptions:
    n_resamples: int = 1000
    n_permutations: int = 1000
    confidence_level: float = 0.95
    seed: int = 0
    use_weighted: bool = True  # weighted_value where present, else value
    gap_threshold: float = 0.2  # |true group gap| above which persona direction is tested
    group_attributes: list[str] | None = None  # None: every attribute + pairwise intersections
    min_group_size: int = 2
    max_groups: int = 50  # attributes (or intersections) with more groups get no disparity tests
    binary_threshold: float = 0.5  # must lie inside the rating scale (min, max]
    binary_basis: str = "vote"  # "vote": majority verdicts on both sides; "mean": mean score/rating vs threshold
    persona_bounds_tolerance: float = 0.0  # widening of each group's mean +- z SE interval (within-bounds)
    persona_bounds_z: float = 1.96  # multiplier of the group mean's standard error in the bounds
    ci_method: str = "bca"  # or "percentile"
    two_way_bootstrap: bool = False  # also resample annotators for the vs-mean correlations
    baseline_leave_one_out: bool = True  # annotator baseline vs the mean of the others
    association_metric: str = "interval"  # disagreement in IRR/XRR: "interval" or "nominal"
    xrr_weighting: str = "ratings"  # XRR items weighted by their ratings (Wong et al.) or "items" (equally)
    power: float = 0.8  # for the minimum detectable difference
    alpha: float = 0.05
    category_column: str = "category"
    subject_column: str = "subject_model"
    expert_column: str = "expert_label"
    bins: dict[str, list[float] | int] | None = None  # numeric attribute -> edges or number of quantile bins
    alt_epsilon: float = 0.1  # the alt-test's cost-benefit margin
    alt_measure: str = "auto"  # "accuracy", "neg_rmse", or auto: accuracy for labels, neg_rmse for scores
    alt_q: float = 0.05
    alt_min_items: int = 30

    def __post_init__(self) -> None:
        if self.n_resamples < 0 or self.n_permutations < 1:
            raise ValueError("n_resamples must be >= 0 and n_permutations >= 1")
        if not 0 < self.confidence_level < 1:
            raise ValueError(f"confidence_level must be in (0, 1), got {self.confidence_level}")
        if self.min_group_size < 1:
            raise ValueError("min_group_size must be >= 1")
        if self.binary_basis not in binary.BASES:
            raise ValueError(f"binary_basis must be one of {binary.BASES}, got {self.binary_basis!r}")
        if self.persona_bounds_tolerance < 0:
            raise ValueError("persona_bounds_tolerance must be >= 0")
        if self.ci_method not in ("bca", "percentile"):
            raise ValueError(f"ci_method must be 'bca' or 'percentile', got {self.ci_method!r}")


@dataclass
class _Context:
    options: SuiteOptions
    human: HumanMatrix
    human_mean: np.ndarray
    majority: np.ndarray
    domain: np.ndarray | None
    meta: pd.DataFrame
    groups: list[GroupDefinition]
    llm: pd.DataFrame | None
    raters: dict[RaterKey, LLMScores]  # persona '' only
    persona_raters: dict[RaterKey, LLMScores]
    rater_rows: dict[RaterKey, np.ndarray] = field(default_factory=dict)
    records: list[MetricRecord] = field(default_factory=list)

    baselines: dict[str, AnnotatorBaseline] = field(default_factory=dict)
    _counts: dict[tuple[str, int, int], np.ndarray] = field(default_factory=dict)
    _verdicts: dict[RaterKey, np.ndarray] = field(default_factory=dict)

    def samples(self, key: RaterKey) -> np.ndarray:
        """items x sample_index matrix of the rater's usable values, aligned to the item list (NaN where
        a sample is missing, refused or failed)."""
        assert self.llm is not None
        frame = self.llm.iloc[self.rater_rows[key]]
        pivot = frame.pivot_table(index="item_id", columns="sample_index", values="value", aggfunc="mean",
                                  dropna=False)
        return pivot.reindex(self.human.item_ids).to_numpy(dtype=float)

    def check_threshold(self) -> None:
        binary.check_threshold(self.options.binary_threshold, self.human.values)

    def verdict(self, key: RaterKey) -> np.ndarray:
        """The rater's binary verdict per item (basis and tie rule of `accord.analysis.binary`)."""
        if key not in self._verdicts:
            thr = self.options.binary_threshold
            scores = self.raters.get(key) or self.persona_raters[key]
            if self.options.binary_basis == "vote":
                self._verdicts[key] = binary.vote_verdicts(self.samples(key), thr)[1]
            else:
                self._verdicts[key] = binary.binarise(scores.score, thr)
        return self._verdicts[key]

    def human_verdict(self) -> tuple[np.ndarray, np.ndarray]:
        """The annotators' binary verdict per item and a mask of exact ties (same basis and rule)."""
        thr = self.options.binary_threshold
        if self.options.binary_basis == "vote":
            share, verdict = binary.vote_verdicts(self.human.values, thr)
            return verdict, share == 0.5
        return binary.binarise(self.human_mean, thr), self.human_mean == thr

    def rng(self, *keys: object) -> np.random.Generator:
        return derive_rng(self.options.seed, *keys)

    def counts_for(self, slice_: str, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        """Bootstrap resample counts over the complete (x, y) pairs, shared by every statistic on
        the same item set of a slice (common random numbers across raters, methods and groups)."""
        ok = np.isfinite(x) & np.isfinite(y)
        n = int(ok.sum())
        if n < 3 or self.options.n_resamples <= 0:
            return None
        digest = zlib.crc32(np.packbits(ok).tobytes())
        key = (slice_, ok.size, digest)
        if key not in self._counts:
            if len(self._counts) >= COUNTS_CACHE_SIZE:
                self._counts.pop(next(iter(self._counts)))
            self._counts[key] = resample_counts(n, self.options.n_resamples,
                                                self.rng("bootstrap", slice_, ok.size, digest))
        return self._counts[key]

    def baseline(self, rows: np.ndarray, slice_: str) -> AnnotatorBaseline:
        if slice_ not in self.baselines:
            self.baselines[slice_] = baseline.annotator_agreement(
                self.human.values[rows], self.human.annotator_ids,
                leave_one_out=self.options.baseline_leave_one_out)
        return self.baselines[slice_]


def _guard(ctx: _Context, name: str, fn: Callable[[], list[MetricRecord] | MetricRecord | None],
           slice_: str = "all", model: str = "", template: str = "") -> None:
    """Run one metric; an undefined metric becomes a None record with the reason."""
    try:
        out = fn()
    except ValueError as exc:
        ctx.records.append(MetricRecord(name, None, slice_, model, template, details={"reason": str(exc)}))
        return
    except Exception as exc:  # a bug must not take the whole suite down; it is logged and recorded
        log.exception("metric %s (%s, %s, %s) failed", name, slice_, model, template)
        ctx.records.append(MetricRecord(name, None, slice_, model, template,
                                        details={"reason": f"{type(exc).__name__}: {exc}",
                                                 "error": True}))
        return
    if out is None:
        return
    ctx.records.extend(out if isinstance(out, list) else [out])


def _build_context(human: pd.DataFrame, annotators: pd.DataFrame | None, llm: pd.DataFrame | None,
                   items: pd.DataFrame | None, options: SuiteOptions) -> _Context:
    llm_norm = normalise_llm(llm) if llm is not None and len(llm) else None
    item_set = set(human["item_id"].astype(str)) if "item_id" in human.columns else set()
    if llm_norm is not None:
        item_set |= set(llm_norm["item_id"])
    item_ids = sorted(item_set)
    hm = build_human_matrix(human, item_ids)
    raters: dict[RaterKey, LLMScores] = {}
    personas: dict[RaterKey, LLMScores] = {}
    rows: dict[RaterKey, np.ndarray] = {}
    if llm_norm is not None:
        for key, scores in build_llm_scores(llm_norm, item_ids, options.use_weighted).items():
            (personas if key.persona_key else raters)[key] = scores
        for group_key, idx in llm_norm.groupby(["model", "template", "persona_key"], sort=True).indices.items():
            m, t, p = cast(tuple[object, object, object], group_key)         # grouped by three columns
            rows[RaterKey(str(m), str(t), str(p))] = np.asarray(idx)
    try:
        binned, _ = bin_numeric_attributes(annotators, options.bins)
    except ValueError as exc:  # bins naming a missing or non-numeric attribute: group by the raw values
        log.warning("annotator attributes not binned: %s", exc)
        binned, _ = bin_numeric_attributes(annotators, None)
    groups = build_groups(binned, hm.annotator_ids, options.group_attributes,
                          intersections=True, min_group_size=options.min_group_size)
    return _Context(
        options=options,
        human=hm,
        human_mean=hm.item_mean(),
        majority=binary.majority_labels(hm.values),
        domain=hm.value_domain(),
        meta=item_metadata(items, item_ids),
        groups=groups,
        llm=llm_norm,
        raters=raters,
        persona_raters=personas,
        rater_rows=rows,
    )


def compute_all(
    human: pd.DataFrame,
    annotators: pd.DataFrame | None,
    llm: pd.DataFrame | None,
    items: pd.DataFrame | None,
    options: SuiteOptions | None = None,
) -> list[MetricRecord]:
    """Every metric the data supports, as a list of `MetricRecord` (see the module docstring)."""
    options = options or SuiteOptions()
    ctx = _build_context(human, annotators, llm, items, options)
    all_rows = np.arange(ctx.human.n_items)
    _human_metrics(ctx, all_rows, "all")
    _group_association(ctx)
    _group_mean_metrics(ctx)
    _alt_test_metrics(ctx)
    for key, scores in ctx.raters.items():
        _alignment_metrics(ctx, key, scores, all_rows, "all")
        _jsd_metrics(ctx, key, scores)
        _binary_metrics(ctx, key, scores, all_rows, "all", with_expert=True)
    _prevalence_metrics(ctx)
    _model_comparisons(ctx)
    _untested_groups(ctx)
    _disparity_metrics(ctx)
    _persona_metrics(ctx)
    _failure_metrics(ctx)
    _consistency_metrics(ctx)
    _subject_metrics(ctx)
    _category_metrics(ctx)
    return catalogued(ctx.records)


# --------------------------------------------------------------------------- human-only metrics


def _human_metrics(ctx: _Context, rows: np.ndarray, slice_: str) -> None:
    ratings = ctx.human.values[rows]
    opts = ctx.options
    n_ratings = int(np.isfinite(ratings).sum())
    ctx.records.append(MetricRecord(
        "n_human_ratings", float(n_ratings), slice_, n=n_ratings,
        details={"n_items": int(np.any(np.isfinite(ratings), axis=1).sum()),
                 "n_annotators": int(np.any(np.isfinite(ratings), axis=0).sum())}))
    name = "annotator_loo_r_median" if opts.baseline_leave_one_out else "annotator_full_mean_r_median"

    def base() -> MetricRecord:
        res = ctx.baseline(rows, slice_)
        if res.n_defined == 0:
            raise ValueError("no annotator has a defined correlation with the others "
                             "(each needs >= 3 items shared with others and non-constant ratings)")
        return MetricRecord(name, res.median, slice_, n=res.n_defined,
                            details=baseline.baseline_details(res))

    _guard(ctx, name, base, slice_)
    levels = ["interval"] if ctx.domain is None else ["nominal", "ordinal", "interval"]
    for level in levels:
        _guard(ctx, f"krippendorff_alpha_{level}", lambda level=level: MetricRecord(  # type: ignore[misc]  # a lambda binding the loop variable by default
            f"krippendorff_alpha_{level}",
            agreement.krippendorff_alpha(ratings, level, ctx.domain), slice_,
            n=int((np.isfinite(ratings).sum(axis=1) >= 2).sum()),
            details={"value_domain": ctx.domain if ctx.domain is not None else None}), slice_)
    domain = ctx.domain
    if slice_ == "all" and domain is not None:
        counts = np.isfinite(ratings).sum(axis=1)
        sizes = np.unique(counts[counts > 0])
        if sizes.size == 1:
            _guard(ctx, "fleiss_kappa", lambda: MetricRecord(
                "fleiss_kappa", agreement.fleiss_kappa(ratings, domain), slice_,
                n=int((counts > 0).sum()), details={"ratings_per_item": int(sizes[0])}), slice_)
        elif sizes.size > 1:
            ctx.records.append(MetricRecord(
                "fleiss_kappa", None, slice_,
                details={"skipped": "items have different numbers of ratings "
                                    f"({int(sizes.min())}..{int(sizes.max())})"}))


def _group_association(ctx: _Context) -> None:
    opts = ctx.options
    for gdef in ctx.groups:
        if not 2 <= gdef.n_groups <= opts.max_groups:
            continue

        def run(gdef: GroupDefinition = gdef) -> list[MetricRecord]:
            res = association.group_association(
                ctx.human.values, gdef.labels, gdef.group_names, opts.association_metric,
                opts.n_permutations, ctx.rng("association", gdef.attribute), opts.xrr_weighting)
            adjusted = benjamini_hochberg(res.gai_pvalue)
            out = []
            for g, name in enumerate(gdef.group_names):
                size = int(res.group_sizes[g])
                common = {"metric": res.metric, "group_size": size, "attribute": gdef.attribute,
                           "xrr_weighting": res.xrr_weighting,
                           "rest": "every other annotator with a known value of the attribute"}
                out.append(MetricRecord("group_irr", res.irr[g], name, n=size, details=dict(
                    common, reason="fewer than two pairable ratings in the group")
                    if not np.isfinite(res.irr[g]) else common))
                out.append(MetricRecord("group_xrr", res.xrr[g], name, n=size, details=dict(
                    common, reason="no item rated by the group and the rest, or no expected "
                                   "disagreement") if not np.isfinite(res.xrr[g]) else common))
                gai_details = dict(common, irr=res.irr[g], xrr=res.xrr[g],
                                   p_adjusted_bh=adjusted[g], n_permutations=res.n_permutations,
                                   null_quantiles=_null_quantiles(res.null_gai[:, g]),
                                   pvalue_kind="permutation, equal-tailed two-sided")
                null_median = gai_details["null_quantiles"].get("0.5")
                if np.isfinite(res.gai[g]) and null_median is not None:
                    gai_details["direction"] = ("higher than random groups of the same size"
                                                if res.gai[g] > null_median else
                                                "lower than random groups of the same size")
                if not np.isfinite(res.gai[g]):
                    gai_details["reason"] = "IRR undefined or XRR <= 0"
                out.append(MetricRecord("group_gai", res.gai[g], name, pvalue=res.gai_pvalue[g],
                                        n=size, details=gai_details))
            return out

        _guard(ctx, "group_gai", run, gdef.attribute)


def _group_mean_metrics(ctx: _Context) -> None:
    """group_mean_rating per group, group_mean_difference per pair of groups of one attribute."""
    opts = ctx.options
    for gdef in ctx.groups:
        if not 2 <= gdef.n_groups <= opts.max_groups:
            continue
        with_pairs = "&" not in gdef.attribute

        def run(gdef: GroupDefinition = gdef, with_pairs: bool = with_pairs) -> list[MetricRecord]:
            # intersections: the means only (pairwise tests among them would multiply)
            res = group_means(ctx.human.values, gdef, n_resamples=opts.n_resamples,
                              n_permutations=opts.n_permutations, confidence_level=opts.confidence_level,
                              rng=ctx.rng("group-means", gdef.attribute), pairs=with_pairs)
            out = [MetricRecord("group_mean_rating", g.mean, g.group, ci_low=g.ci_low, ci_high=g.ci_high,
                                n=g.n_ratings, details={"attribute": gdef.attribute, "n_annotators": g.n_annotators,
                                                        "n_items": g.n_items, "alpha_interval_within": g.alpha_interval,
                                                        "ci": "percentile bootstrap over items"})
                   for g in res.groups]
            for d in res.differences:
                out.append(MetricRecord(
                    "group_mean_difference", d.difference, f"{d.group_a} vs {d.group_b}", pvalue=d.pvalue,
                    n=d.n_items, details={"attribute": gdef.attribute, "p_adjusted_bh": d.p_adjusted_bh,
                                          "difference": f"mean over shared items of {d.group_a} - {d.group_b}",
                                          "pvalue_kind": "permutation of annotators between the two groups",
                                          "n_permutations": res.n_permutations}))
            return out

        _guard(ctx, "group_mean_rating", run, gdef.attribute)


def _alt_test_metrics(ctx: _Context) -> None:
    """The alternative annotator test per LLM rater (labels snapped to the human domain for accuracy)."""
    opts = ctx.options
    measure = opts.alt_measure
    if measure == "auto":
        measure = "accuracy" if ctx.domain is not None else "neg_rmse"
    singles = [g for g in ctx.groups if "&" not in g.attribute and 2 <= g.n_groups <= opts.max_groups]
    for key, scores in ctx.raters.items():
        def run(key: RaterKey = key, scores: LLMScores = scores) -> list[MetricRecord]:
            if measure == "accuracy":
                if ctx.domain is None:
                    raise ValueError("alt-test accuracy needs label ratings; use measure neg_rmse")
                llm_values = agreement.snap_to_domain(scores.label, ctx.domain)
            else:
                llm_values = scores.score
            res = alt_test.alt_test(ctx.human.values, llm_values, ctx.human.annotator_ids, measure=measure,
                                    epsilon=opts.alt_epsilon, q=opts.alt_q, min_items=opts.alt_min_items)
            common = {"epsilon": res.epsilon, "measure": res.measure, "q": res.q, "n_items": res.n_items,
                      "passed": res.passed, "n_skipped_annotators": len(res.skipped),
                      "reference": "Calderon, Reichart & Dror 2025 (alt-test)"}
            out = [MetricRecord("alt_test_winning_rate", res.winning_rate, "all", key.model, key.template,
                                n=len(res.annotators), details=dict(common, annotators=[
                                    {"annotator": o.annotator, "n_items": o.n_items, "rho": o.advantage_probability,
                                     "pvalue": o.pvalue, "llm_wins": o.llm_wins} for o in res.annotators])),
                   MetricRecord("alt_test_advantage_probability", res.advantage_probability, "all", key.model,
                                key.template, n=len(res.annotators), details=common)]
            for gdef in singles:
                for g in alt_test.group_winning_rates(res, ctx.human.annotator_ids, gdef.labels, gdef.group_names):
                    out.append(MetricRecord("alt_test_winning_rate", g.winning_rate, g.group, key.model,
                                            key.template, n=g.n_annotators,
                                            details=dict(common, attribute=gdef.attribute,
                                                         advantage_probability=g.advantage_probability,
                                                         fdr="Benjamini-Yekutieli across all annotators")))
            return out

        _guard(ctx, "alt_test_winning_rate", run, "all", key.model, key.template)


def _prevalence_metrics(ctx: _Context) -> None:
    """prevalence_raw and prevalence_corrected (Rogan-Gladen) per LLM rater, on the items without a reference
    label, when there are any."""
    reference, ref_name = _reference_binary(ctx)
    has_reference = np.isfinite(reference)
    if has_reference.all() or not has_reference.any():
        return
    thr = ctx.options.binary_threshold
    for key, scores in ctx.raters.items():
        def run(key: RaterKey = key, scores: LLMScores = scores) -> list[MetricRecord]:
            judged = ctx.verdict(key)  # the same verdict (basis, tie rule) as the accuracy metrics
            res = prevalence.corrected_prevalence(judged[~has_reference], judged[has_reference],
                                                  reference[has_reference], ctx.options.confidence_level)
            details = {"reference": ref_name, "threshold": thr, "sensitivity": res.sensitivity,
                       "specificity": res.specificity, "n_validation_positive": res.n_positive,
                       "n_validation_negative": res.n_negative, "items": "items without a reference label"}
            return [MetricRecord("prevalence_raw", res.raw, "all", key.model, key.template, *res.raw_ci,
                                 n=res.n_unrated, details=dict(details, ci="Wilson")),
                    MetricRecord("prevalence_corrected", res.corrected, "all", key.model, key.template,
                                  *res.corrected_ci, n=res.n_unrated,
                                  details=dict(details, raw=res.raw, method="Rogan-Gladen",
                                               ci="delta method (apparent prevalence, Se and Sp)"))]

        _guard(ctx, "prevalence_corrected", run, "all", key.model, key.template)


def _null_quantiles(null: np.ndarray) -> dict[str, float]:
    finite = null[np.isfinite(null)]
    if finite.size == 0:
        return {}
    qs = [0.025, 0.5, 0.975]
    return {f"{q:g}": float(v) for q, v in zip(qs, np.quantile(finite, qs))}


# --------------------------------------------------------------------------- alignment per LLM


def _corr_record(name: str, res: CorrelationResult, slice_: str, key: RaterKey,
                 extra: dict[str, Any] | None = None) -> MetricRecord:
    details = dict(extra or {})
    details["method"] = res.method
    if res.reason:
        details["reason"] = res.reason
    return MetricRecord(name, res.statistic, slice_, key.model, key.template,
                        res.confidence_interval.low, res.confidence_interval.high, res.pvalue,
                        res.n, details)


def _alignment_metrics(ctx: _Context, key: RaterKey, scores: LLMScores, rows: np.ndarray,
                       slice_: str) -> None:
    opts = ctx.options
    s = scores.score[rows]
    mu = ctx.human_mean[rows]
    if not np.isfinite(s).any():
        ctx.records.append(MetricRecord("pearson_r_vs_mean", None, slice_, key.model, key.template,
                                        details={"reason": "the LLM has no parsed answer on these items"}))
        return
    for method, name in CORRELATION_NAMES.items():
        _guard(ctx, name, lambda method=method, name=name: _corr_record(  # type: ignore[misc]  # a lambda binding the loop variables by default
            name, correlation.correlation_with_ci(
                s, mu, method, n_resamples=opts.n_resamples, confidence_level=opts.confidence_level,
                rng=ctx.rng(name, slice_, key.model, key.template), ci_method=opts.ci_method,
                counts=ctx.counts_for(slice_, s, mu)),
            slice_, key, {"ci": f"paired item bootstrap ({opts.ci_method})",
                          "n_resamples": opts.n_resamples}), slice_, key.model, key.template)
        if opts.two_way_bootstrap and opts.n_resamples > 0:
            two = name + "_two_way"
            _guard(ctx, two, lambda method=method, two=two: _corr_record(  # type: ignore[misc]  # a lambda binding the loop variables by default
                two, correlation.two_way_bootstrap_correlation(
                    s, ctx.human.values[rows], method, n_resamples=opts.n_resamples,
                    confidence_level=opts.confidence_level,
                    rng=ctx.rng(two, slice_, key.model, key.template)),
                slice_, key, {"ci": "two-way bootstrap (items x annotators, percentile)"}),
                slice_, key.model, key.template)

    def percentile() -> MetricRecord:
        base = ctx.baseline(rows, slice_)
        xs, ys = correlation.pairwise_complete(s, mu)
        reason = correlation.undefined_reason(xs, ys)
        if reason:
            raise ValueError(f"LLM correlation undefined: {reason}")
        if base.n_defined == 0:
            raise ValueError("no annotator has a defined correlation with the others")
        r_llm = float(np.corrcoef(xs, ys)[0, 1])
        return MetricRecord("llm_percentile_among_annotators", base.percentile_of(r_llm), slice_,
                            key.model, key.template, n=base.n_defined,
                            details={"llm_r": r_llm, "annotator_median_r": base.median,
                                     "leave_one_out": base.leave_one_out,
                                     "share_of_annotators_below": base.percentile_of(r_llm) / 100})

    _guard(ctx, "llm_percentile_among_annotators", percentile, slice_, key.model, key.template)
    if slice_ != "all":
        return
    ratings = ctx.human.values[rows]
    levels = ["interval"] if ctx.domain is None else ["nominal", "ordinal", "interval"]
    for level in levels:
        name = f"krippendorff_delta_alpha_{level}"

        def delta(level: str = level, name: str = name) -> MetricRecord:
            if level == "interval":
                llm_values = s
            else:
                assert ctx.domain is not None       # levels other than interval exist only with a domain
                llm_values = agreement.snap_to_domain(scores.label[rows], ctx.domain)
            # Continuous scores are not in the humans' label domain; the interval level needs no domain.
            res = agreement.delta_alpha(ratings, llm_values, level, None if level == "interval" else ctx.domain)
            return MetricRecord(name, res.delta, slice_, key.model, key.template,
                                n=int(np.isfinite(llm_values).sum()),
                                details={"alpha_humans": res.alpha_humans,
                                         "alpha_with_llm": res.alpha_with_llm,
                                         "llm_values": "score" if level == "interval" else "modal label"})

        _guard(ctx, name, delta, slice_, key.model, key.template)
    domain = ctx.domain
    if domain is not None:
        labels = agreement.snap_to_domain(scores.label[rows], domain)
        for weights, name in ((None, "cohen_kappa_vs_majority"),
                              ("linear", "cohen_kappa_linear_vs_majority")):
            def kappa(weights: str | None = weights, name: str = name) -> MetricRecord:
                res = agreement.cohen_kappa(labels, ctx.majority[rows], domain, weights)
                return MetricRecord(name, res.statistic, slice_, key.model, key.template,
                                    res.confidence_interval[0], res.confidence_interval[1],
                                    res.pvalue, res.n,
                                    {"weights": res.weights, "ci": "asymptotic (statsmodels)"})

            _guard(ctx, name, kappa, slice_, key.model, key.template)

        def multiclass() -> MetricRecord:
            res = soft_labels.multiclass_agreement(labels, ctx.majority[rows], domain)
            return MetricRecord("multiclass_accuracy_vs_majority", res.accuracy, slice_, key.model, key.template,
                                n=res.n, details={"confusion": res.confusion, "value_domain": res.domain,
                                                  "confusion_rows": "human majority label",
                                                  "confusion_columns": "LLM modal label"})

        _guard(ctx, "multiclass_accuracy_vs_majority", multiclass, slice_, key.model, key.template)


def _binary_metrics(ctx: _Context, key: RaterKey, scores: LLMScores, rows: np.ndarray,
                    slice_: str, with_expert: bool) -> None:
    thr = ctx.options.binary_threshold
    basis = ctx.options.binary_basis
    try:
        ctx.check_threshold()
    except ValueError as exc:
        for ref_name in ("majority", "expert") if with_expert else ("majority",):
            for metric in ("accuracy", "precision", "recall", "f1"):
                ctx.records.append(MetricRecord(f"{metric}_vs_{ref_name}", None, slice_, key.model, key.template,
                                                details={"reason": str(exc), "threshold": thr}))
        return
    predicted = ctx.verdict(key)[rows]
    human_verdict, human_tie = ctx.human_verdict()
    references = {"majority": human_verdict[rows]}
    expert_col = ctx.options.expert_column
    if with_expert and expert_col in ctx.meta.columns:
        references["expert"] = binary_expert_labels(ctx.meta[expert_col].iloc[rows])
    predicted_from = ("the LLM's majority verdict over its samples" if basis == "vote"
                      else "the LLM's mean score against the threshold")
    majority_from = ("the annotators' majority verdict" if basis == "vote"
                     else "the annotators' mean rating against the threshold")
    for ref_name, reference in references.items():
        def run(reference: np.ndarray = reference, ref_name: str = ref_name) -> list[MetricRecord]:
            res = binary.binary_scores(predicted, reference)
            details = {"threshold": thr, "reference": ref_name, "basis": basis, "tie_rule": binary.TIE_RULE,
                       "predicted_from": predicted_from,
                       "reference_from": majority_from if ref_name == "majority" else "expert label",
                       "n_positive_reference": res.n_positive_reference,
                       "n_positive_predicted": res.n_positive_predicted}
            if ref_name == "majority":
                details["n_reference_ties"] = int(np.sum(human_tie[rows] & np.isfinite(predicted)))
            out = []
            for metric in ("accuracy", "precision", "recall", "f1"):
                value = getattr(res, metric)
                d = dict(details)
                if not np.isfinite(value):
                    d["reason"] = "no predicted or no reference positives"
                out.append(MetricRecord(f"{metric}_vs_{ref_name}", value, slice_, key.model,
                                        key.template, n=res.n, details=d))
            return out

        _guard(ctx, f"accuracy_vs_{ref_name}", run, slice_, key.model, key.template)

        def kappa(reference: np.ndarray = reference, ref_name: str = ref_name) -> MetricRecord:
            res = agreement.cohen_kappa(predicted, reference, np.array([0.0, 1.0]))
            return MetricRecord(f"cohen_kappa_binary_vs_{ref_name}", res.statistic, slice_, key.model,
                                key.template, res.confidence_interval[0], res.confidence_interval[1], res.pvalue,
                                res.n, {"basis": basis, "threshold": thr, "tie_rule": binary.TIE_RULE,
                                        "ci": "asymptotic (statsmodels)"})

        _guard(ctx, f"cohen_kappa_binary_vs_{ref_name}", kappa, slice_, key.model, key.template)


def _jsd_metrics(ctx: _Context, key: RaterKey, scores: LLMScores) -> None:
    domain = ctx.domain
    if domain is None:
        ctx.records.append(MetricRecord("jsd_mean", None, "all", key.model, key.template,
                                        details={"skipped": "ratings are continuous (no label domain)"}))
        return
    assert ctx.llm is not None
    idx = ctx.rater_rows[key]
    item_pos = pd.Index(ctx.human.item_ids).get_indexer(ctx.llm["item_id"].to_numpy()[idx])
    usable = ctx.llm["usable"].to_numpy(dtype=bool)[idx]
    values = np.where(usable, ctx.llm["value"].to_numpy(dtype=float)[idx], np.nan)
    finite_values = values[np.isfinite(values)]
    n_tied = distribution.level_weights(finite_values, domain)[3] if finite_values.size else 0
    if "value_probs" in ctx.llm.columns:
        probs = [p if isinstance(p, dict) and ok else None
                 for p, ok in zip(ctx.llm["value_probs"].to_numpy()[idx], usable)]
        p_llm, n_prob_rows = distribution.mixed_distribution(item_pos, values, probs, ctx.human.n_items, domain)
    else:
        p_llm, n_prob_rows = distribution.label_distribution(item_pos, values, ctx.human.n_items, domain), 0
    source = "label probabilities" if n_prob_rows == int(usable.sum()) and n_prob_rows else (
        "samples" if n_prob_rows == 0 else "label probabilities where available, else samples")
    targets = [("all", np.arange(ctx.human.n_annotators))]
    for gdef in ctx.groups:
        for g, name in enumerate(gdef.group_names):
            targets.append((name, gdef.members(g)))
    for slice_, cols in targets:
        def run(cols: np.ndarray = cols, slice_: str = slice_) -> list[MetricRecord]:
            p_h = distribution.human_distribution(ctx.human.values[:, cols], domain)
            value, n = distribution.mean_jensen_shannon(p_llm, p_h)
            common = {"value_domain": ctx.domain, "n_annotators": len(cols), "llm_distribution": source,
                      "tie_rule": distribution.TIE_RULE, "n_tied_values": n_tied}
            ce, entropy, n_ce = soft_labels.cross_entropy(p_h, p_llm)
            l1, n_l1 = soft_labels.manhattan(p_h, p_llm)
            return [MetricRecord("jsd_mean", value, slice_, key.model, key.template, n=n,
                                 details=dict(common, base=2)),
                    MetricRecord("soft_label_cross_entropy", ce, slice_, key.model, key.template, n=n_ce,
                                 details=dict(common, base=2, human_entropy=entropy, floor=soft_labels.CE_FLOOR)),
                    MetricRecord("soft_label_manhattan", l1, slice_, key.model, key.template, n=n_l1,
                                 details=dict(common, range="0 (same) to 2 (disjoint)"))]

        _guard(ctx, "jsd_mean", run, slice_, key.model, key.template)


# --------------------------------------------------------------------------- disparity


def _model_comparisons(ctx: _Context) -> None:
    """Every pair of raters (model x template): paired difference of r with the mean human rating and of
    Cohen's kappa with the human majority label, Holm-adjusted across pairs (`accord.analysis.comparison`)."""
    keys = list(ctx.raters)
    if len(keys) < 2:
        return
    opts = ctx.options
    labels = {k: f"{k.model} · {k.template}" for k in keys}
    specs: list[tuple[str, Callable[[RaterKey, RaterKey], comparison.PairedDifference]]] = [("paired_difference_pearson_r", lambda ka, kb: comparison
                                          .paired_correlation_difference(
                                              ctx.raters[ka].score, ctx.raters[kb].score, ctx.human_mean,
                                              n_resamples=max(opts.n_resamples, 1),
                                              confidence_level=opts.confidence_level,
                                              rng=ctx.rng("compare-r", labels[ka], labels[kb]),
                                              names=(labels[ka], labels[kb])))]
    domain = ctx.domain
    if domain is not None:
        specs.append(("paired_difference_cohen_kappa", lambda ka, kb: comparison.paired_kappa_difference(
            agreement.snap_to_domain(ctx.raters[ka].label, domain),
            agreement.snap_to_domain(ctx.raters[kb].label, domain), ctx.majority, domain,
            n_resamples=max(opts.n_resamples, 1), n_permutations=opts.n_permutations,
            confidence_level=opts.confidence_level, rng=ctx.rng("compare-kappa", labels[ka], labels[kb]),
            names=(labels[ka], labels[kb]))))
    for name, fn in specs:
        done: list[tuple[RaterKey, RaterKey, comparison.PairedDifference]] = []
        for ia, ib in comparison.rater_pairs([labels[k] for k in keys]):
            ka, kb = keys[ia], keys[ib]
            try:
                done.append((ka, kb, fn(ka, kb)))
            except Exception as exc:  # undefined (ValueError) or a bug: recorded, never fatal, as in _guard
                details: dict[str, Any] = {"reason": str(exc), "rater_a": labels[ka], "rater_b": labels[kb]}
                if not isinstance(exc, ValueError):
                    log.exception("metric %s (%s vs %s) failed", name, labels[ka], labels[kb])
                    details.update(reason=f"{type(exc).__name__}: {exc}", error=True)
                ctx.records.append(MetricRecord(name, None, f"vs {labels[kb]}", ka.model, ka.template,
                                                details=details))
        comparison.adjust_and_decide([d for _, _, d in done], opts.alpha)
        for ka, kb, d in done:
            ctx.records.append(MetricRecord(
                name, d.difference, f"vs {labels[kb]}", ka.model, ka.template, d.ci_low, d.ci_high, d.pvalue,
                d.n, details={"rater_a": d.rater_a, "rater_b": d.rater_b, "value_a": d.value_a,
                              "value_b": d.value_b, "statistic": d.statistic, "test": d.test,
                              "p_adjusted_holm": d.pvalue_holm, "winner": d.winner,
                              "ci": "paired item bootstrap", "n_pairs_adjusted": len(done),
                              "winner_rule": f"Holm-adjusted p < {opts.alpha:g} and the interval excludes zero"}))


def _untested_groups(ctx: _Context) -> None:
    """One record per group that gets no test (too few annotators), with its size and the reason, and per
    attribute the number of annotators whose value is unknown."""
    for gdef in ctx.groups:
        for entry in gdef.untested():
            ctx.records.append(MetricRecord(
                "group_not_tested", None, entry["group"], n=entry["group_size"],
                details={"skipped": entry["reason"], "attribute": gdef.attribute,
                         "group_size": entry["group_size"], "min_group_size": gdef.min_group_size}))
        if gdef.n_unknown:
            ctx.records.append(MetricRecord(
                "group_unknown_annotators", float(gdef.n_unknown), gdef.attribute, n=gdef.n_unknown,
                details={"attribute": gdef.attribute,
                         "meaning": "annotators whose value of the attribute is unknown (missing, 'nan', "
                                    "'None' or empty): in no group and in no rest"}))


def _pooled_single_rater_reliability(ratings: np.ndarray) -> float:
    """Krippendorff's interval alpha of the ratings (an ICC(1)-type reliability of one rating)."""
    if ratings.shape[1] < 2:
        return float("nan")
    return agreement.interval_alpha(ratings)


def _disparity_metrics(ctx: _Context) -> None:
    if not ctx.groups or not ctx.raters:
        return
    opts = ctx.options
    keys = list(ctx.raters)
    score_matrix = np.column_stack([ctx.raters[k].score for k in keys])
    annotator_r, _ = correlation.masked_pearson_columns(score_matrix, ctx.human.values)  # R x J
    group_records: dict[RaterKey, list[MetricRecord]] = {k: [] for k in keys}
    gap_records: dict[RaterKey, list[MetricRecord]] = {k: [] for k in keys}
    for gdef in ctx.groups:
        untested = gdef.untested()
        if gdef.n_groups > opts.max_groups:
            for k in keys:
                ctx.records.append(MetricRecord(
                    "group_r_gap", None, gdef.attribute, k.model, k.template,
                    details={"skipped": f"{gdef.n_groups} groups (more than max_groups="
                                        f"{opts.max_groups}); choose with analysis: {{group_attributes: [...]}} "
                                        "or bin a numeric attribute with analysis: {bins: {...}}",
                             "not_tested": untested}))
            continue
        if gdef.n_groups < 2:
            for k in keys:
                ctx.records.append(MetricRecord(
                    "group_r_gap", None, gdef.attribute, k.model, k.template,
                    details={"skipped": f"fewer than two groups of at least {opts.min_group_size} annotators",
                             "groups": gdef.group_names, "too_small": gdef.too_small,
                             "not_tested": untested}))
            continue
        try:
            test = disparity.group_correlation_test(
                score_matrix, ctx.human.values, gdef.labels, gdef.n_groups, opts.n_permutations,
                ctx.rng("group-permutation", gdef.attribute), opts.confidence_level)
        except ValueError as exc:
            for k in keys:
                ctx.records.append(MetricRecord("group_r_gap", None, gdef.attribute, k.model,
                                                k.template, details={"reason": str(exc)}))
            continue
        group_means = [ctx.human.item_mean(gdef.members(g)) for g in range(gdef.n_groups)]
        raters_per_item = [np.isfinite(ctx.human.values[:, gdef.members(g)]).sum(axis=1)
                           for g in range(gdef.n_groups)]
        rho = _pooled_single_rater_reliability(ctx.human.values[:, gdef.known])
        for ri, key in enumerate(keys):
            s = ctx.raters[key].score
            robust = disparity.mean_annotator_r(annotator_r[ri], gdef.labels, gdef.n_groups,
                                                opts.confidence_level)
            sb = [disparity.spearman_brown_r(test.group_r[ri, g], raters_per_item[g][np.isfinite(s)], rho)
                  for g in range(gdef.n_groups)]
            for g, name in enumerate(gdef.group_names):
                members = gdef.members(g)
                mu_g = group_means[g]
                res = correlation.correlation_with_ci(
                    s, mu_g, "pearson", n_resamples=opts.n_resamples,
                    confidence_level=opts.confidence_level,
                    rng=ctx.rng("group_pearson_r", name, key.model, key.template),
                    ci_method=opts.ci_method, counts=ctx.counts_for("all", s, mu_g))
                rec = _corr_record("group_pearson_r", res, name, key, {
                    "attribute": gdef.attribute, "group_size": int(members.size),
                    "r_rest": test.rest_r[ri, g], "r_minus_rest": test.difference[ri, g],
                    "headline": "effect_vs_random_groups",
                    "effect_vs_random_groups": test.effect[ri, g],
                    "effect_ci": [test.effect_low[ri, g], test.effect_high[ri, g]],
                    "effect_meaning": "(r_G - r_rest) minus its mean over random groups of the same size; "
                                      "interval from inverting the permutation test",
                    "r_random_groups_same_size": test.null_mean_r[ri, g],
                    "r_minus_rest_random_groups": test.null_mean_difference[ri, g],
                    "mean_annotator_r": robust.mean_annotator_r[g],
                    "mean_annotator_r_ci": [robust.mean_annotator_r_low[g], robust.mean_annotator_r_high[g]],
                    "n_annotators_with_r": int(robust.n_annotators[g]),
                    "spearman_brown_r": sb[g], "single_rater_reliability": rho,
                    "pvalue_kind": "permutation of annotator->group labels (sizes kept), equal-tailed "
                                   "two-sided, r_G - r_rest",
                    "n_permutations": test.n_permutations})
                rec.pvalue = None if not np.isfinite(test.difference_pvalue[ri, g]) else float(
                    test.difference_pvalue[ri, g])
                group_records[key].append(rec)
            r_g = test.group_r[ri]
            details: dict[str, Any] = {"group_r": dict(zip(gdef.group_names, r_g)),
                             "excess_r": dict(zip(gdef.group_names, test.excess_r[ri])),
                             "r_random_groups_same_size": dict(zip(gdef.group_names, test.null_mean_r[ri])),
                             "mean_annotator_r": dict(zip(gdef.group_names, robust.mean_annotator_r)),
                             "spearman_brown_r": dict(zip(gdef.group_names, sb)),
                             "raw_gap": test.raw_gap[ri],
                             "gap_meaning": "range over groups of r_G minus the r_G of random groups of the "
                                            "same size (a small group's r_G is lower whatever the model does)",
                             "n_permutations": test.n_permutations,
                             "null_quantiles": _null_quantiles(test.null_gap[:, ri]),
                             "not_tested": untested}
            if np.isfinite(test.excess_r[ri]).sum() < 2:
                details["reason"] = "fewer than two groups with a defined correlation"
            gap_records[key].append(MetricRecord(
                "group_r_gap", test.gap[ri], gdef.attribute, key.model, key.template,
                pvalue=test.gap_pvalue[ri], n=int(np.sum(gdef.known)), details=details))
            _guard(ctx, "idiosyncratic_sd_within_groups",
                   lambda ri=ri, key=key, gdef=gdef: _idiosyncratic(  # type: ignore[misc]  # a lambda binding the loop variables by default
                       annotator_r[ri], gdef, key),
                   gdef.attribute, key.model, key.template)
            _mdd_records(ctx, key, gdef, test, ri)
    for key in keys:
        for recs in (group_records[key], gap_records[key]):
            adjusted = benjamini_hochberg(np.array([np.nan if r.pvalue is None else r.pvalue
                                                    for r in recs]))
            for rec, p_adj in zip(recs, adjusted):
                rec.details["p_adjusted_bh"] = None if not np.isfinite(p_adj) else float(p_adj)
        for rec in gap_records[key]:
            _name_extremes(rec, opts.alpha)
        ctx.records.extend(group_records[key])
        ctx.records.extend(gap_records[key])


def _name_extremes(rec: MetricRecord, alpha: float) -> None:
    """Name the highest and lowest group (by r_G relative to random groups of the same size) only when the
    size-adjusted gap is significant after BH; otherwise say why no group is named."""
    excess = {k: v for k, v in (rec.details.get("excess_r") or {}).items() if v is not None}
    p_adj = rec.details.get("p_adjusted_bh")
    if len(excess) < 2:
        return
    if p_adj is not None and p_adj < alpha:
        rec.details["highest"] = max(excess, key=excess.__getitem__)
        rec.details["lowest"] = min(excess, key=excess.__getitem__)
    else:
        rec.details["extremes_not_named"] = ("the size-adjusted gap is within what random groups of the same "
                                             f"sizes give (BH-adjusted p >= {alpha:g})")


def _idiosyncratic(r_j: np.ndarray, gdef: GroupDefinition, key: RaterKey) -> MetricRecord:
    res = disparity.idiosyncratic_variation(r_j, gdef.labels, gdef.group_names)
    return MetricRecord("idiosyncratic_sd_within_groups", res.sd_within, gdef.attribute, key.model,
                        key.template, n=int(sum(res.group_n.values())),
                        details={"sd_all": res.sd_all, "ratio_within_to_all": res.ratio,
                                 "group_sd": res.group_sd, "group_n": res.group_n})


def _mdd_records(ctx: _Context, key: RaterKey, gdef: GroupDefinition,
                 test: disparity.GroupCorrelationTest, ri: int) -> None:
    s = ctx.raters[key].score
    xs, ys = correlation.pairwise_complete(s, ctx.human_mean)
    r0 = float(np.corrcoef(xs, ys)[0, 1]) if correlation.undefined_reason(xs, ys) is None else 0.0
    for g1, g2 in combinations(range(gdef.n_groups), 2):
        slice_ = f"{gdef.group_names[g1]} vs {gdef.group_names[g2]}"

        def run(g1: int = g1, g2: int = g2, slice_: str = slice_) -> MetricRecord:
            n1, n2 = int(test.n_items[ri, g1]), int(test.n_items[ri, g2])
            res = disparity.min_detectable_difference(r0, n1, n2, ctx.options.alpha, ctx.options.power)
            # size-adjusted: each r_G relative to random groups of its size (the raw difference of two
            # groups of unequal size is mostly their difference in size)
            observed = test.excess_r[ri, g1] - test.excess_r[ri, g2]
            return MetricRecord("min_detectable_r_difference", res.delta_r, slice_, key.model,
                                key.template, n=min(n1, n2),
                                details={"delta_z": res.delta_z, "r0": res.r0, "n1": n1, "n2": n2,
                                         "power": ctx.options.power, "alpha": ctx.options.alpha,
                                         "observed_difference": observed,
                                         "raw_observed_difference": test.group_r[ri, g1] - test.group_r[ri, g2],
                                         "observed_exceeds": bool(np.isfinite(observed)
                                                                  and abs(observed) >= res.delta_r)})

        _guard(ctx, "min_detectable_r_difference", run, slice_, key.model, key.template)


# --------------------------------------------------------------------------- personas


def _canonical_key(key: str) -> str:
    return "&".join(sorted(part.strip() for part in key.split("&")))


def _persona_metrics(ctx: _Context) -> None:
    if not ctx.persona_raters:
        return
    opts = ctx.options
    # persona keys and group names are matched irrespective of the order of their parts
    # ("race=Black&gender=Woman" is the group "gender=Woman&race=Black")
    group_index: dict[str, tuple[GroupDefinition, int]] = {}
    for gdef in ctx.groups:
        for g, name in enumerate(gdef.group_names):
            group_index[_canonical_key(name)] = (gdef, g)
    by_rater: dict[tuple[str, str], dict[str, LLMScores]] = {}
    for key, scores in ctx.persona_raters.items():
        by_rater.setdefault((key.model, key.template), {})[_canonical_key(key.persona_key)] = scores
    for (model, template), persona_scores in sorted(by_rater.items()):
        matched = sorted(p for p in persona_scores if p in group_index)
        _persona_drift_metrics(ctx, model, template, persona_scores, matched, group_index)
        if len(matched) < 2:
            ctx.records.append(MetricRecord(
                "persona_gap_pearson_r", None, "all", model, template,
                details={"skipped": "fewer than two personas match an annotator group",
                         "personas": sorted(persona_scores), "groups": sorted(group_index)}))
            continue
        for p1, p2 in combinations(matched, 2):
            if group_index[p1][0].attribute != group_index[p2][0].attribute:
                continue
            slice_ = f"{p1} vs {p2}"

            def run(p1: str = p1, p2: str = p2, slice_: str = slice_, model: str = model,
                    template: str = template,
                    persona_scores: dict[str, LLMScores] = persona_scores) -> list[MetricRecord]:
                g1 = group_index[p1][0].members(group_index[p1][1])
                g2 = group_index[p2][0].members(group_index[p2][1])
                res = persona.persona_gap_prediction(
                    persona_scores[p1].score, persona_scores[p2].score,
                    ctx.human.item_mean(g1), ctx.human.item_mean(g2), opts.gap_threshold,
                    n_resamples=opts.n_resamples, confidence_level=opts.confidence_level,
                    rng=ctx.rng("persona", slice_, model, template))
                corr = res.correlation
                key = RaterKey(model, template)
                rec_r = _corr_record("persona_gap_pearson_r", corr, slice_, key,
                                     {"predicted": f"f({p1}) - f({p2})", "observed": f"mu({p1}) - mu({p2})"})
                acc_details = {"n_right": res.n_right, "n_wrong": res.n_wrong,
                               "gap_threshold": opts.gap_threshold,
                               "wilcoxon_pvalue": res.wilcoxon_pvalue,
                               "mean_oriented_gap": res.mean_oriented_gap,
                               "pvalue_kind": "one-sided sign test (binomial), H1: accuracy > 0.5"}
                if not np.isfinite(res.direction_accuracy):
                    acc_details["reason"] = (f"no item with |observed gap| > {opts.gap_threshold} "
                                             "and a non-zero predicted gap")
                rec_acc = MetricRecord("persona_gap_direction_accuracy", res.direction_accuracy,
                                       slice_, model, template, pvalue=res.sign_test_pvalue,
                                       n=res.n_right + res.n_wrong, details=acc_details)
                return [rec_r, rec_acc]

            _guard(ctx, "persona_gap_pearson_r", run, slice_, model, template)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _group_mean_se(ratings: np.ndarray) -> np.ndarray:
    """Standard error of the mean rating per item (sample SD / sqrt(n)); NaN with fewer than two ratings."""
    ok = np.isfinite(ratings)
    n = ok.sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(np.where(ok, ratings, np.nan), axis=1, ddof=1)
    return np.where(n >= 2, sd / np.sqrt(np.maximum(n, 1)), np.nan)


def _persona_drift_metrics(ctx: _Context, model: str, template: str, persona_scores: dict[str, LLMScores],
                           matched: list[str], group_index: dict[str, tuple[GroupDefinition, int]]) -> None:
    """persona_drift_mean_abs and persona_within_human_bounds per persona (slice = the persona); the bounds of a
    persona are its own group's mean ± z standard errors (+ tolerance) on each item."""
    by_attribute: dict[str, list[str]] = {}
    for p in matched:
        by_attribute.setdefault(group_index[p][0].attribute, []).append(p)
    for attribute, personas in sorted(by_attribute.items()):
        gdef = group_index[personas[0]][0]

        def run(personas: list[str] = personas, gdef: GroupDefinition = gdef,
                attribute: str = attribute) -> list[MetricRecord]:
            opts = ctx.options
            scores = np.vstack([persona_scores[p].score for p in personas])
            means = np.vstack([ctx.human.item_mean(gdef.members(g)) for g in range(gdef.n_groups)])
            se = np.vstack([_group_mean_se(ctx.human.values[:, gdef.members(g)]) for g in range(gdef.n_groups)])
            own = np.array([group_index[p][1] for p in personas])
            records = []
            results = persona.persona_drift(scores, means, opts.persona_bounds_tolerance, own_group=own,
                                            group_se=se, z=opts.persona_bounds_z)
            for p, res in zip(personas, results):
                details = {"attribute": attribute, "groups": list(gdef.group_names)}
                drift_details = dict(details, reference="the model's consensus over its personas")
                if res.n_drift == 0:
                    drift_details["reason"] = "no item with a persona rating and human ratings from the groups"
                bounds_details = dict(
                    details, group=gdef.group_names[group_index[p][1]],
                    bounds=f"the persona's group mean ± {opts.persona_bounds_z:g} × its standard error "
                           f"+ tolerance {opts.persona_bounds_tolerance:g} (items with >= 2 of the group's raters)",
                    within_range_of_group_means=res.within_range_share, mean_abs_error=res.mean_abs_error,
                    z=opts.persona_bounds_z, tolerance=opts.persona_bounds_tolerance)
                if res.n == 0:
                    bounds_details["reason"] = "no item with a persona rating and two ratings from its group"
                records.append(MetricRecord("persona_drift_mean_abs", _finite(res.mean_abs_drift), p, model,
                                            template, n=res.n_drift, details=drift_details))
                records.append(MetricRecord("persona_within_human_bounds", _finite(res.within_bounds_share), p,
                                            model, template, n=res.n, details=bounds_details))
            return records

        _guard(ctx, "persona_drift_mean_abs", run, attribute, model, template)


# --------------------------------------------------------------------------- failures


def _failure_metrics(ctx: _Context) -> None:
    if ctx.llm is None:
        return
    llm = ctx.llm
    columns = failures.categorical_columns(ctx.meta)
    meta_rows = pd.Index(ctx.human.item_ids).get_indexer(pd.Index(llm["item_id"].to_numpy()))
    for group_key, group_idx in llm.groupby(["model", "template"], sort=True).indices.items():
        model, template = cast(tuple[object, object], group_key)            # grouped by two columns
        idx = np.asarray(group_idx)
        status = llm["parse_status"].iloc[idx]
        values = llm["value"].to_numpy(dtype=float)[idx]
        counts = {str(k): int(v) for k, v in status.value_counts().sort_index().items()}
        n_ok_nan = int(np.sum((status == "ok").to_numpy() & ~np.isfinite(values)))
        for kind, rate_name in (("failure", "failure_rate"), ("refusal", "refusal_rate")):
            flags = failures.outcome_flags(status, kind, values)
            rate_details = {"count": int(flags.sum()), "status_counts": counts}
            if kind == "failure":
                rate_details["ok_without_value"] = n_ok_nan
                rate_details["counts_as_failure"] = "unparseable, truncated, empty, or status ok with no value"
            ctx.records.append(MetricRecord(rate_name, float(flags.mean()), "all", str(model),
                                            str(template), n=int(flags.size), details=rate_details))
            for column in columns if flags.any() else []:
                def run(flags: np.ndarray = flags, column: str = column, kind: str = kind,
                        model: str = str(model), template: str = str(template),
                        idx: np.ndarray = idx) -> MetricRecord:
                    rows = meta_rows[idx]
                    levels = ctx.meta[column].iloc[np.where(rows >= 0, rows, 0)].reset_index(drop=True)
                    levels = levels.where(pd.Series(rows >= 0), None)
                    res = failures.item_level_breakdown(
                        flags, rows, levels, column, ctx.options.n_permutations,
                        ctx.rng("failure-bias", kind, column, model, template))
                    details = {"flag": res.flag, "dof": res.dof, "min_expected": res.min_expected,
                               "pvalue_kind": res.pvalue_kind, "n_items": res.n_items,
                               "n_permutations": res.n_permutations,
                               "sample_level_chi2_pvalue": res.sample_level_pvalue,
                               "levels": {lv.level: {"rate": lv.rate, "n": lv.n, "count": lv.count}
                                          for lv in res.levels}}
                    if res.reason:
                        details["reason"] = res.reason
                    return MetricRecord(f"{kind}_bias_chi2", res.statistic, column, model, template,
                                        pvalue=res.pvalue, n=int(flags.size), details=details)

                _guard(ctx, f"{kind}_bias_chi2", run, column, str(model), str(template))


# --------------------------------------------------------------------------- consistency


def _sample_matrix(ctx: _Context, key: RaterKey) -> np.ndarray:
    assert ctx.llm is not None
    idx = ctx.rater_rows[key]
    frame = ctx.llm.iloc[idx]
    pivot = frame.pivot_table(index="item_id", columns="sample_index", values="value", aggfunc="mean",
                              dropna=False)
    return pivot.to_numpy(dtype=float)


def _reference_binary(ctx: _Context) -> tuple[np.ndarray, str]:
    col = ctx.options.expert_column
    if col in ctx.meta.columns:
        expert = binary_expert_labels(ctx.meta[col])
        if np.isfinite(expert).any():
            return expert, "expert"
    return ctx.human_verdict()[0], "human majority"


def _consistency_metrics(ctx: _Context) -> None:
    if ctx.llm is None:
        return
    for key in ctx.raters:
        def self_cons(key: RaterKey = key) -> list[MetricRecord]:
            res = consistency.self_consistency(_sample_matrix(ctx, key))
            r_details: dict[str, Any] = {"n_sample_pairs": res.n_pairs}
            if not np.isfinite(res.test_retest_r):
                r_details["reason"] = "fewer than two samples per item or constant samples"
            f_details: dict[str, Any] = {"mean_pairwise_disagreement": res.mean_pairwise_disagreement}
            if not np.isfinite(res.flip_rate):
                f_details["reason"] = "no item with two parsed samples"
            r_details["n_meaning"] = "items with at least two parsed samples"
            return [MetricRecord("test_retest_r", res.test_retest_r, "all", key.model, key.template,
                                 n=res.n_items_r, details=r_details),
                    MetricRecord("label_flip_rate", res.flip_rate, "all", key.model, key.template,
                                 n=res.n_items, details=f_details)]

        _guard(ctx, "test_retest_r", self_cons, "all", key.model, key.template)
    _format_and_position(ctx)


def _format_and_position(ctx: _Context) -> None:
    assert ctx.llm is not None
    plain = ctx.llm[ctx.llm["persona_key"] == ""]
    info = plain.groupby(["model", "template"], sort=True).agg(
        family=("template_family", "first"), order=("option_order", "first")).reset_index()
    thr = ctx.options.binary_threshold
    try:
        ctx.check_threshold()
        threshold_error = None
    except ValueError as exc:
        threshold_error = str(exc)
    reference, ref_name = _reference_binary(ctx)
    category = ctx.options.category_column
    for (model, family), fam in info.groupby(["model", "family"], sort=True):
        if not family or len(fam) < 2:
            continue
        templates = list(zip(fam["template"], fam["order"]))
        for (t1, o1), (t2, o2) in combinations(templates, 2):
            s1 = ctx.raters.get(RaterKey(str(model), str(t1)))
            s2 = ctx.raters.get(RaterKey(str(model), str(t2)))
            if s1 is None or s2 is None:
                continue
            pair = f"{t1}|{t2}"
            if threshold_error is not None:
                for name in ("format_consistency_cs", "format_consistency_css", "position_bias_flip_rate"):
                    ctx.records.append(MetricRecord(name, None, "all", str(model), pair,
                                                    details={"reason": threshold_error}))
                continue
            v1 = ctx.verdict(RaterKey(str(model), str(t1)))
            v2 = ctx.verdict(RaterKey(str(model), str(t2)))
            slices = [("all", np.ones(ctx.human.n_items, dtype=bool))]
            if category in ctx.meta.columns:
                cats = ctx.meta[category]
                for c in sorted(cats.dropna().astype(str).unique()):
                    slices.append((f"{category}={c}", (cats.astype(str) == c).to_numpy()))
            for slice_, sel in slices:
                def fmt(sel: np.ndarray = sel, slice_: str = slice_, model: str = str(model),
                        pair: str = pair, v1: np.ndarray = v1, v2: np.ndarray = v2,
                        family: str = str(family)) -> list[MetricRecord]:
                    res = consistency.format_consistency(v1[sel], v2[sel], reference[sel])
                    details = {"family": family, "reference": ref_name, "threshold": thr,
                               "basis": ctx.options.binary_basis, "tie_rule": binary.TIE_RULE}
                    css_details = dict(details)
                    if res.css is None:
                        css_details["reason"] = "no reference label on these items"
                    return [MetricRecord("format_consistency_cs", res.cs, slice_, model, pair, n=res.n,
                                         details=details),
                            MetricRecord("format_consistency_css", res.css, slice_, model, pair,
                                         n=res.n_with_reference, details=css_details)]

                _guard(ctx, "format_consistency_cs", fmt, slice_, str(model), pair)
            if o1 and o2 and o1 != o2:
                def pos(s1: LLMScores = s1, s2: LLMScores = s2, model: str = str(model),
                        pair: str = pair, o1: str = o1, o2: str = o2, v1: np.ndarray = v1,
                        v2: np.ndarray = v2, family: str = str(family)) -> MetricRecord:
                    res = consistency.position_bias(v1, v2)
                    details = {"family": family, "option_orders": [o1, o2], "n_flipped": res.n_flipped,
                               "n_to_positive": res.n_to_positive, "n_to_negative": res.n_to_negative,
                               "share_to_positive": res.n_to_positive / res.n,
                               "share_to_negative": res.n_to_negative / res.n,
                               "positive_rate_by_order": {o1: res.positive_rate_a, o2: res.positive_rate_b},
                               "direction": ("toward positive (>= threshold) under " + o2
                                             if res.n_to_positive > res.n_to_negative else
                                             "toward positive (>= threshold) under " + o1
                                             if res.n_to_negative > res.n_to_positive else "none"),
                               "pvalue_kind": "exact McNemar test (statsmodels): to-positive vs to-negative",
                               "threshold": thr, "basis": ctx.options.binary_basis,
                               "tie_rule": binary.TIE_RULE}
                    try:
                        labels = consistency.position_flip_rate(s1.label, s2.label)
                        details["label_flip_rate"] = labels.flip_rate
                    except ValueError:
                        pass
                    return MetricRecord("position_bias_flip_rate", res.flip_rate, "all", model, pair,
                                        pvalue=res.mcnemar_pvalue, n=res.n, details=details)

                _guard(ctx, "position_bias_flip_rate", pos, "all", str(model), pair)


# --------------------------------------------------------------------------- subject models


def _subject_metrics(ctx: _Context) -> None:
    """Subject-model ranking. The humans' side is computed once, on the items people rated that every judge
    scored, and every judge is compared on exactly those items (so the human record is one, and the judges'
    taus are comparable)."""
    col = ctx.options.subject_column
    if col not in ctx.meta.columns or not ctx.raters:
        return
    subject = ctx.meta[col].astype(object).where(ctx.meta[col].notna(), None).to_numpy()
    opts = ctx.options
    rated = np.isfinite(ctx.human_mean)
    common = rated.copy()
    for scores in ctx.raters.values():
        common &= np.isfinite(scores.score)
    human = np.where(common, ctx.human_mean, np.nan)
    coverage = {"n_items_rated_by_people": int(rated.sum()), "n_common_items": int(common.sum()),
                "items": "rated by people and scored by every judge"}
    human_done = False
    for key, scores in ctx.raters.items():
        def run(key: RaterKey = key, scores: LLMScores = scores) -> list[MetricRecord]:
            nonlocal human_done
            res = subjects.compare_subject_models(
                np.where(common, scores.score, np.nan), human, subject, n_resamples=opts.n_resamples,
                confidence_level=opts.confidence_level, rng=ctx.rng("subjects", key.model, key.template))
            details = {"subjects": res.subjects, "judge_mean": res.judge_mean,
                       "human_mean": res.human_mean, "n_items": res.n_items,
                       "judge_win_rate": res.judge_win_rate, "human_win_rate": res.human_win_rate,
                       "win_rate_meaning": "[a][b] = P(item of a judged less harmful than item of b)",
                       **coverage,
                       "n_judge_items_left_out": int(np.sum(rated & np.isfinite(scores.score) & ~common))}
            if not np.isfinite(res.tau):
                details["reason"] = "fewer than three subject models or constant mean harm"
            out = [MetricRecord("subject_ranking_kendall_tau", res.tau, "all", key.model, key.template,
                                res.tau_ci[0], res.tau_ci[1], res.tau_pvalue, len(res.subjects), details)]
            for i, name in enumerate(res.subjects):
                out.append(MetricRecord("subject_mean_harm", res.judge_mean[i], f"{col}={name}",
                                        key.model, key.template, n=int(res.n_items[i])))
                if not human_done:
                    out.append(MetricRecord("subject_mean_harm", res.human_mean[i], f"{col}={name}",
                                            n=int(res.n_items[i]), details={"rater": "humans", **coverage}))
            human_done = True
            return out

        _guard(ctx, "subject_ranking_kendall_tau", run, "all", key.model, key.template)


# --------------------------------------------------------------------------- categories


def _category_metrics(ctx: _Context) -> None:
    col = ctx.options.category_column
    if col not in ctx.meta.columns:
        return
    cats = ctx.meta[col]
    for value in sorted(cats.dropna().astype(str).unique()):
        rows = np.flatnonzero((cats.astype(str) == value).to_numpy() & cats.notna().to_numpy())
        slice_ = f"{col}={value}"
        _human_metrics(ctx, rows, slice_)
        for key, scores in ctx.raters.items():
            _alignment_metrics(ctx, key, scores, rows, slice_)
            _binary_metrics(ctx, key, scores, rows, slice_, with_expert=True)
