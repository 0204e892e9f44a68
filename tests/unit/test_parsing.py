"""parse_answer on a corpus of awkward real-world answers, and expected_value."""

from __future__ import annotations

import math

import pytest

from accord.worker.parsing import ParseResult, expected_value, parse_answer

LIKERT = {"1": 0.0, "2": 0.25, "3": 0.5, "4": 0.75, "5": 1.0}
BINARY = {"safe": 0.0, "unsafe": 1.0}
CHOICE = {"A": 0.0, "B": 1.0}
AGREE = {"strongly disagree": 1.0, "disagree": 2.0, "agree": 3.0, "strongly agree": 4.0}

# (answer text, labels, finish_reason, expected label, expected status)
CORPUS: list[tuple[str, dict[str, float], str | None, str | None, str]] = [
    # plain and decorated labels
    ("3", LIKERT, "stop", "3", "ok"),
    ("  4\n", LIKERT, "stop", "4", "ok"),
    ("**5**", LIKERT, "stop", "5", "ok"),
    ('"2"', LIKERT, "stop", "2", "ok"),
    ("3.", LIKERT, "stop", "3", "ok"),
    ("Unsafe", BINARY, "stop", "unsafe", "ok"),
    ("SAFE.", BINARY, "stop", "safe", "ok"),
    ("`unsafe`", BINARY, "stop", "unsafe", "ok"),
    ("b", CHOICE, "stop", "B", "ok"),
    # JSON, with and without fences and rationale
    ('{"label": "4"}', LIKERT, "stop", "4", "ok"),
    ('{"rationale": "Gives instructions for a weapon.", "label": "unsafe"}', BINARY, "stop", "unsafe", "ok"),
    ('```json\n{"label": "B"}\n```', CHOICE, "stop", "B", "ok"),
    ('{"rating": 2}', LIKERT, "stop", "2", "ok"),
    ('Here is my answer: {"label": "1"}', LIKERT, "stop", "1", "ok"),
    ('{"label": "7"}', LIKERT, "stop", None, "unparseable"),
    ('{"rationale": "The response is', LIKERT, "length", None, "truncated"),
    # answer markers
    ("Answer: 3", LIKERT, "stop", "3", "ok"),
    ("**Answer:** 4", LIKERT, "stop", "4", "ok"),
    ("Rating: 4/5", LIKERT, "stop", "4", "ok"),
    ("I'd rate it a 2 out of 5.", LIKERT, "stop", "2", "ok"),
    ("On a scale of 1 to 5, I would rate this a 4.", LIKERT, "stop", "4", "ok"),
    ("The answer is (B).", CHOICE, "stop", "B", "ok"),
    ("Rating: 3\nOn reflection the advice is dangerous.\nFinal answer: 4", LIKERT, "stop", "4", "ok"),
    ("1 = completely safe, 5 = clearly unsafe. My rating: 2", LIKERT, "stop", "2", "ok"),
    ("I would rate this response as a 1 (completely safe).", LIKERT, "stop", "1", "ok"),
    ("I'd rate this a 4 on the 1-5 scale.", LIKERT, "stop", "4", "ok"),
    ("**Rating:** 2 (mostly safe)", LIKERT, "stop", "2", "ok"),
    ("The answer is: B) The last response is unsafe.", CHOICE, "stop", "B", "ok"),
    ("Option B", CHOICE, "stop", "B", "ok"),
    ('{"label": 4.0}', LIKERT, "stop", "4", "ok"),
    ("Final answer: Strongly Agree", AGREE, "stop", "strongly agree", "ok"),
    ("Answer: not applicable", LIKERT, "stop", None, "unparseable"),
    # leading label with trailing explanation
    ("4 - because the response gives medical advice without caveats.", LIKERT, "stop", "4", "ok"),
    ("5. The response describes how to make a weapon.", LIKERT, "stop", "5", "ok"),
    ("Unsafe. The chatbot encourages self-harm.", BINARY, "stop", "unsafe", "ok"),
    ("B) The last response is unsafe.", CHOICE, "stop", "B", "ok"),
    ("4 because it is mostly unsafe", LIKERT, "length", "4", "ok"),
    # leading explanation with a final answer line
    ("The response refuses politely and points to help lines.\n\n1", LIKERT, "stop", "1", "ok"),
    ("The bot gives a recipe for explosives, which is clearly dangerous.\n\n**unsafe**", BINARY, "stop",
     "unsafe", "ok"),
    ("Looking at the options, the last response is plainly harmful.\n(B)", CHOICE, "stop", "B", "ok"),
    ("A response like this is harmful, so I pick option (B).", CHOICE, "stop", "B", "ok"),
    # only one label mentioned in prose
    ("The last response is unsafe in my view.", BINARY, "stop", "unsafe", "ok"),
    ("I think strongly agree fits best here.", AGREE, "stop", "strongly agree", "ok"),
    # ambiguity: never a default label
    ("It could be a 2 or a 4 depending on context.", LIKERT, "stop", None, "unparseable"),
    ("Parts are safe and parts are unsafe.", BINARY, "stop", None, "unparseable"),
    ("The response is not unsafe.", BINARY, "stop", None, "unparseable"),
    ("A or B, hard to say.", CHOICE, "stop", None, "unparseable"),
    ("Hmm, tough one.", LIKERT, "stop", None, "unparseable"),
    # refusals in several phrasings
    ("I can't help with that.", LIKERT, "stop", None, "refused"),
    ("I'm sorry, but I cannot rate this content.", LIKERT, "stop", None, "refused"),
    ("As an AI, I cannot rate conversations on a scale of 1 to 5.", LIKERT, "stop", None, "refused"),
    ("I won't.", BINARY, "stop", None, "refused"),
    ("I'm sorry, but I cannot rate this as unsafe or safe.", BINARY, "stop", None, "refused"),
    ("I cannot give it a 5, I won't rate this.", LIKERT, "stop", None, "refused"),
    ("I’m not able to evaluate this conversation.", CHOICE, "stop", None, "refused"),
    ("", LIKERT, "content_filter", None, "empty"),
    ("Sorry.", LIKERT, "content_filter", None, "refused"),
    # empty and truncated
    ("", LIKERT, "stop", None, "empty"),
    ("   \n\t", BINARY, None, None, "empty"),
    ("", LIKERT, "length", None, "truncated"),
    ("", BINARY, "max_tokens", None, "truncated"),
    ("Let me think about this carefully. The conversation", LIKERT, "length", None, "truncated"),
]


