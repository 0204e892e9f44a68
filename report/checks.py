"""Report sections that check the raters themselves and break the results down: consistency (format,
position, samples), failures and refusals (and whether they cluster), subject-model ranking, and
alignment per item category."""

from __future__ import annotations

from typing import Any

from accord.analysis.catalogue import MetricName, metric_name
from accord.analysis.results import MetricRecord
from accord.report import plots
from accord.report.context import ReportContext, section
from accord.report.format import count, interval, is_number, meaning, num, p_phrase, pvalue, share
from accord.report.metrics import MetricIndex, rater_label
from accord.report.sections import SMALL_N
from accord.report.views import (
    Cell, PlotView, SectionView, TableView, ci_cell, count_cell, note, number_cell, p_cell, text, value_cell
)

CONSISTENCY_INTRO = ("Does the model give the same answer when asked again? Across samples: the label flip rate is "
                     "the share of items whose repeated samples do not all agree; test–retest r correlates samples "
                     "with each other over items. Across formats (templates of one family, after 'Fake "
                     "Alignment'): CS is the share of items on which both formats give the same safe/unsafe "
                     "verdict, CSS the share on which they agree and are right. Position bias: the share of items "
                     "whose verdict changes when the multiple-choice options swap places, split by direction, with "
                     "McNemar's exact test of whether one direction dominates. Every safe/unsafe verdict here and in "
                     "the binary view follows one tie rule: a rating at or above the threshold is unsafe, and an "
                     "item whose ratings split exactly 50/50 counts as unsafe.")
FAILURES_INTRO = ("Answers that could not be parsed (failures) or that refused to rate (refusals) drop out of "
                  "every metric above (a refusal's label probabilities are never read as a rating; an answer "
                  "marked ok without a value counts as a failure). If they cluster on some kinds of items (the "
                  "chi-square of outcome by item metadata, its p-value from shuffling the metadata over items so "
                  "that the samples of one item count as one cluster, flagged at p < 0.05), the remaining items "
                  "are no longer a fair sample and the metrics are biased towards the items the model was "
                  "willing to rate.")
CATEGORIES_INTRO = ("The main alignment numbers within each item category: the LLM's r with the mean human "
                    "rating (95% CI) and the median annotator's r with the others in the same category.")


# ------------------------------------------------------------------------------------------------ consistency


@section("consistency", "Consistency", CONSISTENCY_INTRO,
         needs=[MetricName.TEST_RETEST_R, MetricName.LABEL_FLIP_RATE, MetricName.FORMAT_CONSISTENCY_CS,
                MetricName.POSITION_BIAS_FLIP_RATE])
def consistency_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    flips: dict[tuple[str, str], float] = {}
    self_rows = []
    for rater in idx.raters():
        retest = idx.one(MetricName.TEST_RETEST_R, "all", *rater)
        flip = idx.one(MetricName.LABEL_FLIP_RATE, "all", *rater)
        if retest is None and flip is None:
            continue
        if flip is not None and flip.value is not None:
            flips[rater] = flip.value
        self_rows.append([text(rater[0]), text(rater[1]), value_cell(retest), count_cell(retest.n if retest else None),
                          value_cell(flip, as_share=True), count_cell(flip.n if flip else None),
                          number_cell(flip.details.get("mean_pairwise_disagreement") if flip else None)])
        sec.readings.append(_self_reading(rater, retest, flip))
    format_rows = []
    for row in idx.all(MetricName.FORMAT_CONSISTENCY_CS):
        css = idx.one(MetricName.FORMAT_CONSISTENCY_CSS, row.slice, row.model, row.template)
        t1, _, t2 = row.template.partition("|")
        format_rows.append([text(row.model), text(t1), text(t2), text(row.slice), value_cell(row, as_share=True),
                            value_cell(css, as_share=True), count_cell(row.n),
                            text(row.details.get("reference", ""))])
        if row.slice == "all":
            sec.readings.append(_format_reading(row, css, meaning(ctx.run)[:2]))
    position_rows = []
    for row in idx.all(MetricName.POSITION_BIAS_FLIP_RATE):
        t1, _, t2 = row.template.partition("|")
        orders = row.details.get("option_orders") or []
        position_rows.append([text(row.model), text(t1), text(t2), text(" → ".join(map(str, orders))),
                              value_cell(row, as_share=True),
                              text(f"{count(row.details.get('n_flipped'))} / {count(row.n)}", "num"),
                              count_cell(row.details.get("n_to_positive")), count_cell(row.details.get("n_to_negative")),
                              p_cell(row.pvalue)])
        sec.readings.append(_position_reading(row, flips))
    sec.tables += [
        TableView("self-consistency", "Across samples", ["model", "template", "test–retest r", "items",
                                                         "label flip rate", "items", "mean pairwise disagreement"],
                  self_rows, empty="no samples to compare"),
        TableView("format-consistency", "Across formats (CS, CSS)",
                  ["model", "template A", "template B", "slice", "CS", "CSS", "items", "reference label"],
                  format_rows, empty="no model was asked the same question in two formats of one template family"),
        TableView("position-bias", "Position bias: multiple-choice options swapped",
                  ["model", "template A", "template B", "option orders", "answer changes", "changed / items",
                   "to unsafe (A→B)", "to safe (A→B)", "McNemar p"],
                  position_rows, empty="no multiple-choice template was run in two option orders"),
    ]
    return sec


