"""Two per-item vectors paired for a metric: floats of one shape, and the items that both have."""

from __future__ import annotations

import numpy as np


def paired_floats(x: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` and ``y`` as float arrays and the mask of items finite in both; ``what`` names the pair in the
    error when their shapes differ."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"{what} differ in shape: {a.shape} vs {b.shape}")
    return a, b, np.isfinite(a) & np.isfinite(b)
