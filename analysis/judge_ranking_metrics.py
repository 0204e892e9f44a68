"""Judges' subject rankings as metric rows: ``judge_subject_mean`` (model = subject, template = judge; slice
``all`` and one per item category, e.g. a vertical),
``judge_subject_paired_diff`` (model = "a - b", template = judge: paired difference of two subjects on the
same items, bootstrap interval, Wilcoxon signed-rank p), ``judge_pair_kendall_tau`` (model = first judge,
template = second judge) and ``judges_kendall_w``, each with a
plain-language reading. Deterministic: the bootstrap is seeded.

Pairwise and listwise judges and people's ratings and rankings of the answers enter as rankers of their own
(``accord.analysis.comparisons``: per-item scores, higher = ranked higher), so the same rows rank the subjects by
each of them, with tau between every two rankers (people vs each judge included) and W across the judges;
besides, ``judge_position_flip_share`` (pairwise judges' position bias), ``judge_comparison_parsed`` (share of
a comparison judge's verdicts that parsed) and ``judge_human_alpha`` (Krippendorff's alpha between a judge's
scores and people's mean rating of the same answers, per item category)."""

from __future__ import annotations

import pandas as pd

from accord.analysis.comparisons import (
    PEOPLE_RANKS, PEOPLE_RATINGS, comparison_scores, human_scores, judge_human_alpha, pair_position_bias,
    score_matrices,
)
from accord.analysis.judge_rankings import (
    harm_matrices, judge_pair_taus, judges_concordance, paired_differences, subject_means,
)
from accord.analysis.resampling import derive_rng
from accord.analysis.results import MetricRecord

N_RESAMPLES = 1000
SEED = 20231109


def ranking_text(subjects: list[str], means: list[float]) -> str:
    """'a > b = c': most harmful first, equal means tied with '=', subjects without a mean left out."""
    scored = sorted(((float(m), str(s)) for s, m in zip(subjects, means) if m == m), key=lambda x: (-x[0], x[1]))
    out = ""
    for k, (m, s) in enumerate(scored):
        out += s if k == 0 else (" = " if m == scored[k - 1][0] else " > ") + s
    return out


def _per_category(judge: str, matrix: pd.DataFrame, categories: pd.Series) -> list[MetricRecord]:
    """The subject means within each item category (a vertical, a harm type), with their intervals."""
    out: list[MetricRecord] = []
    known = categories[categories != ""]
    if known.nunique() < 2:
        return out
    for category in sorted(known.unique()):
        rows = matrix.loc[matrix.index.intersection(known[known == category].index)]
        if rows.empty:
            continue
        means, cis = subject_means(rows, N_RESAMPLES, derive_rng(SEED, "means", judge, category))
        for subject, mean, ci in zip(rows.columns, means, cis):
            out.append(MetricRecord("judge_subject_mean", float(mean), f"category={category}", str(subject), judge,
                                    ci[0], ci[1], n=int(rows[subject].notna().sum())))
    return out


def _measure(rater: str, kinds: dict[str, str]) -> str:
    return {"pair": "share of pairwise comparisons its answer wins", "list": "mean listwise position score",
            PEOPLE_RATINGS: "people's mean rating", PEOPLE_RANKS: "people's mean rank score"}.get(
        kinds.get(rater, ""), "mean judged score")


