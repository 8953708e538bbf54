"""Tests for mrs_jax.localize: planted patches, joint-vote oracle, validation."""

import importlib
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from mrs_jax.certification import square_mask

# `mrs_jax.localize` the attribute is the exported function; fetch the module.
loc = importlib.import_module("mrs_jax.localization._localize")
jv = importlib.import_module("mrs_jax.localization._joint_vote")
pm = importlib.import_module("mrs_jax.localization._prediction_maps")

SIZE = 5
HEIGHT = WIDTH = 20
TRUE_CLASS, ATTACKED_CLASS, NUM_CLASSES = 3, 7, 10


def _pattern(size=SIZE, channels=3):
    """High-contrast 0/1 checkerboard that smooth fills can never reproduce."""
    board = (np.indices((size, size)).sum(0) % 2).astype(np.float32)
    board[0, 0] = 1.0 - board[0, 0]  # break the symmetry
    return np.repeat(board[:, :, None], channels, axis=2)


def _planted_classifier(pattern, required=1):
    """Attacked class iff >= required exact copies of pattern are fully visible."""
    kernel = jnp.asarray(pattern)[:, :, :, None]  # HWIO
    ones = jnp.ones_like(kernel)
    pattern_energy = jnp.sum(kernel**2)

    def correlate(images, k):
        return jax.lax.conv_general_dilated(
            images,
            k,
            (1, 1),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )[..., 0]

    def classify(images):
        ssd = correlate(images**2, ones) - 2 * correlate(images, kernel)
        ssd = ssd + pattern_energy
        matches = jnp.sum(ssd < 1e-3, axis=(1, 2))
        label = jnp.where(matches >= required, ATTACKED_CLASS, TRUE_CLASS)
        return jax.nn.one_hot(label, NUM_CLASSES)

    return jax.tree_util.Partial(classify)


def _background(seed, height=HEIGHT, width=WIDTH):
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    smooth = scipy.ndimage.gaussian_filter(noise, (2, 2, 0))
    return (0.3 + 0.4 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.float32)


def _plant(x, top_left, pattern):
    x = x.copy()
    i, j = top_left
    x[i : i + pattern.shape[0], j : j + pattern.shape[1]] = pattern
    return x


def _positions():
    last = HEIGHT - SIZE
    rng = np.random.default_rng(1)
    corners = [(0, 0), (0, last), (last, 0), (last, last), (0, 7), (9, last)]
    return corners + [tuple(int(v) for v in rng.integers(0, last + 1, 2))]


@pytest.fixture(scope="module")
def planted():
    return _planted_classifier(_pattern())


@pytest.mark.parametrize("method", ["telea", "harmonic"])
def test_planted_patch_is_covered(planted, method):
    for k, top_left in enumerate(_positions()):
        x = _plant(_background(k), top_left, _pattern())
        result = loc.localize(planted, x, SIZE, method=method, batch_size=128)
        i, j = top_left
        assert result.reason_name == "ok", (top_left, result.reason_name)
        assert not bool(result.abstain)
        assert int(result.attacked_class) == ATTACKED_CLASS
        mask = np.asarray(result.mask)
        assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == bool
        assert mask[i : i + SIZE, j : j + SIZE].all(), (top_left, result.top_left)
        if min(top_left) >= SIZE - 1 and max(top_left) <= HEIGHT - 2 * SIZE + 1:
            assert tuple(np.asarray(result.top_left)) == top_left


@pytest.mark.parametrize("m", [1, 2, SIZE])
def test_planted_patch_covered_for_any_m(planted, m):
    for k, top_left in enumerate(_positions()):
        x = _plant(_background(k), top_left, _pattern())
        result = loc.localize(planted, x, SIZE, method="harmonic", m=m)
        i, j = top_left
        assert np.asarray(result.mask)[i : i + SIZE, j : j + SIZE].all()


def test_every_position_covered_on_ideal_maps():
    """All 256 patch positions of a 20 x 20 image (s = 5), borders included.

    The map is what a patch broken by any overlap produces: every block that
    overlaps it restores the true class.
    """
    rows = np.arange(HEIGHT - SIZE + 1)
    for i, j in itertools.product(rows, rows):
        near = (np.abs(rows - i) < SIZE)[:, None] & (np.abs(rows - j) < SIZE)[None]
        vote = jv.joint_vote(np.where(near, TRUE_CLASS, ATTACKED_CLASS), SIZE)
        ti, tj = np.asarray(vote.top_left)
        assert ti - 3 <= i <= ti + 3 and tj - 3 <= j <= tj + 3, (i, j, ti, tj)
        if SIZE - 1 <= min(i, j) and max(i, j) <= rows[-1] - SIZE + 1:
            assert (ti, tj) == (i, j)  # template inside the map: exact


