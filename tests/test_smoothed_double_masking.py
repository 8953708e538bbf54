"""Masked-noise double masking: a brute force over every patch position, Corollary
1's exact linear oracle for the statistics, per-combination equality with the
one-image functions, the job row and input checks.

Every test uses 6 x 6 x 1 images and the 4 masks of ``patchcleanser_masks(., 2,
2)`` (4 x 4 squares at rows/cols 0 and 2: 10 combinations), batch size 32 and
the same draws per call, so that all tests share a few compiled programs.
"""

import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial
from scipy import stats

from mrs_jax.certification import (
    CERTIFICATE,
    _bounds as bounds,
    _sequential as sequential,
    _smoothing as smoothing,
    patchcleanser_masks,
    smoothed_double_masking,
    smoothed_double_masking_certify,
    smoothed_double_masking_row,
)

SHAPE = (6, 6, 1)
PATCH = 2
MASKS = patchcleanser_masks(SHAPE, PATCH, 2)
PAIRS = np.stack(np.triu_indices(len(MASKS)), axis=1)
# The 2 x 2 corner square inside mask 0 only (no other mask touches it), and
# the opposite corner inside mask 3 only.
CORNER = np.zeros(SHAPE, np.float32)
CORNER[:2, :2] = 1.0
FAR_CORNER = CORNER[::-1, ::-1].copy()
BATCH = 32

PREDICT = dict(n=64, alpha=0.01, num_classes=2, batch_size=BATCH)


def _logits(trigger, w, b, images):
    """Class 1 scores ``10 (|mean of x on trigger - 0.5| - 0.1) + w.x + b``: a
    trigger or a linear classifier. One module-level function whose leaves
    are arrays, so every classifier here shares the compiled programs."""
    mean = jnp.sum(images * trigger, axis=(1, 2, 3))
    score = 10.0 * (jnp.abs(mean - 0.5) - 0.1) * jnp.any(trigger > 0)
    score = score + jnp.sum(images * w, axis=(1, 2, 3)) + b
    return jnp.stack([-score, score], axis=-1)


def _classifier(trigger=None, w=None, b=0.0):
    zeros = np.zeros(SHAPE, np.float32)
    trigger = zeros if trigger is None else trigger / trigger.sum()
    w = zeros if w is None else w
    return Partial(_logits, jnp.asarray(trigger), jnp.asarray(w), jnp.float32(b))


# Class 1 iff the corner square's mean is outside [0.4, 0.6]: a patch on the
# corner flips it, and noise on the corner (sigma 4) fires it with p ~ 0.96.
TRIGGER = _classifier(trigger=CORNER)
SIGMA = 4.0
RADIUS = PATCH * 1.0  # s * sqrt(C): every patch content
CERTIFY = dict(n0=16, max_n=512, alpha=0.05, num_classes=2, batch_size=BATCH)


def _image(seed, corner_value):
    x = np.random.default_rng(seed).uniform(size=SHAPE).astype(np.float32)
    x[:2, :2] = corner_value
    return x


def _patch_contents(x, top, left, rng):
    """Contents of the 2 x 2 patch at (top, left): the one that brings the
    corner's mean closest to 0.5 (the base classifier's flip; 1 - x off the
    corner), the inverse 1 - x (the largest l2 change) and, with ``rng``,
    uniform noise."""
    region = np.zeros(SHAPE[:2], bool)
    region[top : top + PATCH, left : left + PATCH] = True
    corner = CORNER[..., 0] > 0
    on_corner = region & corner
    erase = np.where(region[..., None], 1.0 - x, x)
    if on_corner.any():
        rest = x[corner & ~region].sum()
        erase[on_corner] = np.clip((0.5 * corner.sum() - rest) / on_corner.sum(), 0, 1)
    inverse = np.where(region[..., None], 1.0 - x, x)
    contents = [erase, inverse]
    if rng is not None:
        contents.append(np.where(region[..., None], rng.uniform(size=SHAPE), x))
    return [c.astype(np.float32) for c in contents]


def _base_label(x):
    return int(np.argmax(TRIGGER(jnp.asarray(x)[None])[0]))


