"""The smoothing core against exact oracles (Corollary 1, coin flips, devices)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import mrs_jax
from mrs_jax.core import sharding

SHAPE = (8, 8, 3)


def linear_classifier(w, b):
    """f(x) = sign(w.x + b) as two logits, with w carried as a pytree leaf."""

    def classify(w, images):
        score = jnp.sum(images * w, axis=(1, 2, 3)) + b
        return jnp.stack([-score, score], axis=-1)

    return Partial(classify, jnp.asarray(w))


def coin_flip(x, pixel):
    """A classifier that answers by the sign of the noise on one masked pixel."""
    i, j = pixel

    def classify(images):
        v = images[:, i, j, 0] - x[i, j, 0]
        return jnp.stack([v, -v], axis=-1)

    return classify


@pytest.fixture
def image():
    return np.random.default_rng(0).uniform(size=SHAPE).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_corollary1_linear_radius(seed):
    """MC radius <= exact |w.x+b| / ||M w||, and within 5% of it at n = 100,000."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=SHAPE).astype(np.float32)
    x = rng.uniform(size=SHAPE).astype(np.float32)
    size = int(rng.integers(2, 6))
    top, left = rng.integers(0, SHAPE[0] - size + 1, size=2)
    mask = mrs_jax.square_mask(SHAPE, int(top), int(left), size)
    masked_norm = float(np.linalg.norm(w * mask[..., None]))
    # Choose b so that the exact radius |w.x + b| / ||M w|| is a known target.
    target = rng.uniform(0.2, 3.0)
    b = float(rng.choice([-1, 1]) * target * masked_norm - np.sum(w * x))
    exact = abs(float(np.sum(w * x)) + b) / masked_norm
    assert exact == pytest.approx(target, rel=1e-4)
    # exact / sigma in [0.5, 2] puts the exact pA in [0.69, 0.98], where
    # n = 100,000 resolves it to within a few percent of the radius.
    sigma = exact / rng.uniform(0.5, 2.0)

    cert = mrs_jax.certify(
        linear_classifier(w, b),
        x,
        mask,
        sigma,
        key=jax.random.key(seed),
        n0=100,
        n=100_000,
        alpha=0.001,
        num_classes=2,
        batch_size=4096,
    )
    assert cert.label == int(np.sum(w * x) + b > 0)
    assert cert.radius <= exact
    assert cert.radius >= 0.95 * exact
    assert cert.estimate_counts.sum() == 100_000
    assert cert.selection_counts.sum() == 100


@pytest.mark.parametrize(
    "pixels", [[(2, 2), (2, 3), (3, 2), (3, 3)], [(0, 7), (6, 1)], [(7, 7)]]
)
def test_noise_is_exactly_on_the_mask(image, pixels):
    """Every masked entry gets noise and nothing outside the mask changes."""
    mask = np.zeros(SHAPE[:2], bool)
    for i, j in pixels:
        mask[i, j] = True

    def classify(images):
        changed = images != image
        outside = jnp.any(changed & ~mask[None, :, :, None], axis=(1, 2, 3))
        inside = jnp.all(changed | ~mask[None, :, :, None], axis=(1, 2, 3))
        exact = inside & ~outside
        return jnp.stack([exact, ~exact], axis=-1).astype(jnp.float32)

    counts = mrs_jax.sample_counts(
        classify,
        image,
        mask,
        1.0,
        key=jax.random.key(1),
        num=300,
        num_classes=2,
        batch_size=64,
    )
    np.testing.assert_array_equal(counts, [300, 0])


def test_coin_flip_abstains(image):
    mask = mrs_jax.square_mask(SHAPE, 0, 0, 4)
    classify = coin_flip(image, (1, 1))
    cert = mrs_jax.certify(
        classify,
        image,
        mask,
        0.5,
        key=jax.random.key(3),
        n0=100,
        n=10_000,
        alpha=0.001,
        num_classes=2,
        batch_size=1000,
    )
    assert cert.label == mrs_jax.ABSTAIN and cert.radius == 0.0
    assert 0.45 < cert.estimate_counts[0] / 10_000 < 0.55
    pred = mrs_jax.predict(
        classify,
        image,
        mask,
        0.5,
        key=jax.random.key(4),
        n=10_000,
        alpha=0.001,
        num_classes=2,
        batch_size=1000,
    )
    assert pred.label == mrs_jax.ABSTAIN and pred.p_value > 0.001


