"""Datasets shipped inside the package: the DICES demo subset (see ``dices_demo/README.md``)."""

from __future__ import annotations

from pathlib import Path

DATASETS_DIR = Path(__file__).parent
DICES_DEMO_DIR = DATASETS_DIR / "dices_demo"
DICES_DEMO_SPEC = DICES_DEMO_DIR / "import.yaml"