def test_certified_labels_survive_every_patch_position():
    """Brute force: wherever the certificate holds, the defended label of the
    image with each of a few contents of a patch at each of the 25 positions
    (l2 change <= s * sqrt(C) = the radius) is the certified label."""
    images = {"bright": _image(0, 1.0), "light": _image(1, 0.7)}
    rng = np.random.default_rng(0)
    flipped = cases = 0
    for seed, (name, x) in enumerate(images.items()):
        label = smoothed_double_masking(
            TRIGGER, x, MASKS, SIGMA, key=jax.random.key(seed), **PREDICT
        )
        assert label == 1, name
        result = smoothed_double_masking_certify(
            TRIGGER, x, label, MASKS, SIGMA, RADIUS, key=jax.random.key(99), **CERTIFY
        )
        assert result.certified, name
        for top in range(SHAPE[0] - PATCH + 1):
            for left in range(SHAPE[1] - PATCH + 1):
                noise = rng if name == "light" else None
                for attacked in _patch_contents(x, top, left, noise):
                    assert np.linalg.norm(attacked - x) <= RADIUS + 1e-6
                    flipped += _base_label(attacked) != label
                    defended = smoothed_double_masking(
                        TRIGGER, attacked, MASKS, SIGMA,
                        key=jax.random.key(cases), **PREDICT,
                    )  # fmt: skip
                    assert defended == label, (name, top, left)
                    cases += 1
    # The patch does fool the base classifier, at several positions.
    assert flipped >= 4, flipped


def test_a_label_that_noise_on_the_patch_region_changes_is_not_certified():
    """A grey corner is class 0 for the base classifier, but every combination
    with mask 0 fires the trigger: no label holds in every combination."""
    x = _image(2, 0.5)
    assert _base_label(x) == 0
    for label in (0, 1):
        result = smoothed_double_masking_certify(
            TRIGGER, x, label, MASKS, SIGMA, RADIUS, key=jax.random.key(3), **CERTIFY
        )
        assert not result.certified
        # Every one-mask combination was drawn; the two-mask ones were skipped
        # once a one-mask one failed.
        one_mask = PAIRS[:, 0] == PAIRS[:, 1]
        assert (result.pair_num_samples[one_mask] > 0).all()
        assert (result.pair_num_samples[~one_mask] == 0).all()
        assert result.num_samples == result.pair_num_samples.sum()
        assert not result.pair_certified.all()


# ------------------------------------------------------------------ linear oracle


def _linear_case(seed, radius_over_target, target):
    """A linear classifier with weights on the two far corners only, so that
    combination (0, 3) (both corners noisy) has the smallest exact radius,
    ``radius_over_target * target``; the one-mask ones have sqrt(2) times it.

    Returns ``(classify, x, label, exact smallest radius)``.
    """
    rng = np.random.default_rng(seed)
    w = (CORNER + FAR_CORNER) * rng.uniform(0.5, 1.5, size=SHAPE).astype(np.float32)
    w[FAR_CORNER > 0] *= np.linalg.norm(w * CORNER) / np.linalg.norm(w * FAR_CORNER)
    x = rng.uniform(size=SHAPE).astype(np.float32)
    norms = [np.linalg.norm(w * (MASKS[i] | MASKS[j])[..., None]) for i, j in PAIRS]
    margin = radius_over_target * target * max(norms)
    sign = float(rng.choice([-1, 1]))
    b = sign * margin - float(np.sum(w * x, dtype=np.float64))
    exact = min(margin / n for n in norms if n > 0)
    return _classifier(w=w, b=b), x, int(sign > 0), exact


LINEAR = dict(n0=16, max_n=448, num_classes=2, batch_size=BATCH)


def test_false_certificates_are_at_most_alpha():
    """Combination (0, 3)'s exact radius is 0.95 of the target, so the
    certificate is false; every other combination clears the target with room
    (radius 1.34 sigma against 1). At most alpha of the trials may certify,
    although the other combinations certify in most trials."""
    trials, alpha, target = 40, 0.2, 1.0
    false = others = 0
    for trial in range(trials):
        classify, x, label, exact = _linear_case(trial % 4, 0.95, target)
        assert exact < target
        result = smoothed_double_masking_certify(
            classify, x, label, MASKS, 1.0, target,
            key=jax.random.key(trial), alpha=alpha, **LINEAR,
        )  # fmt: skip
        false += result.certified
        bad = np.flatnonzero((PAIRS == [0, 3]).all(1))[0]
        others += bool(np.delete(result.pair_certified, bad).all())
    assert false <= int(stats.binom.ppf(1 - 1e-4, trials, alpha)), false
    # Without the two-mask combination (0, 3) nearly every trial would certify.
    assert others >= 0.75 * trials, others