def test_predict_returns_clear_winner(image):
    mask = mrs_jax.square_mask(SHAPE, 0, 0, 2)
    classify = lambda images: jnp.tile(jnp.array([0.0, 1.0, 0.5]), (images.shape[0], 1))
    pred = mrs_jax.predict(
        classify,
        image,
        mask,
        0.5,
        key=jax.random.key(0),
        n=100,
        alpha=0.001,
        num_classes=3,
        batch_size=32,
    )
    assert pred.label == 1 and pred.p_value < 1e-20
    np.testing.assert_array_equal(pred.counts, [0, 100, 0])


def test_counts_are_deterministic_for_a_key(image):
    mask = mrs_jax.square_mask(SHAPE, 1, 1, 4)
    classify = coin_flip(image, (2, 2))
    args = dict(num=3000, num_classes=2, batch_size=256)
    first = mrs_jax.sample_counts(
        classify, image, mask, 0.3, key=jax.random.key(7), **args
    )
    again = mrs_jax.sample_counts(
        classify, image, mask, 0.3, key=jax.random.key(7), **args
    )
    other = mrs_jax.sample_counts(
        classify, image, mask, 0.3, key=jax.random.key(8), **args
    )
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_same_counts_on_one_and_four_devices(image):
    assert jax.device_count() == 4, "conftest should give four fake CPU devices"
    rng = np.random.default_rng(5)
    w = rng.normal(size=SHAPE).astype(np.float32)
    classify = linear_classifier(w, -float(np.sum(w * image)) + 0.3)
    mask = mrs_jax.square_mask(SHAPE, 3, 3, 5)
    args = dict(key=jax.random.key(11), num=5000, num_classes=2, batch_size=512)
    one = mrs_jax.sample_counts(
        classify, image, mask, 0.4, mesh=sharding.sample_mesh(1), **args
    )
    four = mrs_jax.sample_counts(
        classify, image, mask, 0.4, mesh=sharding.sample_mesh(4), **args
    )
    np.testing.assert_array_equal(one, four)
    assert 0 < one[0] < 5000


def test_weights_committed_to_one_device_are_accepted(image):
    """Checkpoint-restored weights live on one device; the mesh has four."""
    w = jax.device_put(
        np.random.default_rng(2).normal(size=SHAPE).astype(np.float32),
        jax.devices()[0],
    )
    classify = Partial(
        lambda w, images: jnp.stack([jnp.sum(images * w, (1, 2, 3))] * 2, -1), w
    )
    counts = mrs_jax.sample_counts(
        classify,
        image,
        np.ones(SHAPE[:2], bool),
        0.1,
        key=jax.random.key(0),
        num=40,
        num_classes=2,
        batch_size=8,
    )
    assert counts.sum() == 40


@pytest.mark.parametrize("batch_size", [7, 64, 1000, 5000])
def test_num_not_a_multiple_of_batch_size(image, batch_size):
    """Every sample is counted once: the counts do not depend on the chunking."""
    classify = coin_flip(image, (4, 4))
    mask = mrs_jax.square_mask(SHAPE, 2, 2, 5)
    counts = mrs_jax.sample_counts(
        classify,
        image,
        mask,
        0.3,
        key=jax.random.key(2),
        num=1001,
        num_classes=2,
        batch_size=batch_size,
    )
    reference = mrs_jax.sample_counts(
        classify,
        image,
        mask,
        0.3,
        key=jax.random.key(2),
        num=1001,
        num_classes=2,
        batch_size=1,
    )
    assert counts.sum() == 1001
    np.testing.assert_array_equal(counts, reference)


def test_no_retrace_when_only_num_or_image_changes(image):
    traces = []

    def classify(images):
        traces.append(images.shape)
        return jnp.stack([images[:, 0, 0, 0], -images[:, 0, 0, 0]], axis=-1)

    mask = mrs_jax.square_mask(SHAPE, 0, 0, 3)
    for num, img in [(100, image), (1000, image), (777, image * 0.5)]:
        mrs_jax.sample_counts(
            classify,
            img,
            mask,
            0.2,
            key=jax.random.key(num),
            num=num,
            num_classes=2,
            batch_size=64,
        )
    assert len(traces) == 1


def _certify_args(image):
    return dict(
        classify=lambda b: jnp.zeros((b.shape[0], 2)),
        x=image,
        mask=np.ones(SHAPE[:2], bool),
        sigma=0.5,
        key=jax.random.key(0),
        n0=10,
        n=10,
        alpha=0.01,
        num_classes=2,
        batch_size=8,
    )


