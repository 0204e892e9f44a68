"""Judges' subject rankings as metric rows: ``judge_subject_mean`` (model = subject, template = judge; slice
``all`` and one per item category, e.g. a vertical),
``judge_subject_paired_diff`` (model = "a - b", template = judge: paired difference of two subjects on the
same items, bootstrap interval, Wilcoxon signed-rank p), ``judge_pair_kendall_tau`` (model = first judge,
template = second judge) and ``judges_kendall_w``, each with a
plain-language reading. Deterministic: the bootstrap is seeded."""

from __future__ import annotations

import pandas as pd

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


def judge_ranking_records(answers: pd.DataFrame, judgments: pd.DataFrame) -> list[MetricRecord]:
    if answers.empty or judgments.empty:
        return []
    matrices = harm_matrices(answers, judgments)
    categories = (answers.drop_duplicates("item").set_index("item")["category"].astype(str)
                  if "category" in answers.columns else pd.Series(dtype=str))
    out: list[MetricRecord] = []
    for judge, matrix in matrices.items():
        means, cis = subject_means(matrix, N_RESAMPLES, derive_rng(SEED, "means", judge))
        ranking = ranking_text(list(matrix.columns), list(means))
        for subject, mean, ci in zip(matrix.columns, means, cis):
            n = int(matrix[subject].notna().sum())
            out.append(MetricRecord("judge_subject_mean", float(mean), "all", str(subject), judge, ci[0], ci[1],
                                    n=n, details={"ranking": ranking,
                                                  "reading": f"{judge} ranks the subjects by mean judged score, "
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
    for pair in judge_pair_taus(matrices, N_RESAMPLES, derive_rng(SEED, "taus")):
        out.append(MetricRecord("judge_pair_kendall_tau", pair.tau, "all", pair.judge_a, pair.judge_b, pair.ci[0],
                                pair.ci[1], pair.pvalue, n=pair.n_items, details={
                                    "reading": f"Kendall's tau between the subject rankings of {pair.judge_a} and "
                                               f"{pair.judge_b}: {pair.tau:.2f} (95% item-bootstrap interval "
                                               f"{pair.ci[0]:.2f} to {pair.ci[1]:.2f})."}))
    w = judges_concordance(matrices)
    if w is None and len(matrices) >= 2:
        out.append(MetricRecord("judges_kendall_w", None, "all", details={
            "judges": len(matrices), "reason": "undefined: fewer than 2 subjects, a subject some judge never rated, "
                                               "or every judge ties every subject"}))
    elif w is not None:
        out.append(MetricRecord("judges_kendall_w", w.w, "all", pvalue=w.pvalue, n=w.n, details={
            "judges": w.m, "subjects": w.n, "chi2": w.chi2,
            "reading": f"The {w.m} judges' subject rankings have Kendall's W = {w.w:.2f} (1 = identical rankings, "
                       f"0 = no agreement; Friedman p = {w.pvalue:.3g})."}))
    return out
