"""The device functions compose: `jax.jit(jax.vmap(f))` over a batch of images,
labels and keys equals the one-image eager calls, and bad shapes raise at trace
time naming the argument."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mrs_jax
from mrs_jax.attacks import _pgd as attacks
from mrs_jax.certification import _bounds as bounds
from mrs_jax.training import _augment as noise

SIDE, CHANNELS, CLASSES, BATCH = 8, 3, 4, 3
BUDGET = dict(num_locations=3, steps=2, step_size=0.1)  # tiny: compile-bound


def _linear_logits(weights, images):
    return images.reshape(images.shape[0], -1) @ weights


def _pool2(images):  # [N, 8, 8, C] -> [N, 4, 4, C]: the "feature extractor"
    n, height, width, channels = images.shape
    return images.reshape(n, height // 2, 2, width // 2, 2, channels).mean((2, 4))


def _spatial_head(weights, features):  # [N, h, w, C] -> [N, K]
    return jnp.einsum("nhwc,ck->nk", jnp.tanh(features), weights)


@functools.lru_cache(maxsize=1)
def _problem():
    """A tiny linear classifier (README "The API in ten lines"), 3 images, keys."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(SIDE * SIDE * CHANNELS, CLASSES)).astype(np.float32)
    classify = jax.tree_util.Partial(_linear_logits, jnp.asarray(weights))
    images = rng.uniform(size=(BATCH, SIDE, SIDE, CHANNELS)).astype(np.float32)
    labels = np.asarray(jnp.argmax(classify(images), axis=1), np.int32)
    keys = jax.random.split(jax.random.key(7), BATCH)
    return classify, images, labels, keys


def _one_by_one(f, *batched):
    """Stacks the eager one-image calls f(a[b], ...) over b (pytree outputs)."""
    outputs = [f(*(a[b] for a in batched)) for b in range(len(batched[0]))]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *outputs)


def _assert_results_equal(mapped, eager):
    image, top_left, loss = mapped
    np.testing.assert_array_equal(top_left, eager[1])
    np.testing.assert_allclose(image, eager[0], atol=1e-6)
    np.testing.assert_allclose(loss, eager[2], rtol=1e-5, atol=1e-6)


def test_patch_attack_jit_vmap_equals_one_image_calls():
    classify, images, labels, keys = _problem()

    def attack(x, y, key):
        return attacks.patch_attack(
            classify, x, y, 3, key=key, return_loss=True, **BUDGET
        )

    mapped = jax.jit(jax.vmap(attack))(images, labels, keys)
    eager = _one_by_one(attack, images, labels, keys)
    _assert_results_equal(mapped, eager)
    # The attack changed the images (a test of a no-op would pass trivially).
    assert not np.array_equal(np.asarray(mapped[0]), images)


def test_adaptive_patch_attack_jit_vmap_equals_one_image_calls():
    classify, images, labels, keys = _problem()

    def attack(x, y, key):
        return mrs_jax.adaptive_patch_attack(
            classify,
            x,
            y,
            3,
            key=key,
            objective="eot_inpaint_noise",
            num_occlusions=2,
            num_noise=2,
            return_loss=True,
            **BUDGET,
        )

    mapped = jax.jit(jax.vmap(attack))(images, labels, keys)
    _assert_results_equal(mapped, _one_by_one(attack, images, labels, keys))


def test_attack_inside_users_own_jitted_code():
    # A user's jitted step: attack, then classify the result (no host round-trip).
    classify, images, labels, keys = _problem()

    @jax.jit
    def fooled(x, y, key):
        x_adv, _ = attacks.patch_attack(classify, x, y, 3, key=key, **BUDGET)
        return jnp.argmax(classify(x_adv[None])[0]) != y

    x_adv, _ = attacks.patch_attack(
        classify, images[0], labels[0], 3, key=keys[0], **BUDGET
    )
    expected = int(jnp.argmax(classify(x_adv[None])[0])) != labels[0]
    assert bool(fooled(images[0], labels[0], keys[0])) == expected


