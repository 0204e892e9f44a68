"""Pairwise and listwise judges, and people's judgments of answers, as per-item subject scores.

Every ranker — a judge rating answers one by one, a pairwise or listwise judge, people rating or ranking the
answers — becomes an items x subjects matrix of scores where higher means ranked higher (more harmful with a
harm template), so one set of ranking metrics serves them all (``accord.analysis.judge_rankings``: subject means
with item-bootstrap intervals, Kendall's tau between rankers with an item-bootstrap interval, Kendall's W):

- pairwise: a subject's score on an item is the share of the item's comparisons involving its answer in which
  the judge chose that answer (win share; both orders of a pair count);
- listwise and people's ranks: a subject ranked r-th of k on an item scores (k - r) / (k - 1) (1 = first,
  0 = last), averaged over the lists (samples, annotators) of that item;
- people's ratings: the mean rating of the subject's answer to the item.

Position bias of a pairwise judge: per pair of answers asked in both orders (both verdicts parsed), the verdict
*flips* when the judge picks the same position (A twice or B twice), i.e. a different answer depending on the
order. Reported: the share of flipping pairs with a Wilson interval, and the exact McNemar test (a binomial test
on the flipping pairs) of whether first-position and second-position picks are equally likely
(``accord.analysis.consistency.position_bias``).

Judge–human agreement: Krippendorff's alpha (interval) between a per-answer judge's scores and people's mean
rating of the same answers, over all answers and per item category (``accord.analysis.agreement``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
from accord.analysis.agreement import krippendorff_alpha
from accord.analysis.consistency import position_bias
from accord.analysis.fine import wilson

PEOPLE_RATINGS = "people (ratings)"
PEOPLE_RANKS = "people (ranks)"


def _letters(k: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(k)]


def comparison_scores(answers: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """One row per (rater, item, subject, comparison verdict) with the subject's score in that verdict:
    pairwise 1 (chosen) or 0, listwise (k - r) / (k - 1). Unparsed verdicts are left out. ``comparisons`` has
    a ``rater`` column (the judge, or judge · template)."""
    cols = ["rater", "item", "subject", "score"]
    if comparisons.empty or answers.empty:
        return pd.DataFrame(columns=cols)
    where = answers.set_index("answer_id")[["item", "subject"]]
    out: list[tuple[Any, Any, Any, float]] = []
    for row in comparisons[comparisons["parse_status"] == "ok"].itertuples(index=False):
        ids = list(cast(list[int], row.answer_ids))
        if any(a not in where.index for a in ids) or not row.label:
            continue
        letters = _letters(len(ids))
        item = where.loc[ids[0], "item"]
        subjects = [where.loc[a, "subject"] for a in ids]
        if row.kind == "pair":
            chosen = letters.index(str(row.label))
            out.extend((row.rater, item, s, 1.0 if i == chosen else 0.0) for i, s in enumerate(subjects))
        else:
            order = str(row.label).split(">")
            k = len(ids)
            out.extend((row.rater, item, subjects[letters.index(letter)], (k - 1 - r) / (k - 1))
                       for r, letter in enumerate(order))
    return pd.DataFrame.from_records(out, columns=cols)


def score_matrices(scores: pd.DataFrame, subjects: list[str]) -> dict[str, pd.DataFrame]:
    """rater -> items x subjects mean score (NaN where a subject has no score on an item)."""
    out = {}
    for rater, group in scores.groupby("rater", sort=True):
        m = group.pivot_table(index="item", columns="subject", values="score", aggfunc="mean")
        out[str(rater)] = m.reindex(columns=subjects)
    return out


def human_scores(human: pd.DataFrame) -> pd.DataFrame:
    """People's judgments (item, subject, annotator, kind, value) as scores: ratings as they are (``people
    (ratings)``), ranks (1 = first) as (k - r) / (k - 1) with k the answers the annotator ranked on the item
    (``people (ranks)``)."""
    cols = ["rater", "item", "subject", "score"]
    if human.empty:
        return pd.DataFrame(columns=cols)
    h = human[np.isfinite(human["value"].astype(float))]
    ratings = h[h["kind"] == "rating"].assign(rater=PEOPLE_RATINGS, score=lambda d: d["value"].astype(float))
    ranks = h[h["kind"] == "rank"].copy()
    if not ranks.empty:
        k = ranks.groupby(["item", "annotator"])["subject"].transform("count").astype(float)
        ranks = ranks[k > 1].assign(rater=PEOPLE_RANKS)
        k = k[k > 1]
        ranks["score"] = (k - ranks["value"].astype(float)) / (k - 1)
    return pd.concat([ratings[cols], ranks[cols] if not ranks.empty else pd.DataFrame(columns=cols)],
                     ignore_index=True)


@dataclass
class PairPositionBias:
    rater: str
    n_pairs: int             # pairs of answers with a parsed verdict in both orders
    n_flipped: int           # verdict depends on the order (same position picked twice)
    share: float
    ci: tuple[float, float]  # Wilson interval of the share
    n_first: int             # flipped by picking the first-shown answer both times
    n_second: int            # flipped by picking the second-shown answer both times
    pvalue: float            # exact McNemar (binomial on the flipped pairs): first vs second equally likely


def pair_position_bias(comparisons: pd.DataFrame) -> list[PairPositionBias]:
    """Per pairwise rater: how often the verdict flips when the two answers swap places."""
    out: list[PairPositionBias] = []
    pairs = comparisons[(comparisons["kind"] == "pair") & (comparisons["parse_status"] == "ok")]
    for rater, group in pairs.groupby("rater", sort=True):
        verdicts: dict[tuple[int, int, int], dict[bool, float]] = {}
        for row in group.itertuples(index=False):
            shown = cast(list[int], row.answer_ids)
            a, b = int(shown[0]), int(shown[1])
            low_first = a < b
            low_wins = (str(row.label) == "A") == low_first
            pair = (int(cast(int, row.sample_index)), min(a, b), max(a, b))
            verdicts.setdefault(pair, {})[low_first] = float(low_wins)
        both = [v for v in verdicts.values() if len(v) == 2]
        if not both:
            continue
        # order a = lower answer id shown first, order b = shown second; verdict = the lower id's answer wins
        pb = position_bias(np.array([v[True] for v in both]), np.array([v[False] for v in both]))
        ci = wilson(pb.n_flipped, pb.n) or (float("nan"), float("nan"))
        # to_negative: lower-id answer won when first, lost when second -> the first-shown answer both times
        out.append(PairPositionBias(str(rater), pb.n, pb.n_flipped, pb.flip_rate, ci, pb.n_to_negative,
                                    pb.n_to_positive, pb.mcnemar_pvalue))
    return out


@dataclass
class HumanAgreement:
    rater: str
    category: str            # "" = all answers
    alpha: float | None      # None when undefined (reason says why)
    n_answers: int
    reason: str = ""


def judge_human_alpha(judge_scores: pd.DataFrame, human: pd.DataFrame,
                      categories: pd.Series) -> list[HumanAgreement]:
    """Krippendorff's alpha (interval) between each per-answer judge's mean score of an answer (item, subject)
    and people's mean rating of it, over all answers and per item category. ``judge_scores``: rater, item,
    subject, score; ``human``: item, subject, kind, value; ``categories``: item -> category."""
    out: list[HumanAgreement] = []
    rated = human[(human["kind"] == "rating") & np.isfinite(human["value"].astype(float))]
    if rated.empty or judge_scores.empty:
        return out
    people = rated.groupby(["item", "subject"])["value"].mean().rename("people")
    cats = sorted(c for c in categories.unique() if c) if categories.nunique() >= 2 else []
    for rater, group in judge_scores.groupby("rater", sort=True):
        judged = group.groupby(["item", "subject"])["score"].mean().rename("judge")
        both = pd.concat([judged, people], axis=1, join="inner").dropna()
        for category in ["", *cats]:
            sel = both if not category else both[[categories.get(i, "") == category
                                                  for i in both.index.get_level_values("item")]]
            try:
                alpha = krippendorff_alpha(sel[["judge", "people"]].to_numpy(float)) if len(sel) else None
                reason = "" if alpha is not None else "no answer rated by both"
            except ValueError as err:
                alpha, reason = None, str(err)
            out.append(HumanAgreement(str(rater), category, alpha, len(sel), reason))
    return out
