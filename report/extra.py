"""Report sections of issue 14: mean ratings per annotator group, the Alternative Annotator Test (can this LLM
stand in for an annotator, and for whom?), and the judge's prevalence raw and corrected."""

from __future__ import annotations

from accord.analysis.catalogue import MetricName
from accord.analysis.results import MetricRecord
from accord.report.context import ReportContext, section
from accord.report.format import count, num, share
from accord.report.groups import short_group
from accord.report.metrics import MetricIndex, rater_label
from accord.report.views import (
    SectionView, TableView, ci_cell, count_cell, mark_cell, number_cell, p_cell, significant, text, value_cell
)


GROUP_MEANS_INTRO = ("Do the annotators of one group rate the same items higher than another's? Each group's mean "
                     "rating (95% interval: bootstrap over items), and the item-matched difference between two "
                     "groups: on the items both rated, the mean of the difference of their item means, with a "
                     "permutation test of the annotators' group labels (Benjamini–Hochberg within an attribute).")
ALT_TEST_INTRO = ("The Alternative Annotator Test (Calderon, Reichart & Dror 2025): leave one annotator out and "
                  "ask whether the LLM or that annotator agrees better with the remaining annotators, item by "
                  "item; a one-sided test with the cost–benefit margin ε per annotator, Benjamini–Yekutieli "
                  "across annotators. ω is the share of annotators the LLM beats (it passes at ω ≥ 0.5); ρ the "
                  "average probability that the LLM does at least as well as an annotator (to compare LLMs).")
PREVALENCE_INTRO = ("The share of items the judge calls positive, raw and corrected for its errors (Rogan–Gladen) "
                    "with the sensitivity and specificity it shows on the items people did rate; the corrected "
                    "interval carries the uncertainty of all three.")


def _per_rater(idx: MetricIndex, name: str, companion: str) -> list[tuple[MetricRecord, MetricRecord | None]]:
    """Each LLM rater's row of ``name`` over all items, with its row of ``companion`` (None when it has none)."""
    return [(r, idx.one(companion, "all", r.model, r.template)) for r in idx.all(name, slice_="all") if r.model]


@section("group_means", "Mean ratings per annotator group", GROUP_MEANS_INTRO,
         needs=[MetricName.GROUP_MEAN_RATING])
def group_means_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    means = idx.all(MetricName.GROUP_MEAN_RATING)
    rows = [[text(m.details.get("attribute")), text(short_group(m.slice)), count_cell(m.details.get("n_annotators")),
             count_cell(m.n), value_cell(m), ci_cell(m), number_cell(m.details.get("alpha_interval_within"))]
            for m in means]
    sec.tables.append(TableView("group_means", "Mean rating per group",
                                ["attribute", "group", "annotators", "ratings", "mean", "95% CI", "α within"], rows))
    diffs = idx.all(MetricName.GROUP_MEAN_DIFFERENCE)
    if diffs:
        drows = [[text(d.details.get("attribute")), text(" − ".join(short_group(s) for s in d.slice.split(" vs "))),
                  count_cell(d.n), value_cell(d), p_cell(d.pvalue), p_cell(d.details.get("p_adjusted_bh")),
                  mark_cell(d.details.get("p_adjusted_bh"))] for d in diffs]
        sec.tables.append(TableView("group_mean_differences", "Item-matched differences between groups",
                                    ["attribute", "A − B", "shared items", "difference", "p", "p (BH)", ""], drows))
        found = [d for d in diffs if significant(d.details.get("p_adjusted_bh")) and d.value is not None]
        for d in sorted(found, key=lambda r: -abs(r.value or 0))[:3]:
            a, b = (short_group(s) for s in d.slice.split(" vs "))
            higher, lower = (a, b) if (d.value or 0) > 0 else (b, a)
            sec.readings.append(f"On the {count(d.n)} items both rated, {higher} annotators rate {num(abs(d.value or 0))} "
                                f"higher than {lower} annotators (BH-adjusted p {num(d.details.get('p_adjusted_bh'), 3)}).")
        if not found:
            sec.readings.append("No item-matched difference between groups is significant after Benjamini–Hochberg "
                                "correction.")
    return sec


@section("alt_test", "Can this LLM stand in for an annotator — and for whom?", ALT_TEST_INTRO)
def alt_test_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    winning = _per_rater(idx, MetricName.ALT_TEST_WINNING_RATE, MetricName.ALT_TEST_ADVANTAGE_PROBABILITY)
    if not winning:
        return None
    rows = []
    for r, rho in winning:
        d = r.details
        rows.append([text(rater_label(r.rater)), value_cell(r), value_cell(rho), number_cell(d.get("epsilon"), 2),
                     text(d.get("measure")), count_cell(r.n), text("passes" if d.get("passed") else "fails")])
        if r.value is not None:
            verdict = "can stand in for the annotators" if d.get("passed") else "cannot yet stand in for them"
            sec.readings.append(f"{rater_label(r.rater)} beats {share(r.value)} of {count(r.n)} annotators "
                                f"(ε = {num(d.get('epsilon'), 2)}, {d.get('measure')}): it {verdict}.")
        elif r.short_reason:
            sec.readings.append(f"{rater_label(r.rater)}: the alt-test is undefined: {r.short_reason}.")
    sec.tables.append(TableView("alt_test", "Alt-test per LLM rater",
                                ["rater", "ω", "ρ", "ε", "measure", "annotators", "verdict"], rows))
    groups = [r for r in idx.all(MetricName.ALT_TEST_WINNING_RATE) if r.model and r.slice != "all"]
    if groups:
        grows = [[text(rater_label(r.rater)), text(r.details.get("attribute")), text(short_group(r.slice)),
                  count_cell(r.n), value_cell(r), number_cell(r.details.get("advantage_probability"))]
                 for r in groups]
        sec.tables.append(TableView("alt_test_groups", "Winning rate among each group's annotators",
                                    ["rater", "attribute", "group", "annotators", "ω", "ρ"], grows))
    return sec


@section("prevalence", "Prevalence on the items people did not rate", PREVALENCE_INTRO)
def prevalence_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    corrected = _per_rater(ctx.index, MetricName.PREVALENCE_CORRECTED, MetricName.PREVALENCE_RAW)
    if not corrected:
        return None
    rows = []
    for r, raw in corrected:
        d = r.details
        rows.append([text(rater_label(r.rater)), count_cell(r.n), value_cell(raw), ci_cell(raw), value_cell(r),
                     ci_cell(r), number_cell(d.get("sensitivity")), number_cell(d.get("specificity"))])
        if r.value is not None and raw is not None and raw.value is not None:
            sec.readings.append(f"{rater_label(r.rater)} calls {share(raw.value)} of {count(r.n)} unrated items "
                                f"positive; corrected for its errors against the {d.get('reference')} labels "
                                f"(sensitivity {num(d.get('sensitivity'))}, specificity {num(d.get('specificity'))}) "
                                f"the share is {share(r.value)} ({share(r.ci_low)} to {share(r.ci_high)}).")
        elif r.short_reason:
            sec.readings.append(f"{rater_label(r.rater)}: no corrected prevalence: {r.short_reason}.")
    sec.tables.append(TableView("prevalence", "Raw and corrected prevalence",
                                ["rater", "items", "raw", "95% CI", "corrected", "95% CI", "sensitivity",
                                 "specificity"], rows))
    return sec
