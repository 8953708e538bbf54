"""certify_at against Corollary 1's exact linear oracle, fixed-n CERTIFY and its
own schedule; input validation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial
from scipy import stats

import mrs_jax
from mrs_jax.certification import (
    _schedule as schedule_module,
)
from mrs_jax.core import sharding

SHAPE = (8, 8, 1)
MASK = mrs_jax.square_mask(SHAPE, 2, 3, 4)


def _linear_logits(w, b, images):
    score = jnp.sum(images * w, axis=(1, 2, 3)) + b
    return jnp.stack([-score, score], axis=-1)


def linear_classifier(w, b):
    """f(x) = sign(w.x + b) as two logits. w and b are pytree leaves of one
    module-level function, so every linear classifier shares the compiled
    programs."""
    return Partial(_linear_logits, jnp.asarray(w), jnp.float32(b))


def linear_case(seed, exact_over_sigma, sigma=1.0):
    """``(classify, x, true_label, exact_radius)`` for a random linear classifier
    whose exact radius |w.x + b| / ||M w|| is ``exact_over_sigma * sigma``."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=SHAPE).astype(np.float32)
    x = rng.uniform(size=SHAPE).astype(np.float32)
    masked_norm = float(np.linalg.norm(w * MASK[..., None]))
    exact = exact_over_sigma * sigma
    sign = float(rng.choice([-1, 1]))
    b = sign * exact * masked_norm - float(np.sum(w * x))
    score = float(np.sum(w * x, dtype=np.float64)) + b
    return linear_classifier(w, b), x, int(score > 0), abs(score) / masked_norm


def _constant_logits(logits, images):
    return jnp.broadcast_to(logits, (images.shape[0], logits.shape[0]))


def always(label, num_classes=10):
    return Partial(_constant_logits, jax.nn.one_hot(label, num_classes))


def _coin_logits(centre, images):
    v = images[:, 3, 4, 0] - centre
    return jnp.stack([v, -v], axis=-1)


def coin(x):
    """Class 0 with probability 1/2: the sign of the noise on masked pixel (3, 4)."""
    return Partial(_coin_logits, jnp.float32(x[3, 4, 0]))


def run(classify, x, radius, seed, **overrides):
    settings = dict(
        sigma=1.0,
        key=jax.random.key(seed),
        n0=20,
        max_n=2000,
        alpha=0.1,
        num_classes=2,
        batch_size=256,
    )
    settings.update(overrides)
    sigma = settings.pop("sigma")
    return mrs_jax.certify_at(classify, x, MASK, sigma, radius, **settings)


def false_rate_limit(trials, alpha):
    """The most false certificates a valid level-alpha test gives in ``trials``
    except with probability 1e-4."""
    return int(stats.binom.ppf(1 - 1e-4, trials, alpha))


def test_targets_just_above_the_exact_radius_are_rarely_certified():
    """Any certificate above the exact radius is false: at most alpha of them.

    The exact pA sits just below the threshold, where an unspent alpha (each
    round tested at the full alpha) certifies far more often than alpha.
    """
    trials, alpha = 150, 0.1
    false = 0
    for trial in range(trials):
        classify, x, label, exact = linear_case(trial % 5, exact_over_sigma=1.0)
        result = run(classify, x, exact * 1.001, seed=trial, alpha=alpha)
        assert result.num_samples <= 20 + 2000
        false += result.certified
    assert false <= false_rate_limit(trials, alpha), false


def test_targets_well_below_the_exact_radius_are_certified():
    """pA = Phi(2.5) = 0.994 against a threshold of Phi(1) = 0.84: high power,
    the right label, and few draws."""
    trials = 60
    draws = []
    for trial in range(trials):
        classify, x, label, exact = linear_case(trial % 5, exact_over_sigma=2.5)
        result = run(classify, x, exact * 0.4, seed=1000 + trial)
        assert result.certified, trial
        assert result.label == result.selected_label == label
        assert result.stop_reason == "certified"
        draws.append(result.num_samples)
    plan = schedule_module.schedule(1.0, 1.0, 0.1, 2000)
    assert np.mean(draws) < 20 + 2 * plan.sizes[0]


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_fixed_n_certify_on_easy_cases(seed):
    """Exact radius 3x or 1/3 of the target: CERTIFY(n = max_n) and certify_at
    take the same decision, with the same label when certified."""
    exact_over_sigma = (2.4, 0.3)[seed % 2]
    classify, x, label, exact = linear_case(seed, exact_over_sigma)
    target = 0.8 if seed % 2 == 0 else 0.9
    key = jax.random.key(seed)
    fixed = mrs_jax.certify(
        classify,
        x,
        MASK,
        1.0,
        key=key,
        n0=20,
        n=2000,
        alpha=0.01,
        num_classes=2,
        batch_size=256,
    )
    result = run(classify, x, target, seed, alpha=0.01)
    assert result.certified == (fixed.radius >= target)
    assert result.certified == (seed % 2 == 0)
    if result.certified:
        assert result.label == fixed.label == label
        assert result.num_samples < 20 + 2000 // 4
    else:
        assert result.label == mrs_jax.ABSTAIN