def _self_reading(rater: tuple[str, str], retest: MetricRecord | None, flip: MetricRecord | None) -> str:
    label = rater_label(rater)
    if flip is None or flip.value is None:
        reason = flip.short_reason if flip is not None else (retest.short_reason if retest is not None else "no samples")
        return f"{label}: self-consistency is undefined ({reason}); it needs at least two samples per item."
    out = (f"{label} gives a different label for the same item across its samples on {share(flip.value)} of "
           f"{count(flip.n)} items")
    if retest is not None and retest.value is not None:
        pairs = retest.details.get("n_sample_pairs")
        out += (f"; test–retest r = {num(retest.value)} (over {count(retest.n)} items, mean of "
                f"{count(pairs)} pair{'s' if pairs != 1 else ''} of samples)")
    return out + "."


def _format_reading(cs: MetricRecord, css: MetricRecord | None,
                    verdict: tuple[str, str] = ("safe", "unsafe")) -> str:
    t1, _, t2 = cs.template.partition("|")
    if cs.value is None:
        return f"{cs.model}, {t1} against {t2}: format consistency is undefined ({cs.short_reason})."
    low, high = verdict
    out = (f"{cs.model}: {t1} and {t2} give the same {low}/{high} verdict on {share(cs.value)} of {count(cs.n)} "
           f"items (CS)")
    if css is not None and css.value is not None:
        ref = css.details.get("reference", "reference")
        out += (f"; on {share(css.value)} they agree and match the {ref} label (CSS). "
                "A consistent but wrong model has a high CS and a low CSS")
    return out + "."


def _position_reading(row: MetricRecord, flips: dict[tuple[str, str], float]) -> str:
    t1, _, t2 = row.template.partition("|")
    orders = row.details.get("option_orders") or []
    order = f" ({' → '.join(map(str, orders))})" if orders else ""
    if row.value is None:
        return f"{row.model}, {t1} against {t2}: position bias is undefined ({row.short_reason})."
    out = (f"Swapping the answer options{order} changes {row.model}'s answer on {share(row.value)} of {count(row.n)} "
           f"items ({count(row.details.get('n_flipped'))}).")
    up, down = row.details.get("n_to_positive"), row.details.get("n_to_negative")
    if is_number(up) and is_number(down) and up + down > 0:
        lean = ("toward unsafe" if up > down else "toward safe") if up != down else "equally in both directions"
        verdict = ("a systematic shift" if is_number(row.pvalue) and row.pvalue < 0.05
                   else "not distinguishable from changes in both directions alike")
        out += (f" From {t1} to {t2}, {count(up)} move to unsafe and {count(down)} to safe ({lean}; "
                f"McNemar p = {pvalue(row.pvalue)}: {verdict}).")
    noise = [flips[r] for r in ((row.model, t1), (row.model, t2)) if r in flips]
    if noise:
        level = max(noise)
        if row.value > level + 0.05:
            out += (f" That is more than its answers change between repeated samples of one order "
                    f"({share(level)}), so the order of the options itself moves its answer.")
        else:
            out += (f" Its answers change about as often between repeated samples of one order ({share(level)}), so "
                    f"this does not show a position effect beyond sampling noise.")
    return out


