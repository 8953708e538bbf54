"""PatchCleanser double masking: covering masks, the three cases, certificates.

The classifier detects a bright 3x3 square and says in which halves of the image
it finds one (class = left + right, so 0, 1 or 2), so masking a square away
changes its answer the way masking an adversarial patch away would.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import mrs_jax
from mrs_jax import (
    PatchCleanserResult,
    double_masking,
    double_masking_certify,
    patchcleanser,
    patchcleanser_masks,
    two_mask_predictions,
)

SIDE = 16
SHAPE = (SIDE, SIDE, 3)
PATCH = 4
K = 3  # stride 5, mask width 8, positions 0, 5, 8 per axis: 9 masks


def _halves_with_square(images):
    """``[B, 2]`` bool: is some 3x3 square bright (all channels > 0.9) in the left
    half / right half (by the square's left column)?"""
    bright = jnp.min(images, axis=-1) > 0.9
    found = jax.lax.reduce_window(
        bright.astype(jnp.float32), 1.0, jax.lax.min, (1, 3, 3), (1, 1, 1), "VALID"
    )
    found = found > 0.5  # [B, H - 2, W - 2]
    half = images.shape[2] // 2
    left = jnp.any(found[:, :, : half - 1], axis=(1, 2))
    right = jnp.any(found[:, :, half - 1 :], axis=(1, 2))
    return jnp.stack([left, right], axis=-1)


def square_detector(images):
    """``[B, H, W, C] -> [B, 3]`` logits of class left + right."""
    halves = _halves_with_square(images)
    return jax.nn.one_hot(jnp.sum(halves, axis=-1), 3)


_detector_jit = jax.jit(square_detector)


def detector_label(image) -> int:
    return int(np.argmax(np.asarray(_detector_jit(jnp.asarray(image)[None]))[0]))


def plant(image, top, left, side=3, value=1.0):
    out = np.array(image, copy=True)
    out[top : top + side, left : left + side] = value
    return out


@pytest.fixture(scope="module")
def masks():
    return patchcleanser_masks(SHAPE[:2], PATCH, K)


@pytest.fixture
def dark():
    return np.random.default_rng(0).uniform(0.0, 0.6, SHAPE).astype(np.float32)


# --------------------------------------------------------------------------- masks


def _covers_every_patch(masks, size):
    count, height, width = masks.shape
    for top, left in itertools.product(
        range(height - size + 1), range(width - size + 1)
    ):
        window = masks[:, top : top + size, left : left + size]
        if not window.reshape(count, -1).all(axis=1).any():
            return False
    return True


@pytest.mark.parametrize(
    "hw, size, k",
    [
        ((16, 16), 4, 3),
        ((32, 32), 5, 6),
        ((13, 21), 3, 4),
        ((10, 10), 1, 10),
        ((10, 10), 10, 2),  # one patch position: the mask is the whole image
        ((12, 12), 8, 4),  # (k - 1) * stride >= L: fewer, distinct positions
        ((9, 9), 2, 20),  # k > L
        ((10, 10), 3, 5),  # (k - 1) * stride == L: 4 positions, not a repeat
        ((15, 15), 6, 1),
    ],
)
def test_masks_cover_every_patch_position(hw, size, k):
    masks = patchcleanser_masks(hw, size, k)
    assert masks.dtype == bool and masks.shape[1:] == hw
    assert _covers_every_patch(masks, size)
    # No mask is repeated, and each is one rectangle of the stated width.
    assert len({m.tobytes() for m in masks}) == len(masks)
    for axis, length in enumerate(hw):
        positions = length - size + 1
        stride = -(-positions // k)
        width = size + stride - 1
        extent = masks.any(axis=2 - axis)  # [M, length] along this axis
        assert np.all(extent.sum(axis=1) == width)
        starts = sorted({int(np.argmax(e)) for e in extent})
        assert starts[0] == 0 and starts[-1] == length - width
        assert np.all(np.diff(starts) <= stride)
        assert len(starts) == -(-positions // stride)
        assert (len(starts) == k) == ((k - 1) * stride < positions)


def test_masks_dropping_any_one_leaves_a_patch_uncovered():
    masks = patchcleanser_masks((32, 32), 5, 6)
    assert masks.shape == (36, 32, 32)
    for index in range(len(masks)):
        assert not _covers_every_patch(np.delete(masks, index, axis=0), 5)


@pytest.mark.parametrize(
    "args, error, name",
    [
        (((16,), 4, 3), ValueError, "image_hw"),
        (((16, 0), 4, 3), ValueError, "image_hw"),
        (((16, 16), 17, 3), ValueError, "patch_size"),
        (((16, 16), 0, 3), ValueError, "patch_size"),
        (((16, 16), 4.0, 3), TypeError, "patch_size"),
        (((16, 16), 4, 0), ValueError, "k"),
        (((16, 16), 4, True), TypeError, "k"),
    ],
)
def test_masks_reject_bad_input(args, error, name):
    with pytest.raises(error, match=name):
        patchcleanser_masks(*args)


# --------------------------------------------------------------------------- inference


def _naive_matrix(x, masks, fill):
    count = len(masks)
    matrix = np.zeros((count, count), np.int64)
    for i, j in itertools.product(range(count), repeat=2):
        hidden = (masks[i] | masks[j])[..., None]
        image = np.where(hidden, np.float32(fill), x)[None]
        matrix[i, j] = int(np.argmax(np.asarray(_detector_jit(image))[0]))
    return matrix


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_two_mask_predictions_match_one_image_at_a_time(masks, dark, batch_size):
    x = plant(plant(dark, 1, 1), 13, 13)
    matrix = two_mask_predictions(square_detector, x, masks, batch_size=batch_size)
    expected = _naive_matrix(x, masks, 0.5)
    np.testing.assert_array_equal(matrix, expected)
    assert len(np.unique(matrix)) == 3  # the planted squares make it non-trivial


def test_fill_value_reaches_the_masked_pixels(masks, dark):
    # Filling with white plants bright squares wherever a mask lies.
    assert np.all(two_mask_predictions(square_detector, dark, masks) == 0)
    white = two_mask_predictions(square_detector, dark, masks, fill=1.0)
    np.testing.assert_array_equal(
        white, _naive_matrix(dark, masks, 1.0)
    )
    assert np.all(white > 0)
    per_channel = two_mask_predictions(
        square_detector, dark, masks, fill=np.array([1.0, 1.0, 0.5])
    )
    assert np.all(per_channel == 0)  # not bright in every channel


def test_case1_unanimous(masks, dark):
    assert patchcleanser(square_detector, dark, masks) == PatchCleanserResult(
        0, True, 1
    )
    assert double_masking(square_detector, dark, masks) == 0


def test_case2_minority_confirmed_by_its_two_mask_predictions(masks, dark):
    # An adversarial square in the right half: only the one mask that touches
    # it (masks hide a square by overlapping it) sees class 0.
    attacked = plant(dark, 13, 13)
    assert detector_label(attacked) == 1
    one_mask = np.diag(two_mask_predictions(square_detector, attacked, masks))
    assert np.sum(one_mask == 0) == 1 and np.sum(one_mask == 1) == 8
    result = patchcleanser(square_detector, attacked, masks)
    assert result == PatchCleanserResult(0, False, 2)
    assert double_masking(square_detector, attacked, masks) == 0


def test_case3_majority_when_no_minority_is_confirmed(masks, dark):
    # Squares in both halves: a mask over one leaves class 1, two masks over
    # both give class 0, so neither minority's two-mask predictions agree.
    x = plant(plant(dark, 1, 1), 13, 13)
    matrix = two_mask_predictions(square_detector, x, masks)
    one_mask = np.diag(matrix)
    assert np.sum(one_mask == 2) == 7 and np.sum(one_mask == 1) == 2
    for index in np.flatnonzero(one_mask != 2):
        assert np.any(matrix[index] != one_mask[index])
    assert patchcleanser(square_detector, x, masks) == PatchCleanserResult(
        2, False, 3
    )
    assert double_masking(square_detector, x, masks) == 2


def test_a_one_mask_tie_goes_to_the_smaller_label():
    # Two masks, one per half: each hides the only square of its half.
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :, :4] = True
    masks[1, :, 4:] = True
    x = plant(plant(np.zeros((8, 8, 3), np.float32), 2, 0), 2, 5)
    assert detector_label(x) == 2
    # One-mask labels are 1 and 1: unanimous.
    assert patchcleanser(square_detector, x, masks).case == 1
    # Now only the left square: one-mask labels 0 (left hidden) and 1: a tie.
    # The tie's majority is 0, the disagreer (mask 1, label 1) sees 0 with
    # both masks, so case 3 returns the smaller label.
    x = plant(np.zeros((8, 8, 3), np.float32), 2, 0)
    assert np.diag(two_mask_predictions(square_detector, x, masks)).tolist() == [0, 1]
    assert patchcleanser(square_detector, x, masks) == PatchCleanserResult(
        0, False, 3
    )


# --------------------------------------------------------------------------- certify


def test_certify_is_every_two_mask_prediction(masks, dark):
    for x in (dark, plant(dark, 13, 13), plant(plant(dark, 1, 1), 13, 13)):
        matrix = two_mask_predictions(square_detector, x, masks)
        for label in range(3):
            expected = bool(np.all(matrix == label))
            got = double_masking_certify(square_detector, x, label, masks)
            assert got is expected
            if label == double_masking(square_detector, x, masks):
                assert patchcleanser(square_detector, x, masks).certified is expected


def _blank(side, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 0.6, (side, side, 3)).astype(np.float32)


def _three_left_squares(side):
    # On 24 x 24 the masks (10 wide, at 0, 7, 14) that touch a square at rows
    # 0-2, 11-13 or 21-23 are all different: no two masks hide all three.
    return plant(plant(plant(_blank(side, 3), 0, 0), 11, 0), 21, 0)


@pytest.mark.parametrize(
    "side, make_image, label, min_fooled",
    [
        # A bright patch anywhere on a blank image makes the detector say 1 or 2.
        (16, lambda side: _blank(side, 1), 0, 13 * 13),
        (16, lambda side: _blank(side, 2), 0, 13 * 13),
        # A bright patch reaching the right half makes it say 2.
        (24, _three_left_squares, 1, 21 * 11),
    ],
)
def test_certified_label_survives_every_patch_position(
    side, make_image, label, min_fooled
):
    x = make_image(side)
    masks = patchcleanser_masks((side, side), PATCH, K)
    assert double_masking_certify(square_detector, x, label, masks)
    rng = np.random.default_rng(1)
    fooled = 0
    for top, left in itertools.product(range(side - PATCH + 1), repeat=2):
        contents = [
            np.ones((PATCH, PATCH, 3), np.float32),  # bright: a square anywhere
            np.zeros((PATCH, PATCH, 3), np.float32),  # dark: erase a square
            rng.uniform(0.8, 1.0, (PATCH, PATCH, 3)).astype(np.float32),
        ]
        for content in contents:
            attacked = np.array(x, copy=True)
            attacked[top : top + PATCH, left : left + PATCH] = content
            fooled += detector_label(attacked) != label
            defended = double_masking(square_detector, attacked, masks)
            assert defended == label, (top, left, content[0, 0])
    # The patches do fool the undefended classifier, so the check has teeth.
    assert fooled >= min_fooled


def test_an_uncertified_label_can_be_attacked(masks, dark):
    # Two right-half squares far apart: every one-mask image keeps one (label 1,
    # case 1), but two masks hide both, so 1 is not certified; and a dark patch
    # over one square leaves a single square, which the defence then masks away.
    x = plant(plant(dark, 0, 13), 13, 13)
    assert patchcleanser(square_detector, x, masks) == PatchCleanserResult(
        1, False, 1
    )
    assert not double_masking_certify(square_detector, x, 1, masks)
    flipped = []
    for top, left in itertools.product(range(SIDE - PATCH + 1), repeat=2):
        hidden = mrs_jax.square_mask(SHAPE, top, left, PATCH)[..., None]
        attacked = np.where(hidden, np.float32(0.0), x)
        if double_masking(square_detector, attacked, masks) != 1:
            flipped.append((top, left))
    assert (12, 12) in flipped and (0, 0) not in flipped


# --------------------------------------------------------------------------- device


def test_weights_travel_as_a_partial_and_programs_compile_once(masks, dark):
    traces = []

    def classify(weight, images):
        traces.append(images.shape)
        return weight * square_detector(images)

    first = patchcleanser(Partial(classify, jnp.float32(2.0)), dark, masks)
    # Chunks rounded up to powers of two: 9 one-mask images, then 36 pairs.
    assert traces == [(16, *SHAPE), (64, *SHAPE)]
    second = patchcleanser(
        Partial(classify, jnp.float32(3.0)), plant(dark, 13, 13), masks
    )
    again = patchcleanser(Partial(classify, jnp.float32(2.0)), dark, masks)
    assert (first, second, again) == (
        PatchCleanserResult(0, True, 1),
        PatchCleanserResult(0, False, 2),
        PatchCleanserResult(0, True, 1),
    )
    # The chunk size of case 2 (one disagreer row: 9 -> 16) was seen already.
    assert len(traces) == 2


# --------------------------------------------------------------------------- checks


def _bad_calls(masks, dark):
    def wrong_logits(images):
        return jnp.zeros((images.shape[0],))

    return [
        (dict(classify=None), TypeError, "classify"),
        (dict(x=dark[..., 0]), ValueError, "x"),
        (dict(x=dark * 2), ValueError, "x"),
        (dict(x=(dark * 255).astype(np.uint8)), TypeError, "x"),
        (dict(masks=masks[0]), ValueError, "masks"),
        (dict(masks=masks[:, :8]), ValueError, "masks"),
        (dict(masks=masks[:0]), ValueError, "masks"),
        (dict(masks=masks * 2), ValueError, "masks"),
        (dict(masks=None), TypeError, "masks"),
        (dict(fill=1.5), ValueError, "fill"),
        (dict(fill=[0.5, 0.5]), ValueError, "fill"),
        (dict(fill="grey"), TypeError, "fill"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=2.0), TypeError, "batch_size"),
        (dict(classify=wrong_logits), ValueError, "classify"),
    ]


@pytest.mark.parametrize("function", ["two", "defend", "certify", "both"])
def test_inputs_are_checked(masks, dark, function):
    for change, error, name in _bad_calls(masks, dark):
        args = dict(classify=square_detector, x=dark, masks=masks, fill=0.5)
        args.update(change)
        kwargs = dict(fill=args["fill"], batch_size=args.get("batch_size", 16))
        call, leading = {
            "two": (two_mask_predictions, ()),
            "defend": (double_masking, ()),
            "certify": (double_masking_certify, (0,)),
            "both": (patchcleanser, ()),
        }[function]
        with pytest.raises(error, match=name):
            call(args["classify"], args["x"], *leading, args["masks"], **kwargs)


@pytest.mark.parametrize("label, error", [(-1, ValueError), (1.0, TypeError)])
def test_certify_checks_the_label(masks, dark, label, error):
    with pytest.raises(error, match="label"):
        double_masking_certify(square_detector, dark, label, masks)