def test_counts_are_the_first_draws_of_certify():
    """The rounds count the first N draws of CERTIFY's estimation sequence: the
    counts equal CERTIFY's with the same key and n = the draws made, and the
    result does not depend on the batch size or the device count."""
    x = np.random.default_rng(3).uniform(size=SHAPE).astype(np.float32)
    # pA = 1/2 against radius 0: no round certifies, the draws stop when the
    # misses exceed what the final round allows, after several rounds.
    result = run(coin(x), x, 0.0, seed=7, batch_size=100)
    assert result.stop_reason == "out_of_reach"
    assert result.rounds >= 3
    drawn = result.num_samples - 20
    assert drawn in schedule_module.schedule(0.0, 1.0, 0.1, 2000).sizes
    assert result.estimate_counts.sum() == drawn
    fixed = mrs_jax.certify(
        coin(x),
        x,
        MASK,
        1.0,
        key=jax.random.key(7),
        n0=20,
        n=drawn,
        alpha=0.1,
        num_classes=2,
        batch_size=64,
    )
    np.testing.assert_array_equal(result.selection_counts, fixed.selection_counts)
    np.testing.assert_array_equal(result.estimate_counts, fixed.estimate_counts)
    one_device = run(
        coin(x), x, 0.0, seed=7, batch_size=48, mesh=sharding.sample_mesh(1)
    )
    assert one_device.num_samples == result.num_samples
    np.testing.assert_array_equal(one_device.estimate_counts, result.estimate_counts)
    again = run(coin(x), x, 0.0, seed=7, batch_size=100)
    assert again.num_samples == result.num_samples
    assert again.p_lower == result.p_lower
    np.testing.assert_array_equal(again.estimate_counts, result.estimate_counts)


def test_an_always_right_classifier_stops_after_the_first_round():
    """sigma = 7, every 5x5x3 patch (radius 8.66), alpha = 0.001: the first
    round is the fewest draws with (alpha/2)^(1/N) > Phi(8.66 / 7), far below
    max_n = 100,000; with the whole alpha in one round it is the issue's 61."""
    shape = (32, 32, 3)
    x = np.full(shape, 0.5, np.float32)
    mask = mrs_jax.square_mask(shape, 14, 14, 5)
    radius = mrs_jax.patch_l2_bound(5, 3)
    threshold = stats.norm.cdf(radius / 7)
    result = mrs_jax.certify_at(
        always(3),
        x,
        mask,
        7.0,
        radius,
        key=jax.random.key(0),
        n0=100,
        max_n=100_000,
        alpha=0.001,
        num_classes=10,
        batch_size=128,
    )
    assert result.certified and result.label == 3
    assert result.rounds == 1
    first = result.num_samples - 100
    assert (0.0005 ** (1 / first)) > threshold >= 0.0005 ** (1 / (first - 1))
    assert result.num_samples < 100_000 / 500
    assert schedule_module.schedule(radius, 7.0, 0.001, 61).sizes == (61,)
    with pytest.raises(ValueError, match="max_n = 60 .* at least 61"):
        schedule_module.schedule(radius, 7.0, 0.001, 60)


@pytest.mark.parametrize(
    "radius, sigma, alpha, max_n",
    [(8.66, 7.0, 0.001, 100_000), (0.0, 1.0, 0.1, 2000), (1.0, 0.5, 0.05, 500)],
)
def test_the_schedule_spends_at_most_alpha(radius, sigma, alpha, max_n):
    plan = schedule_module.schedule(radius, sigma, alpha, max_n)
    assert sum(plan.alphas) <= alpha * (1 + 1e-12)
    assert plan.sizes[-1] == max_n
    assert all(a < b for a, b in zip(plan.sizes[:-1], plan.sizes[1:], strict=True))
    assert plan.threshold == pytest.approx(stats.norm.cdf(radius / sigma))
    for n, level, need in zip(plan.sizes, plan.alphas, plan.hits_needed, strict=True):
        # the least count whose one-sided Clopper-Pearson bound beats the threshold
        beta = stats.beta.ppf
        assert beta(level, need, n - need + 1) > plan.threshold
        assert need == 1 or beta(level, need - 1, n - need + 2) <= plan.threshold