def test_true_certificates_are_found_and_their_bound_is_valid():
    """Smallest exact radius 2x the target: certified in nearly every trial,
    and sigma * Phi^-1(p_lower) stays below the exact smallest radius."""
    trials, alpha, target = 20, 0.2, 1.0
    certified = above = 0
    for trial in range(trials):
        classify, x, label, exact = _linear_case(trial % 4, 2.0, target)
        result = smoothed_double_masking_certify(
            classify, x, label, MASKS, 1.0, target,
            key=jax.random.key(1000 + trial), alpha=alpha, **LINEAR,
        )  # fmt: skip
        certified += result.certified
        if result.certified:
            assert (result.pair_num_samples > 0).all()
            assert result.p_lower == result.pair_p_lower.min()
            above += bounds.certified_radius(1.0, result.p_lower) > exact
    assert certified >= trials - 2, certified
    assert above <= int(stats.binom.ppf(1 - 1e-4, trials, alpha)), above


# ------------------------------------------------------------------ one-image equality


def test_each_combination_is_certify_at_with_its_own_key():
    """Combination c is certify_at on masks[i] | masks[j] with fold_in(key, c),
    checked against batches of the one-mask and of the two-mask combinations,
    each in reverse order."""
    x = _image(4, 1.0)
    key = jax.random.key(7)
    result = smoothed_double_masking_certify(
        TRIGGER, x, 1, MASKS, SIGMA, RADIUS, key=key, **CERTIFY
    )
    assert result.certified
    diagonal = PAIRS[:, 0] == PAIRS[:, 1]
    for part in (diagonal, ~diagonal):
        combinations = np.flatnonzero(part)[::-1]
        i, j = PAIRS[combinations].T
        reference = sequential.certify_at(
            TRIGGER, np.stack([x] * len(combinations)), MASKS[i] | MASKS[j], SIGMA,
            RADIUS, key=jnp.stack([jax.random.fold_in(key, c) for c in combinations]),
            **CERTIFY,
        )  # fmt: skip
        for c, one in zip(combinations, reference, strict=True):
            assert result.pair_num_samples[c] == one.num_samples
            assert result.pair_p_lower[c] == one.p_lower
            assert result.pair_certified[c] == (
                one.certified and one.selected_label == 1
            )
    assert result.num_samples == result.pair_num_samples.sum()


def test_with_n0_0_each_combination_tests_the_label_and_the_first_failure_stops():
    """n0 = 0: combination c is certify_at(label=..., n0=0) with fold_in(key, c),
    no selection draws. A grey corner fails some one-mask combinations; the
    stage then stops, and no abandoned combination counts as certified."""
    x = _image(4, 1.0)
    key = jax.random.key(7)
    settings = {**CERTIFY, "n0": 0}
    result = smoothed_double_masking_certify(
        TRIGGER, x, 1, MASKS, SIGMA, RADIUS, key=key, **settings
    )
    assert result.certified
    i, j = PAIRS.T
    reference = sequential.certify_at(
        TRIGGER, np.stack([x] * len(PAIRS)), MASKS[i] | MASKS[j], SIGMA, RADIUS,
        key=jnp.stack([jax.random.fold_in(key, c) for c in range(len(PAIRS))]),
        label=1, **settings,
    )  # fmt: skip
    for c, one in enumerate(reference):
        assert result.pair_num_samples[c] == one.num_samples
        assert result.pair_p_lower[c] == one.p_lower and one.certified
    with_selection = smoothed_double_masking_certify(
        TRIGGER, x, 1, MASKS, SIGMA, RADIUS, key=key, **CERTIFY
    )
    assert result.num_samples == with_selection.num_samples - len(PAIRS) * 16
    grey = smoothed_double_masking_certify(
        TRIGGER, _image(2, 0.5), 0, MASKS, SIGMA, RADIUS, key=key, **settings
    )
    assert not grey.certified
    one_mask = PAIRS[:, 0] == PAIRS[:, 1]
    reasons = grey.pair_stop_reason[one_mask]
    assert set(reasons) <= {"certified", "out_of_reach", "upper_bound", "abandoned"}
    assert not grey.pair_certified[grey.pair_stop_reason == "abandoned"].any()
    assert (grey.pair_stop_reason[~one_mask] == "").all()


def _reference_defence(matrix):
    """``(label, case)``: PatchCleanser's three cases on a full [M, M] label
    matrix."""
    one_mask = np.diag(matrix)
    values, counts = np.unique(one_mask, return_counts=True)
    if len(values) == 1:
        return int(values[0]), 1
    best = counts.max()
    tied = [v for v, c in zip(values, counts, strict=True) if c == best]
    majority = min(tied, key=lambda v: (v == smoothing.ABSTAIN, v))
    for i in np.flatnonzero(one_mask != majority):
        if np.all(matrix[i] == one_mask[i]):
            return int(one_mask[i]), 2
    return int(majority), 3


