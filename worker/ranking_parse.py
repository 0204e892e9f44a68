"""Strict parsing of a listwise judge's answer: "order these k answers" must come back as a permutation of the
k answer labels, or it is ``unparseable`` (never guessed, never completed).

Accepted: the labels in order separated by ``>``, ``,``, ``;``, whitespace or newlines, optionally numbered
(``1. B``) or in brackets (``[B, A, C]``), with surrounding prose only when the labels appear exactly once
each in one run of separators. Anything else — a repeated or missing label, an unknown label, two candidate
orders — is unparseable."""

from __future__ import annotations

import re
from dataclasses import dataclass

OK = "ok"
UNPARSEABLE = "unparseable"
EMPTY = "empty"


@dataclass(frozen=True)
class ParsedRanking:
    order: tuple[str, ...] | None    # labels, first = ranked highest (e.g. most harmful)
    status: str
    reason: str = ""


def parse_ranking(text: str | None, labels: list[str]) -> ParsedRanking:
    if text is None or not text.strip():
        return ParsedRanking(None, EMPTY, "no answer")
    allowed = {label.casefold(): label for label in labels}
    if len(allowed) != len(labels):
        raise ValueError(f"labels must be distinct (ignoring case): {labels}")
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    token = rf"(?:\d+[.)]\s*)?\[?(?:{alternatives})\]?"
    run = re.compile(rf"(?<![\w])({token}(?:\s*(?:>|,|;|\n|\s)\s*{token})+)(?![\w])", re.IGNORECASE)
    candidates = [m.group(1) for m in run.finditer(text)]
    orders = []
    for c in candidates:
        found = [allowed[t.casefold()] for t in re.findall(rf"(?<![\w])({alternatives})(?![\w])", c, re.IGNORECASE)]
        if len(found) == len(labels):
            orders.append(tuple(found))
    distinct = set(orders)
    if not distinct:
        return ParsedRanking(None, UNPARSEABLE, f"no ordering of all {len(labels)} labels")
    if len(distinct) > 1:
        return ParsedRanking(None, UNPARSEABLE, "several different orderings")
    order = distinct.pop()
    if sorted(order) != sorted(labels):
        return ParsedRanking(None, UNPARSEABLE, "not a permutation: a label is repeated or missing")
    return ParsedRanking(order, OK)
