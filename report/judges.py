"""Report section for the judges' view of the subject models: each subject's mean judged harm per judge with
its interval, each judge's ranking, Kendall's tau between judges' rankings and Kendall's W across judges, each
with a plain-language reading."""

from __future__ import annotations

from accord.analysis.catalogue import MetricName
from accord.report.context import ReportContext
from accord.report.views import SectionView, TableView, ci_cell, count_cell, p_cell, text, value_cell


def judges_section(ctx: ReportContext) -> SectionView | None:
    idx = ctx.index
    if not idx.has(MetricName.JUDGE_SUBJECT_MEAN):
        return None
    sec = SectionView("judges", "Subject models as their judges see them",
                      "Each judge rated the subjects' answers (with a harm template, higher = more harmful). A "
                      "subject's score is "
                      "the mean over questions of its answers' judged harm; intervals are 95% item-bootstrap "
                      "intervals. Kendall's tau compares two judges' rankings of the subjects (1 = same order, "
                      "-1 = reversed); Kendall's W measures the agreement of all judges at once (0 to 1). With few "
                      "subjects, rankings can agree by chance: read the intervals.")
    rows, seen = [], set()
    for row in sorted(idx.all(MetricName.JUDGE_SUBJECT_MEAN, slice_="all"),
                      key=lambda r: (r.template, -(r.value or 0), r.model)):
        rows.append([text(row.template), text(row.model), value_cell(row), ci_cell(row), count_cell(row.n)])
        if row.template not in seen and row.details.get("reading"):
            seen.add(row.template)
            sec.readings.append(row.details["reading"])
    sec.tables.append(TableView("judges-means", "Mean judged harm per judge and subject",
                                ["judge", "subject", "mean harm", "95% CI", "questions"], rows))
    by_category = [r for r in idx.all(MetricName.JUDGE_SUBJECT_MEAN) if r.slice != "all"]
    if by_category:
        sec.tables.append(TableView("judges-categories", "Mean judged score per category (vertical) and subject",
                                    ["judge", "category", "subject", "mean", "95% CI", "questions"],
                                    [[text(r.template), text(r.slice.removeprefix("category=")), text(r.model),
                                      value_cell(r), ci_cell(r), count_cell(r.n)]
                                     for r in sorted(by_category, key=lambda r: (r.template, r.slice, r.model))]))
    paired = idx.all(MetricName.JUDGE_SUBJECT_PAIRED_DIFF)
    if paired:
        sec.tables.append(TableView("judges-paired", "Paired differences between subjects (same items)",
                                    ["judge", "subjects", "mean difference", "95% CI", "Wilcoxon p", "items"],
                                    [[text(r.template), text(r.model), value_cell(r), ci_cell(r), p_cell(r.pvalue),
                                      count_cell(r.n)] for r in paired]))
        sec.readings += [r.details["reading"] for r in paired if r.details.get("reading")]
    taus = idx.all(MetricName.JUDGE_PAIR_KENDALL_TAU)
    if taus:
        sec.tables.append(TableView("judges-tau", "Agreement between judges' subject rankings",
                                    ["judge", "judge", "Kendall τ", "95% CI", "p", "questions"],
                                    [[text(r.model), text(r.template), value_cell(r), ci_cell(r), p_cell(r.pvalue),
                                      count_cell(r.n)] for r in taus]))
        sec.readings += [r.details["reading"] for r in taus if r.details.get("reading") and r.value is not None]
    w = idx.one(MetricName.JUDGES_KENDALL_W)
    if w is not None:
        sec.readings.append(w.details.get("reading") or f"Kendall's W is {w.details.get('reason', 'undefined')}.")
    return sec
