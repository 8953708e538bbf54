"""The vote-aware patch attack: surrogate, attack, job mode."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _job_helpers import tiny_config

from mrs_jax import adaptive_patch_attack, job, joint_vote, localize, prediction_map
from mrs_jax.attacks import DEFENCE_OUTCOMES, OUTCOMES, soft_vote, vote_patch_attack
from mrs_jax.certification import ABSTAIN, predict

SIZE = 4
DECOY = 11  # the context region: a 4 x 4 checkerboard at rows/cols 11..14
LOCALIZE = dict(stride=1, dilation=2, method="telea")
BUDGET = dict(num_locations=8, steps=10, step_size=0.1)
# The first version of the attack: one class fixed on the clean image.
TARGETED = dict(goal="targeted")


def _window_means(v):  # [N, H, W] -> [N, H - 1, W - 1] means of 2 x 2 windows
    return (v[:, :-1, :-1] + v[:, 1:, :-1] + v[:, :-1, 1:] + v[:, 1:, 1:]) / 4


def context_classifier(images):
    """[N, 16, 16, 1] -> [N, 3] logits; class 0 (the label) on the clean image.

    Two ways to fool it: a dark 2 x 2 window anywhere gives class 2 alone (a
    local patch, the one untargeted attacks find: it pushes the loss furthest);
    a bright window gives class 1 only while the checkerboard is intact, so
    filling any block on the checkerboard changes the prediction (the decoys
    a vote-aware attacker wants). Class 1 is the clean image's best wrong class.
    """
    x = images[..., 0]
    bright = jnp.max(_window_means(jax.nn.relu(2 * x - 1)), axis=(1, 2))
    dark = jnp.max(_window_means(jax.nn.relu(1 - 2 * x)), axis=(1, 2))
    bright, dark = (jax.nn.relu(v - 0.3) / 0.7 for v in (bright, dark))
    board = x[:, DECOY : DECOY + 4, DECOY : DECOY + 4]
    intact = jnp.mean(jnp.minimum(jnp.abs(board - 0.5) / 0.2, 1.0), axis=(1, 2))
    gate = jax.nn.sigmoid(100 * (intact - 0.95))
    return jnp.stack(
        [jnp.ones_like(bright), 3 * bright * gate - 0.5, 6 * dark - 1.0], axis=-1
    )


def context_image():
    x = np.full((16, 16, 1), 0.5, np.float32)
    i, j = np.meshgrid(range(4), range(4), indexing="ij")
    x[DECOY : DECOY + 4, DECOY : DECOY + 4, 0] = np.where((i + j) % 2, 0.7, 0.3)
    return x


def _defence(images, top_lefts):
    """(fooled, covered) per image under the real localiser, as the job sees it."""
    located = localize(context_classifier, np.asarray(images), SIZE, **LOCALIZE)
    labels = np.argmax(context_classifier(jnp.asarray(images)), -1)
    covered = [
        bool(np.all(r.mask[i : i + SIZE, j : j + SIZE]))
        for r, (i, j) in zip(located, np.asarray(top_lefts), strict=True)
    ]
    return labels != 0, np.array(covered), located


@pytest.fixture(scope="module")
def attacked():
    """Three vote-aware attacks of the context image, as one batch."""
    images = np.stack([context_image()] * 3)
    keys = jax.random.split(jax.random.key(0), 3)
    result = vote_patch_attack(
        context_classifier, images, np.zeros(3, np.int32), SIZE, key=keys,
        return_details=True, **TARGETED, **BUDGET, **LOCALIZE,
    )  # fmt: skip
    return images, keys, result


def test_soft_vote_is_differentiable_and_is_the_vote_where_it_is_confident():
    x = context_image()
    x[2:6, 2:6] = 1.0  # a bright patch: class 1 while the board is intact
    assert int(np.argmax(context_classifier(jnp.asarray(x[None])))) == 1
    surrogate = lambda im: soft_vote(context_classifier, im, 1, SIZE).score.sum()  # noqa: E731
    grad = jax.grad(surrogate)(jnp.asarray(x))
    assert grad.shape == x.shape and bool(jnp.all(jnp.isfinite(grad)))
    assert float(jnp.abs(grad).sum()) > 0
    # With logits scaled up, the soft map is one-hot: exactly the vote's score
    # on the harmonic prediction map (whose attacked class is 1 here).
    sharp = lambda im: 1000.0 * context_classifier(im)  # noqa: E731
    soft = soft_vote(sharp, jnp.asarray(x), 1, SIZE)
    labels = prediction_map(sharp, x, SIZE, method="harmonic")
    vote = joint_vote(labels, SIZE)
    assert int(vote.attacked_class) == 1 and int(vote.score_map.max()) > 0
    np.testing.assert_allclose(soft.changed, np.asarray(labels) != 1, atol=1e-4)
    np.testing.assert_allclose(soft.score, vote.score_map, atol=1e-2)


def test_the_vote_attack_misses_where_the_adaptive_attack_is_located(
    attacked,
):
    images, keys, result = attacked
    labels = np.zeros(3, np.int32)
    fooled, covered, located = _defence(result.image, result.top_left)
    # Vote-aware: f fooled (into the context class), the mask elsewhere.
    assert fooled.all() and not covered.any(), (result.top_left, covered)
    assert list(result.outcome) == [OUTCOMES.index("fooled_missed")] * 3
    assert all(r.reason_name == "ok" for r in located)
    np.testing.assert_array_equal(result.target, [1, 1, 1])
    # Today's adaptive attack, in its variant meant to hide the patch from the
    # vote (patch_attack finds the same local patch): located every time.
    x_adv, top_left = adaptive_patch_attack(
        context_classifier, images, labels, SIZE, key=jax.random.key(0),
        objective="eot_inpaint", **BUDGET,
    )  # fmt: skip
    fooled, covered, _ = _defence(x_adv, top_left)
    assert fooled.all() and covered.all(), (top_left, covered)
    assert (np.argmax(context_classifier(x_adv), -1) == 2).all()


def test_aimed_at_the_local_class_the_attack_is_located_and_says_so(attacked):
    # Class 2 needs no context: every candidate is found by the vote, and the
    # reported outcome is what the real localiser makes of the kept image.
    images, keys, _ = attacked
    result = vote_patch_attack(
        context_classifier, images, np.zeros(3, np.int32), SIZE, key=keys,
        target=np.full(3, 2), return_details=True, **TARGETED, **BUDGET, **LOCALIZE,
    )  # fmt: skip
    fooled, covered, _ = _defence(result.image, result.top_left)
    assert fooled.all() and covered.all()
    assert list(result.outcome) == [OUTCOMES.index("fooled_covered")] * 3


def test_the_kept_candidate_is_the_worst_for_the_defence_then_the_greatest_j():
    # Random patches (no step): some fool f, some do not; the kept one has the
    # best outcome for the attacker and, among those, the greatest J.
    result = vote_patch_attack(
        context_classifier, context_image(), 0, SIZE, key=jax.random.key(3),
        num_locations=8, steps=0, step_size=0.1, return_details=True, **TARGETED,
        **LOCALIZE,
    )  # fmt: skip
    outcomes, objectives = result.candidate_outcomes, result.candidate_objectives
    assert len(set(outcomes.tolist())) >= 2, outcomes  # a real choice was made
    assert np.all(np.diff(objectives) <= 0)
    assert result.outcome == outcomes.min()
    assert result.objective == objectives[outcomes == outcomes.min()].max()
    fooled, covered, located = _defence(result.image[None], result.top_left[None])
    rank = 3 if not fooled[0] else 1 if located[0].abstain else 2 if covered[0] else 0
    assert result.outcome == rank


def test_the_patch_term_keeps_the_patchs_own_blocks_unremarkable(attacked):
    # Same starts without the patch term: the patch's blocks change the label
    # more often when filled (soft score at the patch, from soft_vote).
    images, keys, result = attacked
    plain = vote_patch_attack(
        context_classifier, images, np.zeros(3, np.int32), SIZE, key=keys,
        patch_weight=0.0, return_details=True, **TARGETED, **BUDGET, **LOCALIZE,
    )  # fmt: skip

    def score_at_patch(attack):
        return np.mean([
            float(soft_vote(context_classifier, jnp.asarray(x), 1, SIZE).score[
                tuple(top_left)])
            for x, top_left in zip(attack.image, attack.top_left, strict=True)
        ])  # fmt: skip

    assert score_at_patch(result) < 0.8 * score_at_patch(plain)


def test_a_batch_equals_one_image_calls(attacked):
    images, keys, batch = attacked
    one = vote_patch_attack(
        context_classifier, images[2], 0, SIZE, key=keys[2], return_details=True,
        **TARGETED, **BUDGET, **LOCALIZE,
    )  # fmt: skip
    assert one.image.shape == images[2].shape and one.top_left.shape == (2,)
    for got, want in zip(one, batch, strict=True):
        np.testing.assert_array_equal(got, want[2])


@pytest.mark.parametrize(
    "change, error, name",
    [
        (dict(classify=3), TypeError, "classify"),
        (dict(x=np.zeros((16, 16))), ValueError, "x"),
        (dict(x=np.full((16, 16, 1), 2.0, np.float32)), ValueError, "x"),
        (dict(y=np.array([0, 1])), ValueError, "y"),
        (dict(y=3), ValueError, "y"),
        (dict(size=17), ValueError, "size"),
        (dict(key=0), TypeError, "key"),
        (dict(steps=-1), ValueError, "steps"),
        (dict(step_size=0.0), ValueError, "step_size"),
        (dict(num_locations=0), ValueError, "num_locations"),
        (dict(num_candidates=9), ValueError, "num_candidates"),
        (dict(num_blocks=0), ValueError, "num_blocks"),
        (dict(location_chunk=0), ValueError, "location_chunk"),
        (dict(target=0, goal="targeted"), ValueError, "target"),
        (dict(target=1.5, goal="targeted"), TypeError, "target"),
        (dict(target=1), ValueError, "target"),
        (dict(goal="any"), ValueError, "goal"),
        (dict(sigma=0.0), ValueError, "sigma"),
        (dict(sigma=0.5, judge_n=0), ValueError, "judge_n"),
        (dict(sigma=0.5, alpha=1.5), ValueError, "alpha"),
        (dict(kappa=0.0), ValueError, "kappa"),
        (dict(base_weight=-1.0), ValueError, "base_weight"),
        (dict(base_weight=0, patch_weight=0, decoy_weight=0), ValueError, "weight"),
        (dict(method="blur"), ValueError, "method"),
        (dict(tau=-1.0), ValueError, "tau"),
        (dict(m=5), ValueError, "m"),
        (dict(dilation=-1), ValueError, "dilation"),
        (dict(stride=0), ValueError, "stride"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(change, error, name):
    args = dict(classify=context_classifier, x=context_image(), y=0, size=SIZE)
    args.update({k: change.pop(k) for k in list(change) if k in args})
    kwargs = {"key": jax.random.key(0), **BUDGET, **change}
    with pytest.raises(error, match=name):
        vote_patch_attack(*args.values(), **kwargs)


def test_bad_batch_keys_and_surrogate_inputs_raise():
    images = np.stack([context_image()] * 2)
    with pytest.raises(ValueError, match="key"):
        vote_patch_attack(
            context_classifier, images, np.zeros(2, np.int32), SIZE,
            key=jax.random.split(jax.random.key(0), 3), **BUDGET,
        )  # fmt: skip
    with pytest.raises(ValueError, match="target"):
        soft_vote(context_classifier, context_image(), np.array([1, 2]), SIZE)
    with pytest.raises(ValueError, match="x"):
        soft_vote(context_classifier, np.zeros((16, 16), np.float32), 1, SIZE)


def test_a_tiny_job_runs_in_mode_vote_adaptive(tmp_path, attacked):
    from mrs_jax.core import configfile
    from mrs_jax.report import _analysis as analysis

    # The context classifier and the attack's budget above, so the job's
    # one-image groups reuse the compiled search of the one-image test.
    config = tiny_config(
        mode="vote_adaptive", num_images=2, synthetic_shape=(16, 16, 1),
        synthetic_classes=3, patch_size=SIZE, num_locations=8, attack_steps=10,
        attack_step_size=0.1, dilation=2, n=64,
    )  # fmt: skip
    out = job.run(
        config, tmp_path, classify=context_classifier, num_classes=3, progress=False
    )
    assert [r["index"] for r in out] == [0, 1]
    for row in out:
        assert row["covered"] in (True, False)
        assert row["localization"] in ("located", "no_change", "multiple_regions")
        assert len(row["patch_top_left"]) == 2 and "attack" in row["seconds"]
    summary = analysis.summarize_run(tmp_path)
    assert summary.mode == "vote_adaptive" and summary.localised
    # The CIFAR-10 config is the practical one with this attack, on 100 images.
    # The first version keeps its settings; the deployed one takes the defaults.
    load = lambda name: configfile.load(name, False, job.JobConfig)  # noqa: E731
    base = load("certify/configs/cifar10_cpu.py")
    first = load("certify/configs/cifar10_cpu_vote.py")
    deployed = load("certify/configs/cifar10_cpu_vote_deployed.py")
    assert (first.vote_goal, first.vote_judge) == ("targeted", "localizer")
    assert (deployed.vote_goal, deployed.vote_judge) == ("untargeted", "defence")
    assert deployed.save_patches and not first.save_patches
    for vote in (first, deployed):
        assert (vote.mode, vote.num_images) == ("vote_adaptive", 100)
        assert dataclasses.replace(
            vote, mode="practical", num_images=500, vote_goal="untargeted",
            vote_judge="defence", save_patches=False,
        ) == base  # fmt: skip


def reach_classifier(images):
    """[N, 16, 16, 1] -> [N, 3]: label 0 everywhere but under a dark 2 x 2
    window (class 2). Class 1 is the clean image's best wrong class and out of
    reach: its logit is a constant below the label's."""
    dark = jnp.max(_window_means(jax.nn.relu(1 - 2 * images[..., 0])), axis=(1, 2))
    dark = jax.nn.relu(dark - 0.3) / 0.7
    ones = jnp.ones_like(dark)
    return jnp.stack([ones, 0.9 * ones, 6 * dark - 1.0], axis=-1)


