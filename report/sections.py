"""Report sections about the run and the overall alignment: run summary, alignment with the mean human
rating, the annotator baseline, agreement and accuracy, and the table of every metric.

Each builder (declared with `accord.report.context.section`) fills a `SectionView` (tables, plot names,
plain-language readings generated from the numbers) and adds its plots to the context. Readings say what the
numbers allow one to conclude: an interval that includes zero is "cannot be distinguished from no
agreement", and small samples are named as such."""

from __future__ import annotations

import numpy as np
from accord.analysis.catalogue import MetricName, metric_name
from accord.analysis.results import MetricRecord
from accord.analysis import baseline
from accord.analysis.frames import build_human_matrix, build_llm_scores
from accord.report import plots
from accord.report.context import ReportContext, section
from accord.report.format import count, interval, is_number, meaning, num, percent, share
from accord.report.metrics import MetricIndex, rater_label
from accord.report.views import (
    Cell, PlotView, SectionView, TableView, ci_cell, count_cell, note, number_cell, p_cell, text, value_cell
)

SMALL_N = 30          # fewer items than this: intervals are wide, say so
KRIPPENDORFF_TENTATIVE = 0.667
KRIPPENDORFF_RELIABLE = 0.8
CORRELATIONS = [(MetricName.PEARSON_R_VS_MEAN, "Pearson r"), (MetricName.SPEARMAN_R_VS_MEAN, "Spearman ρ"),
                (MetricName.KENDALL_TAU_VS_MEAN, "Kendall τ")]


SUMMARY_INTRO = ("What was asked, what came back, and what it cost. Only answers with a usable label "
                 "enter the metrics in the sections below.")
ALIGNMENT_INTRO = ("Each LLM rater (model · template) scores every item; its score is the mean over samples "
                   "(probability-weighted where the provider returned label probabilities). The correlation "
                   "with the items' mean human rating says how well it ranks items like the crowd does. "
                   "Intervals are 95% paired bootstrap intervals over items.")
BASELINE_INTRO = ("How well does one person agree with everyone else? Each annotator's ratings are correlated "
                  "with the mean rating of the other annotators on the same items (leave-one-out). The "
                  "histogram shows these correlations; each numbered line is an LLM rater's correlation with "
                  "the mean of all annotators, so its position says what share of the crowd it beats.")
AGREEMENT_INTRO = ("Other views of the same question. Δα: the change in Krippendorff's α when the LLM joins the "
                   "annotators as one more rater (negative: it agrees with them less than they agree with each "
                   "other). Cohen's κ against the human majority label. Accuracy and F1 of the LLM's verdict "
                   "(score thresholded at 0.5) against the majority and, where the dataset has one, the expert "
                   "label. JSD: Jensen–Shannon divergence between the LLM's and the crowd's label distribution "
                   "per item (0 = identical, 1 = disjoint), averaged over items.")
ALL_METRICS_INTRO = ("Every stored metric, including those summarised above; a dash marks an undefined value, with "
                     "the reason in the last column. The same numbers are in `accord report RUN --format json`.")


# ------------------------------------------------------------------------------------------------ helpers


def correlation_sentence(subject: str, row: MetricRecord | None, what: str = "the mean human rating") -> str:
    """'X agrees with the mean human rating at r = 0.34 (95% CI −0.38 to 0.75, 12 items): ...'"""
    if row is None:
        return f"{subject}: no correlation with {what} was computed."
    if row.value is None:
        return f"{subject}: the correlation with {what} is undefined ({row.short_reason})."
    n = f"{count(row.n)} items" if row.n is not None else "items"
    ci = interval(row.ci_low, row.ci_high)
    head = f"{subject} agrees with {what} at r = {num(row.value)}"
    if not ci:
        return head + f" ({n}; no confidence interval)."
    head += f" (95% CI {ci}, {n})"
    if row.ci_includes_zero:
        tail = ": the interval includes zero, so this run cannot distinguish it from no agreement."
    elif row.ci_low is not None and row.ci_low > 0:
        tail = ": the whole interval is above zero, so the agreement is real"
        tail += (", though its strength is uncertain." if (row.ci_high or 0) - row.ci_low > 0.3 else ".")
    else:
        tail = ": the whole interval is below zero — it tends to rate opposite to the crowd."
    if row.n is not None and row.n < SMALL_N:
        tail += f" With only {row.n} items every estimate here is rough."
    return head + tail