def _prediction_matrix(classify, x, key):
    """``[M, M]`` PREDICT labels, combination c by ``smoothing.predict`` with
    ``fold_in(key, c)`` (in batches of the 4 one-mask and 6 two-mask ones)."""
    keys = jnp.stack([jax.random.fold_in(key, c) for c in range(len(PAIRS))])
    unions = MASKS[PAIRS[:, 0]] | MASKS[PAIRS[:, 1]]
    diagonal = PAIRS[:, 0] == PAIRS[:, 1]
    labels = np.empty(len(PAIRS), np.int64)
    for part in (diagonal, ~diagonal):
        predictions = smoothing.predict(
            classify, np.stack([x] * part.sum()), unions[part], SIGMA,
            key=keys[part], **PREDICT,
        )  # fmt: skip
        labels[part] = [p.label for p in predictions]
    matrix = np.empty((len(MASKS), len(MASKS)), np.int64)
    matrix[PAIRS[:, 0], PAIRS[:, 1]] = labels
    matrix[PAIRS[:, 1], PAIRS[:, 0]] = labels
    return matrix


def test_inference_is_the_three_cases_on_per_combination_predictions():
    """The defended label equals the three cases applied to the full matrix of
    PREDICT labels, combination c drawn with fold_in(key, c). A linear
    classifier with weight on the corner only gives class 1 with p = Phi(0.385)
    = 0.65 wherever the corner is noisy, so PREDICT often abstains there:
    every case is reached, and an abstention that carries case II."""
    x = _image(10, 1.0)
    w = CORNER * np.float32(0.5)
    b = 0.385 * SIGMA * float(np.linalg.norm(w)) - float(np.sum(w * x))
    coin = _classifier(w=w, b=b)
    runs = [(TRIGGER, _image(11, 0.5)), (TRIGGER, x)]
    runs += [(coin, x)] * 8
    seen = set()
    for seed, (classify, image) in enumerate(runs):
        key = jax.random.key(seed)
        label, case = _reference_defence(_prediction_matrix(classify, image, key))
        defended = smoothed_double_masking(
            classify, image, MASKS, SIGMA, key=key, **PREDICT
        )
        assert defended == label, seed
        seen.add((case, label == smoothing.ABSTAIN))
    assert {case for case, _ in seen} == {1, 2, 3}, seen
    assert (2, True) in seen, seen


# ------------------------------------------------------------------ job row


def _config(**overrides):
    settings = dict(
        patch_size=PATCH, pc_k=2, sigma=SIGMA, n0=64, n=512, alpha=0.01,
        batch_size=BATCH, target_radius=None,
    )  # fmt: skip
    settings.update(overrides)
    return types.SimpleNamespace(**settings)


def test_row_fields_are_the_prediction_and_its_certificate():
    x = _image(5, 1.0)
    key = jax.random.key(11)
    fields = smoothed_double_masking_row(_config(), TRIGGER, 2, x, 1, key=key)
    predict_key, certify_key = jax.random.split(key)
    label = smoothed_double_masking(
        TRIGGER, x, MASKS, SIGMA, key=predict_key, n=64, alpha=0.01,
        num_classes=2, batch_size=BATCH,
    )  # fmt: skip
    certificate = smoothed_double_masking_certify(
        TRIGGER, x, label, MASKS, SIGMA, RADIUS, key=certify_key, n0=0, max_n=512,
        alpha=0.01, num_classes=2, batch_size=BATCH, futility_alpha=0.01,
    )  # fmt: skip
    assert fields["prediction"] == label == 1
    assert fields["certified"] is certificate.certified is True
    assert fields["certificate"] == CERTIFICATE == "every_patch_position_l2"
    assert fields["radius"] == RADIUS  # None: s * sqrt(C)
    assert fields["p_lower"] == certificate.p_lower
    assert fields["num_samples"] == 4 * 64 + certificate.num_samples
    assert fields["case"] == 1 and fields["covered"] is None
    assert set(fields["seconds"]) == {"predict", "certify"}
    # A numeric target is the radius certified.
    assert (
        smoothed_double_masking_row(
            _config(target_radius=0.5), TRIGGER, 2, x, 1, key=key
        )["radius"]
        == 0.5
    )
    assert (
        smoothed_double_masking_row(
            _config(target_radius="unrestricted"), TRIGGER, 2, x, 1, key=key
        )["radius"]
        == RADIUS
    )