def test_untargeted_it_fools_where_the_clean_best_wrong_class_is_out_of_reach():
    # The base term alone (no vote terms), so the goal is all that differs.
    images = np.full((3, 16, 16, 1), 0.5, np.float32)
    keys = jax.random.split(jax.random.key(0), 3)
    run = lambda **goal: vote_patch_attack(  # noqa: E731
        reach_classifier, images, np.zeros(3, np.int32), SIZE, key=keys,
        patch_weight=0.0, decoy_weight=0.0, return_details=True, **goal,
        **BUDGET, **LOCALIZE,
    )  # fmt: skip
    targeted, untargeted = run(**TARGETED), run()
    labels = lambda r: np.argmax(reach_classifier(jnp.asarray(r.image)), -1)  # noqa: E731
    np.testing.assert_array_equal(labels(targeted), [0, 0, 0])
    np.testing.assert_array_equal(targeted.target, [1, 1, 1])
    np.testing.assert_array_equal(labels(untargeted), [2, 2, 2])
    np.testing.assert_array_equal(untargeted.target, [2, 2, 2])


def test_judged_by_the_defence_the_kept_candidate_is_the_defences_worst():
    # Random patches (no step), each judged by localise + PREDICT in its mask.
    result = vote_patch_attack(
        context_classifier, context_image(), 0, SIZE, key=jax.random.key(3),
        num_locations=8, steps=0, step_size=0.1, return_details=True,
        sigma=0.25, judge_n=64, **TARGETED, **LOCALIZE,
    )  # fmt: skip
    defence, support = result.candidate_defence, result.candidate_support
    assert set(defence.tolist()) <= {0, 1, 2} and np.all(
        (support >= 0) & (support <= 1)
    )
    assert result.defence == defence.min()
    kept = int(np.argmax(result.candidate_objectives == result.objective))
    assert support[kept] == support[defence == defence.min()].min()
    # The kept image, judged again the same way, gets the same answer.
    (located,) = localize(context_classifier, result.image[None], SIZE, **LOCALIZE)
    if located.reason_name == "multiple_regions":
        assert DEFENCE_OUTCOMES[result.defence] == "abstained"
    else:
        answer = predict(
            context_classifier, result.image, located.mask, 0.25,
            key=jax.random.key(11), n=2000, alpha=0.001, num_classes=3,
            batch_size=500,
        )  # fmt: skip
        # 64 draws against 2,000: the shares on the label agree within 4 sd.
        share = answer.counts[0] / 2000
        assert abs(float(result.candidate_support[kept]) - share) < 0.25
        if answer.label != ABSTAIN and share > 0.9:
            assert DEFENCE_OUTCOMES[result.defence] == "right"