# ------------------------------------------------------------------------------------------------ failures


@section("failures", "Failures and refusals", FAILURES_INTRO,
         needs=[MetricName.FAILURE_RATE, MetricName.REFUSAL_RATE])
def failures_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    raters = sorted({r.rater for r in idx.all(MetricName.FAILURE_RATE) + idx.all(MetricName.REFUSAL_RATE)})
    rate_rows = []
    for rater in raters:
        fail = idx.one(MetricName.FAILURE_RATE, "all", *rater)
        refuse = idx.one(MetricName.REFUSAL_RATE, "all", *rater)
        rate_rows.append([text(rater[0]), text(rater[1]), count_cell(fail.n if fail else None),
                          value_cell(fail, as_share=True), count_cell(fail.details.get("count") if fail else None),
                          value_cell(refuse, as_share=True),
                          count_cell(refuse.details.get("count") if refuse else None)])
    any_bad = [r for r in idx.all(MetricName.FAILURE_RATE) + idx.all(MetricName.REFUSAL_RATE) if r.value]
    bias, flagged = [], []
    for kind in ("failure", "refusal"):
        for row in idx.all(metric_name(f"{kind}_bias_chi2")):
            levels = row.details.get("levels") or {}
            spread = "; ".join(f"{lv} {share(v.get('rate'))} ({count(v.get('count'))}/{count(v.get('n'))})"
                               for lv, v in sorted(levels.items()))
            flag = bool(row.details.get("flag"))
            remark = row.short_reason
            if not remark and is_number(row.details.get("min_expected")) and row.details["min_expected"] < 5:
                remark = "expected counts < 5: a rough test"
            bias.append((not flag, row.pvalue if row.pvalue is not None else 2.0, [
                text(kind), text(row.model), text(row.template), text(row.slice), value_cell(row, 2),
                count_cell(row.details.get("dof")), p_cell(row.pvalue), Cell("FLAG" if flag else "", "warn" if flag else ""),
                text(spread), note(remark)]))
            if flag:
                flagged.append(_flag_reading(kind, row, levels))
    bias_rows = [cells for *_, cells in sorted(bias, key=lambda b: (b[0], b[1]))]
    if not any_bad:
        sec.readings.append("Every answer gave a usable label: no failures or refusals to check.")
    else:
        listed = "; ".join(f"{rater_label(r.rater)} {share(r.value, 1)} {r.name.split('_')[0]}s "
                           f"({count(r.details.get('count'))} of {count(r.n)})" for r in any_bad)
        sec.readings.append(f"Failures and refusals: {listed}.")
        if flagged:
            sec.readings += flagged
        else:
            sec.readings.append("They show no significant clustering by item metadata (no chi-square test below "
                                "p = 0.05), although with few failures such a test has little power.")
    sec.tables += [
        TableView("failure-rates", "Failure and refusal rates per model · template",
                  ["model", "template", "answers", "failure rate", "failures", "refusal rate", "refusals"], rate_rows),
        TableView("failure-bias", "Do failures and refusals cluster? Chi-square test by item metadata",
                  ["kind", "model", "template", "item column", "χ²", "dof", "p", "flag", "rate per level", "note"],
                  bias_rows, empty="no failures or refusals to break down", collapsed=not flagged),
    ]
    return sec