# ------------------------------------------------------------------ input checks


GOOD_X = _image(6, 1.0)


@pytest.mark.parametrize(
    "change, error, words",
    [
        (dict(classify=3), TypeError, "classify"),
        (dict(x=GOOD_X * 2), ValueError, "x must have values in"),
        (dict(x=GOOD_X[..., 0]), ValueError, "x must be [H, W, C] or [B, H, W, C]"),
        (dict(masks=MASKS[0]), ValueError, "masks must be [M, H, W]"),
        (dict(masks=MASKS[:, :5]), ValueError, "masks must have shape"),
        (dict(masks=np.zeros_like(MASKS)), ValueError, "masks[0] is all False"),
        (dict(masks=None), TypeError, "masks must be an [M, H, W] array"),
        (dict(sigma=0.0), ValueError, "sigma"),
        (dict(label=2), ValueError, "label must lie in [0, 2), got 2"),
        (dict(label=-1), ValueError, "label must lie in [0, 2), got -1"),
        (dict(label=1.0), TypeError, "label must be integer labels"),
        (dict(radius=-1.0), ValueError, "radius"),
        (dict(n0=-1), ValueError, "n0"),
        (dict(max_n=5), ValueError, "max_n = 5 draws cannot certify"),
        (dict(alpha=1.0), ValueError, "alpha"),
        (dict(num_classes=1), ValueError, "num_classes"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(key=0), TypeError, "key"),
        (dict(futility_alpha=2.0), ValueError, "futility_alpha"),
    ],
)
def test_certify_names_the_bad_argument(change, error, words):
    arguments = dict(
        classify=TRIGGER, x=GOOD_X, label=1, masks=MASKS, sigma=SIGMA, radius=RADIUS,
        key=jax.random.key(0), **CERTIFY,
    )  # fmt: skip
    arguments.update(change)
    with pytest.raises(error, match=_literal(words)):
        smoothed_double_masking_certify(**arguments)


@pytest.mark.parametrize(
    "change, error, words",
    [
        (dict(n=0), ValueError, "n must be >= 1"),
        (dict(alpha=0.0), ValueError, "alpha"),
        (dict(key="seed"), TypeError, "key"),
        (dict(masks=MASKS.astype(np.float32) * 2), ValueError, "only 0 and 1"),
    ],
)
def test_inference_names_the_bad_argument(change, error, words):
    arguments = dict(
        classify=TRIGGER, x=GOOD_X, masks=MASKS, sigma=SIGMA, key=jax.random.key(0),
        **PREDICT,
    )  # fmt: skip
    arguments.update(change)
    with pytest.raises(error, match=_literal(words)):
        smoothed_double_masking(**arguments)


def _literal(words):
    return re.escape(words)


def test_a_batch_gets_what_each_image_gets_alone():
    """[B, H, W, C] with [B] keys (or one key, split B ways) and [B] labels:
    a list with each image's own result, as the other host drivers return."""
    images = np.stack([_image(4, 1.0), _image(5, 0.5)])
    keys = jax.random.split(jax.random.key(3), 2)
    batch = smoothed_double_masking_certify(
        TRIGGER, images, [1, 0], MASKS, SIGMA, RADIUS, key=keys, **CERTIFY
    )
    split = smoothed_double_masking_certify(
        TRIGGER, images, np.array([1, 0]), MASKS, SIGMA, RADIUS,
        key=jax.random.key(3), **CERTIFY,
    )  # fmt: skip
    labels = smoothed_double_masking(TRIGGER, images, MASKS, SIGMA, key=keys, **PREDICT)
    for b, label in enumerate([1, 0]):
        alone = smoothed_double_masking_certify(
            TRIGGER, images[b], label, MASKS, SIGMA, RADIUS, key=keys[b], **CERTIFY
        )
        for got in (batch[b], split[b]):
            assert (got.certified, got.p_lower) == (alone.certified, alone.p_lower)
            assert got.num_samples == alone.num_samples
        one = smoothed_double_masking(
            TRIGGER, images[b], MASKS, SIGMA, key=keys[b], **PREDICT
        )
        assert labels[b] == one
    with pytest.raises(ValueError, match=r"label must have shape \(2,\)"):
        smoothed_double_masking_certify(
            TRIGGER, images, [1], MASKS, SIGMA, RADIUS, key=keys, **CERTIFY
        )
