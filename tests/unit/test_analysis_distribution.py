"""Jensen-Shannon distribution alignment."""

import numpy as np
import pytest
from accord.analysis.distribution import (
    human_distribution,
    jensen_shannon_per_item,
    label_distribution,
    mean_jensen_shannon,
)
from scipy.spatial import distance

DOMAIN = np.array([0.0, 0.5, 1.0])


def test_label_distribution_from_samples():
    p = label_distribution(np.array([0, 0, 0, 1, 1]), np.array([1.0, 1.0, 0.0, 0.4, np.nan]), 3, DOMAIN)
    np.testing.assert_allclose(p, [[1 / 3, 0, 2 / 3], [0, 1, 0], [0, 0, 0]])


def test_human_distribution():
    r = np.array([[0.0, 0.0, 1.0, np.nan], [np.nan] * 4])
    np.testing.assert_allclose(human_distribution(r, DOMAIN), [[2 / 3, 0, 1 / 3], [0, 0, 0]])


def test_jsd_bounds_and_reference():
    p = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5], [0, 0, 0]])
    q = np.array([[0.0, 0, 1], [0.5, 0.5, 0], [0.6, 0.3, 0.1], [1, 0, 0]])
    js = jensen_shannon_per_item(p, q)
    assert js[0] == pytest.approx(1.0)
    assert js[1] == pytest.approx(0.0)
    assert js[2] == pytest.approx(distance.jensenshannon(p[2], q[2], base=2) ** 2)
    assert np.isnan(js[3])
    mean, n = mean_jensen_shannon(p, q)
    assert n == 3
    assert mean == pytest.approx(np.mean(js[:3]))


def test_jsd_no_overlap_is_value_error():
    with pytest.raises(ValueError, match="no item"):
        mean_jensen_shannon(np.zeros((2, 3)), np.ones((2, 3)) / 3)
