"""Report section for the judges' view of the subject models: each subject's mean judged harm per judge with
its interval, each judge's ranking, Kendall's tau between judges' rankings and Kendall's W across judges, each
with a plain-language reading. Pairwise and listwise judges and people's judgments of the answers are rankers
too (their score says how it is measured); pairwise judges' position bias, the share of comparison verdicts
that parsed, and the judges' agreement with people (Krippendorff's alpha) have tables of their own."""

from __future__ import annotations

from accord.analysis.catalogue import MetricName
from accord.analysis.results import MetricRecord
from accord.report.context import ReportContext, section
from accord.report.views import SectionView, TableView, ci_cell, count_cell, p_cell, text, value_cell


JUDGES_INTRO = ("Each judge rated the subjects' answers (with a harm template, higher = more harmful). A "
                "subject's score is "
                "the mean over questions of its answers' judged harm; intervals are 95% item-bootstrap "
                "intervals. A pairwise judge's score is the share of comparisons the subject's answer wins "
                "(chosen as the more harmful), a listwise judge's the mean position score (1 = ranked first, "
                "0 = last); people's ratings and rankings of the answers, when imported, are scored the same "
                "way. Kendall's tau compares two rankings of the subjects (1 = same order, "
                "-1 = reversed); Kendall's W measures the agreement of all judges at once (0 to 1). With few "
                "subjects, rankings can agree by chance: read the intervals.")


@section("judges", "Subject models as their judges see them", JUDGES_INTRO,
         needs=[MetricName.JUDGE_SUBJECT_MEAN])
def judges_section(ctx: ReportContext, sec: SectionView) -> SectionView | None:
    idx = ctx.index
    rows, seen = [], set()
    for row in sorted(idx.all(MetricName.JUDGE_SUBJECT_MEAN, slice_="all"),
                      key=lambda r: (r.template, -(r.value or 0), r.model)):
        rows.append([text(row.template), text(row.model), text(row.details.get("measure", "mean judged score")),
                     value_cell(row), ci_cell(row), count_cell(row.n)])
        if row.template not in seen and row.details.get("reading"):
            seen.add(row.template)
            sec.readings.append(row.details["reading"])
    sec.tables.append(TableView("judges-means", "Subjects' scores per judge (or people)",
                                ["judge", "subject", "score", "value", "95% CI", "questions"], rows))
    by_category = [r for r in idx.all(MetricName.JUDGE_SUBJECT_MEAN) if r.slice != "all"]
    if by_category:
        sec.tables.append(TableView("judges-categories", "Subjects' scores per category (vertical) and judge",
                                    ["judge", "category", "subject", "score", "95% CI", "questions"],
                                    [[text(r.template), text(r.slice.removeprefix("category=")), text(r.model),
                                      value_cell(r), ci_cell(r), count_cell(r.n)]
                                     for r in sorted(by_category, key=lambda r: (r.template, r.slice, r.model))]))
    _add_pair_table(sec, idx.all(MetricName.JUDGE_SUBJECT_PAIRED_DIFF), "judges-paired",
                    "Paired differences between subjects (same items)",
                    ["judge", "subjects", "mean difference", "95% CI", "Wilcoxon p", "items"],
                    template_first=True, reading_needs_value=False)
    _add_pair_table(sec, idx.all(MetricName.JUDGE_PAIR_KENDALL_TAU), "judges-tau",
                    "Agreement between judges' subject rankings",
                    ["judge", "judge", "Kendall τ", "95% CI", "p", "questions"],
                    template_first=False, reading_needs_value=True)
    flips = idx.all(MetricName.JUDGE_POSITION_FLIP_SHARE)
    if flips:
        sec.tables.append(TableView("judges-position", "Pairwise judges' position bias (each pair asked in both orders)",
                                    ["judge", "share of pairs flipping", "95% CI", "first shown both times",
                                     "second shown both times", "exact p", "pairs"],
                                    [[text(r.template), value_cell(r), ci_cell(r),
                                      count_cell(r.details.get("first_both_times")),
                                      count_cell(r.details.get("second_both_times")), p_cell(r.pvalue),
                                      count_cell(r.n)] for r in flips]))
        sec.readings += [r.details["reading"] for r in flips if r.details.get("reading")]
    parsed = idx.all(MetricName.JUDGE_COMPARISON_PARSED)
    if parsed:
        sec.tables.append(TableView("judges-parsed", "Comparison verdicts that parsed",
                                    ["judge", "format", "share parsed", "verdicts"],
                                    [[text(r.template), text(r.details.get("format", "")), value_cell(r),
                                      count_cell(r.n)] for r in parsed]))
        sec.readings += [r.details["reading"] for r in parsed if r.details.get("reading") and (r.value or 0) < 1]
    alphas = idx.all(MetricName.JUDGE_HUMAN_ALPHA)
    if alphas:
        sec.tables.append(TableView("judges-people", "Judges' agreement with people (Krippendorff's alpha, interval)",
                                    ["judge", "slice", "alpha", "answers"],
                                    [[text(r.template), text(r.slice), value_cell(r), count_cell(r.n)]
                                     for r in sorted(alphas, key=lambda r: (r.template, r.slice != "all", r.slice))]))
        sec.readings += [r.details["reading"] for r in alphas if r.slice == "all" and r.details.get("reading")]
    w = idx.one(MetricName.JUDGES_KENDALL_W)
    if w is not None:
        sec.readings.append(w.details.get("reading") or f"Kendall's W is {w.details.get('reason', 'undefined')}.")
    return sec


def _add_pair_table(sec: SectionView, rows: list[MetricRecord], table_id: str, title: str, columns: list[str], *,
                    template_first: bool, reading_needs_value: bool) -> None:
    """A table of pair statistics (two names, value, interval, p, count) and the rows' readings; none when no rows."""
    if not rows:
        return
    sec.tables.append(TableView(table_id, title, columns,
                                [[text(r.template if template_first else r.model),
                                  text(r.model if template_first else r.template), value_cell(r), ci_cell(r),
                                  p_cell(r.pvalue), count_cell(r.n)] for r in rows]))
    sec.readings += [r.details["reading"] for r in rows
                     if r.details.get("reading") and (r.value is not None or not reading_needs_value)]