def test_gradcam_and_saliency_jit_vmap_equal_one_image_calls():
    classify, images, labels, _ = _problem()
    rng = np.random.default_rng(1)
    head = jax.tree_util.Partial(
        _spatial_head, jnp.asarray(rng.normal(size=(CHANNELS, CLASSES)), jnp.float32)
    )
    cam = lambda x, c: mrs_jax.gradcam(_pool2, head, x, c)
    saliency = lambda x, c: mrs_jax.input_gradient_saliency(classify, x, c)
    for f in (cam, saliency):
        mapped = jax.jit(jax.vmap(f))(images, labels)
        eager = _one_by_one(f, images, labels)
        assert mapped.shape == (BATCH, SIDE, SIDE)
        assert float(jnp.max(mapped)) > 0.0
        np.testing.assert_allclose(mapped, eager, rtol=1e-5, atol=1e-7)


def test_best_window_jit_vmap_equals_one_image_calls():
    heat = np.random.default_rng(2).random((BATCH, SIDE, SIDE)).astype(np.float32)
    heat[1] = 1.0  # all windows tie: the first in row-major order
    window = lambda h: mrs_jax.best_window(h, 3)
    top, left = jax.jit(jax.vmap(window))(heat)
    eager = [window(h) for h in heat]
    assert all(isinstance(v, int) for v in eager[0])
    assert [(int(t), int(w)) for t, w in zip(top, left, strict=True)] == eager
    assert eager[1] == (0, 0)


def test_augmentations_jit_vmap_equal_one_call_each():
    # The training augmentations take a batch [B, H, W, C]; vmap over keys and
    # over a stack of such batches.
    images = jax.random.uniform(jax.random.key(3), (BATCH, 2, SIDE, SIDE, CHANNELS))
    keys = jax.random.split(jax.random.key(4), BATCH)
    masked = lambda k, x: noise.masked_noise_augment(k, x, 0.5, 2, 4)
    occluded = lambda k, x: noise.occlusion_augment(k, x, 3, num_squares=2)
    # The one-batch calls are jitted too: op-by-op dispatch compiles every
    # primitive and would make this test slow, and jit does not change them.
    for f in (masked, occluded):
        mapped = jax.jit(jax.vmap(f))(keys, images)
        one_by_one = _one_by_one(jax.jit(f), keys, images)
        assert not np.allclose(mapped, images)
        np.testing.assert_allclose(mapped, one_by_one, atol=1e-6)
    squares = lambda k: noise.random_square_masks(k, 5, (SIDE, SIDE), 2, 4)
    np.testing.assert_array_equal(
        jax.jit(jax.vmap(squares))(keys), _one_by_one(jax.jit(squares), keys)
    )


def test_certified_radius_jits_and_matches_the_eager_value():
    one_sided = jax.jit(mrs_jax.certified_radius)
    two_sided = jax.jit(bounds.certified_radius)
    assert float(one_sided(0.5, 0.9)) == pytest.approx(
        mrs_jax.certified_radius(0.5, 0.9), rel=1e-6
    )
    assert float(two_sided(0.5, 0.9, 0.05)) == pytest.approx(
        mrs_jax.certified_radius(0.5, 0.9, 0.05), rel=1e-6
    )
    # The eager float path keeps scipy's float64 values.
    assert mrs_jax.certified_radius(0.5, 0.9) == 0.5 * stats.norm.ppf(0.9)
    # vmapped over bounds, abstaining (radius 0) where p_lower <= 1/2 or p_upper.
    p_lower = jnp.array([0.3, 0.5, 0.8, 0.999])
    radii = jax.jit(jax.vmap(lambda p: bounds.certified_radius(0.25, p)))(p_lower)
    expected = [bounds.certified_radius(0.25, float(p)) for p in p_lower]
    np.testing.assert_allclose(radii, expected, rtol=1e-5)
    assert float(two_sided(1.0, 0.3, 0.4)) == 0.0
    # grad through the radius: d/dsigma sigma * Phi^-1(p) = Phi^-1(p).
    slope = jax.jit(jax.grad(mrs_jax.certified_radius))(0.5, 0.9)
    assert float(slope) == pytest.approx(stats.norm.ppf(0.9), rel=1e-5)