def percentile_sentence(row: MetricRecord | None) -> str:
    if row is None or row.value is None:
        return ""
    return f"It agrees with the crowd better than {percent(row.value)} of the crowd's own members."


# ------------------------------------------------------------------------------------------------ summary


@section("summary", "Run summary", SUMMARY_INTRO)
def summary_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    run = ctx.run
    n_models, n_templates = len(run["models"]), len(run["templates"])
    personas = run.get("personas") or []
    persona_text = f", {len(personas)} personas" if personas else ""
    stages = run.get("stages") or {}
    if stages:
        n_sub, n_judges = len(stages["subjects"]), len(stages["judges"])
        usable = sum(v for k, v in stages["answer_outcomes"].items() if k in ("ok", "truncated"))
        sec.readings.append(
            f"{n_sub} subject model{'s' if n_sub != 1 else ''} ({', '.join(stages['subjects'])}) answered "
            f"{count(stages['answer_items'])} items under {len(stages['generation_templates'])} generation "
            f"template{'s' if len(stages['generation_templates']) != 1 else ''}: {count(stages['answers'])} answers, "
            f"{count(usable)} of them usable. "
            + (f"{n_judges} judge{'s' if n_judges != 1 else ''} ({', '.join(stages['judges'])}) rated them in "
               f"{count(stages['judgments'])} judgments"
               + (f" and {count(stages['comparisons'])} pairwise or listwise verdicts" if stages.get("comparisons")
                  else "") + "." if n_judges else "No judge rated them."))
    if stages and not run["models"]:
        sec.readings.append(f"In all, {count(run['total'])} requests: {count(run['done'])} answered "
                            f"({_cached(run['cached'])}), {count(run['failed'])} failed and "
                            f"{count(run['cancelled'])} were cancelled.")
    else:
        sec.readings.append(
            f"This run sent {count(run['total'])} rating requests about {count(run['n_items'])} items to "
            f"{n_models} model{'s' if n_models != 1 else ''} with {n_templates} template"
            f"{'s' if n_templates != 1 else ''}{persona_text} and {run.get('samples', 1)} sample"
            f"{'s' if run.get('samples', 1) != 1 else ''} per item. {count(run['done'])} were answered "
            f"({_cached(run['cached'])}), {count(run['failed'])} failed and {count(run['cancelled'])} were "
            f"cancelled.")
    cost = (f"It cost ${run['cost_usd']:.4f} for {count(run['input_tokens'])} input and "
            f"{count(run['output_tokens'])} output tokens")
    if run.get("cached_input_tokens"):
        cost += f"; {count(run['cached_input_tokens'])} input tokens were read from the provider's prompt cache"
    sec.readings.append(cost + ".")
    if run.get("status") not in ("completed", None):
        sec.readings.append(f"The run's status is {run['status']}: the numbers below cover only the answers "
                            f"received so far.")
    threshold = run.get("max_failed_share")
    if threshold is not None and run.get("total") and run["failed"] / run["total"] > threshold:
        sec.readings.append(f"FLAG: {count(run['failed'])} of {count(run['total'])} requests failed "
                            f"({run['failed'] / run['total']:.1%}), more than the campaign's max_failed_share of "
                            f"{threshold:.1%}. The metrics below rest on the answers that came back; if failures "
                            f"cluster on some items, they are biased.")
    kinds = run.get("failures_by_kind") or []
    if kinds:
        listed = ", ".join(f"{k['kind']} ({count(k['count'])})" for k in kinds)
        sec.readings.append(f"Failed requests by kind: {listed}. A failed request has no answer and is left out "
                            f"of every metric.")
    outcomes = run.get("outcomes") or {}
    answered = sum(outcomes.values())
    if answered:
        bad = [(k, v) for k, v in sorted(outcomes.items()) if k != "ok" and v]
        reading = f"Of the {count(answered)} answers, {count(outcomes.get('ok', 0))} gave a usable label"
        if bad:
            reading += "; " + ", ".join(f"{count(v)} {_OUTCOME_WORDS.get(k, k)}" for k, v in bad)
        if run.get("repaired"):
            reading += f" ({count(run['repaired'])} were rescued by a repair follow-up asking for one label)"
        reading += "."
        if bad:
            reading += (" Whether refusals and parse failures cluster on some kinds of items is checked under "
                        "'Failures and refusals'.")
        sec.readings.append(reading)
    sec.tables.append(TableView(
        "failures-by-kind", "Failed requests by kind", ["kind", "requests", "example message"],
        [[text(k["kind"]), count_cell(k["count"]), text(k.get("example", ""), "muted")] for k in kinds],
        empty="no request failed"))
    sec.tables.append(TableView(
        "outcomes", "Outcomes per model · template", ["model", "template", "requests", "usable", "refused",
                                                      "unparseable", "truncated", "empty", "failed", "cancelled",
                                                      "from cache"],
        [[text(o["model"]), text(o["template"]), count_cell(o["requests"]), count_cell(o["ok"]),
          count_cell(o["refused"]), count_cell(o["unparseable"]), count_cell(o["truncated"]), count_cell(o["empty"]),
          count_cell(o["failed"]), count_cell(o["cancelled"]), count_cell(o["cache_hits"])]
         for o in run.get("outcomes_by_rater", [])], empty="no rating requests"))
    if ctx.add_plot("outcomes", plots.outcomes_chart(ctx.frames.llm)):
        sec.plots.append(PlotView("outcomes", "share of answer outcomes per model and template"))
    return sec