@pytest.mark.parametrize(
    "change,error,match",
    [
        (dict(x=np.zeros((8, 8), np.float32)), ValueError, r"x must be \[H, W, C\]"),
        (dict(x=np.full(SHAPE, 1.5, np.float32)), ValueError, r"values in \[0, 1\]"),
        (dict(x=np.full(SHAPE, np.nan, np.float32)), ValueError, "NaN"),
        (dict(x=np.full(SHAPE, np.inf, np.float32)), ValueError, "inf"),
        (dict(x=np.zeros(SHAPE, np.int32)), TypeError, "float"),
        (dict(mask=np.ones((4, 8), bool)), ValueError, "mask must have shape"),
        (dict(mask=np.full((8, 8), 2)), ValueError, "only 0 and 1"),
        (dict(sigma=0.0), ValueError, "sigma"),
        (dict(sigma=-1.0), ValueError, "sigma"),
        (dict(alpha=0.0), ValueError, "alpha"),
        (dict(alpha=1.0), ValueError, "alpha"),
        (dict(n0=0), ValueError, "n0"),
        (dict(n=0), ValueError, "n must"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(num_classes=0), ValueError, "num_classes"),
        (dict(num_classes=1), ValueError, "num_classes must be >= 2"),
        (dict(mask=np.zeros(SHAPE[:2], bool)), ValueError, "mask is all False"),
        (dict(classify="not a function"), TypeError, "classify"),
        (dict(key=0), TypeError, "key"),
        (dict(classify=lambda b: jnp.zeros((b.shape[0], 3))), ValueError, "logits"),
        (dict(classify=lambda b: jnp.zeros((b.shape[0],))), ValueError, "logits"),
    ],
)
def test_bad_inputs_raise(image, change, error, match):
    args = _certify_args(image) | change
    classify = args.pop("classify")
    x, mask, sigma = args.pop("x"), args.pop("mask"), args.pop("sigma")
    with pytest.raises(error, match=match):
        mrs_jax.certify(classify, x, mask, sigma, **args)


def test_legacy_raw_keys_are_accepted_but_not_batches_of_keys(image):
    mask = np.ones(SHAPE[:2], bool)
    f = lambda b: jnp.zeros((b.shape[0], 2))
    counts = mrs_jax.sample_counts(
        f,
        image,
        mask,
        0.1,
        key=jax.random.key_data(jax.random.key(0)),
        num=5,
        num_classes=2,
        batch_size=4,
    )
    assert counts.tolist() == [5, 0]
    with pytest.raises(ValueError, match="single key"):
        mrs_jax.sample_counts(
            f,
            image,
            mask,
            0.1,
            key=jax.random.split(jax.random.key(0)),
            num=5,
            num_classes=2,
            batch_size=4,
        )


def _nan_on_noise(images):
    # Finite on the clean image, NaN where noise pushed pixel (0, 0) below 0.
    logits = jnp.stack([images[:, 0, 0, 0], -images[:, 0, 0, 0]], axis=-1)
    broken = (images[:, 0, 0, 0] < 0)[:, None]
    return jnp.where(broken, jnp.nan, logits)


@pytest.mark.parametrize("logit", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_raise_naming_the_classifier(image, logit):
    def broken_classifier(images):
        return jnp.zeros((images.shape[0], 2)).at[:, 1].set(logit)

    args = _certify_args(image) | dict(classify=broken_classifier)
    classify = args.pop("classify")
    x, mask, sigma = args.pop("x"), args.pop("mask"), args.pop("sigma")
    with pytest.raises(ValueError, match="broken_classifier.*NaN or inf.*10 of 10"):
        mrs_jax.certify(classify, x, mask, sigma, **args)
    with pytest.raises(ValueError, match="broken_classifier"):
        mrs_jax.predict(
            classify, x, mask, sigma, key=jax.random.key(0), n=10, alpha=0.01,
            num_classes=2, batch_size=8,
        )


def test_a_few_non_finite_samples_are_counted_and_refused():
    # Only some noisy samples give NaN: counted in no class on the device,
    # refused by the host drivers.
    x = np.full(SHAPE, 0.5, np.float32)
    mask = mrs_jax.square_mask(SHAPE, 0, 0, 1)
    args = dict(key=jax.random.key(0), n=200, alpha=0.01, num_classes=2, batch_size=64)
    with pytest.raises(ValueError, match=r"_nan_on_noise.* ([1-9]\d*) of 200 "):
        mrs_jax.predict(_nan_on_noise, x, mask, 0.5, **args)
    counts = mrs_jax.sample_counts(
        _nan_on_noise, x, mask, 0.5, key=jax.random.key(0), num=200,
        num_classes=2, batch_size=64,
    )
    assert 0 < int(counts.sum()) < 200
    # The same classifier on a mask it cannot break counts normally.
    other_mask = mrs_jax.square_mask(SHAPE, 4, 4, 1)
    pred = mrs_jax.predict(_nan_on_noise, x, other_mask, 0.5, **args)
    assert pred.counts.sum() == 200