def _flag_reading(kind: str, row: MetricRecord, levels: dict[str, dict[str, Any]]) -> str:
    rated = [(v.get("rate"), lv) for lv, v in levels.items() if is_number(v.get("rate"))]
    spread = ""
    if len(rated) >= 2:
        hi, lo = max(rated), min(rated)
        spread = f": {share(hi[0])} on {hi[1]} items against {share(lo[0])} on {lo[1]} items"
    return (f"FLAG: {rater_label(row.rater)}'s {kind}s cluster by {row.slice} (χ² = {num(row.value)}, "
            f"{p_phrase(row.pvalue)}){spread}. Its metrics are computed on the items it did answer, so they "
            f"under-represent the items it {'refused' if kind == 'refusal' else 'failed on'}.")


# ------------------------------------------------------------------------------------------------ subject models


def _subjects_intro(ctx: ReportContext) -> str:
    _, high, given = meaning(ctx.run)
    higher = f"more {high}" if given else "more harmful"
    return ("The items are responses written by several subject models. Each judge's mean score per "
            f"subject model (higher = judged {higher}) ranks the subject models; so does the human "
            "mean. Kendall's τ compares the two rankings (interval: item bootstrap).")


@section("subjects", "Ranking the subject models", _subjects_intro,
         needs=[MetricName.SUBJECT_RANKING_KENDALL_TAU])
def subjects_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    low, high, given = meaning(ctx.run)
    harm = idx.all(MetricName.SUBJECT_MEAN_HARM)
    subjects = sorted({r.slice for r in harm})
    raters = [r.rater for r in idx.all(MetricName.SUBJECT_RANKING_KENDALL_TAU)]
    columns = ["subject model", "items", "humans"] + [rater_label(r) for r in raters]
    rows = []
    for subject in subjects:
        human = idx.one(MetricName.SUBJECT_MEAN_HARM, subject)
        rows.append([text(subject.split("=", 1)[-1]), count_cell(human.n if human else None), value_cell(human)]
                    + [value_cell(idx.one(MetricName.SUBJECT_MEAN_HARM, subject, *r)) for r in raters])
    tau_rows = []
    for row in idx.all(MetricName.SUBJECT_RANKING_KENDALL_TAU):
        tau_rows.append([text(row.model), text(row.template), value_cell(row), ci_cell(row), p_cell(row.pvalue),
                         count_cell(row.n), note(row.short_reason)])
        sec.readings.append(_subject_reading(row, (low, high) if given else None))
    if 0 < len(subjects) < 3:
        sec.readings.append(f"With only {len(subjects)} subject models a ranking correlation is not defined (it needs "
                            f"three); compare the mean {'rating' if given else 'judged harm'} per subject model in "
                            "the table directly.")
    caption = (f"Mean rating per subject model (0 = {low}, 1 = {high})" if given
               else "Mean judged harm per subject model")
    sec.tables += [TableView("subject-harm", caption, columns, rows),
                   TableView("subject-tau", "Agreement of the rankings (Kendall τ)",
                             ["model", "template", "τ", "95% CI", "p", "subject models", "note"], tau_rows)]
    return sec


def _ranking(names: list[str], means: list[float | None]) -> str:
    pairs = sorted((m, n) for n, m in zip(names, means) if is_number(m))
    return " < ".join(f"{n} ({num(m)})" for m, n in pairs)


def _subject_reading(row: MetricRecord, ends: tuple[str, str] | None = None) -> str:
    d = row.details
    names = [str(s) for s in d.get("subjects") or []]
    judge = _ranking(names, d.get("judge_mean") or [])
    human = _ranking(names, d.get("human_mean") or [])
    order = f"From most {ends[0]} to most {ends[1]}" if ends else "From least to most harmful"
    out = (f"{order}, {rater_label(row.rater)} ranks {judge}; the humans rank {human}."
           if judge and human else f"{rater_label(row.rater)}:")
    if row.value is None:
        return out if len(names) < 3 else out + f" Kendall's τ is undefined ({row.short_reason})."
    ci = interval(row.ci_low, row.ci_high)
    out += f" Kendall's τ between the rankings = {num(row.value)}" + (f" (95% CI {ci})" if ci else "")
    if len(names) < 5:
        out += f"; with {len(names)} subject models τ can take only a few values, so read it as a rough indication"
    return out + "."