def _cached(n: int) -> str:
    return "none from the response cache" if not n else f"{count(n)} of them from the response cache, at no cost"


_OUTCOME_WORDS = {"refused": "were refusals", "unparseable": "could not be parsed",
                  "truncated": "were cut off", "empty": "were empty"}


# ------------------------------------------------------------------------------------------------ alignment


@section("alignment", "Alignment with people", ALIGNMENT_INTRO)
def alignment_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    raters = idx.raters()
    rows = []
    for rater in raters:
        cells = [text(rater[0]), text(rater[1])]
        for name, _ in CORRELATIONS:
            row = idx.one(name, "all", *rater)
            cells += [value_cell(row), ci_cell(row)]
        pearson = idx.one(MetricName.PEARSON_R_VS_MEAN, "all", *rater)
        pct = idx.one(MetricName.LLM_PERCENTILE_AMONG_ANNOTATORS, "all", *rater)
        cells += [p_cell(pearson.pvalue if pearson else None), count_cell(pearson.n if pearson else None),
                  Cell(percent(pct.value), "num") if pct and pct.value is not None else value_cell(pct)]
        rows.append(cells)
        sec.readings.append(" ".join(s for s in (correlation_sentence(rater_label(rater), pearson),
                                                 percentile_sentence(pct)) if s))
    columns = ["model", "template"]
    for _, label in CORRELATIONS:
        columns += [label, "95% CI"]
    columns += ["p (Pearson)", "items", "better than % of annotators"]
    sec.tables.append(TableView("alignment", "Correlation with the mean human rating", columns, rows,
                                empty="no alignment metrics: no item has both human and LLM ratings"))
    comparison = _paired_sentence(idx) or _best_rater_sentence(idx, raters)
    if comparison:
        sec.readings.append(comparison)
    pair_rows = []
    for name, label in ((MetricName.PAIRED_DIFFERENCE_PEARSON_R, "r with the mean rating"),
                        (MetricName.PAIRED_DIFFERENCE_COHEN_KAPPA, "κ with the majority label")):
        for row in idx.all(name):
            d = row.details
            pair_rows.append([text(label), text(d.get("rater_a", "")), text(d.get("rater_b", "")),
                              number_cell(d.get("value_a")), number_cell(d.get("value_b")), value_cell(row),
                              ci_cell(row), p_cell(row.pvalue), p_cell(d.get("p_adjusted_holm")),
                              count_cell(row.n), text(d.get("winner") or "none")])
    if pair_rows:
        sec.tables.append(TableView(
            "model-comparison", "Model against model: paired differences on the same items",
            ["statistic", "rater A", "rater B", "A", "B", "A − B", "95% CI (paired bootstrap)", "p",
             "p adj. (Holm)", "items", "winner"], pair_rows))
    base = idx.one(MetricName.ANNOTATOR_LOO_R_MEDIAN) or idx.one(MetricName.ANNOTATOR_FULL_MEAN_R_MEDIAN)
    if raters and base is not None and base.value is not None:
        sec.readings.append(f"For comparison, the median annotator agrees with the rest of the crowd at "
                            f"r = {num(base.value)} ({count(base.n)} annotators; see the human baseline below).")
    if ctx.add_plot("scatter", _scatter(ctx, raters)):
        sec.plots.append(PlotView("scatter", "LLM score versus mean human rating per item, one panel per rater"))
    return sec