def test_futility_alpha_gives_up_early_on_hopeless_images():
    """pA = 1/2 against Phi(1) = 0.84: no certificate either way; the upper
    bound gives up after the first round, the exact rule only later."""
    x = np.random.default_rng(4).uniform(size=SHAPE).astype(np.float32)
    exact = run(coin(x), x, 1.0, seed=2)
    quick = run(coin(x), x, 1.0, seed=2, futility_alpha=0.1)
    assert not exact.certified and not quick.certified
    assert exact.label == quick.label == mrs_jax.ABSTAIN
    assert quick.stop_reason == "upper_bound" and quick.rounds == 1
    assert exact.stop_reason == "out_of_reach" and exact.rounds > 1


def test_radius_zero_certifies_the_majority_class():
    x = np.random.default_rng(5).uniform(size=SHAPE).astype(np.float32)
    result = run(always(1, num_classes=2), x, 0.0, seed=0)
    assert result.certified and result.label == 1
    assert result.p_lower > 0.5
    # 0.05^(1/n) > 1/2 first holds at n = 5
    assert result.num_samples == 20 + 5


def test_no_retracing_across_images():
    """After the first image, later images with the same settings reuse every
    compiled program: the classifier is not traced again."""
    reference = np.random.default_rng(6).uniform(size=SHAPE).astype(np.float32)
    traces = []

    def classify(images):
        traces.append(images.shape)
        v = images[:, 3, 4, 0] - reference[3, 4, 0]
        return jnp.stack([v, -v], axis=-1)

    first = run(classify, reference, 0.0, seed=0)
    assert first.rounds >= 3 and traces
    traced = len(traces)
    for seed in range(1, 4):
        x = np.clip(reference + 0.01 * seed, 0, 1)
        assert run(classify, x, 0.0, seed=seed).rounds <= first.rounds + 1
    assert len(traces) == traced


GOOD = dict(
    sigma=1.0,
    radius=0.5,
    key=None,
    n0=10,
    max_n=100,
    alpha=0.1,
    num_classes=2,
    batch_size=32,
)


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("radius", -0.1, ValueError),
        ("radius", math.nan, ValueError),
        ("radius", math.inf, ValueError),
        ("radius", "1", TypeError),
        ("radius", 1e3, ValueError),  # Phi(1000) rounds to 1
        ("sigma", 0.0, ValueError),
        ("alpha", 0.0, ValueError),
        ("alpha", 1.0, ValueError),
        ("futility_alpha", 1.5, ValueError),
        ("n0", 0, ValueError),
        ("n0", 2.0, TypeError),
        ("max_n", 0, ValueError),
        ("max_n", True, TypeError),
        ("max_n", 3, ValueError),  # too few draws to ever certify
        ("num_classes", 1, ValueError),
        ("batch_size", 0, ValueError),
        ("key", 0, TypeError),
        ("classify", None, TypeError),
        ("x", np.full(SHAPE, 2.0, np.float32), ValueError),
        ("x", np.zeros((8, 8), np.float32), ValueError),
        ("mask", np.zeros((4, 4), bool), ValueError),
        ("mask", np.zeros((8, 8), bool), ValueError),
        ("mesh", "all", TypeError),
    ],
)
def test_invalid_inputs_are_named(name, value, error):
    x = np.full(SHAPE, 0.5, np.float32)
    args = dict(GOOD, key=jax.random.key(0), classify=always(0, 2), x=x, mask=MASK)
    args[name] = value
    positional = [args.pop(k) for k in ("classify", "x", "mask", "sigma", "radius")]
    with pytest.raises(error, match=name):
        mrs_jax.certify_at(*positional, **args)


def test_non_finite_logits_are_refused():
    x = np.full(SHAPE, 0.5, np.float32)

    def broken(images):
        return jnp.full((images.shape[0], 2), jnp.nan)

    with pytest.raises(ValueError, match="NaN or inf"):
        mrs_jax.certify_at(
            broken, x, MASK, 1.0, 0.5, key=jax.random.key(0), n0=16, max_n=64,
            alpha=0.01, num_classes=2, batch_size=16,
        )


