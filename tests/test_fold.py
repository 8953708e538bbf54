"""BatchNorm folding: the folded classifier computes the eval-mode logits."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mrs_jax
from mrs_jax.models import as_classifier, fold_batchnorm, folded_classifier, get_model


def _random_statistics(model, seed=0):
    """Non-trivial BatchNorm statistics and parameters, some scales negative
    (where the BatchNorm has a scale: airbench's have none)."""
    rng = np.random.default_rng(seed)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm):
            shape = module.mean[...].shape
            module.mean[...] = jnp.asarray(rng.normal(0, 0.5, shape), jnp.float32)
            module.var[...] = jnp.asarray(rng.uniform(0.3, 2.0, shape), jnp.float32)
            if module.scale is not None:
                module.scale[...] = jnp.asarray(rng.normal(0, 1, shape), jnp.float32)
            module.bias[...] = jnp.asarray(rng.normal(0, 0.3, shape), jnp.float32)
    return model


FAMILIES = [
    ("resnet_tiny", {}, 32),
    ("fast_cnn_tiny", {"clamp": True}, 32),
    ("fast_cnn_tiny", {}, 32),
    ("airbench_tiny", {"clamp": True}, 32),
    ("tiny_cnn", {}, 32),
    ("resnet50_tiny", {}, 64),
]


@pytest.mark.parametrize("name, kwargs, side", FAMILIES)
def test_folded_logits_equal_eval_logits(name, kwargs, side):
    model = _random_statistics(get_model(name, num_classes=10, seed=0, **kwargs))
    rng = np.random.default_rng(1)
    # Values outside [0, 1] too, as noisy samples are: the clamp must act.
    images = jnp.asarray(rng.normal(0.5, 1.0, (6, side, side, 3)), jnp.float32)
    expected = as_classifier(model)(images)
    got = folded_classifier(model)(images)
    scale = float(jnp.abs(expected).max())
    assert scale > 0.1  # the check below is not vacuous
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, scale), rtol=0)


def test_folded_model_has_no_batchnorm_and_the_original_is_unchanged():
    model = _random_statistics(get_model("resnet_tiny", num_classes=10, seed=0))
    before = jax.tree.map(np.array, nnx.state(model))
    folded = fold_batchnorm(model)
    kinds = [type(m) for _, m in nnx.iter_modules(folded)]
    assert nnx.BatchNorm not in kinds
    assert all(conv.bias is not None for _, conv in nnx.iter_modules(folded)
               if isinstance(conv, nnx.Conv))  # fmt: skip
    after = jax.tree.map(np.array, nnx.state(model))
    jax.tree.map(np.testing.assert_array_equal, before, after)


def test_training_mode_model_folds_its_running_statistics():
    model = _random_statistics(get_model("tiny_cnn", num_classes=10, seed=0))
    images = jnp.asarray(np.random.default_rng(2).uniform(size=(4, 32, 32, 3)))
    assert not model.norms[0].use_running_average  # get_model returns train mode
    np.testing.assert_allclose(
        folded_classifier(model)(images), as_classifier(model)(images), atol=1e-4
    )


def test_same_architecture_same_pytree_structure():
    """A jitted caller traces once for every folded model of one architecture."""
    a = folded_classifier(get_model("tiny_cnn", num_classes=10, seed=0))
    b = folded_classifier(get_model("tiny_cnn", num_classes=10, seed=1))
    assert jax.tree.structure(a) == jax.tree.structure(b)


def test_same_certify_counts_for_a_fixed_key():
    model = _random_statistics(get_model("tiny_cnn", num_classes=10, seed=0))
    x = np.random.default_rng(3).uniform(size=(32, 32, 3)).astype(np.float32)
    mask = mrs_jax.square_mask(x.shape, 8, 8, 9)
    args = dict(key=jax.random.key(5), n0=20, n=300, alpha=0.001, num_classes=10,
                batch_size=64)  # fmt: skip
    plain = mrs_jax.certify(as_classifier(model), x, mask, 0.5, **args)
    folded = mrs_jax.certify(folded_classifier(model), x, mask, 0.5, **args)
    np.testing.assert_array_equal(folded.selection_counts, plain.selection_counts)
    np.testing.assert_array_equal(folded.estimate_counts, plain.estimate_counts)
    assert (folded.label, folded.radius) == (plain.label, plain.radius)


def _set(model, field, value):
    norm = model.norms[0]
    getattr(norm, field)[...] = getattr(norm, field)[...].at[0].set(value)
    return model


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: "resnet20", TypeError, "nnx.Module"),
        (lambda: get_model("wrn_tiny", num_classes=10, seed=0), TypeError,
         "WideResNet"),
        (lambda: _set(get_model("tiny_cnn", num_classes=10, seed=0), "mean",
                      np.nan), ValueError, r"norms\[0\] has non-finite"),
        (lambda: _set(get_model("tiny_cnn", num_classes=10, seed=0), "var",
                      -1.0), ValueError, r"norms\[0\] has var \+ epsilon <= 0"),
    ],
)  # fmt: skip
def test_bad_inputs_raise(make, error, match):
    model = make()
    with pytest.raises(error, match=match):
        folded_classifier(model)


def test_trained_checkpoint_folds_to_the_same_logits_and_counts():
    """The committed CIFAR-10 fast_cnn (trained statistics, clamp on)."""
    checkpoint = Path(__file__).resolve().parents[1] / "benchmarks/checkpoints"
    plain, meta = mrs_jax.load_classifier(checkpoint / "cifar10_cpu", fold=False)
    folded, folded_meta = mrs_jax.load_classifier(checkpoint / "cifar10_cpu")
    assert folded_meta["folded"] and not meta["folded"]  # folding is the default
    rng = np.random.default_rng(7)
    noisy = rng.normal(0.5, 2.0, (8, 32, 32, 3)).astype(np.float32)
    expected = np.asarray(plain(noisy))
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(folded(noisy), expected, atol=1e-4 * scale)
    x = rng.uniform(size=(32, 32, 3)).astype(np.float32)
    mask = mrs_jax.square_mask(x.shape, 4, 4, 12)
    args = dict(key=jax.random.key(8), num=400, num_classes=10, batch_size=128)
    np.testing.assert_array_equal(
        mrs_jax.sample_counts(folded, x, mask, meta["sigma"], **args),
        mrs_jax.sample_counts(plain, x, mask, meta["sigma"], **args),
    )


def test_load_classifier_fold_must_be_a_bool():
    checkpoint = Path(__file__).resolve().parents[1] / "benchmarks/checkpoints"
    with pytest.raises(TypeError, match="fold"):
        mrs_jax.load_classifier(checkpoint / "cifar10_cpu", fold="yes")