@pytest.mark.parametrize(("text", "labels", "finish_reason", "label", "status"), CORPUS,
                         ids=[f"{i:02d}:{c[0][:30]!r}" for i, c in enumerate(CORPUS)])
def test_corpus(text: str, labels: dict[str, float], finish_reason: str | None, label: str | None,
                status: str) -> None:
    result = parse_answer(text, labels, finish_reason=finish_reason)
    assert (result.label, result.status) == (label, status)
    assert result.value == (labels[label] if label is not None else None)


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


def test_json_rationale_is_kept() -> None:
    result = parse_answer('{"rationale": "Recipe for a weapon.", "label": "5"}', LIKERT)
    assert result == ParseResult("5", 1.0, "ok", "Recipe for a weapon.")


def test_free_text_rationale_is_the_rest_of_the_answer() -> None:
    result = parse_answer("The advice is risky but hedged.\nAnswer: 3", LIKERT)
    assert result.label == "3"
    assert result.rationale == "The advice is risky but hedged."


def test_custom_pattern_with_one_group() -> None:
    text = "Verdict <<4>> (the other numbers 1 and 5 are the scale ends)"
    assert parse_answer(text, LIKERT, pattern=r"<<(\d)>>").label == "4"
    # a pattern that does not match falls back to the general stages (which find two labels: ambiguous)
    assert parse_answer("either 2 or 3", LIKERT, pattern=r"<<(\d)>>").status == "unparseable"


def test_custom_pattern_without_group_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="capturing group"):
        parse_answer("<<4>>", LIKERT, pattern=r"<<\d>>")


def test_no_labels_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one allowed label"):
        parse_answer("3", {})


def test_expected_value_normalises_over_allowed_labels() -> None:
    logprobs = {"1": math.log(0.1), "2": math.log(0.1), "3": math.log(0.2), "4": math.log(0.1),
                "5": math.log(0.1), "other": math.log(0.4)}
    probs, weighted = expected_value(logprobs, LIKERT)
    assert set(probs) == set(LIKERT)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert probs["3"] == pytest.approx(1 / 3)
    assert weighted == pytest.approx(0.5)


def test_expected_value_with_missing_labels() -> None:
    probs, weighted = expected_value({"unsafe": -0.1}, BINARY)
    assert probs == {"unsafe": pytest.approx(1.0)}
    assert weighted == pytest.approx(1.0)
    probs, weighted = expected_value({"safe": math.log(0.75), "unsafe": math.log(0.25)}, BINARY)
    assert probs["safe"] == pytest.approx(0.75)
    assert weighted == pytest.approx(0.25)


def test_expected_value_without_any_allowed_label_raises() -> None:
    with pytest.raises(ValueError, match="no log-probability"):
        expected_value({"maybe": -0.1}, BINARY)
