"""Regenerate the bundled demo dataset ``dices_demo/`` from the shared DICES-350 copy.

A deterministic subset: ``N_ITEMS`` items drawn with a fixed seed, stratified by ``expert_label`` (so about
half are ``Yes``), with every rating of all 123 raters on them; rows keep the source files' order.

    python -m accord.cli.datasets.make_dices_demo [--source DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
from collections import defaultdict
from pathlib import Path

N_ITEMS = 40
SEED = 350
ITEM_COLUMNS = ["item_id", "context", "response", "expert_label"]
RATING_COLUMNS = ["item_id", "rater_id", "Q_overall"]
OUT_DIR = Path(__file__).parent / "dices_demo"


def default_source() -> Path:
    """``$ACCORD_SHARED_DIR/datasets/dices350``, else ``shared/datasets/dices350`` beside the repository."""
    env = os.environ.get("ACCORD_SHARED_DIR")
    if env:
        return Path(env) / "datasets" / "dices350"
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "datasets" / "dices350"


def _read_csv(path: Path, columns: list[str]) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != columns:
            raise ValueError(f"{path}: expected columns {columns}, found {reader.fieldnames}")
        return list(reader)


def choose_items(items: list[dict[str, str]], n_items: int = N_ITEMS, seed: int = SEED) -> list[str]:
    """Item ids, stratified by expert label in proportion to the labels' shares (largest remainder)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for row in items:
        groups[row["expert_label"]].append(row["item_id"])
    labels = sorted(groups)
    exact = {label: n_items * len(groups[label]) / len(items) for label in labels}
    quota = {label: int(exact[label]) for label in labels}
    by_remainder = sorted(labels, key=lambda label: (-(exact[label] - quota[label]), label))
    for label in by_remainder[: n_items - sum(quota.values())]:
        quota[label] += 1
    rng = random.Random(seed)
    chosen: set[str] = set()
    for label in labels:
        chosen.update(rng.sample(sorted(groups[label], key=int), quota[label]))
    return [row["item_id"] for row in items if row["item_id"] in chosen]


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)


def make_demo(source: Path, out: Path = OUT_DIR, n_items: int = N_ITEMS, seed: int = SEED) -> tuple[int, int]:
    """Write ``items.csv``, ``ratings.csv`` and ``LICENSE`` of the subset into ``out``; (items, ratings)."""
    items = _read_csv(source / "items.csv", ITEM_COLUMNS)
    ratings = _read_csv(source / "ratings.csv", RATING_COLUMNS)
    chosen = set(choose_items(items, n_items, seed))
    out.mkdir(parents=True, exist_ok=True)
    kept_items = [row for row in items if row["item_id"] in chosen]
    kept_ratings = [row for row in ratings if row["item_id"] in chosen]
    _write_csv(out / "items.csv", ITEM_COLUMNS, kept_items)
    _write_csv(out / "ratings.csv", RATING_COLUMNS, kept_ratings)
    shutil.copyfile(source / "LICENSE", out / "LICENSE")
    return len(kept_items), len(kept_ratings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=None, help="folder with DICES-350 items.csv, ratings.csv"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    n_items, n_ratings = make_demo(args.source or default_source(), args.out)
    print(f"wrote {n_items} items and {n_ratings} ratings to {args.out}")


if __name__ == "__main__":
    main()