def test_a_defence_judged_candidate_that_misses_f_ranks_first_if_the_defence_errs():
    from mrs_jax.attacks._vote_judge import keep_worst_for_defence

    # Candidate 0 (greatest J) fooled f and the mask missed it, but the smoothed
    # vote in the mask answers right; candidate 1 did not fool f, yet the
    # defence answers a wrong label there. The localiser alone keeps 0.
    images = np.zeros((1, 2, 4, 4, 1), np.float32)
    images[0, 1] = 1.0
    corners = np.array([[[0, 0], [1, 1]]], np.int32)
    objective = np.array([[2.0, 1.0]], np.float32)
    outcomes = np.array(
        [[OUTCOMES.index("fooled_missed"), OUTCOMES.index("not_fooled")]]
    )
    judged = np.array(
        [[DEFENCE_OUTCOMES.index("right"), DEFENCE_OUTCOMES.index("wrong")]]
    )
    support = np.array([[0.9, 0.1]], np.float32)
    keep = lambda d, p: keep_worst_for_defence(  # noqa: E731
        images, corners, objective, outcomes, d, p, np.array([1])
    )
    by_defence = keep(judged, support)
    assert int(by_defence.defence[0]) == DEFENCE_OUTCOMES.index("wrong")
    np.testing.assert_array_equal(by_defence.top_left[0], [1, 1])
    unjudged = keep(np.full((1, 2), -1), np.full((1, 2), np.nan, np.float32))
    np.testing.assert_array_equal(unjudged.top_left[0], [0, 0])
    # Equal answers: the least support for the label goes first.
    both_right = np.full((1, 2), DEFENCE_OUTCOMES.index("right"))
    np.testing.assert_array_equal(keep(both_right, support).top_left[0], [1, 1])


