"""Tests for mrs_jax.attacks.adaptive_patch_attack."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mrs_jax
from mrs_jax.attacks import PatchAttackResult, _adaptive as adaptive, _pgd as attacks
from mrs_jax.localization import _inpaint as inpaint, localize
from mrs_jax.rows import _metrics as metrics

# Toy for the localiser: 20 x 20 grey images, 4 x 4 patches. Class 1 iff some 2 x 2
# window is within squared distance 0.15 of PATTERN (hard max over windows, so
# PGD on the base classifier alone builds one copy). Class 0 (the true class) gets
# a boost when the bright DOT of the clean image is dimmed: blocks that hide the
# dot restore the true class, a cluster of s * s = 16 changed blocks away from the
# patch, like the clean-area changes of a real classifier.
SIDE, SIZE, DOT = 20, 4, (4, 4)
PATTERN = jnp.array([[1.0, 0.0], [1.0, 1.0]])


def toy_classifier(images):
    def conv(a, f):
        out = jax.lax.conv_general_dilated(
            a, f, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return out[..., 0]

    kernel = PATTERN[:, :, None, None]
    distance = (
        conv(images * images, jnp.ones_like(kernel))
        - 2 * conv(images, kernel)
        + jnp.sum(PATTERN**2)
    )
    pattern_logit = 20.0 * (jnp.max(-distance, axis=(1, 2)) + 0.15)
    dot_logit = 40.0 * jax.nn.relu(0.8 - images[:, DOT[0], DOT[1], 0])
    return jnp.stack([dot_logit, pattern_logit], axis=1)


def toy_image(seed):
    key = jax.random.key(seed)
    x = np.array(jax.random.uniform(key, (SIDE, SIDE, 1), minval=0.4, maxval=0.6))
    x[DOT] = 1.0
    return x


def _linear_logits(weights, images):
    return images.reshape(images.shape[0], -1) @ weights


def linear_problem(side=8, channels=3, batch=2, classes=4):
    images = jax.random.uniform(jax.random.key(2), (batch, side, side, channels))
    weights = jax.random.normal(jax.random.key(3), (side * side * channels, classes))
    classify = jax.tree_util.Partial(_linear_logits, weights)
    labels = np.asarray(jnp.argmax(classify(images), axis=1))
    return classify, np.asarray(images), labels


def attack(classify, x, y, **kwargs):
    options = dict(size=3, key=jax.random.key(0), num_locations=4, steps=4)
    options.update(dict(step_size=0.1), **kwargs)
    return adaptive.adaptive_patch_attack(classify, x, y, **options)


def _only_patch_changed(image, x, top_left, size):
    top, left = np.asarray(top_left)
    outside = np.ones(x.shape[:2], bool)
    outside[top : top + size, left : left + size] = False
    return np.array_equal(np.asarray(image)[outside], x[outside])


@pytest.mark.parametrize("objective", adaptive.OBJECTIVES)
def test_output_in_range_only_patch_changed_and_objective_grows(objective):
    classify, images, labels = linear_problem()
    start = attack(
        classify, images, labels, objective=objective, steps=0, return_loss=True
    )
    result = attack(
        classify, images, labels, objective=objective, steps=6, return_loss=True
    )
    assert isinstance(result, PatchAttackResult)
    assert result.image.shape == images.shape and result.image.dtype == jnp.float32
    assert result.top_left.shape == (2, 2) and result.top_left.dtype == jnp.int32
    assert float(result.image.min()) >= 0.0 and float(result.image.max()) <= 1.0
    for image, x, corner in zip(result.image, images, result.top_left, strict=True):
        assert _only_patch_changed(image, x, corner, 3)
        assert not np.array_equal(np.asarray(image), x)
    # The attacker's objective J rises with the PGD steps, for every image.
    assert np.all(np.asarray(result.loss) > np.asarray(start.loss) + 1.0)
    fooled = np.asarray(jnp.argmax(classify(result.image), axis=1)) != labels
    assert fooled.all()


def test_deterministic_per_key_and_independent_of_chunking():
    classify, images, labels = linear_problem()
    first = attack(classify, images, labels, num_locations=5, return_loss=True)
    again = attack(classify, images, labels, num_locations=5, return_loss=True)
    chunked = attack(
        classify, images, labels, num_locations=5, location_chunk=2, return_loss=True
    )
    other = attack(
        classify,
        images,
        labels,
        num_locations=5,
        return_loss=True,
        key=jax.random.key(1),
    )
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.top_left, chunked.top_left)
    np.testing.assert_allclose(first.image, chunked.image, atol=1e-6)
    np.testing.assert_allclose(first.loss, chunked.loss, rtol=1e-5)
    assert not np.array_equal(np.asarray(first.image), np.asarray(other.image))
    # One image uses fold_in(key, 0): it matches the first image of the batch.
    single = attack(classify, images[0], int(labels[0]), num_locations=5)
    assert single[0].shape == images[0].shape and single[1].shape == (2,)
    np.testing.assert_allclose(single[0], first.image[0], atol=1e-6)


def test_tiny_cnn_runs_and_is_exported():
    model = mrs_jax.get_model("tiny_cnn", num_classes=10, seed=0)
    classify = mrs_jax.as_classifier(model)
    x = np.asarray(jax.random.uniform(jax.random.key(4), (16, 16, 3)))
    label = int(jnp.argmax(classify(x[None])[0]))
    image, top_left = mrs_jax.adaptive_patch_attack(
        classify,
        x,
        label,
        4,
        key=jax.random.key(0),
        num_locations=2,
        steps=2,
        step_size=0.1,
        num_occlusions=2,
        num_noise=2,
    )
    assert image.shape == x.shape and top_left.shape == (2,)
    assert _only_patch_changed(image, x, top_left, 4)


def _surviving_occlusions(classify, image, top_left, label):
    """Share of the (2s - 1)^2 - 1 partial occlusions still not classified label."""
    offsets = [
        (di, dj)
        for di in range(-SIZE + 1, SIZE)
        for dj in range(-SIZE + 1, SIZE)
        if (di, dj) != (0, 0)
    ]
    corners = np.clip(np.asarray(top_left) + np.array(offsets), 0, SIDE - SIZE)
    filled = jax.vmap(inpaint.harmonic_variant, in_axes=(None, 0, None))(
        jnp.asarray(image), jnp.asarray(corners, jnp.int32), SIZE
    )
    return float(np.mean(np.asarray(jnp.argmax(classify(filled), 1)) != label))


def test_adaptive_patch_survives_occlusion_and_evades_localisation():
    covered = {"patch_attack": 0, "adaptive": 0}
    survival = {"patch_attack": [], "adaptive": []}
    for seed in range(4):
        x = toy_image(seed)
        assert int(jnp.argmax(toy_classifier(x[None])[0])) == 0
        options = dict(
            key=jax.random.key(100 + seed), num_locations=8, steps=50, step_size=0.1
        )
        results = {
            "patch_attack": attacks.patch_attack(toy_classifier, x, 0, SIZE, **options),
            "adaptive": adaptive.adaptive_patch_attack(
                toy_classifier,
                x,
                0,
                SIZE,
                objective="eot_inpaint",
                num_occlusions=16,
                **options,
            ),
        }
        for name, (image, top_left) in results.items():
            assert int(jnp.argmax(toy_classifier(image[None])[0])) == 1
            share = _surviving_occlusions(toy_classifier, image, top_left, 0)
            survival[name].append(share)
            located = localize(
                toy_classifier, np.asarray(image), SIZE, method="harmonic"
            )
            covered[name] += metrics.mask_covers(located.mask, top_left, SIZE)
    # The occlusion term works: more partial occlusions keep the wrong label, on
    # every image (measured: 0.33-0.52 of the 48 for patch_attack, 0.71-0.79 here;
    # 4 quadrant copies of the pattern would keep 40 / 48 = 0.83).
    gap = np.subtract(survival["adaptive"], survival["patch_attack"])
    assert np.all(gap > 0) and gap.mean() >= 0.15, survival
    # The standard patch changes every block that overlaps it and is found; the
    # adaptive one changes only blocks that (almost) hide it, so the 16 blocks
    # around the dot outvote it and the mask lands there.
    assert covered["patch_attack"] >= 3, covered
    assert covered["adaptive"] <= 1, covered


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(objective="eot"), ValueError, "objective"),
        (dict(inpaint_weight=-1.0), ValueError, "inpaint_weight"),
        (
            dict(base_weight=0.0, inpaint_weight=0.0, noise_weight=0.0),
            ValueError,
            "weights",
        ),
        (
            dict(objective="eot_noise", base_weight=0.0, noise_weight=0.0),
            ValueError,
            "weights",
        ),
        (dict(num_occlusions=0), ValueError, "num_occlusions"),
        (dict(num_noise=1.5), TypeError, "num_noise"),
        (dict(sigma=0.0), ValueError, "sigma"),
        (dict(kappa=float("inf")), ValueError, "kappa"),
        (dict(dilation=-1), ValueError, "dilation"),
        (dict(step_size=0.0), ValueError, "step_size"),
        (dict(steps=-1), ValueError, "steps"),
        (dict(size=9), ValueError, "size"),
        (dict(key=jax.random.PRNGKey(0)), TypeError, "key"),
        (dict(key=jax.random.split(jax.random.key(0))), ValueError, "key"),
        (dict(location_chunk=0), ValueError, "location_chunk"),
    ],
)
def test_rejects_bad_arguments(kwargs, error, match):
    classify, images, labels = linear_problem()
    with pytest.raises(error, match=match):
        attack(classify, images, labels, **kwargs)


def test_rejects_bad_images_and_labels():
    classify, images, labels = linear_problem()
    with pytest.raises(ValueError, match="y must have shape"):
        attack(classify, images, labels[:1])
    with pytest.raises(TypeError, match="integer"):
        attack(classify, images, labels.astype(float))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 4\)"):
        attack(classify, images, labels + 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(classify, images * 2.0 + 0.5, labels)
    with pytest.raises(TypeError, match="classify"):
        attack("not a function", images, labels)
