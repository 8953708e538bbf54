"""Tests for mrs_jax.metrics, on a hand-checked example."""

import math

import numpy as np
import pytest

from mrs_jax.rows import _metrics as metrics

# Practical-mode rows, written by hand. label / prediction / radius / covered:
ROWS = [
    # correct, covered, radius 3.0 -> counts for R <= 3.0
    dict(
        index=0,
        label=1,
        prediction=1,
        radius=3.0,
        certified=True,
        covered=True,
        clean_prediction=1,
    ),
    # correct but the mask misses the patch -> never certified
    dict(
        index=1,
        label=2,
        prediction=2,
        radius=5.0,
        certified=True,
        covered=False,
        clean_prediction=2,
    ),
    # abstain (prediction -1, radius 0) -> wrong everywhere
    dict(
        index=2,
        label=0,
        prediction=-1,
        radius=0.0,
        certified=False,
        covered=True,
        clean_prediction=0,
        abstain_reason="certify_abstain",
    ),
    # wrong class with a large radius -> never certified
    dict(
        index=3,
        label=3,
        prediction=4,
        radius=9.0,
        certified=True,
        covered=True,
        clean_prediction=3,
    ),
    # correct, covered, radius 8.0 -> counts for R <= 8.0
    dict(
        index=4,
        label=5,
        prediction=5,
        radius=8.0,
        certified=True,
        covered=True,
        clean_prediction=1,
    ),
]


def test_hand_checked_example():
    # prediction == label for rows 0, 1, 4 -> 3 of 5.
    assert metrics.empirical_accuracy(ROWS) == pytest.approx(3 / 5)
    # clean_prediction == label for rows 0, 1, 2, 3 -> 4 of 5.
    assert metrics.clean_accuracy(ROWS) == pytest.approx(4 / 5)
    # certified: rows 0 (r=3) and 4 (r=8) only.
    assert metrics.certified_accuracy(ROWS, 0.0) == pytest.approx(2 / 5)
    assert metrics.certified_accuracy(ROWS, 3.0) == pytest.approx(2 / 5)
    assert metrics.certified_accuracy(ROWS, 3.5) == pytest.approx(1 / 5)
    assert metrics.certified_accuracy(ROWS, 8.0) == pytest.approx(1 / 5)
    assert metrics.certified_accuracy(ROWS, 8.01) == 0.0
    np.testing.assert_allclose(
        metrics.accuracy_curve(ROWS, [0.0, 4.0, 10.0]), [0.4, 0.2, 0.0]
    )


def test_modes_without_patch_do_not_need_coverage():
    # Centre / Grad-CAM rows: covered None or absent; clean accuracy = prediction.
    rows = [
        dict(index=0, label=1, prediction=1, radius=2.0, certified=True, covered=None),
        dict(index=1, label=0, prediction=0, radius=1.0, certified=True),
        dict(index=2, label=0, prediction=-1, radius=0.0, certified=False),
        dict(index=3, label=2, prediction=1, radius=4.0, certified=True),
    ]
    assert metrics.clean_accuracy(rows) == pytest.approx(2 / 4)
    assert metrics.empirical_accuracy(rows) == pytest.approx(2 / 4)
    np.testing.assert_allclose(
        metrics.accuracy_curve(rows, [0.0, 1.5, 2.0, 2.5]), [0.5, 0.25, 0.25, 0.0]
    )


def test_mixed_clean_prediction_rejected():
    rows = [ROWS[0], dict(index=9, label=1, prediction=1, radius=1.0, certified=True)]
    with pytest.raises(ValueError, match="clean_prediction"):
        metrics.clean_accuracy(rows)


@pytest.mark.parametrize(
    "rows, error",
    [
        ([], ValueError),
        ([dict(label=1, radius=1.0)], ValueError),
        ([dict(label=1, prediction=1.0, radius=1.0)], TypeError),
        ([dict(label=-1, prediction=1, radius=1.0)], ValueError),
        ([dict(label=1, prediction=1, radius=-1.0)], ValueError),
        ([dict(label=1, prediction=1, radius=1.0, certified=1)], TypeError),
        ([dict(label=1, prediction=1, radius=1.0)], ValueError),  # CERTIFY ran?
        (
            [dict(label=1, prediction=1, radius=1.0, certified=True, covered="yes")],
            TypeError,
        ),
    ],
)
def test_bad_rows(rows, error):
    with pytest.raises(error):
        metrics.certified_accuracy(rows, 0.0)


def test_a_row_counts_as_certified_only_where_certify_returned_its_label():
    # Correct and covered, but CERTIFY did not run (or abstained on the label).
    uncertified = dict(label=1, prediction=1, radius=2.0, covered=True, certified=False)
    certified = dict(uncertified, certified=True)
    assert metrics.empirical_accuracy([uncertified]) == 1.0
    assert metrics.certified_accuracy([uncertified], 0.0) == 0.0
    assert metrics.certified_accuracy([certified], 2.0) == 1.0
    # Rows written before the flag: p_lower None means CERTIFY did not run.
    legacy = dict(label=1, prediction=1, radius=0.0, covered=None)
    assert metrics.certified_accuracy([dict(legacy, p_lower=None)], 0.0) == 0.0
    assert metrics.certified_accuracy([dict(legacy, p_lower=0.9)], 0.0) == 1.0


