"""Tests for mrs_jax.attacks.patch_attack."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mrs_jax.attacks import _engine as engine, _pgd as attacks

SIZE = 3
# Non-periodic 0/1 pattern so shifted windows do not also match it.
PATTERN = jnp.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])[..., None]


def planted_classifier(images, temperature=0.25, threshold=-0.5, gain=20.0):
    """Class 1 iff some 3x3 window is within squared distance ~0.5 of PATTERN.

    score = soft max over windows of -||window - PATTERN||^2 (logsumexp), so every
    window, including one holding a random patch, gets a non-zero gradient.
    """
    height, width = images.shape[1:3]
    distances = jnp.stack(
        [
            jnp.sum((images[:, i : i + SIZE, j : j + SIZE] - PATTERN) ** 2, (1, 2, 3))
            for i in range(height - SIZE + 1)
            for j in range(width - SIZE + 1)
        ],
        axis=1,
    )
    score = temperature * jax.nn.logsumexp(-distances / temperature, axis=1)
    return jnp.stack([jnp.zeros_like(score), gain * (score - threshold)], axis=1)


def _linear_logits(weights, images):
    return images.reshape(images.shape[0], -1) @ weights


def linear_classifier(weights):
    return jax.tree_util.Partial(_linear_logits, weights)


def cross_entropy(logits, label):
    return -jax.nn.log_softmax(logits)[label]


def test_attack_flips_planted_pattern_classifier():
    x = jax.random.uniform(jax.random.key(1), (8, 8, 1), minval=0.4, maxval=0.6)
    assert int(jnp.argmax(planted_classifier(x[None])[0])) == 0
    result = attacks.patch_attack(
        planted_classifier,
        x,
        0,
        SIZE,
        key=jax.random.key(0),
        num_locations=20,
        steps=10,
        step_size=0.25,
        return_loss=True,
    )
    assert int(jnp.argmax(planted_classifier(result.image[None])[0])) == 1
    top, left = np.asarray(result.top_left)
    changed = np.argwhere(np.asarray(result.image != x)[..., 0])
    # Only pixels inside the reported square changed, and the image stays in [0, 1].
    assert changed[:, 0].min() >= top and changed[:, 0].max() < top + SIZE
    assert changed[:, 1].min() >= left and changed[:, 1].max() < left + SIZE
    assert float(result.image.min()) >= 0.0 and float(result.image.max()) <= 1.0
    logits = planted_classifier(result.image[None])[0]
    np.testing.assert_allclose(result.loss, cross_entropy(logits, 0), rtol=1e-5)


def test_attack_raises_loss_on_batch_of_linear_model():
    images = jax.random.uniform(jax.random.key(2), (3, 6, 6, 3))
    weights = jax.random.normal(jax.random.key(3), (6 * 6 * 3, 4))
    classify = linear_classifier(weights)
    labels = jnp.argmax(classify(images), axis=1)
    adversarial, top_left, loss = attacks.patch_attack(
        classify,
        images,
        np.asarray(labels),
        2,
        key=jax.random.key(4),
        num_locations=8,
        steps=5,
        step_size=0.1,
        return_loss=True,
    )
    assert adversarial.shape == images.shape and top_left.shape == (3, 2)
    assert top_left.dtype == jnp.int32
    assert np.all((np.asarray(top_left) >= 0) & (np.asarray(top_left) <= 4))
    clean_loss = jax.vmap(cross_entropy)(classify(images), labels)
    assert np.all(np.asarray(loss) > np.asarray(clean_loss))
    np.testing.assert_allclose(
        loss, jax.vmap(cross_entropy)(classify(adversarial), labels), rtol=1e-5
    )


def test_single_image_matches_first_of_batch_and_chunks_agree():
    images = jax.random.uniform(jax.random.key(5), (2, 6, 6, 1))
    classify = linear_classifier(jax.random.normal(jax.random.key(6), (36, 3)))
    kwargs = dict(key=jax.random.key(7), num_locations=5, steps=3, step_size=0.2)
    batch_adv, batch_tl = attacks.patch_attack(classify, images, [0, 1], 2, **kwargs)
    one_adv, one_tl = attacks.patch_attack(classify, images[0], 0, 2, **kwargs)
    np.testing.assert_array_equal(one_tl, batch_tl[0])
    np.testing.assert_allclose(one_adv, batch_adv[0], atol=1e-6)
    chunk_adv, chunk_tl = attacks.patch_attack(
        classify, images, [0, 1], 2, location_chunk=2, **kwargs
    )
    np.testing.assert_array_equal(chunk_tl, batch_tl)
    np.testing.assert_allclose(chunk_adv, batch_adv, atol=1e-6)


def _core_compiles(caplog, call) -> int:
    """How many times ``call()`` compiles the attack's core program."""
    caplog.clear()
    with caplog.at_level(logging.WARNING), jax.log_compiles():
        call()
    message = "Compiling jit(_attack_one) "
    return sum(r.getMessage().startswith(message) for r in caplog.records)


@pytest.mark.parametrize("batch", [False, True])
def test_new_weights_do_not_recompile(caplog, batch):
    x = np.full((5, 5, 1), 0.5, np.float32)
    x, y = (np.stack([x, x]), [0, 1]) if batch else (x, 0)
    kwargs = dict(key=jax.random.key(9), num_locations=3, steps=1, step_size=0.1)

    def attack(weights):
        return lambda: attacks.patch_attack(
            linear_classifier(weights), x, y, 2, **kwargs
        )

    # A fresh shape compiles (so the counter sees compiles), new weights do not.
    assert _core_compiles(caplog, attack(jnp.ones((25, 2)))) == 1
    assert _core_compiles(caplog, attack(-jnp.ones((25, 2)))) == 0