def _paired_sentence(idx: MetricIndex) -> str:
    """Winners of the paired comparisons of r (Holm-adjusted, interval excluding zero), or that there are none."""
    rows = [r for r in idx.all(MetricName.PAIRED_DIFFERENCE_PEARSON_R) if r.value is not None]
    if not rows:
        return ""
    winners = [r for r in rows if r.details.get("winner")]
    if not winners:
        return (f"Compared pair by pair on the same items (paired bootstrap, Steiger's test, Holm across "
                f"{len(rows)} pair{'s' if len(rows) != 1 else ''}), no rater's correlation with the mean human rating "
                "is established as higher than another's.")
    parts = []
    for r in winners:
        d = r.details
        loser = d["rater_b"] if d["winner"] == d["rater_a"] else d["rater_a"]
        parts.append(f"{d['winner']} over {loser} (Δr = {num(abs(r.value or 0.0))}, 95% CI "
                     f"{interval(r.ci_low, r.ci_high)} for A − B, Holm-adjusted p = {num(d.get('p_adjusted_holm'), 3)})")
    return ("Compared pair by pair on the same items (a winner is named only when the Holm-adjusted p < 0.05 and the "
            "paired interval excludes zero): " + "; ".join(parts) + ".")


def _best_rater_sentence(idx: MetricIndex, raters: list[tuple[str, str]]) -> str:
    defined = [r for r in (idx.one(MetricName.PEARSON_R_VS_MEAN, "all", *rt) for rt in raters)
               if r and r.value is not None]
    if len(defined) < 2:
        return ""
    defined.sort(key=lambda r: r.value or 0.0, reverse=True)
    best, second = defined[0], defined[1]
    sentence = f"The highest correlation is {rater_label(best.rater)}'s (r = {num(best.value)})"
    if best.ci_low is not None and second.ci_high is not None:
        if best.ci_low <= second.ci_high:
            sentence += (f"; its interval overlaps the runner-up {rater_label(second.rater)} (r = {num(second.value)}), "
                         "so this run does not establish that it is the better rater.")
        else:
            sentence += (f", clearly ahead of the runner-up {rater_label(second.rater)} "
                         f"(r = {num(second.value)}).")
    else:
        sentence += "."
    return sentence


def _scatter(ctx: ReportContext, raters: list[tuple[str, str]]) -> str | None:
    llm = ctx.frames.llm
    rated = llm[(llm["status"] == "done") & (llm["persona_key"].fillna("") == "")]
    if rated.empty or ctx.frames.human.empty:
        return None
    item_ids = sorted(set(rated["item_id"].astype(str)) | set(ctx.frames.human["item_id"].astype(str)))
    human_mean = build_human_matrix(ctx.frames.human, item_ids).item_mean()
    scores = {(k.model, k.template): s.score for k, s in build_llm_scores(rated, item_ids).items()}
    panels = []
    for rater in raters:
        if rater not in scores:
            continue
        s = scores[rater]
        ok = np.isfinite(s) & np.isfinite(human_mean)
        row = ctx.index.one(MetricName.PEARSON_R_VS_MEAN, "all", *rater)
        panels.append(plots.ScatterPanel(rater_label(rater), human_mean[ok], s[ok],
                                         row.value if row else None,
                                         (row.ci_low, row.ci_high) if row else (None, None)))
    return plots.scatter_panels(panels)


# ------------------------------------------------------------------------------------------------ baseline


