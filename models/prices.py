"""The price table: USD per million tokens per provider and model (defaults in prices.yaml beside this file,
overridden by $ACCORD_HOME/prices.yaml, overridden by a campaign's ``price:``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from accord.models.settings import get_settings
from accord.models.yaml_loader import safe_load

DEFAULTS = Path(__file__).parent / "prices.yaml"


@dataclass(frozen=True)
class ModelPrice:
    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    batch_discount: float = 0.0
    source: str = "none"          # "campaign", "user table", "default table", or "none" (unknown: counted as free)


def _load(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    if not path.exists():
        return {}
    doc = safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a price table maps provider -> model -> prices")
    return doc


def price_table() -> dict[str, dict[str, dict[str, float]]]:
    table = _load(DEFAULTS)
    user = _load(get_settings().home / "prices.yaml")
    for provider, models in user.items():
        table.setdefault(provider, {}).update(models or {})
    return table


def lookup_price(provider: str, model: str) -> ModelPrice:
    """The table's price for a model id: exact match, else the longest prefix (dated snapshots)."""
    user = _load(get_settings().home / "prices.yaml").get(provider, {})
    table = price_table().get(provider, {})
    candidates = [k for k in table if model == k or model.startswith(k + "-") or model.startswith(k + "@")]
    if not candidates:
        return ModelPrice()
    key = max(candidates, key=len)
    p = table[key]
    return ModelPrice(input=float(p.get("input", 0.0)), output=float(p.get("output", 0.0)),
                      cached_input=p.get("cached_input"), batch_discount=float(p.get("batch_discount", 0.0)),
                      source="user table" if key in user else "default table")