def test_old_no_change_rows_are_refused():
    # Before the fix such rows held the base classifier's label as "prediction".
    old = dict(label=1, prediction=1, radius=0.0, p_lower=None, covered=None)
    for field in ("abstain_reason", "clean_abstain_reason"):
        with pytest.raises(ValueError, match="older mrs-jax"):
            metrics.empirical_accuracy([dict(old, **{field: "no_change"})])
    new = dict(old, abstain_reason=None, localization="no_change", certified=False)
    assert metrics.empirical_accuracy([new]) == 1.0


def test_base_accuracy_localization_and_coverage():
    rows = [
        dict(
            label=1,
            base_clean_prediction=1,
            undefended_adv_prediction=0,
            localization="located",
            covered=True,
        ),
        dict(
            label=2,
            base_clean_prediction=2,
            undefended_adv_prediction=2,
            localization="no_change",
            covered=False,
        ),
        dict(
            label=0,
            base_clean_prediction=3,
            undefended_adv_prediction=3,
            localization="located",
            covered=True,
        ),
        dict(
            label=0,
            base_clean_prediction=0,
            undefended_adv_prediction=1,
            localization="multiple_regions",
            covered=False,
        ),
    ]
    assert metrics.base_accuracy(rows, "base_clean_prediction") == 0.75
    assert metrics.base_accuracy(rows, "undefended_adv_prediction") == 0.25
    assert metrics.localization_rates(rows) == {
        "located": 0.5,
        "no_change": 0.25,
        "multiple_regions": 0.25,
    }
    assert metrics.coverage_rate(rows) == 0.5
    with pytest.raises(ValueError, match="field"):
        metrics.base_accuracy(rows, "prediction")
    with pytest.raises(ValueError, match="localization"):
        metrics.localization_rates([dict(label=0, localization="ok")])
    with pytest.raises(ValueError, match="no patch"):
        metrics.coverage_rate([dict(label=0, covered=None)])


def test_mask_covers():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 3:7] = True
    assert metrics.mask_covers(mask, (2, 3), 4)
    assert metrics.mask_covers(mask, np.array([3, 4]), 2)
    assert not metrics.mask_covers(mask, (1, 3), 4)
    assert not metrics.mask_covers(mask, (2, 4), 4)
    assert metrics.mask_covers(mask.astype(np.uint8), (2, 3), 4)
    with pytest.raises(ValueError, match="top_left"):
        metrics.mask_covers(mask, (6, 6), 4)
    with pytest.raises(ValueError, match="mask"):
        metrics.mask_covers(np.full((8, 8), 0.5), (0, 0), 2)


def test_radius_markers():
    markers = metrics.radius_markers(5, 3)
    assert markers["true unrestricted (s*sqrt(C))"] == pytest.approx(5 * math.sqrt(3))
    assert markers["paper s^2"] == 25.0
    assert metrics.radius_markers(32, 3)["true unrestricted (s*sqrt(C))"] == (
        pytest.approx(55.4256, abs=1e-4)
    )
    with pytest.raises(ValueError, match="channels"):
        metrics.radius_markers(5, 0)


def test_an_attacked_row_without_covered_is_refused_not_counted():
    """A practical/adaptive row must say whether it is covered."""
    row = dict(label=1, prediction=1, radius=2.0, certified=True)
    # Without a mode (centre-like rows) a missing field means "no patch".
    assert metrics.certified_accuracy([row], 0.0) == 1.0
    for mode in ("practical", "adaptive"):
        with pytest.raises(ValueError, match="no 'covered'"):
            metrics.certified_radii([row], mode=mode)
        with pytest.raises(ValueError, match="no 'covered'"):
            metrics.certified_accuracy([row], 0.0, mode=mode)
        with pytest.raises(ValueError, match="no 'covered'"):
            metrics.target_accuracy([dict(row, certified_at_target=True)], mode=mode)
        covered = dict(row, covered=False)
        assert metrics.certified_accuracy([covered], 0.0, mode=mode) == 0.0
    assert metrics.certified_accuracy([row], 0.0, mode="center") == 1.0
    with pytest.raises(TypeError, match="mode"):
        metrics.certified_radii([row], mode=3)


def test_attack_won_and_certified_wherever_the_mask_lies():
    # fooled & missed (won) | fooled & covered | failed & missed | failed & covered
    rows = [
        dict(label=1, prediction=1, radius=9.0, certified=True, covered=False,
             undefended_adv_prediction=0),
        dict(label=1, prediction=1, radius=9.0, certified=True, covered=True,
             undefended_adv_prediction=0),
        dict(label=1, prediction=1, radius=5.0, certified=True, covered=False,
             undefended_adv_prediction=1),
        dict(label=1, prediction=0, radius=9.0, certified=True, covered=True,
             undefended_adv_prediction=1),
    ]  # fmt: skip
    assert metrics.attack_won_rate(rows) == 0.25
    assert metrics.certified_correct_rate(rows, 8.66) == 0.5  # rows 0 and 1
    assert metrics.certified_correct_rate(rows, 0.0) == 0.75
    assert metrics.certified_accuracy(rows, 8.66) == 0.25  # localised: row 1 only
    with pytest.raises(ValueError, match="no patch"):
        metrics.attack_won_rate([dict(rows[0], covered=None)])