# ------------------------------------------------------------------------------------------------ categories


def category_slices(idx: MetricIndex) -> list[str]:
    seen: dict[str, None] = {}
    for row in idx.all(MetricName.PEARSON_R_VS_MEAN):
        if row.slice != "all":
            seen.setdefault(row.slice, None)
    return list(seen)


@section("categories", "Alignment per item category", CATEGORIES_INTRO)
def categories_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    cats = category_slices(idx)
    if not cats:
        return None
    raters = idx.raters()
    rows, panels, sizes = [], [], []
    for rater in raters:
        forest_rows = []
        defined: list[MetricRecord] = []
        for cat in cats:
            r = idx.one(MetricName.PEARSON_R_VS_MEAN, cat, *rater)
            pct = idx.one(MetricName.LLM_PERCENTILE_AMONG_ANNOTATORS, cat, *rater)
            base = (idx.one(MetricName.ANNOTATOR_LOO_R_MEDIAN, cat)
                    or idx.one(MetricName.ANNOTATOR_FULL_MEAN_R_MEDIAN, cat))
            acc = idx.one(MetricName.ACCURACY_VS_MAJORITY, cat, *rater)
            rows.append([text(cat.split("=", 1)[-1]), text(rater[0]), text(rater[1]), value_cell(r), ci_cell(r),
                         count_cell(r.n if r else None), value_cell(base),
                         Cell(f"{pct.value:.0f}%", "num") if pct and pct.value is not None else value_cell(pct),
                         value_cell(acc, as_share=True)])
            forest_rows.append(plots.ForestRow(cat.split("=", 1)[-1], r.value if r else None,
                                               r.ci_low if r else None, r.ci_high if r else None))
            if r is not None and r.value is not None:
                defined.append(r)
                if r.n is not None:
                    sizes.append(r.n)
        panels.append(plots.ForestPanel(rater_label(rater), forest_rows,
                                        idx.value(MetricName.PEARSON_R_VS_MEAN, "all", *rater)))
        if len(defined) >= 2:
            lo = min(defined, key=lambda r: r.value or 0.0)
            hi = max(defined, key=lambda r: r.value or 0.0)
            overlap = (lo.ci_high is not None and hi.ci_low is not None and hi.ci_low <= lo.ci_high)
            sec.readings.append(
                f"{rater_label(rater)}: r ranges from {num(lo.value)} ({lo.slice.split('=', 1)[-1]}) to "
                f"{num(hi.value)} ({hi.slice.split('=', 1)[-1]})"
                + ("; the intervals of these two overlap, so the categories cannot be told apart."
                   if overlap else "; their intervals do not overlap."))
    base_parts = []
    for cat in cats:
        base = (idx.one(MetricName.ANNOTATOR_LOO_R_MEDIAN, cat)
                or idx.one(MetricName.ANNOTATOR_FULL_MEAN_R_MEDIAN, cat))
        if base is not None and base.value is not None:
            base_parts.append(f"{cat.split('=', 1)[-1]} {num(base.value)}")
    if base_parts:
        sec.readings.insert(0, "Median annotator's r with the others per category: " + ", ".join(base_parts) + ".")
    if sizes and min(sizes) < SMALL_N:
        sec.readings.append(f"Categories hold {min(sizes)}–{max(sizes)} items; below {SMALL_N} items an interval is "
                            "wide, so differences between categories are hard to establish.")
    title = "Alignment per item category: r with the mean human rating"
    if ctx.add_plot("categories", plots.forest_plot(panels, title, "r with the mean human rating",
                                                    "r over all items")):
        sec.plots.append(PlotView("categories", "forest plot of r per item category"))
    sec.tables.append(TableView("categories", "Per category",
                                ["category", "model", "template", "r", "95% CI", "items", "median annotator r",
                                 "better than % of annotators", "accuracy vs majority"], rows))
    return sec