def test_schedule_answers_at_once_where_the_target_is_far_beyond_max_n():
    # radius / sigma = 6.93: the fewest draws that can certify is ~3e12; the
    # old search stepped n by one from there and never returned.
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match="max_n = 100000 .* at least 3241528990113"):
        schedule_module.schedule(5 * np.sqrt(3), 1.25, 0.001, 100_000)
    assert time.perf_counter() - start < 30  # a hang, not a timing target
    # The fewest draws agree with the bound itself, on either side.
    for threshold, level in ((0.892, 0.0005), (0.99, 0.001), (0.5, 0.25)):
        n = schedule_module._fewest_draws(threshold, level)
        assert schedule_module._certifies(n, n, level, threshold)
        assert n == 1 or not schedule_module._certifies(n - 1, n - 1, level, threshold)


# --- a fixed label, and a batch that stops at its first failure ----------------------


def test_a_given_label_is_tested_with_the_same_estimation_draws():
    """label= skips the n0 selection draws; the estimation draws are the ones
    the selecting call makes with the same key, so where the selection chose
    that class every decision is equal and only n0 draws are saved."""
    for seed in range(4):
        classify, x, label, _ = linear_case(seed, 1.5)
        selected = run(classify, x, 1.0, seed)
        assert selected.selected_label == label
        given = run(classify, x, 1.0, seed, n0=0, label=label)
        assert given.selected_label == label and given.certified == selected.certified
        assert given.p_lower == selected.p_lower
        assert given.num_samples == selected.num_samples - 20
        np.testing.assert_array_equal(given.estimate_counts, selected.estimate_counts)
        assert not given.selection_counts.any()
    # The other class is tested too, and does not certify.
    wrong = run(classify, x, 1.0, 0, n0=0, label=1 - label)
    assert wrong.selected_label == 1 - label and not wrong.certified


def test_a_given_label_is_checked():
    classify, x, label, _ = linear_case(0, 1.5)
    with pytest.raises(ValueError, match="n0 must be 0 when label is given"):
        run(classify, x, 1.0, 0, label=label)
    with pytest.raises(ValueError, match=r"label must lie in \[0, num_classes = 2\)"):
        run(classify, x, 1.0, 0, n0=0, label=2)
    with pytest.raises(ValueError, match="label must be an int class or 2 int"):
        run(classify, np.stack([x, x]), 1.0, 0, n0=0, label=[0, 1, 0])
    with pytest.raises(ValueError, match="label must be an int class"):
        run(classify, x, 1.0, 0, n0=0, label=0.5)
    with pytest.raises(TypeError, match="all_or_nothing"):
        run(classify, x, 1.0, 0, all_or_nothing="yes")


def _coin_or_likely_logits(centre, images):
    """Class 1 iff the noise on masked pixel (3, 4) exceeds -t: t = 0 (a fair
    coin) where pixel (0, 0), outside the mask, is dark, t = 1.5 (p = 0.933)
    where it is bright."""
    shift = jnp.where(images[:, 0, 0, 0] < 0.5, 0.0, 1.5)
    v = images[:, 3, 4, 0] - centre + shift
    return jnp.stack([-v, v], axis=-1)


def test_all_or_nothing_stops_the_batch_at_the_first_failure():
    """A coin beside two likely images: alone, the coin fails in the first
    rounds and the likely ones certify later; with all_or_nothing the coin
    decides as alone and the likely ones stop with it, abandoned, having
    drawn fewer."""
    x = np.full(SHAPE, 0.5, np.float32)
    dark, bright = x.copy(), x.copy()
    dark[0, 0], bright[0, 0] = 0.0, 1.0
    classify = Partial(_coin_or_likely_logits, jnp.float32(0.5))
    images = np.stack([dark, bright, bright])
    settings = dict(key=jnp.stack([jax.random.key(s) for s in range(3)]), n0=0)
    settings.update(label=1, futility_alpha=0.1, max_n=4000)
    alone = run(classify, images, 1.0, 0, **settings)
    joint = run(classify, images, 1.0, 0, all_or_nothing=True, **settings)
    assert alone[0].stop_reason != "certified"
    assert alone[1].certified and alone[2].certified
    assert joint[0].num_samples == alone[0].num_samples
    assert joint[0].stop_reason == alone[0].stop_reason
    np.testing.assert_array_equal(joint[0].estimate_counts, alone[0].estimate_counts)
    for one, by_itself in zip(joint[1:], alone[1:], strict=True):
        assert one.stop_reason == "abandoned" and not one.certified
        assert one.label == mrs_jax.ABSTAIN
        assert one.num_samples < by_itself.num_samples
