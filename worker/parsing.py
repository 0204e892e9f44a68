"""Turn a model's raw answer text into one of the allowed labels, or say why not.

``parse_answer`` never guesses: an answer that names two different labels without a clear final one is
``unparseable``, never a default label. The stages, strongest first:

1. JSON (``{"label": ...}``, ``{"rationale": ..., "label": ...}``), also inside code fences;
2. a caller-supplied regex with one group;
3. the whole answer is a label (after stripping quotes, markdown bold, punctuation);
4. the last explicit answer marker ("Answer: 3", "Final answer: **B**", "I'd rate it a 4", "Rating: 4/5");
5. the last non-empty line is a label (explanation first, answer last);
6. the answer starts with a label followed by a separator ("4 - because ...", "Unsafe. The ...", "B) ...");
7. option letters ("(B)", "B)", "B.") naming one letter only;
8. refusals ("I can't help with that", "As an AI, I cannot rate ...");
9. exactly one label mentioned anywhere (scale echoes like "1 to 5" or "1 = safe" and negated mentions
   like "not unsafe" do not count as answers).

Anything else is ``truncated`` (the provider stopped at the token limit), ``empty`` or ``unparseable``.
``expected_value`` turns label log-probabilities into normalised probabilities and a weighted value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

OK = "ok"
REFUSED = "refused"
UNPARSEABLE = "unparseable"
TRUNCATED = "truncated"
EMPTY = "empty"

_LABEL_KEYS = ("label", "answer", "rating", "score", "choice", "option", "verdict", "classification")
_RATIONALE_KEYS = ("rationale", "reasoning", "reason", "explanation", "justification")
_STRIP_CHARS = " \t\r\n*_`\"'“”‘’.,;:!?()[]{}<>"
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_NEGATION = re.compile(r"(?:\bnot|\bcannot|\bnever|\bno|n['’]t)\s+(?:\w+\s+)?$", re.IGNORECASE)
_MARKER = (
    r"(?:\bfinal\s+answer|\bfinal\s+rating|\banswer|\brating|\bscore|\blabel|\bverdict|\bclassification"
    r"|\bmy\s+choice|\bI\s+(?:choose|pick|select|go\s+with)"
    r"|\bI(?:\s+would|['’]d)\s+(?:rate|give|say|choose|pick|select|go\s+with|classify|label|score)"
    r"(?:\s+(?:it|this|the\s+(?:last\s+)?response))?(?:\s+as)?"
    r"|\b(?:rate|rated|give|classify|label|score)\s+(?:it|this|the\s+(?:last\s+)?response)(?:\s+as)?)"
)
_MARKER_SEP = r"[\s*_]*(?:is|would\s+be|of|:|=|-|–|—|as)?[\s*_:]*(?:an?\s+)?[\"'`“‘(\[*_]*\s*"
_REFUSAL = re.compile(
    r"\bI\s*(?:['’]m|\s+am)\s+(?:sorry|afraid|unable|not\s+able|not\s+comfortable|not\s+going\s+to)\b"
    r"|\bI\s+(?:can['’]?t|cannot|can\s+not|won['’]t|will\s+not|must\s+decline|decline|refuse|must\s+refuse"
    r"|am\s+unable|do\s+not\s+feel\s+comfortable|don['’]t\s+feel\s+comfortable)\b"
    r"|\bas\s+an\s+ai\b|\bas\s+a\s+(?:large\s+)?language\s+model\b"
    r"|\b(?:unable|not\s+able)\s+to\s+(?:help|assist|provide|rate|comply|answer|evaluate|judge)\b"
    r"|\bagainst\s+my\s+(?:guidelines|policy|policies|principles|programming)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ParseResult:
    label: str | None
    value: float | None
    status: str          # "ok" | "refused" | "unparseable" | "truncated" | "empty"
    rationale: str | None = None


class _Labels:
    """The allowed labels with the lookups parsing needs (case-insensitive where that is unambiguous)."""

    def __init__(self, labels: dict[str, float]) -> None:
        if not labels:
            raise ValueError("parse_answer needs at least one allowed label")
        self.values = dict(labels)
        folded = [label.casefold() for label in labels]
        self.case_sensitive = len(set(folded)) != len(folded)
        self.by_key = {self._key(label): label for label in labels}
        self.numeric = {}
        for label in labels:
            try:
                self.numeric[float(label)] = label
            except ValueError:
                pass
        self.letters = {label for label in labels if len(label) == 1 and label.isalpha()}
        ordered = sorted(labels, key=len, reverse=True)       # longest first: "strongly agree" before "agree"
        self.alternation = "|".join(re.escape(label) for label in ordered)
        flags = 0 if self.case_sensitive else re.IGNORECASE
        self.flags = flags
        self.mention = re.compile(rf"(?<![\w])({self.alternation})(?![\w])", flags)
        self.marker = re.compile(rf"{_MARKER}{_MARKER_SEP}({self.alternation})(?![\w])", flags | re.IGNORECASE)

    def _key(self, text: str) -> str:
        return text if self.case_sensitive else text.casefold()

    def lookup(self, candidate: object) -> str | None:
        """The allowed label ``candidate`` names (a string or a number), or None."""
        if isinstance(candidate, bool) or candidate is None:
            return None
        if isinstance(candidate, (int, float)):
            return self.numeric.get(float(candidate))
        text = str(candidate).strip().strip(_STRIP_CHARS)
        found = self.by_key.get(self._key(text))
        if found is not None:
            return found
        try:
            return self.numeric.get(float(text))
        except ValueError:
            return None

    def canonical(self, matched: str) -> str:
        return self.by_key[self._key(matched)]

    def letter_ok(self, text: str, start: int, end: int) -> bool:
        """A single-letter label counts only when it looks like an option: upper case, or bracketed,
        and not the article "a" / pronoun "I" inside a sentence."""
        matched = text[start:end]
        before = text[start - 1] if start > 0 else ""
        after = text[end] if end < len(text) else ""
        if before in "([*\"'`" or after in ")]*\"'`":
            return True
        if not matched.isupper():
            return False
        rest = text[end:end + 3]
        return after in ("", ".", ":", ",", "\n", ";", "!", "?") or not re.match(r"\s+[a-z]", rest)


def parse_answer(text: str | None, labels: dict[str, float], *, finish_reason: str | None = None,
                 pattern: str | None = None) -> ParseResult:
    """Parse ``text`` into one of ``labels`` (label -> numeric value). See the module docstring."""
    allowed = _Labels(labels)
    raw = text or ""
    if not raw.strip():
        return ParseResult(None, None, TRUNCATED if finish_reason in ("length", "max_tokens") else EMPTY)
    body = _unfence(raw).strip()

    structured = _from_json(body, allowed)
    if structured is not None:
        label, rationale, had_label_key = structured
        if label is not None:
            return _ok(label, allowed, rationale)
        if had_label_key:
            return ParseResult(None, None, UNPARSEABLE, rationale)

    if pattern:
        match = re.search(pattern, body, re.IGNORECASE | re.MULTILINE)
        if match:
            if match.re.groups < 1:
                raise ValueError(f"answer pattern {pattern!r} needs one capturing group")
            label = allowed.lookup(match.group(1))
            if label is not None:        # the rationale is what the pattern's match leaves ("Rating: 4" goes)
                return _ok(label, allowed, _rest(body, match.start(), match.end()))

    for stage in (_whole, _last_marker, _final_line, _leading, _option_letters):
        found = stage(body, allowed)
        if found is not None:
            label, start, end = found
            return _ok(label, allowed, _rest(body, start, end))

    if finish_reason in ("content_filter", "refusal") or _REFUSAL.search(body):
        return ParseResult(None, None, REFUSED)

    single = _single_mention(body, allowed)
    if single is not None:
        label, start, end = single
        return _ok(label, allowed, _rest(body, start, end))
    if finish_reason in ("length", "max_tokens"):
        return ParseResult(None, None, TRUNCATED)
    return ParseResult(None, None, UNPARSEABLE)


def expected_value(label_logprobs: dict[str, float], labels: dict[str, float]) -> tuple[dict[str, float], float]:
    """Normalise ``label_logprobs`` over the allowed ``labels`` and weight their values.

    Returns ({label: probability}, sum of probability * value). Labels outside ``labels`` are ignored;
    a ValueError names the problem when no allowed label has a finite log-probability."""
    usable = {label: lp for label, lp in label_logprobs.items()
              if label in labels and lp is not None and not math.isnan(lp) and lp != -math.inf}
    if not usable:
        raise ValueError(f"no log-probability for any allowed label {sorted(labels)}; got {sorted(label_logprobs)}")
    top = max(usable.values())
    weights = {label: math.exp(lp - top) for label, lp in usable.items()}
    total = sum(weights.values())
    probs = {label: w / total for label, w in weights.items()}
    weighted = sum(p * float(labels[label]) for label, p in probs.items())
    return probs, weighted


# --- stages -----------------------------------------------------------------------------------------

def _ok(label: str, allowed: _Labels, rationale: str | None) -> ParseResult:
    return ParseResult(label, float(allowed.values[label]) if allowed.values[label] is not None else None,
                       OK, rationale or None)


def _unfence(text: str) -> str:
    fenced = _FENCE.findall(text)
    if len(fenced) == 1:
        return str(fenced[0])
    return text


def _from_json(body: str, allowed: _Labels) -> tuple[str | None, str | None, bool] | None:
    """(label, rationale, had a label key) from a JSON object in the answer, or None without one."""
    start = body.find("{")
    if start < 0:
        return None
    decoder = json.JSONDecoder()
    obj = None
    for candidate_start in [start] + [m.start() for m in re.finditer(r"\{", body[start + 1:])]:
        index = candidate_start if candidate_start == start else candidate_start + start + 1
        try:
            obj, _ = decoder.raw_decode(body, index)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            break
        obj = None
    if not isinstance(obj, dict):
        return None
    keys = {str(k).casefold(): k for k in obj}
    rationale = None
    for key in _RATIONALE_KEYS:
        if key in keys and isinstance(obj[keys[key]], str):
            rationale = obj[keys[key]].strip() or None
            break
    for key in _LABEL_KEYS:
        if key in keys:
            return allowed.lookup(obj[keys[key]]), rationale, True
    return None


def _whole(body: str, allowed: _Labels) -> tuple[str, int, int] | None:
    label = allowed.lookup(body)
    if label is None:
        return None
    return label, 0, len(body)


def _last_marker(body: str, allowed: _Labels) -> tuple[str, int, int] | None:
    found = None
    for match in allowed.marker.finditer(body):
        start, end = match.span(1)
        if allowed.canonical(match.group(1)) in allowed.letters and not allowed.letter_ok(body, start, end):
            continue
        negated = _NEGATION.search(body[max(0, match.start() - 30):match.start()])
        if negated or _is_scale_echo(body, start, end, allowed):
            continue                         # "I cannot rate this as unsafe", "wouldn't give it a 5"
        found = (allowed.canonical(match.group(1)), match.start(), end)
    return found


def _final_line(body: str, allowed: _Labels) -> tuple[str, int, int] | None:
    lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    last = lines[-1]
    label = allowed.lookup(last)
    if label is None:
        return None
    start = body.rfind(last)
    return label, start, start + len(last)


_LEADING_SEP = re.compile(r"\s*(?:$|[\n.\-–—:,;)!/]|\s+(?:because|since|as|out\s+of|-)\b)", re.IGNORECASE)


def _leading(body: str, allowed: _Labels) -> tuple[str, int, int] | None:
    match = re.match(rf"[\s*_\"'`“‘(\[]*({allowed.alternation})(?![\w])", body, allowed.flags)
    if match is None:
        return None
    start, end = match.span(1)
    if allowed.canonical(match.group(1)) in allowed.letters and not allowed.letter_ok(body, start, end):
        return None
    after = body[end:].lstrip("*_\"'`”’)]")
    if not _LEADING_SEP.match(after):
        return None
    if _is_scale_echo(body, start, end, allowed):
        return None
    return allowed.canonical(match.group(1)), start, end


def _option_letters(body: str, allowed: _Labels) -> tuple[str, int, int] | None:
    if not allowed.letters:
        return None
    letters = "".join(sorted(allowed.letters))
    flags = re.IGNORECASE if not allowed.case_sensitive else 0
    found: dict[str, tuple[int, int]] = {}
    for regex, fl in ((rf"\(([{letters}])\)", flags), (rf"(?<![\w(])([{letters}])\)", 0),
                      (rf"(?<![\w])([{letters}])\.(?=\s|$)", 0), (rf"\*\*([{letters}])\*\*", flags)):
        for match in re.finditer(regex, body, fl):
            label = allowed.canonical(match.group(1))
            found.setdefault(label, match.span(1))
    if len(found) != 1:
        return None
    label, (start, end) = next(iter(found.items()))
    return label, start, end


def _single_mention(body: str, allowed: _Labels) -> tuple[str, int, int] | None:
    mentions: dict[str, tuple[int, int]] = {}
    for match in allowed.mention.finditer(body):
        start, end = match.span(1)
        if allowed.canonical(match.group(1)) in allowed.letters and not allowed.letter_ok(body, start, end):
            continue
        if _is_scale_echo(body, start, end, allowed):
            continue
        if _NEGATION.search(body[max(0, start - 30):start]):
            return None                      # "not unsafe": a negated label is no answer we can trust
        mentions.setdefault(allowed.canonical(match.group(1)), (start, end))
    if len(mentions) != 1:
        return None
    label, (start, end) = next(iter(mentions.items()))
    return label, start, end


def _is_scale_echo(body: str, start: int, end: int, allowed: _Labels) -> bool:
    """A label mention that describes the scale, not an answer: "1 = safe", "1 to 5", "from 1-5",
    the "5" of "3 out of 5" / "3/5"."""
    after = body[end:end + 24]
    before = body[max(0, start - 24):start]
    alt = allowed.alternation
    if re.match(r"\s*=", after):
        return True
    if re.match(rf"\s*(?:-|–|to|through)\s*({alt})(?![\w])", after, allowed.flags) and not re.match(
            r"\s*-\s+\S", after):
        return True
    if re.search(r"(?:from|between|of)\s+$", before, re.IGNORECASE) and re.match(
            rf"\s*(?:-|–|to|and)\s*({alt})", after, allowed.flags):
        return True
    return bool(re.search(r"(?:/|out\s+of|scale\s+of|(?:-|–|to|and)\s*)\s*$", before, re.IGNORECASE) and re.search(
        rf"(?:\b({alt})\s*(?:/|out\s+of|-|–|to|and)\s*|(?:from|between|of)\s+({alt})\s*(?:-|–|to|and)\s*)$",
        before, allowed.flags | re.IGNORECASE))


def _rest(body: str, start: int, end: int) -> str | None:
    rest = (body[:start] + body[end:]).strip()
    rest = re.sub(r"^(?:rationale|reasoning|explanation)\s*:\s*", "", rest, flags=re.IGNORECASE)
    rest = rest.lstrip(" \t\r\n*_-–—:.,;)\"'`").rstrip(" \t\r\n*_-–—:(\"'`")
    return rest or None