def judge_ranking_records(answers: pd.DataFrame, judgments: pd.DataFrame, comparisons: pd.DataFrame | None = None,
                          human: pd.DataFrame | None = None) -> list[MetricRecord]:
    """``comparisons``: pairwise/listwise verdicts with a ``rater`` column; ``human``: people's judgments of
    the answers (item, subject, annotator, kind, value)."""
    comparisons = comparisons if comparisons is not None else pd.DataFrame()
    human = human if human is not None else pd.DataFrame()
    if answers.empty or (judgments.empty and comparisons.empty):
        return []
    subjects = sorted(answers["subject"].unique())
    matrices = harm_matrices(answers, judgments) if not judgments.empty else {}
    judges = set(matrices)
    kinds: dict[str, str] = {}
    if not comparisons.empty:
        compared = score_matrices(comparison_scores(answers, comparisons), subjects)
        matrices.update(compared)
        judges |= set(compared)
        kinds.update({str(r): str(k) for r, k in zip(comparisons["rater"], comparisons["kind"])})
    people = human_scores(human) if not human.empty else pd.DataFrame()
    if not people.empty:
        people = people[people["subject"].isin(subjects) & people["item"].isin(set(answers["item"]))]
        matrices.update(score_matrices(people, subjects))
        kinds.update({PEOPLE_RATINGS: PEOPLE_RATINGS, PEOPLE_RANKS: PEOPLE_RANKS})
    matrices = dict(sorted(matrices.items()))
    categories = (answers.drop_duplicates("item").set_index("item")["category"].astype(str)
                  if "category" in answers.columns else pd.Series(dtype=str))
    out: list[MetricRecord] = []
    for judge, matrix in matrices.items():
        means, cis = subject_means(matrix, N_RESAMPLES, derive_rng(SEED, "means", judge))
        ranking = ranking_text(list(matrix.columns), list(means))
        measure = _measure(judge, kinds)
        for subject, mean, ci in zip(matrix.columns, means, cis):
            n = int(matrix[subject].notna().sum())
            out.append(MetricRecord("judge_subject_mean", float(mean), "all", str(subject), judge, ci[0], ci[1],
                                    n=n, details={"ranking": ranking, "measure": measure,
                                                  "reading": f"{judge} ranks the subjects by {measure}, "
                                                             f"highest first (with a harm template: most harmful "
                                                             f"first): {ranking}."}))
        out.extend(_per_category(judge, matrix, categories))
        for d in paired_differences(matrix, N_RESAMPLES, derive_rng(SEED, "paired", judge)):
            p_text = "no difference on any item" if d.pvalue is None else f"Wilcoxon p = {d.pvalue:.3g}"
            out.append(MetricRecord("judge_subject_paired_diff", d.mean_diff, "all", f"{d.subject_a} - {d.subject_b}",
                                    judge, d.ci[0], d.ci[1], d.pvalue, n=d.n_items, details={
                                        "subject_a": d.subject_a, "subject_b": d.subject_b,
                                        "reading": f"On the {d.n_items} items both answered, {judge} scores "
                                                   f"{d.subject_a} {d.mean_diff:+.2f} against {d.subject_b} "
                                                   f"(95% interval {d.ci[0]:+.2f} to {d.ci[1]:+.2f}; {p_text})."}))
    out.extend(_comparison_records(comparisons))
    if not human.empty and not judgments.empty:
        scores = judgments.merge(answers[["answer_id", "item", "subject"]], on="answer_id").rename(
            columns={"judge": "rater", "value": "score"})
        for a in judge_human_alpha(scores[["rater", "item", "subject", "score"]], human, categories):
            slice_ = "all" if not a.category else f"category={a.category}"
            where = (f"all {a.n_answers} answers" if not a.category else
                     f"the {a.n_answers} answers to {a.category} items")
            reading = (f"Krippendorff's alpha (interval) between {a.rater}'s scores and people's mean rating on "
                       f"{where}: {a.alpha:.2f} (1 = perfect agreement, 0 = chance)."
                       if a.alpha is not None else
                       f"Krippendorff's alpha between {a.rater} and people is undefined on {where}: {a.reason}.")
            out.append(MetricRecord("judge_human_alpha", a.alpha, slice_, "", a.rater, n=a.n_answers,
                                    details={"reading": reading, **({"reason": a.reason} if a.reason else {})}))
    for pair in judge_pair_taus(matrices, N_RESAMPLES, derive_rng(SEED, "taus")):
        out.append(MetricRecord("judge_pair_kendall_tau", pair.tau, "all", pair.judge_a, pair.judge_b, pair.ci[0],
                                pair.ci[1], pair.pvalue, n=pair.n_items, details={
                                    "reading": f"Kendall's tau between the subject rankings of {pair.judge_a} and "
                                               f"{pair.judge_b}: {pair.tau:.2f} (95% item-bootstrap interval "
                                               f"{pair.ci[0]:.2f} to {pair.ci[1]:.2f})."}))
    judge_matrices = {j: m for j, m in matrices.items() if j in judges}   # W across judges: people left out
    w = judges_concordance(judge_matrices)
    if w is None and len(judge_matrices) >= 2:
        out.append(MetricRecord("judges_kendall_w", None, "all", details={
            "judges": len(judge_matrices), "reason": "undefined: fewer than 2 subjects, a subject some judge never rated, "
                                               "or every judge ties every subject"}))
    elif w is not None:
        out.append(MetricRecord("judges_kendall_w", w.w, "all", pvalue=w.pvalue, n=w.n, details={
            "judges": w.m, "subjects": w.n, "chi2": w.chi2,
            "reading": f"The {w.m} judges' subject rankings have Kendall's W = {w.w:.2f} (1 = identical rankings, "
                       f"0 = no agreement; Friedman p = {w.pvalue:.3g})."}))
    return out


def _comparison_records(comparisons: pd.DataFrame) -> list[MetricRecord]:
    out: list[MetricRecord] = []
    if comparisons.empty:
        return out
    for rater, group in comparisons.groupby("rater", sort=True):
        n_ok = int((group["parse_status"] == "ok").sum())
        kind = "pairwise" if (group["kind"] == "pair").all() else "listwise"
        valid = "A or B" if kind == "pairwise" else "an order of all the answers"
        out.append(MetricRecord("judge_comparison_parsed", n_ok / len(group), "all", "", str(rater), n=len(group),
                                details={"format": kind, "reading": f"{n_ok} of {len(group)} {kind} verdicts of "
                                         f"{rater} were a valid answer ({valid}); the rest are left out, never "
                                         "guessed."}))
    for b in pair_position_bias(comparisons):
        out.append(MetricRecord("judge_position_flip_share", b.share, "all", "", b.rater, b.ci[0], b.ci[1], b.pvalue,
                                n=b.n_pairs, details={
                                    "flipped": b.n_flipped, "first_both_times": b.n_first,
                                    "second_both_times": b.n_second,
                                    "reading": f"Asked about the same two answers in both orders, {b.rater} changes "
                                               f"its verdict with the order on {b.n_flipped} of {b.n_pairs} pairs "
                                               f"({b.share:.0%}, 95% interval {b.ci[0]:.0%} to {b.ci[1]:.0%}): "
                                               f"{b.n_first} times it picked the answer shown first both times, "
                                               f"{b.n_second} times the one shown second (exact test of no "
                                               f"position preference: p = {b.pvalue:.3g})."}))
    return out
