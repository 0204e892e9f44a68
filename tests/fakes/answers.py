"""What the fake servers answer: a reproducible label per prompt, a label distribution, a toy tokenizer.

The label is derived from a hash of the prompt (and the request's seed and choice index), so answers
vary across items but are the same every run. ``label_distribution`` is the distribution the fake
"model" samples from; the OpenAI fake reports it through ``logprobs`` so tests can check that a
provider recovers it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

DEFAULT_LABELS = ["1", "2", "3", "4", "5"]
FAKE_RATIONALE = "The fake model looked at the conversation and picked a label."
_TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


def tokenize(text: str) -> list[str]:
    """A toy tokenizer: words and punctuation runs with their leading whitespace ("".join(tokens) == text)."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))


def prompt_key(messages: list[dict[str, Any]], system: Any = None) -> str:
    """A canonical text of the conversation (content blocks flattened), the input to the answer hash."""
    parts: list[str] = []
    if system:
        parts.append("system:" + content_text(system))
    for message in messages:
        parts.append(f"{message.get('role', '')}:{content_text(message.get('content', ''))}")
    return "\n".join(parts)


def content_text(content: Any) -> str:
    """Text of an OpenAI/Anthropic content field: a string, or a list of blocks with "text"."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") if isinstance(block, dict) else str(block) for block in content)
    return "" if content is None else str(content)


def _unit(*parts: Any) -> float:
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_label(prompt: str, labels: list[str], *, seed: Any = None, index: int = 0) -> str:
    """The label the fake model answers for this prompt: the argmax of ``label_distribution``."""
    distribution = label_distribution(prompt, labels, seed=seed, index=index)
    return max(distribution, key=lambda label: distribution[label])


def label_distribution(prompt: str, labels: list[str], *, seed: Any = None, index: int = 0) -> dict[str, float]:
    """A reproducible probability distribution over ``labels`` for this prompt; sums to 1."""
    if not labels:
        raise ValueError("label_distribution needs at least one label")
    chosen = labels[int(_unit("pick", prompt, seed, index) * len(labels)) % len(labels)]
    if len(labels) == 1:
        return {chosen: 1.0}
    top = 0.5 + 0.4 * _unit("top", prompt, seed, index)
    weights = {label: 0.05 + _unit("w", prompt, seed, index, label) for label in labels if label != chosen}
    total = sum(weights.values())
    distribution = {label: (1.0 - top) * w / total for label, w in weights.items()}
    distribution[chosen] = top
    return {label: distribution[label] for label in labels}


def snapshot_name(model: str, date: str) -> str:
    """The dated snapshot a fake serves for ``model``: "gpt-4o-mini" -> "gpt-4o-mini-2024-07-18";
    "claude-3-5-haiku-latest" -> "claude-3-5-haiku-20241022"; dated names are echoed unchanged."""
    if _DATE_SUFFIX.search(model):
        return model
    model = model.removesuffix("-latest")
    return f"{model}-{date}"


def enum_from_schema(schema: Any) -> tuple[list[str] | None, list[str]]:
    """(allowed labels, property order) from a JSON schema with a "label" property carrying an enum."""
    if not isinstance(schema, dict):
        return None, []
    properties = schema.get("properties") or {}
    order = list(properties)
    label_schema = properties.get("label") or {}
    enum = label_schema.get("enum")
    if isinstance(enum, list) and enum:
        return [str(x) for x in enum], order
    return None, order


def structured_answer(label: str, order: list[str]) -> dict[str, str]:
    """The JSON object answer, keys in the schema's property order (rationale first when it comes first)."""
    answer: dict[str, str] = {}
    for key in order or ["label"]:
        if key == "label":
            answer["label"] = label
        elif key in ("rationale", "reasoning", "explanation"):
            answer[key] = FAKE_RATIONALE
    answer.setdefault("label", label)
    return answer


def structured_text(label: str, order: list[str]) -> str:
    return json.dumps(structured_answer(label, order))


def logprob(p: float) -> float:
    return math.log(p) if p > 0 else -9999.0
