"""Counting on the device: ``sample_counts`` composes, and the host drivers'
one program gives the same counts as the device function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mrs_jax
from mrs_jax.certification import _counting as counting
from mrs_jax.core import sharding

WEIGHTS = np.random.default_rng(0).normal(size=(8 * 8 * 3, 5)).astype(np.float32)


def _linear_classifier(traced_batches):
    def classify(images):
        traced_batches.append(images.shape[0])  # at trace time only
        return images.reshape(images.shape[0], -1) @ jnp.asarray(WEIGHTS)

    return classify


def _linear(images):
    return images.reshape(images.shape[0], -1) @ jnp.asarray(WEIGHTS)


@pytest.fixture
def image():
    return np.random.default_rng(1).uniform(size=(8, 8, 3)).astype(np.float32)


def _batch():
    rng = np.random.default_rng(2)
    images = rng.uniform(size=(3, 8, 8, 3)).astype(np.float32)
    masks = np.zeros((3, 8, 8), bool)
    masks[0, 1:4, 2:6] = masks[1, 4:8, 0:3] = masks[2, 0:8, 5:8] = True
    return images, masks, jax.random.split(jax.random.key(5), 3)


def test_jit_vmap_of_sample_counts_equals_the_one_image_calls():
    images, masks, keys = _batch()
    settings = dict(num=300, num_classes=5, batch_size=64)

    @jax.jit
    def counts_of_batch(xs, ms, ks, sigma):
        one = lambda x, m, k: mrs_jax.sample_counts(
            _linear, x, m, sigma, key=k, **settings
        )
        return jax.vmap(one)(xs, ms, ks)

    batched = counts_of_batch(images, masks, keys, 0.6)
    assert batched.shape == (3, 5) and batched.dtype == jnp.int32
    for b in range(3):
        one = mrs_jax.sample_counts(
            _linear, images[b], masks[b], 0.6, key=keys[b], **settings
        )
        np.testing.assert_array_equal(batched[b], one)
        assert int(one.sum()) == 300
    assert len({tuple(np.asarray(c)) for c in batched}) == 3  # not degenerate


def test_sample_counts_with_the_mask_window_equals_certify_counts(image):
    # The host drivers draw noise over the mask's window; given that window the
    # device function makes exactly their draws.
    mask = mrs_jax.square_mask(image.shape, 2, 3, 3)
    key = jax.random.key(4)
    cert = mrs_jax.certify(
        _linear, image, mask, 0.5, key=key, n0=40, n=500, alpha=0.01,
        num_classes=5, batch_size=128,
    )
    select_key, estimate_key = jax.random.split(key)
    (_, window) = counting.noise_window(mask)
    for k, num, expected in ((select_key, 40, cert.selection_counts),
                             (estimate_key, 500, cert.estimate_counts)):
        counts = mrs_jax.sample_counts(
            _linear, image, mask, 0.5, key=k, num=num, num_classes=5,
            batch_size=128, window=window,
        )
        np.testing.assert_array_equal(counts, expected)


def test_sample_counts_inside_a_users_jitted_grad_free_code(image):
    # Masks as data and sigma traced: one compiled program for every mask.
    traced = []
    classify = _linear_classifier(traced)

    @jax.jit
    def smoothed_top(x, mask, sigma, key):
        counts = mrs_jax.sample_counts(
            classify, x, mask, sigma, key=key, num=64, num_classes=5, batch_size=32
        )
        return jnp.argmax(counts), counts

    for top in range(3):
        mask = mrs_jax.square_mask(image.shape, top, 1, 4)
        _, counts = smoothed_top(image, mask, 0.3 * (top + 1), jax.random.key(top))
        assert int(counts.sum()) == 64
    assert traced == [32]


def test_non_finite_logits_are_counted_in_no_class(image):
    def nan_where_bright(images):
        logits = _linear(images)
        return jnp.where(images[:, :1, 0, 0] > 0.9, jnp.nan, logits)

    mask = mrs_jax.square_mask(image.shape, 0, 0, 2)
    counts = mrs_jax.sample_counts(
        nan_where_bright, image, mask, 1.0, key=jax.random.key(0), num=200,
        num_classes=5, batch_size=64,
    )
    assert 0 < int(counts.sum()) < 200


@pytest.mark.parametrize(
    "change,error,match",
    [
        (dict(x=np.zeros((8, 8), np.float32)), ValueError, "x must be one image"),
        (dict(x=np.zeros((8, 8, 3), np.int32)), TypeError, "x must be a float"),
        (dict(mask=np.ones((4, 8), bool)), ValueError, "mask must have shape"),
        (dict(num=0), ValueError, "num must be >= 1"),
        (dict(num=2**31), ValueError, "num must be <= 2\\*\\*30"),
        (dict(num=1.5), TypeError, "num must be an int"),
        (dict(num_classes=1), ValueError, "num_classes must be >= 2"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(window=(9, 2)), ValueError, "window"),
        (dict(key=jax.random.split(jax.random.key(0))), ValueError, "single key"),
    ],
)
def test_bad_static_inputs_raise_at_trace_time(image, change, error, match):
    args = dict(x=image, mask=np.ones((8, 8), bool), num=10, num_classes=5,
                batch_size=8, key=jax.random.key(0)) | change
    x, mask = args.pop("x"), args.pop("mask")

    @jax.jit
    def traced(x, mask):
        return mrs_jax.sample_counts(_linear, x, mask, 0.5, **args)

    with pytest.raises(error, match=match):
        traced(x, mask)


def test_a_huge_n_is_counted_in_parts(monkeypatch, image):
    # The device counters are int32: the host driver cuts a run into calls of
    # at most MAX_PAIRS_PER_CALL pairs; the counts are those of one call.
    mask = mrs_jax.square_mask(image.shape, 2, 2, 4)
    args = dict(key=jax.random.key(3), n0=10, n=700, alpha=0.01, num_classes=5,
                batch_size=64)
    whole = mrs_jax.certify(_linear, image, mask, 0.7, **args)
    monkeypatch.setattr(counting, "MAX_PAIRS_PER_CALL", 150)
    parts = mrs_jax.certify(_linear, image, mask, 0.7, **args)
    np.testing.assert_array_equal(whole.estimate_counts, parts.estimate_counts)
    assert whole.estimate_counts.sum() == 700


def test_capped_chunk_gives_the_same_counts(image, monkeypatch):
    mask = mrs_jax.square_mask(image.shape, 2, 2, 4)
    args = dict(key=jax.random.key(3), n0=10, n=1000, alpha=0.01, num_classes=5,
                batch_size=400)
    monkeypatch.setattr(counting, "CPU_CHUNK_PER_DEVICE", None)
    uncapped_batches = []
    uncapped = mrs_jax.certify(
        _linear_classifier(uncapped_batches), image, mask, 0.7, **args
    )
    monkeypatch.setattr(counting, "CPU_CHUNK_PER_DEVICE", 8)
    capped_batches = []
    capped = mrs_jax.certify(
        _linear_classifier(capped_batches), image, mask, 0.7, **args
    )
    devices = len(jax.devices())
    assert 400 in uncapped_batches and max(capped_batches) == 8 * devices
    np.testing.assert_array_equal(capped.estimate_counts, uncapped.estimate_counts)
    assert (capped.estimate_counts > 0).sum() > 1  # not degenerate


def test_device_chunk_caps_per_device_and_rounds_to_devices(monkeypatch):
    mesh = sharding.sample_mesh()
    devices = mesh.devices.size
    # By default the chunk asked for is the chunk run (rounded to the devices).
    assert counting.device_chunk(1000 * devices, mesh) == 1000 * devices
    monkeypatch.setattr(counting, "CPU_CHUNK_PER_DEVICE", 16)
    assert counting.device_chunk(1000, mesh) == 16 * devices
    assert counting.device_chunk(5, mesh) == sharding.round_up_to_devices(5, mesh)
    monkeypatch.setattr(counting, "CPU_CHUNK_PER_DEVICE", None)
    assert counting.device_chunk(1000, mesh) == 1000
