"""Synthetic data in the input-frame contract, for tests, simulations and the benchmark.

Generative model: item i has a latent harm z_i ~ N(0, 1). Group g shifts it by d_gi =
``group_effect`` * e_gi (e ~ N(0, 1), independent per group and item), so groups genuinely disagree
item by item when ``group_effect`` > 0. Annotator j (group g(j), bias b_j ~ N(0, 0.3)) sees
z_i + d_{g(j),i} + b_j + N(0, ``annotator_noise``) and answers 1 (Yes), 0.5 (Unsure) or 0 (No) by
thresholds at +-0.4. An LLM rater (model m, template t) sees z_i + N(0, noise_m) per sample and
answers likewise; its ``weighted_value`` is the logistic expectation of its latent. A persona rater
for group g adds ``persona_skill`` * d_gi.
"""

from __future__ import annotations

from itertools import product

import numpy as np
import pandas as pd

LABELS = {1.0: "Yes", 0.5: "Unsure", 0.0: "No"}


def _to_rating(latent: np.ndarray) -> np.ndarray:
    return np.where(latent > 0.4, 1.0, np.where(latent < -0.4, 0.0, 0.5))


def make_synthetic(
    n_items: int = 60,
    n_annotators: int = 30,
    attributes: dict[str, list[str]] | None = None,
    models: list[str] | None = None,
    templates: list[str] | None = None,
    n_samples: int = 3,
    group_effect: float = 0.0,
    effect_attribute: str = "gender",
    annotator_noise: float = 0.8,
    raters_per_item: int | None = None,
    personas: bool = False,
    persona_skill: float = 1.0,
    categories: list[str] | None = None,
    subject_models: list[str] | None = None,
    failure_rate: float = 0.02,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(human, annotators, llm, items) frames following the analysis input contract.

    ``raters_per_item`` makes the design sparse (each item rated by that many random annotators);
    templates named ``*_ab`` / ``*_ba`` share a family and differ in option order."""
    rng = np.random.default_rng(seed)
    attributes = attributes if attributes is not None else {"gender": ["Man", "Woman"],
                                                            "race": ["Asian", "Black", "White"]}
    models = models or ["model_a", "model_b"]
    templates = templates or ["direct", "mc_ab", "mc_ba"]
    item_ids = [f"i{i:04d}" for i in range(n_items)]
    ann_ids = [f"a{j:04d}" for j in range(n_annotators)]
    z = rng.normal(size=n_items)
    ann = pd.DataFrame({"annotator_id": ann_ids})
    codes: dict[str, np.ndarray] = {}
    for attr, values in attributes.items():
        codes[attr] = rng.integers(0, len(values), size=n_annotators)
        ann[attr] = [values[c] for c in codes[attr]]
    n_eff_groups = len(attributes.get(effect_attribute, ["_"]))
    shift = group_effect * rng.normal(size=(n_eff_groups, n_items))
    eff_codes = codes.get(effect_attribute, np.zeros(n_annotators, dtype=int))
    bias = rng.normal(0, 0.3, size=n_annotators)
    latent = (z[:, None] + shift[eff_codes].T + bias[None, :]
              + rng.normal(0, annotator_noise, size=(n_items, n_annotators)))
    ratings = _to_rating(latent)
    if raters_per_item is not None:
        keep = np.zeros_like(ratings, dtype=bool)
        for i in range(n_items):
            keep[i, rng.choice(n_annotators, size=raters_per_item, replace=False)] = True
        ratings = np.where(keep, ratings, np.nan)
    ii, jj = np.nonzero(np.isfinite(ratings))
    human = pd.DataFrame({"item_id": [item_ids[i] for i in ii], "annotator_id": [ann_ids[j] for j in jj],
                          "value": ratings[ii, jj]})

    rows = []
    personas_list: list[tuple[str, int | None]] = [("", None)]
    if personas and effect_attribute in attributes:
        personas_list += [(f"{effect_attribute}={v}", g) for g, v in enumerate(attributes[effect_attribute])]
    for mi, model in enumerate(models):
        noise = 0.4 + 0.3 * mi
        for template, (persona_key, g) in product(templates, personas_list):
            family = template.rsplit("_", 1)[0] if template.endswith(("_ab", "_ba")) else template
            order = template.rsplit("_", 1)[1] if template.endswith(("_ab", "_ba")) else ""
            base = z + (persona_skill * shift[g] if g is not None else 0.0)
            for s in range(n_samples):
                lat = base + rng.normal(0, noise, size=n_items)
                val = _to_rating(lat)
                weighted = 1.0 / (1.0 + np.exp(-2.0 * lat))
                fail = rng.random(n_items) < failure_rate
                for i in range(n_items):
                    ok = not fail[i]
                    rows.append((item_ids[i], model, template, s, val[i] if ok else np.nan,
                                 weighted[i] if ok else np.nan, LABELS[val[i]] if ok else None,
                                 "ok" if ok else "unparseable", persona_key, family, order))
    llm = pd.DataFrame(rows, columns=["item_id", "model", "template", "sample_index", "value",
                                      "weighted_value", "label", "parse_status", "persona_key",
                                      "template_family", "option_order"])
    items = pd.DataFrame({"item_id": item_ids})
    if categories:
        items["category"] = [categories[i % len(categories)] for i in range(n_items)]
    if subject_models:
        items["subject_model"] = [subject_models[i % len(subject_models)] for i in range(n_items)]
    items["expert_label"] = np.where(z > 0, "Yes", "No")
    return human, ann, llm, items