@pytest.mark.parametrize(
    "change, error",
    [
        (dict(x=np.zeros((5, 5))), ValueError),
        (dict(x=np.full((5, 5, 1), 2.0, np.float32)), ValueError),
        (dict(y=np.array([0])), ValueError),
        (dict(y=5), ValueError),
        (dict(y=0.5), TypeError),
        (dict(size=6), ValueError),
        (dict(size=0), ValueError),
        (dict(key=jax.random.PRNGKey(0)), TypeError),
        (dict(step_size=0.0), ValueError),
        (dict(steps=-1), ValueError),
        (dict(logits_fn="not a function"), TypeError),
    ],
)
def test_bad_arguments_raise(change, error):
    args = dict(
        logits_fn=linear_classifier(jnp.ones((25, 2))),
        x=np.full((5, 5, 1), 0.5, np.float32),
        y=0,
        size=2,
        key=jax.random.key(0),
        steps=1,
        step_size=0.1,
    )
    args.update(change)
    with pytest.raises(error):
        attacks.patch_attack(**args)


def test_batch_image_b_is_attacked_with_fold_in_key_b():
    # The documented batch convenience: the vmap of the one-image core with
    # fold_in(key, b) for image b (the core is private; b = 0 is the public
    # one-image call, tested above).
    images = jax.random.uniform(jax.random.key(10), (3, 6, 6, 1))
    classify = linear_classifier(jax.random.normal(jax.random.key(11), (36, 3)))
    labels = np.array([0, 1, 2])
    key = jax.random.key(12)
    batch = attacks.patch_attack(
        classify, images, labels, 2, key=key, num_locations=3, steps=2, step_size=0.2
    )
    settings = engine.SearchSettings(size=2, num_locations=3, steps=2, location_chunk=3)
    for b in range(3):
        image, top_left, _ = attacks._attack_one(
            classify,
            images[b],
            jnp.int32(labels[b]),
            jax.random.fold_in(key, b),
            jnp.float32(0.2),
            settings,
        )
        np.testing.assert_array_equal(batch[1][b], top_left)
        np.testing.assert_allclose(batch[0][b], image, atol=1e-6)


def _linear_gain_search(chunk, keep):
    """The engine on J = sum(w * x_adv) with a step that saturates every patch
    pixel in one step: each patch ends at 1 where w > 0 and 0 elsewhere."""
    image = jax.random.uniform(jax.random.key(20), (7, 6, 2))
    weights = jax.random.normal(jax.random.key(21), image.shape)
    settings = engine.search_settings(3, (7, 6), 9, 2, chunk, keep=keep)
    starts = engine.random_starts(
        jax.random.key(22), jax.random.key(23), image.shape, settings
    )

    def gain(x_adv, top_lefts, extras, keys):
        assert keys is None and extras == ()
        return jnp.sum(x_adv * weights, axis=(1, 2, 3))

    found = engine.search(gain, image, starts, settings, jnp.float32(1.0))
    return image, weights, starts, found


@pytest.mark.parametrize("chunk", [None, 2, 4])
def test_search_keeps_the_k_best_locations_in_order(chunk):
    image, weights, starts, found = _linear_gain_search(chunk, keep=4)
    # Exact oracle: the saturated patch's J at each drawn location.
    want = []
    for top, left in np.asarray(starts.top_left):
        x = np.array(image)
        window = np.asarray(weights)[top : top + 3, left : left + 3]
        x[top : top + 3, left : left + 3] = window > 0
        want.append(float(np.sum(x * np.asarray(weights))))
    order = np.argsort(-np.array(want), kind="stable")[:4]
    np.testing.assert_array_equal(found.top_left, np.asarray(starts.top_left)[order])
    np.testing.assert_allclose(found.score, np.array(want)[order], rtol=1e-5)
    assert np.all(np.diff(np.asarray(found.score)) <= 0)
    for x_adv, (top, left) in zip(found.image, found.top_left, strict=True):
        patch = np.asarray(weights)[top : top + 3, left : left + 3] > 0
        np.testing.assert_array_equal(x_adv[top : top + 3, left : left + 3], patch)
        assert _only_square_changed(x_adv, image, (top, left), 3)


def _only_square_changed(x_adv, image, top_left, size):
    top, left = top_left
    outside = np.ones(image.shape[:2], bool)
    outside[top : top + size, left : left + size] = False
    return np.array_equal(np.asarray(x_adv)[outside], np.asarray(image)[outside])


def test_search_samples_depend_on_location_and_step_not_on_the_chunk():
    # J = the sum of one normal draw per location and step: the kept scores are
    # the final (t = steps) draws, fold_in(fold_in(sample_key, l), steps).
    image = jnp.zeros((5, 5, 1))
    sample_key = jax.random.key(30)

    def gain(x_adv, top_lefts, extras, keys):
        noise = jax.vmap(lambda k: jax.random.normal(k, ()))(keys)
        return noise + 0.0 * jnp.sum(x_adv, axis=(1, 2, 3))

    found = {}
    for chunk in (None, 2, 3):
        settings = engine.search_settings(2, (5, 5), 7, 3, chunk, keep=7)
        starts = engine.random_starts(
            jax.random.key(31), jax.random.key(32), image.shape, settings
        )
        found[chunk] = engine.search(
            gain, image, starts, settings, jnp.float32(0.1), sample_key=sample_key
        )
    final = [
        jax.random.normal(jax.random.fold_in(jax.random.fold_in(sample_key, i), 3))
        for i in range(7)
    ]
    np.testing.assert_array_equal(found[None].score, np.sort(final)[::-1])
    for chunk in (2, 3):
        np.testing.assert_array_equal(found[chunk].score, found[None].score)
        np.testing.assert_array_equal(found[chunk].top_left, found[None].top_left)