def test_vote_adaptive_rows_must_say_whether_the_mask_covers_the_patch():
    from mrs_jax.rows import _metrics as metrics

    row = dict(label=1, prediction=1, radius=2.0, certified=True)
    with pytest.raises(ValueError, match="no 'covered'"):
        metrics.certified_accuracy([row], 0.0, mode="vote_adaptive")
    missed = dict(row, covered=False)
    assert metrics.certified_accuracy([missed], 0.0, mode="vote_adaptive") == 0.0


def _comparison_script():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import attack_comparison
    finally:
        sys.path.pop(0)
    return attack_comparison


def _attacked_row(index, prediction, radius, covered, undefended=0, loc="located"):
    return dict(
        index=index, label=1, prediction=prediction, radius=radius,
        certified=prediction >= 0, covered=covered, localization=loc,
        undefended_adv_prediction=undefended, base_clean_prediction=1,
    )  # fmt: skip


def test_the_three_way_comparison_reads_run_dirs_image_by_image(tmp_path, capsys):
    import json

    script = _comparison_script()
    runs = {
        "pgd": ("practical", [_attacked_row(0, 1, 9.0, True),
                              _attacked_row(1, 1, 2.0, True),
                              _attacked_row(2, 1, 9.0, True)]),
        "adaptive": ("adaptive", [_attacked_row(0, 1, 9.0, True),
                                  _attacked_row(1, 0, 3.0, True)]),
        "vote": ("vote_adaptive", [_attacked_row(0, 1, 9.0, False, loc="no_change"),
                                   _attacked_row(1, -1, 0.0, False,
                                                 loc="multiple_regions")]),
    }  # fmt: skip
    for name, (mode, rows) in runs.items():
        (tmp_path / name).mkdir()
        info = dict(mode=mode, size=5, channels=3)
        (tmp_path / name / "run.json").write_text(json.dumps(info))
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        (tmp_path / name / "rows.jsonl").write_text(lines)
    assert script.main([str(tmp_path / n) for n in runs]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[0] == "2 images in all 3 runs"
    assert lines[4] == (
        "| 0 | 1 | right, covered, R>=8.66 | right, covered, R>=8.66 | "
        "right, missed (no_change), - | vote |"
    )
    assert lines[5] == (
        "| 1 | 1 | right, covered, R>=0 | wrong, covered, - | "
        "abstain, missed (multiple_regions), - | adaptive, vote |"
    )
    totals = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    assert totals["| pgd"].startswith(
        "| pgd | practical | 2 | 1.000 | 1.000 | 1.000 | 0.500 | 1.000 | 2 / 0 / 0 |"
    )
    assert totals["| vote"].startswith(
        "| vote | vote_adaptive | 2 | 0.500 | 0.000 | 0.000 | 0.000 |"
    )
    assert "vote worse for the defence than pgd on 2 images, better on 0:" in lines
    assert "- mask missed the patch (no_change): 1" in lines
    assert "vote worse for the defence than adaptive on 1 images, better on 0:" in lines
    assert script.main([str(tmp_path / "pgd")]) == 2  # one run: nothing to compare
    with pytest.raises(ValueError, match="share no test image"):
        script.compare(
            {"a": runs["pgd"][1][2:], "b": runs["vote"][1]},
            {"a": "practical", "b": "vote_adaptive"}, [0.0],
        )  # fmt: skip
    with pytest.raises(ValueError, match="not an attacked mode"):
        script.compare(
            {"a": runs["pgd"][1], "b": runs["vote"][1]},
            {"a": "clean", "b": "vote_adaptive"}, [0.0],
        )  # fmt: skip


@pytest.mark.parametrize("size, stride, m", [(4, 1, 2), (5, 2, 3), (3, 1, 1)])
def test_the_sampled_template_is_the_votes_template(size, stride, m):
    # The search estimates the soft score at a position from template cells
    # drawn uniformly, outside-the-map cells counting 0: summed over every
    # offset, that estimate must be the vote's score exactly.
    from mrs_jax.attacks import _soft_vote
    from mrs_jax.localization import _joint_vote as localize_module

    vote, _ = localize_module.vote_settings(size, stride=stride, m=m)
    offsets = _soft_vote.template_offsets(vote)
    assert len(offsets) == localize_module.template_size(size, stride, m)
    changed = np.random.default_rng(0).uniform(size=(7, 9)).astype(np.float32)
    score = np.asarray(localize_module.joint_vote_scores(jnp.asarray(changed), vote))
    for centre in [(0, 0), (3, 4), (6, 8), (2, 8)]:
        cells = np.asarray(centre) + offsets
        inside = np.all((cells >= 0) & (cells < changed.shape), axis=1)
        total = changed[cells[inside, 0], cells[inside, 1]].sum()
        np.testing.assert_allclose(total, score[centre], rtol=1e-5)
