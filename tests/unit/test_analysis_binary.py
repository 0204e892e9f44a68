"""Binary views and majority labels."""

import numpy as np
import pandas as pd
import pytest
from accord.analysis.binary import binarise, binary_scores, majority_labels
from accord.analysis.frames import binary_expert_labels

NAN = np.nan


def test_binary_scores_hand_computed():
    pred = np.array([1, 1, 0, 0, 1, NAN, 0], dtype=float)
    ref = np.array([1, 0, 0, 1, 1, 1, NAN], dtype=float)
    res = binary_scores(pred, ref)
    # pairs: (1,1) (1,0) (0,0) (0,1) (1,1): tp=2 fp=1 fn=1 tn=1
    assert res.n == 5
    assert res.accuracy == pytest.approx(3 / 5)
    assert res.precision == pytest.approx(2 / 3)
    assert res.recall == pytest.approx(2 / 3)
    assert res.f1 == pytest.approx(2 / 3)


def test_no_predicted_positive_gives_nan_precision():
    res = binary_scores(np.zeros(4), np.array([0, 1, 0, 1.0]))
    assert np.isnan(res.precision)
    assert res.recall == 0.0
    assert res.f1 == 0.0


def test_binary_scores_reject_non_binary_and_empty():
    with pytest.raises(ValueError, match="0/1"):
        binary_scores(np.array([0.5, 1.0]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="no item"):
        binary_scores(np.array([NAN]), np.array([1.0]))


def test_binarise_threshold_inclusive():
    np.testing.assert_array_equal(binarise(np.array([0.49, 0.5, 0.9, NAN])), [0, 1, 1, NAN])


def test_majority_label_with_tie_break_to_mean():
    ratings = np.array([
        [1.0, 1.0, 0.0, NAN],  # mode 1
        [0.0, 1.0, 0.5, 0.5],  # mode 0.5
        [0.0, 1.0, 1.0, 0.0],  # tie 0/1, mean 0.5 -> equidistant -> smaller (0)
        [0.0, 0.0, 0.5, 0.5],  # tie 0/0.5, mean 0.25 -> equidistant -> 0
        [0.5, 1.0, 1.0, 0.5],  # tie 0.5/1, mean 0.75 -> 0.5
        [NAN, NAN, NAN, NAN],
    ])
    np.testing.assert_array_equal(majority_labels(ratings), [1.0, 0.5, 0.0, 0.0, 0.5, NAN])


def test_expert_label_mapping():
    labels = pd.Series(["Yes", "no", "unsafe", "Safe", 1, 0, "maybe", None, np.nan, "TRUE"])
    np.testing.assert_array_equal(binary_expert_labels(labels),
                                  [1, 0, 1, 0, 1, 0, NAN, NAN, NAN, 1])