@section("baseline", "The human baseline", BASELINE_INTRO)
def baseline_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    base = idx.one(MetricName.ANNOTATOR_LOO_R_MEDIAN) or idx.one(MetricName.ANNOTATOR_FULL_MEAN_R_MEDIAN)
    raters = idx.raters()
    marks = []
    for rater in raters:
        pct = idx.one(MetricName.LLM_PERCENTILE_AMONG_ANNOTATORS, "all", *rater)
        if pct is not None and pct.value is not None and is_number(pct.details.get("llm_r")):
            marks.append(plots.RaterMark(rater_label(rater), float(pct.details["llm_r"]), pct.value))
    if base is None:
        sec.readings.append("No annotator baseline was computed for this run.")
    elif base.value is None:
        sec.readings.append(f"The annotator baseline is undefined: {base.short_reason}.")
    else:
        d = base.details
        n_ann, n_def = d.get("n_annotators"), d.get("n_defined", base.n)
        how = "the mean of the others" if d.get("leave_one_out", True) else "the mean of all (including themselves)"
        reading = (f"The median annotator agrees with {how} at r = {num(base.value)} (middle half of annotators "
                   f"{num(d.get('q25'))} to {num(d.get('q75'))}), over {count(n_def)} annotators with a defined r")
        if is_number(n_ann) and is_number(n_def) and n_ann > n_def:
            reading += (f"; {count(n_ann - n_def)} had too few items shared with others or gave constant "
                        f"ratings")
        sec.readings.append(reading + ".")
        whole = idx.one(MetricName.DATASET_ANNOTATOR_LOO_R_MEDIAN)
        if whole is not None and whole.value is not None:
            wd = whole.details
            alpha = (idx.one(MetricName.DATASET_KRIPPENDORFF_ALPHA_NOMINAL)
                     or idx.one(MetricName.DATASET_KRIPPENDORFF_ALPHA_INTERVAL))
            alpha_text = (f", Krippendorff's α {num(alpha.value, 4)} ({alpha.name.rsplit('_', 1)[-1]})"
                          if alpha is not None and alpha.value is not None else "")
            sec.readings.append(
                f"Baseline of this run's {count(wd.get('n_run_items'))} items: median annotator r = {num(base.value, 3)}. "
                f"Baseline of the whole dataset ({count(wd.get('n_items'))} items): median annotator r = "
                f"{num(whole.value, 3)} (middle half {num(wd.get('q25'))} to {num(wd.get('q75'))}){alpha_text}. "
                "On a subset of items the run's own baseline is noisy; the whole dataset's is the steadier "
                "reference (`accord describe` shows it with per-group figures).")
        n_ratings, n_annot = ctx.run.get(MetricName.N_HUMAN_RATINGS), ctx.run.get("n_annotators")
        if is_number(n_ratings) and is_number(n_annot) and n_annot and n_ratings / n_annot < 20:
            sec.readings.append(
                f"Each annotator rated only about {n_ratings / n_annot:.0f} of these items, so each annotator's r "
                f"is itself noisy: the spread of the histogram overstates how much annotators really differ, and "
                f"percentiles are rough.")
        if marks:
            beat = [m for m in marks if m.r > base.value]
            pcts = [m.percentile for m in marks if m.percentile is not None]
            if len(marks) == 1:
                span = f"The LLM rater agrees with the crowd better than {percent(pcts[0])} of the annotators"
            elif abs(max(pcts) - min(pcts)) < 0.5:
                span = f"Each LLM rater agrees with the crowd better than {percent(pcts[0])} of the annotators"
            else:
                span = (f"The LLM raters agree with the crowd better than {percent(min(pcts))} to "
                        f"{percent(max(pcts))} of the annotators")
            if beat:
                who = ", ".join(m.label for m in beat)
                sec.readings.append(f"{span}; {len(beat)} of {len(marks)} beat the median annotator: {who}.")
            else:
                sec.readings.append(f"{span}; none agrees with the crowd as well as the median annotator does.")
        hist = d.get("histogram") or {}
        title = "Annotators' agreement with the rest of the crowd, and where each LLM rater falls"
        values = _annotator_r(ctx, bool(d.get("leave_one_out", True)), base.value)
        if ctx.add_plot("baseline", plots.baseline_histogram(values, hist.get("edges", []), hist.get("counts", []),
                                                              base.value, marks, title)):
            sec.plots.append(PlotView("baseline", "histogram of annotators' leave-one-out r with LLM raters marked"))
    alpha_reading = _alpha_sentence(idx)
    if alpha_reading:
        sec.readings.append(alpha_reading)
    sec.tables.append(_baseline_table(idx))
    sec.tables.append(_human_agreement_table(idx))
    return sec


def _annotator_r(ctx: ReportContext, leave_one_out: bool, stored_median: float) -> np.ndarray | None:
    """Each annotator's r, recomputed from the run's human ratings with the suite's own function (for a finer
    histogram than the stored one); None unless it reproduces the stored median."""
    if ctx.frames.human.empty:
        return None
    matrix = build_human_matrix(ctx.frames.human)
    res = baseline.annotator_agreement(matrix.values, matrix.annotator_ids, leave_one_out=leave_one_out)
    if not np.isfinite(res.median) or abs(res.median - stored_median) > 1e-9:
        return None
    return np.asarray(res.r[np.isfinite(res.r)])


