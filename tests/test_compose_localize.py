"""Localisation's device functions compose; its host drivers take batches.

``prediction_map`` (harmonic fill) and ``joint_vote`` run under ``jax.jit`` and
``jax.vmap`` and equal their one-image eager calls; ``localize`` and the double
masking drivers, given a batch, return the list of the one-image results.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import mrs_jax

loc = importlib.import_module("mrs_jax.localization._localize")
jv = importlib.import_module("mrs_jax.localization._joint_vote")
dm = importlib.import_module("mrs_jax.certification._patchcleanser")

SIDE, SIZE, NUM_CLASSES = 8, 3, 3


def _linear(weights, bias, images):
    return jnp.einsum("bhwc,hwck->bk", images, weights) + bias


def _bright_square(images):
    """Class 2 iff a 3x3 square is bright (> 0.9) in every channel, else 0."""
    bright = (jnp.min(images, axis=-1) > 0.9).astype(jnp.float32)
    found = jax.lax.reduce_window(
        bright, 1.0, jax.lax.min, (1, 3, 3), (1, 1, 1), "VALID"
    )
    hit = jnp.any(found > 0.5, axis=(1, 2))
    return jax.nn.one_hot(jnp.where(hit, 2, 0), NUM_CLASSES)


IMAGES = np.random.default_rng(0).uniform(0.2, 0.7, (3, SIDE, SIDE, 3))
IMAGES = IMAGES.astype(np.float32)
IMAGES[0, 2:5, 3:6] = 1.0  # a planted "patch"
IMAGES[2, 5:8, 0:3] = 1.0  # one in a corner; image 1 has none


def _linear_classifier():
    """Random weights, biases set so that hiding a block often flips the label."""
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(SIDE, SIDE, 3, NUM_CLASSES)).astype(np.float32)
    logits = np.einsum("bhwc,hwck->bk", IMAGES, weights)
    bias = (np.array([0.0, 0.2, 0.4]) - logits.mean(0)).astype(np.float32)
    return Partial(_linear, jnp.asarray(weights), jnp.asarray(bias))


LINEAR = _linear_classifier()
PLANTED = Partial(_bright_square)


def _assert_same(a, b):
    """Every field equal: values, shapes and dtypes."""
    assert type(a) is type(b)
    for name, x, y in zip(a._fields, a, b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


# ---------------------------------------------------------------- device functions


@pytest.mark.parametrize("stride", [1, 2])
def test_jit_vmap_prediction_map_equals_eager_calls(stride):
    def one(x):
        return mrs_jax.prediction_map(
            LINEAR, x, SIZE, stride=stride, method="harmonic", batch_size=7
        )

    maps = jax.jit(jax.vmap(one))(jnp.asarray(IMAGES))
    eager = np.stack([np.asarray(one(x)) for x in IMAGES])
    assert maps.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(maps), eager)
    assert len(np.unique(eager)) > 1  # the fill changes labels: not trivial


def test_prediction_map_inside_a_users_jit_with_a_mesh():
    mesh = jax.make_mesh((4,), ("positions",))

    @jax.jit
    def located_labels(x):
        pmap = mrs_jax.prediction_map(
            LINEAR, x, SIZE, method="harmonic", batch_size=8, mesh=mesh
        )
        return pmap, mrs_jax.joint_vote(pmap, SIZE).top_left

    pmap, top_left = located_labels(jnp.asarray(IMAGES[0]))
    eager = mrs_jax.prediction_map(LINEAR, IMAGES[0], SIZE, method="harmonic")
    np.testing.assert_array_equal(np.asarray(pmap), np.asarray(eager))
    np.testing.assert_array_equal(
        np.asarray(top_left), np.asarray(mrs_jax.joint_vote(eager, SIZE).top_left)
    )


def test_jit_vmap_joint_vote_equals_eager_calls():
    maps = np.stack(
        [
            np.asarray(mrs_jax.prediction_map(LINEAR, x, SIZE, method="harmonic"))
            for x in IMAGES
        ]
        + [np.zeros((SIDE - SIZE + 1,) * 2, np.int32)]  # no change
    )
    votes = jax.jit(jax.vmap(lambda p: mrs_jax.joint_vote(p, SIZE, m=2)))(maps)
    eager = [mrs_jax.joint_vote(p, SIZE, m=2) for p in maps]
    for b, vote in enumerate(eager):
        _assert_same(jax.tree.map(lambda field, b=b: field[b], votes), vote)
    assert {int(v.reason) for v in eager} >= {jv.REASON_OK, jv.REASON_NO_CHANGE}


def test_joint_vote_vmaps_over_tau():
    pmap = np.asarray(mrs_jax.prediction_map(PLANTED, IMAGES[0], SIZE))
    taus = jnp.array([0.0, 3.0, 1e6], jnp.float32)
    votes = jax.jit(jax.vmap(lambda t: mrs_jax.joint_vote(pmap, SIZE, tau=t)))(taus)
    for b, tau in enumerate([0.0, 3.0, 1e6]):
        eager = mrs_jax.joint_vote(pmap, SIZE, tau=tau)
        _assert_same(jax.tree.map(lambda field, b=b: field[b], votes), eager)
    assert int(votes.n_components[-1]) == 0 < int(votes.n_components[0])


# ------------------------------------------------------------------- host drivers


@pytest.mark.parametrize("method", ["telea", "harmonic"])
@pytest.mark.parametrize("classify", [LINEAR, PLANTED], ids=["linear", "planted"])
def test_localize_batch_equals_one_image_calls(method, classify):
    mesh = jax.make_mesh((4,), ("positions",)) if method == "harmonic" else None
    kwargs = dict(stride=1, m=2, dilation=1, method=method, batch_size=10, mesh=mesh)
    results = mrs_jax.localize(classify, IMAGES, SIZE, **kwargs)
    assert isinstance(results, list) and len(results) == len(IMAGES)
    for x, result in zip(IMAGES, results, strict=True):
        single = mrs_jax.localize(classify, x, SIZE, **kwargs)
        assert isinstance(single, loc.LocalizeResult)
        _assert_same(result, single)
        assert result.reason_name == single.reason_name
    if classify is PLANTED:
        assert [r.reason_name for r in results] == ["ok", "no_change", "ok"]
    # Another batch of the same shape reuses the compiled programs.
    programs = loc._localize_harmonic_jit, loc._vote_all_jit
    before = [program._cache_size() for program in programs]
    again = mrs_jax.localize(classify, IMAGES[::-1], SIZE, **kwargs)
    assert [program._cache_size() for program in programs] == before
    for result, other in zip(results[::-1], again, strict=True):
        _assert_same(result, other)


def test_localize_batch_of_one_is_a_list_of_one():
    (result,) = mrs_jax.localize(PLANTED, IMAGES[:1], SIZE, method="harmonic")
    _assert_same(result, mrs_jax.localize(PLANTED, IMAGES[0], SIZE, method="harmonic"))


MASKS = mrs_jax.patchcleanser_masks((SIDE, SIDE), 2, 3)


def _pc_images():
    """For PLANTED: no square (case 1, certified); one square that a single mask
    hides (case 2, label 0); two squares that no one mask hides together but
    two masks do (case 1, label 2, not certified)."""
    dark = np.random.default_rng(2).uniform(0.0, 0.6, (3, SIDE, SIDE, 3))
    dark = dark.astype(np.float32)
    dark[1, 5:8, 5:8] = 1.0
    dark[2, 0:3, 0:3] = dark[2, 5:8, 5:8] = 1.0
    return dark


@pytest.mark.parametrize("classify", [LINEAR, PLANTED], ids=["linear", "planted"])
def test_double_masking_batch_equals_one_image_calls(classify):
    images = _pc_images()
    kwargs = dict(fill=0.5, batch_size=8)
    results = mrs_jax.patchcleanser(classify, images, MASKS, **kwargs)
    labels = mrs_jax.double_masking(classify, images, MASKS, **kwargs)
    matrices = mrs_jax.two_mask_predictions(classify, images, MASKS, **kwargs)
    assert len(results) == len(labels) == len(matrices) == len(images)
    for b, x in enumerate(images):
        assert results[b] == mrs_jax.patchcleanser(classify, x, MASKS, **kwargs)
        assert labels[b] == mrs_jax.double_masking(classify, x, MASKS, **kwargs)
        expected = mrs_jax.two_mask_predictions(classify, x, MASKS, **kwargs)
        np.testing.assert_array_equal(matrices[b], expected)
    for label in range(NUM_CLASSES):
        certified = mrs_jax.double_masking_certify(
            classify, images, [label] * len(images), MASKS, **kwargs
        )
        assert certified == [
            mrs_jax.double_masking_certify(classify, x, label, MASKS, **kwargs)
            for x in images
        ]
    if classify is PLANTED:
        assert results == [
            dm.PatchCleanserResult(0, True, 1),
            dm.PatchCleanserResult(0, False, 2),
            dm.PatchCleanserResult(2, False, 1),
        ]


def test_double_masking_batch_shares_device_calls():
    traces = []

    def classify(images):
        traces.append(images.shape[0])
        return _bright_square(images)

    images = _pc_images()
    mrs_jax.patchcleanser(Partial(classify), images, MASKS, batch_size=64)
    # One call for the 3 x 9 one-mask images, one for every image's second stage.
    assert traces == [32, 64]


# ------------------------------------------------------------------------ checks


def test_bad_shapes_raise_naming_the_argument():
    one = jax.jit(lambda x: mrs_jax.prediction_map(LINEAR, x, SIZE, method="harmonic"))
    with pytest.raises(ValueError, match="x must be one image"):
        one(jnp.asarray(IMAGES[0, :, :, 0]))
    with pytest.raises(TypeError, match="x must be a float"):
        one(jnp.zeros((SIDE, SIDE, 3), jnp.int32))
    with pytest.raises(ValueError, match="size"):
        jax.jit(
            lambda x: mrs_jax.prediction_map(LINEAR, x, SIDE + 1, method="harmonic")
        )(jnp.asarray(IMAGES[0]))
    with pytest.raises(TypeError, match="method='telea'"):
        jax.jit(lambda x: mrs_jax.prediction_map(LINEAR, x, SIZE))(IMAGES[0])
    with pytest.raises(ValueError, match="x must have values in"):
        mrs_jax.prediction_map(LINEAR, IMAGES[0] * 2, SIZE, method="harmonic")
    vote = jax.vmap(lambda p: mrs_jax.joint_vote(p, SIZE))
    with pytest.raises(ValueError, match="prediction_map"):
        vote(jnp.zeros((2, 6, 6, 1), jnp.int32))
    with pytest.raises(TypeError, match="prediction_map"):
        vote(jnp.zeros((2, 6, 6), jnp.float32))
    with pytest.raises(TypeError, match="tau"):
        mrs_jax.joint_vote(np.zeros((6, 6), int), SIZE, tau=jnp.ones(2))
    with pytest.raises(ValueError, match="tau"):
        mrs_jax.joint_vote(np.zeros((6, 6), int), SIZE, tau=jnp.float32(-1))
    with pytest.raises(ValueError, match=r"x must be \[H, W, C\] or \[B, H, W, C\]"):
        mrs_jax.localize(LINEAR, IMAGES[None], SIZE)
    with pytest.raises(ValueError, match="x must have values in"):
        mrs_jax.localize(LINEAR, IMAGES * 2, SIZE)
    with pytest.raises(ValueError, match="masks"):
        mrs_jax.patchcleanser(LINEAR, IMAGES, MASKS[:, :4])
    with pytest.raises(ValueError, match="label"):
        mrs_jax.double_masking_certify(LINEAR, IMAGES, 0, MASKS)
    with pytest.raises(TypeError, match=r"label\[1\]"):
        mrs_jax.double_masking_certify(LINEAR, IMAGES, [0, 1.0, 2], MASKS)