def _trace(f, *args):
    """Traces f (jit) without running it: shape errors surface here."""
    return jax.jit(f).trace(*args)


@pytest.mark.parametrize("attack", ["patch_attack", "adaptive_patch_attack"])
def test_attacks_bad_shapes_raise_at_trace_time(attack):
    classify, images, labels, keys = _problem()
    fn = getattr(mrs_jax, attack)
    run = lambda x, y, k: fn(classify, x, y, 3, key=k, **BUDGET)
    with pytest.raises(ValueError, match="x must be"):
        _trace(run, images[0, :, :, 0], labels[0], keys[0])
    with pytest.raises(ValueError, match="y must be a scalar"):
        _trace(run, images[0], labels[:2], keys[0])
    with pytest.raises(TypeError, match="y must be integer"):
        _trace(run, images[0], labels[0].astype(np.float32), keys[0])
    with pytest.raises(TypeError, match="x must be a float"):
        _trace(run, images[0].astype(np.int32), labels[0], keys[0])
    with pytest.raises(ValueError, match="key must be a single key"):
        _trace(run, images[0], labels[0], keys)
    with pytest.raises(ValueError, match="size"):
        _trace(lambda x, y, k: fn(classify, x, y, 9, key=k, **BUDGET), *_first(keys))


def _first(keys):
    _, images, labels, _ = _problem()
    return images[0], labels[0], keys[0]


def test_saliency_bad_shapes_raise_at_trace_time():
    classify, images, labels, _ = _problem()
    head = jax.tree_util.Partial(_spatial_head, jnp.ones((CHANNELS, CLASSES)))
    with pytest.raises(ValueError, match="x must be"):
        _trace(lambda x, c: mrs_jax.gradcam(_pool2, head, x, c), images[0, 0], 0)
    with pytest.raises(ValueError, match="class_index"):
        _trace(lambda x, c: mrs_jax.gradcam(_pool2, head, x, c), images[0], labels)
    with pytest.raises(TypeError, match="class_index"):
        _trace(
            lambda x, c: mrs_jax.input_gradient_saliency(classify, x, c),
            images[0],
            0.5,
        )
    with pytest.raises(ValueError, match="heatmap"):
        _trace(lambda h: mrs_jax.best_window(h, 2), images[0])
    with pytest.raises(ValueError, match="size"):
        _trace(lambda h: mrs_jax.best_window(h, 9), images[0, ..., 0])


def test_augmentations_bad_shapes_raise_at_trace_time():
    key = jax.random.key(0)
    one_image = jnp.zeros((SIDE, SIDE, CHANNELS))
    with pytest.raises(ValueError, match="images"):
        _trace(lambda k, x: noise.masked_noise_augment(k, x, 0.5, 2, 4), key, one_image)
    with pytest.raises(TypeError, match="images"):
        _trace(
            lambda k, x: noise.occlusion_augment(k, x, 3),
            key,
            jnp.zeros((2, SIDE, SIDE, CHANNELS), jnp.int32),
        )
    with pytest.raises(ValueError, match="w_max"):
        _trace(lambda k: noise.random_square_masks(k, 2, (SIDE, SIDE), 2, 9), key)


def test_certified_radius_bad_types_raise_at_trace_time():
    with pytest.raises(TypeError, match="p_lower"):
        _trace(lambda s: bounds.certified_radius(s, "0.9"), 0.5)
    with pytest.raises(TypeError, match="sigma"):
        _trace(lambda p: bounds.certified_radius(True, p), 0.9)
