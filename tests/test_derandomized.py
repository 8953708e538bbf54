"""(De)randomized smoothing: votes against a loop, the certificate by brute force."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from mrs_jax.certification import (
    certify_votes,
    derandomized_delta,
    derandomized_smoothing,
    derandomized_votes,
)
from mrs_jax.certification._derandomized import ablate, band_mask

H, W, C, K = 8, 8, 1, 3


def _linear(weights, images):
    return jnp.einsum("bhwc,hwck->bk", images, weights)


def _classifier(seed=0):
    weights = np.random.default_rng(seed).normal(size=(H, W, 2 * C, K))
    return Partial(_linear, jnp.asarray(weights, jnp.float32))


IMAGES = np.random.default_rng(1).uniform(size=(3, H, W, C)).astype(np.float32)


def test_encoding_tells_ablated_pixels_from_every_colour():
    x = jnp.asarray(IMAGES[0])
    out = ablate(x, jnp.int32(6), 3, "column")
    kept = np.asarray(band_mask((H, W), jnp.int32(6), 3, "column"))
    assert kept[:, [6, 7, 0]].all() and kept.sum() == 3 * H  # wraps around
    sums = np.asarray(out[..., :C] + out[..., C:])[..., 0]
    np.testing.assert_allclose(sums, kept.astype(np.float32), atol=1e-6)


@pytest.mark.parametrize("mode, band", [("column", 3), ("block", 3)])
def test_votes_equal_a_plain_loop_over_positions(mode, band):
    classify = _classifier()
    x = jnp.asarray(IMAGES[0])
    count = W if mode == "column" else H * W
    expected = np.zeros(K, np.int32)
    for p in range(count):
        logits = classify(ablate(x, jnp.int32(p), band, mode)[None])[0]
        expected[int(jnp.argmax(logits))] += 1
    got = derandomized_votes(classify, x, band, mode=mode, chunk=5)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_votes_jit_and_vmap_and_the_batch_driver_equals_one_image_calls():
    classify = _classifier()
    mapped = jax.jit(
        jax.vmap(lambda x: derandomized_votes(classify, x, 2, mode="column"))
    )(jnp.asarray(IMAGES))
    batch = derandomized_smoothing(classify, IMAGES, 2, 2)
    for b, x in enumerate(IMAGES):
        one = derandomized_smoothing(classify, x, 2, 2)
        np.testing.assert_array_equal(one.votes, np.asarray(mapped[b]))
        assert one.label == batch[b].label and one.certified == batch[b].certified
        np.testing.assert_array_equal(one.votes, batch[b].votes)


def test_theta_counts_only_confident_votes():
    classify = _classifier()
    all_votes = derandomized_votes(classify, jnp.asarray(IMAGES[0]), 2)
    confident = derandomized_votes(classify, jnp.asarray(IMAGES[0]), 2, theta=0.9)
    assert int(all_votes.sum()) == W and int(confident.sum()) < W


def _touched(patch_left, patch, band):
    """Column positions whose band meets patch columns [left, left + patch)."""
    cols = {(patch_left + i) % W for i in range(patch)}
    return [p for p in range(W) if any((p + j) % W in cols for j in range(band))]


def _survives(labels, patch, band, changed):
    """Brute force: every patch position, every target class; certified labels
    (at ``changed`` moved votes) never change."""
    counts = np.bincount(labels, minlength=K)
    label, certified = certify_votes(jnp.asarray(counts), changed)
    if not bool(certified):
        return True
    for left, target in itertools.product(range(W), range(K)):
        attacked = labels.copy()
        attacked[_touched(left, patch, band)] = target
        new = np.bincount(attacked, minlength=K)
        if int(np.argmax(new)) != int(label):
            return False
    return True


def test_the_certificate_holds_against_every_patch_position_and_target():
    patch, band = 2, 3
    assert max(len(_touched(i, patch, band)) for i in range(W)) == derandomized_delta(
        patch, band, "column"
    )
    rng = np.random.default_rng(0)
    certified = 0
    for _ in range(300):
        labels = np.where(rng.uniform(size=W) < 0.85, 0, rng.integers(0, K, W))
        changed = derandomized_delta(patch, band, "column")
        assert _survives(labels, patch, band, changed)
        certified += bool(
            certify_votes(jnp.asarray(np.bincount(labels, minlength=K)), changed)[1]
        )
    assert certified > 10


def test_a_delta_one_too_small_is_caught_by_the_same_check():
    patch, band = 2, 3  # delta = 4: the patch at column 0 meets bands 6, 7, 0, 1
    changed = derandomized_delta(patch, band, "column")
    labels = np.array([0, 0, 1, 0, 0, 0, 0, 0])  # 7 - 1 = 6 = 2 * (delta - 1)
    assert _survives(labels, patch, band, changed)
    assert not _survives(labels, patch, band, changed - 1)


def test_ties_go_to_the_smaller_class():
    label, certified = certify_votes(jnp.array([4, 4, 0]), 0)
    assert int(label) == 0 and bool(certified)  # no vote can move
    assert not bool(certify_votes(jnp.array([4, 4, 0]), 1)[1])
    assert bool(certify_votes(jnp.array([0, 5, 1]), 2)[1])  # 5 - 0 > 4, 5 - 1 >= 4
    assert not bool(certify_votes(jnp.array([1, 5, 0]), 2)[1])  # class 0 wins ties
    assert bool(certify_votes(jnp.array([5, 1, 0]), 2)[1])  # class 0 keeps its tie


def test_real_pixels_a_worst_case_patch_never_changes_a_certified_label():
    classify = _classifier(3)
    rng = np.random.default_rng(2)
    images = rng.uniform(size=(6, H, W, C)).astype(np.float32)
    results = derandomized_smoothing(classify, images, 1, 1)
    checked = 0
    for x, result in zip(images, results, strict=True):
        if not result.certified:
            continue
        for left, top, value in itertools.product(range(W), range(H), (0.0, 1.0)):
            attacked = x.copy()
            attacked[top, left] = value
            again = derandomized_smoothing(classify, attacked, 1, 1)
            assert again.label == result.label
        checked += 1
    assert checked > 0


def test_bad_settings_and_non_finite_logits_are_refused():
    classify = _classifier()
    with pytest.raises(ValueError, match="mode"):
        derandomized_smoothing(classify, IMAGES[0], 2, 2, mode="rows")
    with pytest.raises(ValueError, match="band=9 exceeds"):
        derandomized_smoothing(classify, IMAGES[0], 2, 9)
    with pytest.raises(ValueError, match="theta"):
        derandomized_smoothing(classify, IMAGES[0], 2, 2, theta=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        derandomized_smoothing(
            lambda images: jnp.full((images.shape[0], K), jnp.nan), IMAGES[0], 2, 2
        )