def test_stride_two_covers_patch(planted):
    x = _plant(_background(5), (6, 9), _pattern())
    result = loc.localize(planted, x, SIZE, stride=2, method="harmonic")
    assert result.prediction_map.shape == ((HEIGHT - SIZE) // 2 + 1,) * 2
    assert np.asarray(result.mask)[6:11, 9:14].all()


def test_two_patches_abstain():
    classify = _planted_classifier(_pattern(), required=2)
    # Clipped at the border, a corner patch scores below tau: keep both inside.
    x = _plant(_plant(_background(9), (2, 2), _pattern()), (13, 12), _pattern())
    for method in ("telea", "harmonic"):
        result = loc.localize(classify, x, SIZE, method=method)
        assert bool(result.abstain)
        assert result.reason_name == "multiple_regions"
        assert int(result.n_components) == 2


def test_no_change_reported(planted):
    result = loc.localize(planted, _background(3), SIZE, method="telea")
    assert result.reason_name == "no_change"
    assert not bool(result.abstain)
    # The tie-break of an all-zero score map picks the central position, and the
    # mask is that block, dilated: the pipeline certifies there (spec 4.6).
    x = _background(3)
    centre = (x.shape[0] - SIZE) // 2, (x.shape[1] - SIZE) // 2
    assert tuple(np.asarray(result.top_left)) == centre
    np.testing.assert_array_equal(
        np.asarray(result.mask),
        square_mask(x.shape, centre[0] - 3, centre[1] - 3, SIZE + 6),
    )
    assert int(result.attacked_class) == TRUE_CLASS


def test_methods_agree_on_planted_prediction_map(planted):
    x = _plant(_background(4), (8, 2), _pattern())
    maps = [
        np.asarray(pm.prediction_map(planted, x, SIZE, method=m, batch_size=64))
        for m in ("telea", "harmonic")
    ]
    np.testing.assert_array_equal(maps[0], maps[1])
    expected = np.zeros_like(maps[0], bool)  # every block overlapping the patch
    expected[8 - SIZE + 1 : 8 + SIZE, 0 : 2 + SIZE] = True
    np.testing.assert_array_equal(maps[0] != ATTACKED_CLASS, expected)


def test_sharded_positions_match_single_device(planted):
    assert jax.device_count() == 4  # conftest's fake CPU devices
    mesh = jax.make_mesh((4,), ("positions",))
    x = _plant(_background(6), (3, 11), _pattern())
    single = loc.localize(planted, x, SIZE, method="harmonic", batch_size=30)
    sharded = loc.localize(
        planted, x, SIZE, method="harmonic", batch_size=30, mesh=mesh
    )
    for a, b in zip(single, sharded, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert tuple(np.asarray(sharded.top_left)) == (3, 11)


def test_telea_chunks_do_not_retrace(planted):
    x = _plant(_background(7), (2, 2), _pattern())
    pm.prediction_map(planted, x, SIZE, batch_size=64)  # 400 positions: 7 chunks
    before = pm._classify_pairs._cache_size()
    y = _plant(_background(8), (9, 4), _pattern())
    pm.prediction_map(planted, y, SIZE, batch_size=64)
    assert pm._classify_pairs._cache_size() == before


# ------------------------------------------------------------- joint-vote oracle


def _reference_vote(pmap, size, m, stride):
    """Plain-Python joint vote, straight from the spec (positions in pixels)."""
    values, counts = np.unique(pmap, return_counts=True)
    attacked = values[np.argmax(counts)]
    rows, cols = pmap.shape
    score = np.zeros((rows, cols), int)
    for r, c in itertools.product(range(rows), range(cols)):
        for r2, c2 in itertools.product(range(rows), range(cols)):
            di, dj = abs(r2 - r) * stride, abs(c2 - c) * stride
            horizontal = di <= size - m and dj <= size - 1
            vertical = di <= size - 1 and dj <= size - m
            if (horizontal or vertical) and pmap[r2, c2] != attacked:
                score[r, c] += 1
    return attacked, score


def _central_max(score):
    maxima = np.argwhere(score == score.max())
    centre = maxima.mean(axis=0)
    return tuple(maxima[np.argmin(((maxima - centre) ** 2).sum(axis=1))])


@pytest.mark.parametrize("size,stride", [(5, 1), (4, 1), (6, 2)])
def test_joint_vote_matches_reference(size, stride):
    rng = np.random.default_rng(size)
    for m in sorted({1, 2, size // 2 + 1, size}):
        pmap = rng.choice(4, size=(9, 11), p=[0.55, 0.25, 0.15, 0.05])
        attacked, score = _reference_vote(pmap, size, m, stride)
        vote = jv.joint_vote(pmap, size, stride=stride, m=m, tau=0.4 * score.max())
        assert int(vote.attacked_class) == attacked
        np.testing.assert_array_equal(np.asarray(vote.score_map), score)
        best = _central_max(score)
        assert tuple(np.asarray(vote.top_left)) == (best[0] * stride, best[1] * stride)
        _, n_ref = scipy.ndimage.label(score > 0.4 * score.max(), np.ones((3, 3)))
        assert int(vote.n_components) == n_ref
        assert bool(vote.abstain) == (n_ref >= 2)


def test_joint_vote_jits_and_defaults():
    pmap = jnp.zeros((6, 6), jnp.int32).at[2, 3].set(1)
    settings, tau = jv.vote_settings(3)
    assert settings.m == 2
    assert tau == jv.TAU_FRACTION * jv.template_size(3, 1, 2)
    assert jv.template_size(5, 1, 1) == 81 and jv.template_size(5, 1, 5) == 17
    vote = jax.jit(lambda p: jv.joint_vote(p, 3))(pmap)
    assert tuple(np.asarray(vote.top_left)) == (2, 3)  # centre of the plateau
    assert int(vote.score_map.max()) == 1 and int(vote.reason) == jv.REASON_OK
    tie = jv.joint_vote(np.array([[2, 2, 1, 1]]), 1)
    assert int(tie.attacked_class) == 1  # smallest label on ties


def test_component_count_snake():
    active = np.zeros((9, 9), bool)
    active[0, :] = active[:, 8] = active[8, :] = True  # one long component
    active[4, 2] = active[5, 3] = True  # diagonal pair: one component
    got = int(jv._count_components(jnp.asarray(active)))
    assert got == scipy.ndimage.label(active, np.ones((3, 3)))[1] == 2


# ------------------------------------------------------------------ validation


def test_validation(planted):
    x = _background(0)
    bad_calls = [
        (ValueError, dict(size=HEIGHT + 1)),
        (ValueError, dict(size=0)),
        (TypeError, dict(size=2.5)),
        (ValueError, dict(stride=0)),
        (ValueError, dict(m=0)),
        (ValueError, dict(m=SIZE + 1)),
        (ValueError, dict(tau=-1.0)),
        (ValueError, dict(tau=float("nan"))),
        (ValueError, dict(dilation=-1)),
        (ValueError, dict(method="navier")),
        (ValueError, dict(batch_size=0)),
    ]
    for error, kwargs in bad_calls:
        args = dict(size=SIZE) | kwargs
        size = args.pop("size")
        with pytest.raises(error):
            loc.localize(planted, x, size, **args)
    for bad_x, error in [
        (x[None, None], ValueError),
        (x[:, :, 0], ValueError),
        (x * 2, ValueError),
        (np.where(x > 0.5, np.nan, x), ValueError),
        ((x * 255).astype(np.uint8), TypeError),
    ]:
        with pytest.raises(error):
            loc.localize(planted, bad_x, SIZE)
    with pytest.raises(TypeError, match="classify"):
        loc.localize("not a function", x, SIZE)
    with pytest.raises(ValueError, match="channels"):
        pm.prediction_map(planted, np.zeros((8, 8, 2), np.float32), 3)
    with pytest.raises(ValueError, match="logits"):
        pm.prediction_map(lambda b: b[:, 0, 0, 0], x, SIZE, method="harmonic")
    with pytest.raises(ValueError, match="prediction_map"):
        jv.joint_vote(np.zeros((3, 3, 1), int), 2)
    with pytest.raises(TypeError, match="prediction_map"):
        jv.joint_vote(np.zeros((3, 3)), 2)
