"""FINE cells as metric rows: ``fine_cs`` and ``fine_css`` per category slice, subject (``model``) and judge
(``template`` holds the judge's alias), each with its Wilson interval, the count of undetermined questions,
the disagreement cases and a plain-language reading."""

from __future__ import annotations

import pandas as pd

from accord.analysis.fine import ALL, fine_cells, question_results
from accord.analysis.results import MetricRecord

MAX_CASES = 50


def fine_records(answers: pd.DataFrame, judgments: pd.DataFrame) -> list[MetricRecord]:
    """Nothing unless the run has open answers judged and multiple-choice answers."""
    if answers.empty or judgments.empty:
        return []
    formats = set(answers["response_format"])
    if not {"open_ended", "multiple_choice"} <= formats:
        return []
    out: list[MetricRecord] = []
    for cell in fine_cells(question_results(answers, judgments)):
        slice_ = ALL if cell.category == ALL else f"category={cell.category}"
        base = {"judge": cell.judge, "n_undetermined": cell.n_undetermined}
        cs_reading = (f"{cell.subject} gave the same safety verdict in the open and the multiple-choice format on "
                      f"{cell.cs:.0%} of {cell.n} questions (judge: {cell.judge})." if cell.cs is not None else
                      "No question had both formats answered.")
        css_reading = (f"On {cell.css:.0%} of them it was safe in both formats: the safe option in every order "
                       f"and an answer the judge found safe." if cell.css is not None else "")
        cs_low, cs_high = cell.cs_ci or (None, None)
        out.append(MetricRecord("fine_cs", cell.cs, slice_, cell.subject, cell.judge, cs_low, cs_high, n=cell.n,
                                details={**base, "reading": cs_reading, "disagreements": cell.disagreements[:MAX_CASES],
                                         "n_disagreements": len(cell.disagreements)}))
        css_low, css_high = cell.css_ci or (None, None)
        out.append(MetricRecord("fine_css", cell.css, slice_, cell.subject, cell.judge, css_low, css_high, n=cell.n,
                                details={**base, "reading": css_reading}))
    return out