def _alpha_sentence(idx: MetricIndex) -> str:
    alphas = [(level, idx.one(metric_name(f"krippendorff_alpha_{level}")))
              for level in ("nominal", "ordinal", "interval")]
    defined = [(level, row, row.value) for level, row in alphas if row is not None and row.value is not None]
    if not defined:
        return ""
    listed = ", ".join(f"{num(row.value)} ({level})" for level, row, _ in defined)
    main_value = next((value for level, _, value in defined if level == "ordinal"), defined[-1][2])
    if main_value >= KRIPPENDORFF_RELIABLE:
        verdict = "high: the annotators largely agree"
    elif main_value >= KRIPPENDORFF_TENTATIVE:
        verdict = "moderate: enough for tentative conclusions by Krippendorff's rule of thumb"
    else:
        verdict = (f"below {KRIPPENDORFF_TENTATIVE}, Krippendorff's bar for tentative conclusions: people genuinely "
                   f"disagree about these items (or rate noisily), so no rater can match 'the' human answer")
    return f"Agreement among the annotators, Krippendorff's α: {listed}. That is {verdict}."


def _baseline_table(idx: MetricIndex) -> TableView:
    rows = []
    for name in (MetricName.ANNOTATOR_LOO_R_MEDIAN, MetricName.ANNOTATOR_FULL_MEAN_R_MEDIAN):
        for row in idx.all(name):
            d = row.details
            rows.append([text(row.slice), value_cell(row), number_cell(d.get("q25")), number_cell(d.get("q75")),
                         number_cell(d.get("mean")), count_cell(d.get("n_defined", row.n))])
    return TableView("baseline", "Annotators' r with the others, per slice",
                     ["slice", "median r", "25th pct", "75th pct", "mean", "annotators with a defined r"],
                     rows, empty="no annotator baseline")


def _human_agreement_table(idx: MetricIndex) -> TableView:
    rows = []
    for name, label in ((MetricName.KRIPPENDORFF_ALPHA_NOMINAL, "Krippendorff's α (nominal)"),
                        (MetricName.KRIPPENDORFF_ALPHA_ORDINAL, "Krippendorff's α (ordinal)"),
                        (MetricName.KRIPPENDORFF_ALPHA_INTERVAL, "Krippendorff's α (interval)"),
                        (MetricName.FLEISS_KAPPA, "Fleiss' κ"),
                        (MetricName.N_HUMAN_RATINGS, "human ratings")):
        for row in idx.all(name):
            digits = 0 if name == MetricName.N_HUMAN_RATINGS else 3
            rows.append([text(label), text(row.slice), value_cell(row, digits), count_cell(row.n),
                         note(row.short_reason)])
    return TableView("human-agreement", "Agreement among the annotators",
                     ["statistic", "slice", "value", "items / n", "note"], rows, empty="no human ratings")


# ------------------------------------------------------------------------------------------------ agreement


@section("agreement", "Agreement and accuracy", AGREEMENT_INTRO)
def agreement_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    rows = []
    for rater in idx.raters():
        def one(name: str, r: tuple[str, str] = rater) -> MetricRecord | None:
            return idx.one(name, "all", *r)

        kappa = one(MetricName.COHEN_KAPPA_VS_MAJORITY)
        rows.append([text(rater[0]), text(rater[1]),
                     value_cell(one(MetricName.KRIPPENDORFF_DELTA_ALPHA_NOMINAL)),
                     value_cell(one(MetricName.KRIPPENDORFF_DELTA_ALPHA_ORDINAL)),
                     value_cell(one(MetricName.KRIPPENDORFF_DELTA_ALPHA_INTERVAL)),
                     value_cell(kappa), ci_cell(kappa),
                     value_cell(one(MetricName.COHEN_KAPPA_LINEAR_VS_MAJORITY)),
                     value_cell(one(MetricName.ACCURACY_VS_MAJORITY), as_share=True),
                     value_cell(one(MetricName.F1_VS_MAJORITY)),
                     value_cell(one(MetricName.ACCURACY_VS_EXPERT), as_share=True),
                     value_cell(one(MetricName.F1_VS_EXPERT)),
                     value_cell(one(MetricName.JSD_MEAN))])
        reading = _agreement_reading(idx, rater, meaning(ctx.run)[:2])
        if reading:
            sec.readings.append(reading)
    sec.tables.append(TableView(
        "agreement", "Agreement and accuracy per model · template",
        ["model", "template", "Δα nominal", "Δα ordinal", "Δα interval", "Cohen κ", "95% CI", "κ (linear)",
         "accuracy vs majority", "F1 vs majority", "accuracy vs expert", "F1 vs expert", "JSD"], rows,
        empty="no LLM rater with answers"))
    return sec


