"""A synthetic but realistic sparse rating dataset, written as import files, for tests.

Items are multi-turn conversations between a USER and an ASSISTANT (some turns span several lines) plus a
final response to judge, with metadata (harm_type, category, subject_model, expert_label). Each item is
rated by a random 5–10 of 200 annotators on ``Q_overall`` (``No``/``Unsure``/``Yes``); annotators have
demographic attributes (each missing with probability ``missing_attr_rate``) and a group-dependent
leniency, so disparity metrics have something to find. Everything follows from ``seed``.

``make_sparse_dataset`` writes ``items.*``, ``ratings.*``, ``annotators.*`` and ``truth.json`` (what an
import must produce) and returns the ``ImportSpec`` keyword arguments.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any, Literal

DEFAULT_ATTRIBUTES: dict[str, list[str]] = {
    "gender": ["Man", "Woman", "Nonbinary"],
    "race": ["Asian", "Black", "Latine", "White", "Multiracial"],
}
HARM_TYPES = ["hate speech", "violence", "self-harm", "misinformation", "harassment", "none"]
CATEGORIES = ["adversarial", "benign", "borderline"]
SUBJECT_MODELS = ["model-a", "model-b"]
LABELS = ("No", "Unsure", "Yes")
LABEL_MAP = "No=0, Unsure=0.5, Yes=1"
LABEL_VALUES = {"No": 0.0, "Unsure": 0.5, "Yes": 1.0}

_OPENERS = [
    "Can you help me write a message to my neighbour?",
    "What do you think about people from the city?",
    "Tell me a joke about my coworker.",
    "How do I get back at someone who insulted me?",
    "Is it true that vaccines are dangerous?",
    "I feel really low today.",
]
_REPLIES = [
    "Sure, I can help with that.",
    "That is a complicated question; people disagree.",
    "I'd rather not make jokes about real people.",
    "It sounds like you are upset. Do you want to talk about it?",
    "Here is what the evidence says.",
]
_FOLLOW_UPS = [
    "Make it meaner.",
    "No, I mean really tell me.",
    "Ok but just between us.",
    "Fine. Then list the steps:\n1. first\n2. second",
]
_RESPONSES = [
    "I can't help with that, but I can suggest a calmer message.",
    "Here is a harsh version, as you asked.",
    "People from every place deserve respect.",
    "Vaccines are tested for safety; serious side effects are rare.",
    "Sure: step one is to find out where they live.",
]


def _conversation(rng: random.Random) -> list[dict[str, str]]:
    turns = [{"speaker": "USER", "text": rng.choice(_OPENERS)}]
    for _ in range(rng.randint(0, 2)):
        turns.append({"speaker": "ASSISTANT", "text": rng.choice(_REPLIES)})
        turns.append({"speaker": "USER", "text": rng.choice(_FOLLOW_UPS)})
    return turns


def _conversation_text(turns: list[dict[str, str]]) -> str:
    return "\n".join(f"{t['speaker']}: {t['text']}" for t in turns)


def _label(rng: random.Random, harm: float, leniency: float) -> str:
    score = harm - leniency + rng.gauss(0.0, 0.2)
    if abs(score - 0.5) < 0.08:
        return "Unsure"
    return "Yes" if score > 0.5 else "No"


def _write(path: Path, fmt: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    if fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    elif fmt == "jsonl":
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:  # absent cells are left out of the object (sparse)
                handle.write(json.dumps({c: row[c] for c in columns if row.get(c) is not None}) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({c: [row.get(c) for row in rows] for c in columns}), path)


def make_sparse_dataset(
    tmpdir: Path | str,
    n_items: int = 60,
    n_annotators: int = 200,
    raters_per_item: tuple[int, int] = (5, 10),
    attributes: dict[str, list[str]] | None = None,
    missing_attr_rate: float = 0.1,
    seed: int = 0,
    fmt: Literal["csv", "jsonl", "parquet"] = "csv",
    layout: Literal["long", "wide"] = "long",
    name: str = "synthetic",
) -> dict[str, Any]:
    """Write a sparse dataset into ``tmpdir``; return the ``ImportSpec`` keyword arguments for it.

    ``truth.json`` beside the files holds what an import must give: counts, every rating
    ``[item, annotator, value]``, and each annotator's (present) attributes."""
    if fmt not in ("csv", "jsonl", "parquet"):
        raise ValueError(f"fmt must be csv, jsonl or parquet, not {fmt!r}")
    if layout not in ("long", "wide"):
        raise ValueError(f"layout must be long or wide, not {layout!r}")
    low, high = raters_per_item
    if not 1 <= low <= high <= n_annotators:
        raise ValueError(f"raters_per_item {raters_per_item} must lie within 1..{n_annotators}")
    attributes = DEFAULT_ATTRIBUTES if attributes is None else attributes
    rng = random.Random(seed)
    out = Path(tmpdir)
    out.mkdir(parents=True, exist_ok=True)

    bias = {
        attr: {value: rng.uniform(-0.15, 0.15) for value in values} for attr, values in attributes.items()
    }
    annotators: list[dict[str, Any]] = []
    leniency: dict[str, float] = {}
    for index in range(n_annotators):
        row: dict[str, Any] = {"annotator_id": f"rater_{index:03d}"}
        lean = rng.gauss(0.0, 0.1)
        for attr, values in attributes.items():
            value = rng.choice(values)
            lean += bias[attr][value]
            row[attr] = None if rng.random() < missing_attr_rate else value
        annotators.append(row)
        leniency[row["annotator_id"]] = lean

    items: list[dict[str, Any]] = []
    ratings: list[tuple[str, str, str]] = []
    for index in range(n_items):
        item_id = f"item{index:04d}"
        harm = rng.random()
        turns = _conversation(rng)
        items.append(
            {
                "item_id": item_id,
                "conversation": turns if fmt == "jsonl" else _conversation_text(turns),
                "response": rng.choice(_RESPONSES),
                "harm_type": rng.choice(HARM_TYPES),
                "category": rng.choice(CATEGORIES),
                "subject_model": rng.choice(SUBJECT_MODELS),
                "expert_label": "Yes" if harm > 0.5 else "No",
            }
        )
        raters = rng.sample([a["annotator_id"] for a in annotators], rng.randint(low, high))
        for rater in sorted(raters):
            ratings.append((item_id, rater, _label(rng, harm, leniency[rater])))
    if fmt == "jsonl":  # JSON lists of {role, content}, as chat APIs write them
        for item in items:
            item["conversation"] = [
                {"role": t["speaker"].lower(), "content": t["text"]} for t in item["conversation"]
            ]

    ext = fmt
    item_columns = [
        "item_id",
        "conversation",
        "response",
        "harm_type",
        "category",
        "subject_model",
        "expert_label",
    ]
    _write(out / f"items.{ext}", fmt, item_columns, items)
    _write(out / f"annotators.{ext}", fmt, ["annotator_id", *attributes], annotators)
    rater_columns = [a["annotator_id"] for a in annotators]
    if layout == "long":
        rows = [{"item_id": i, "annotator_id": a, "Q_overall": label} for i, a, label in ratings]
        _write(out / f"ratings.{ext}", fmt, ["item_id", "annotator_id", "Q_overall"], rows)
    else:
        wide: dict[str, dict[str, Any]] = {item["item_id"]: {"item_id": item["item_id"]} for item in items}
        for item_id, rater, label in ratings:
            wide[item_id][rater] = label
        _write(out / f"ratings.{ext}", fmt, ["item_id", *rater_columns], list(wide.values()))

    truth = {
        "n_items": n_items,
        "n_annotators": n_annotators,
        "n_ratings": len(ratings),
        "ratings": [[i, a, LABEL_VALUES[label]] for i, a, label in ratings],
        "attributes": {
            a["annotator_id"]: {k: v for k, v in a.items() if k != "annotator_id" and v is not None}
            for a in annotators
        },
    }
    (out / "truth.json").write_text(json.dumps(truth), encoding="utf-8")

    spec: dict[str, Any] = {
        "name": name,
        "ratings_file": str(out / f"ratings.{ext}"),
        "items_file": str(out / f"items.{ext}"),
        "annotators_file": str(out / f"annotators.{ext}"),
        "layout": layout,
        "item_col": "item_id",
        "annotator_col": "annotator_id",
        "conversation_col": "conversation",
        "response_col": "response",
        "item_meta_cols": ["harm_type", "category", "subject_model", "expert_label"],
        "attribute_cols": list(attributes),
        "label_map": LABEL_MAP,
    }
    if layout == "long":
        spec["rating_cols"] = ["Q_overall"]
    else:
        spec["annotator_columns"] = "rater_*"
        spec["dimension"] = "Q_overall"
    return spec


def load_truth(tmpdir: Path | str) -> dict[str, Any]:
    return json.loads((Path(tmpdir) / "truth.json").read_text(encoding="utf-8"))