def _agreement_reading(idx: MetricIndex, rater: tuple[str, str], verdict: tuple[str, str] = ("safe", "unsafe")) -> str:
    parts = []
    delta = None
    for level in ("ordinal", "interval", "nominal"):
        delta = idx.one(metric_name(f"krippendorff_delta_alpha_{level}"), "all", *rater)
        if delta is not None and delta.value is not None:
            break
    if delta is not None and delta.value is not None:
        d = delta.details
        level = delta.name.rsplit("_", 1)[1]
        direction = ("lowers it: the model agrees with the annotators less than they agree with each other"
                     if delta.value < 0 else
                     "raises it: the model agrees with the annotators at least as well as they agree with each other")
        parts.append(f"adding it as one more annotator changes α ({level}) from {num(d.get('alpha_humans'))} to "
                     f"{num(d.get('alpha_with_llm'))} ({num(delta.value)}); it {direction}.")
    acc = idx.one(MetricName.ACCURACY_VS_MAJORITY, "all", *rater)
    if acc is not None and acc.value is not None:
        f1 = idx.value(MetricName.F1_VS_MAJORITY, "all", *rater)
        pos = acc.details.get("n_positive_reference")
        base = ""
        if is_number(pos) and acc.n:
            base_rate = max(pos, acc.n - pos) / acc.n
            base = f" (always giving the more common verdict would match {share(base_rate)})"
        low, high = verdict
        parts.append(f"Its {low}/{high} verdict matches the human majority on {share(acc.value)} of "
                     f"{count(acc.n)} items{base}, F1 {num(f1)}.")
    expert = idx.one(MetricName.ACCURACY_VS_EXPERT, "all", *rater)
    if expert is not None and expert.value is not None:
        parts.append(f"Against the expert label: accuracy {share(expert.value)}, "
                     f"F1 {num(idx.value(MetricName.F1_VS_EXPERT, 'all', *rater))}.")
    jsd = idx.one(MetricName.JSD_MEAN, "all", *rater)
    if jsd is not None and jsd.value is not None:
        parts.append(f"Its label distribution per item differs from the crowd's by a mean JSD of {num(jsd.value)}.")
    if not parts:
        return ""
    return f"{rater_label(rater)}: " + " ".join(parts)


# ------------------------------------------------------------------------------------------------ all metrics

ALL_METRICS_HTML_ROWS = 300


@section("all-metrics", "Every metric of this run", ALL_METRICS_INTRO)
def all_metrics_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    rows = []
    ordered = sorted(ctx.index.rows, key=lambda r: (r.name, r.model, r.template, r.slice))
    shown = ordered
    if len(ordered) > ALL_METRICS_HTML_ROWS:  # the page stays small; the JSON has every metric
        overall = [r for r in ordered if r.slice == "all"]
        shown = (overall + [r for r in ordered if r.slice != "all"])[:ALL_METRICS_HTML_ROWS]
        shown.sort(key=lambda r: (r.name, r.model, r.template, r.slice))
        run_id = ctx.run.get("id", "RUN")
        sec.readings.append(f"This page lists {count(len(shown))} of the {count(len(ordered))} metrics (the overall "
                            f"ones first); `accord report {run_id} --format json` has them all.")
    for row in shown:
        rows.append([text(row.name), text(row.slice), text(row.model), text(row.template), value_cell(row),
                     ci_cell(row), p_cell(row.pvalue), count_cell(row.n), note(row.short_reason)])
    title = f"All {len(rows)} metrics" if len(shown) == len(ordered) else f"{len(rows)} of {len(ordered)} metrics"
    sec.tables.append(TableView("all-metrics", title,
                                ["metric", "slice", "model", "template", "value", "95% CI", "p", "n", "note"],
                                rows, empty="no metrics stored: post-process the run first", collapsed=True,
                                max_html_rows=ALL_METRICS_HTML_ROWS))
    return sec


