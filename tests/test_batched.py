"""Host drivers and the job on a batch: the same results as image by image.

One image is the batch of one: ``certify``, ``predict`` and ``certify_at``
take ``[B, H, W, C]`` images and give image ``b`` exactly the one-image result
with ``key=keys[b]``; the job gives the same rows whatever ``images_per_batch``.
"""

import json
import shutil

import jax
import numpy as np
import pytest
from _job_helpers import (
    NUM_CLASSES,
    SHAPE,
    tiny_classifier,
    tiny_config,
    tiny_features_and_head,
)

import mrs_jax
from mrs_jax.certification import _counting as counting
from mrs_jax.job import _run as job

CLASSIFY = tiny_classifier()
IMAGES = np.random.default_rng(0).uniform(size=(3, *SHAPE)).astype(np.float32)
KEYS = jax.random.split(jax.random.key(1), 3)
# Three noise windows: 8x8 (two masks) and 16x16 (one), so two programs a round.
MASKS = np.zeros((3, *SHAPE[:2]), bool)
MASKS[0, 2:8, 3:9] = MASKS[1, 0:4, 0:4] = MASKS[2, 5:16, 5:16] = True
SMOOTHING = dict(n0=16, alpha=0.01, num_classes=NUM_CLASSES, batch_size=64)


def _assert_same(one, other):
    assert type(one) is type(other)
    for name, a, b in zip(one._fields, one, other, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)), name


def test_certify_at_on_a_batch_equals_certify_at_per_image(monkeypatch):
    radius, sigma, max_n = 0.1, 0.25, 512
    steps = []  # one entry per Counter.count: the programs it dispatched
    program = counting.pairs_program

    def counted(*args):
        compiled = program(*args)

        def run(*inputs):
            steps[-1] += 1
            return compiled(*inputs)

        return run

    count = counting.Counter.count
    monkeypatch.setattr(counting, "pairs_program", counted)
    monkeypatch.setattr(
        counting.Counter,
        "count",
        lambda self, *a: steps.append(0) or count(self, *a),
    )
    results = mrs_jax.certify_at(
        CLASSIFY, IMAGES, MASKS, sigma, radius, key=KEYS, max_n=max_n, **SMOOTHING
    )
    assert isinstance(results, list) and len(results) == 3
    monkeypatch.undo()
    for b, result in enumerate(results):
        one = mrs_jax.certify_at(
            CLASSIFY,
            IMAGES[b],
            MASKS[b],
            sigma,
            radius,
            key=KEYS[b],
            max_n=max_n,
            **SMOOTHING,
        )
        _assert_same(one, result)
    # The images stop at different rounds: the lockstep drops decided ones.
    assert len({r.rounds for r in results}) > 1
    # One step for the selection, then one per round, whatever the batch; a
    # step is one program per noise-window shape (two here) still drawing.
    assert len(steps) == 1 + max(r.rounds for r in results)
    assert steps[0] == 2 and steps[-1] == 1


def test_certify_and_predict_on_a_batch_equal_the_one_image_calls():
    results = mrs_jax.certify(
        CLASSIFY, IMAGES, MASKS, 0.25, key=KEYS, n=300, **SMOOTHING
    )
    predictions = mrs_jax.predict(
        CLASSIFY, IMAGES, MASKS, 0.25, key=KEYS, n=200, **_PREDICT
    )
    for b in range(3):
        one = mrs_jax.certify(
            CLASSIFY, IMAGES[b], MASKS[b], 0.25, key=KEYS[b], n=300, **SMOOTHING
        )
        _assert_same(one, results[b])
        one = mrs_jax.predict(
            CLASSIFY, IMAGES[b], MASKS[b], 0.25, key=KEYS[b], n=200, **_PREDICT
        )
        _assert_same(one, predictions[b])
    assert len({r.label for r in results}) > 1  # not one answer for all


def test_a_shared_mask_and_one_key_mean_the_split_keys():
    # One [H, W] mask for every image, one key: keys split(key, B).
    key = jax.random.key(7)
    shared = mrs_jax.certify(
        CLASSIFY, IMAGES, MASKS[2], 0.25, key=key, n=100, **SMOOTHING
    )
    split = mrs_jax.certify(
        CLASSIFY, IMAGES, np.stack([MASKS[2]] * 3), 0.25,
        key=jax.random.split(key, 3), n=100, **SMOOTHING,
    )
    for a, b in zip(shared, split, strict=True):
        _assert_same(a, b)


_PREDICT = dict(alpha=0.01, num_classes=NUM_CLASSES, batch_size=64)


def _without_seconds(all_rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in all_rows]


@pytest.mark.parametrize(
    "changes",
    [
        # dilation 6: every mask's noise window is the whole 16x16 image, so
        # fewer programs compile (mixed windows: the certify_at test above).
        dict(mode="clean", target_radius=0.1, dilation=6),
        dict(mode="practical", dilation=6),
        dict(mode="adaptive", dilation=6, adaptive_occlusions=2,
             adaptive_noise_draws=2),
        dict(mode="center", target_radius=0.1),
        dict(mode="gradcam"),
        dict(mode="double_masking", pc_k=3),
    ],
    ids=["clean_target_radius", "practical_fixed_n", "adaptive", "center",
         "gradcam", "double_masking"],
)
def test_job_rows_equal_image_by_image_and_resumed(tmp_path, changes):
    run = dict(classify=CLASSIFY, num_classes=NUM_CLASSES, progress=False)
    if changes["mode"] == "gradcam":
        run["features_and_head"] = tiny_features_and_head()
    changes = {"num_images": 5, **changes}
    one_by_one = job.run(tiny_config(**changes), tmp_path / "one", **run)
    # Groups of 3 and 2 from the start.
    grouped = tiny_config(images_per_batch=3, **changes)
    assert _without_seconds(job.run(grouped, tmp_path / "grouped", **run)) == (
        _without_seconds(one_by_one)
    )
    # The image-by-image run killed after two rows and part of the third, then
    # resumed in groups of 3: images 2-4.
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "one", mixed)
    lines = (mixed / "rows.jsonl").read_text().splitlines(keepends=True)
    (mixed / "rows.jsonl").write_text("".join(lines[:2]) + lines[2][:20])
    resumed = job.run(grouped, mixed, **run)
    assert _without_seconds(resumed) == _without_seconds(one_by_one)
    assert len((mixed / "rows.jsonl").read_text().splitlines()) == len(resumed)
    if changes["mode"] == "clean":
        assert {r["localization"] for r in resumed} >= {"located", "no_change"}


def test_bad_batch_inputs_raise_naming_the_argument():
    common = dict(key=KEYS, n=64, **SMOOTHING)
    with pytest.raises(ValueError, match="mask must have shape"):
        mrs_jax.certify(CLASSIFY, IMAGES, MASKS[:2], 0.25, **common)
    empty = MASKS.copy()
    empty[1] = False
    with pytest.raises(ValueError, match=r"mask\[1\] is all False"):
        mrs_jax.certify(CLASSIFY, IMAGES, empty, 0.25, **common)
    with pytest.raises(ValueError, match="key must have shape"):
        mrs_jax.certify(CLASSIFY, IMAGES, MASKS, 0.25, **{**common, "key": KEYS[:2]})
    with pytest.raises(TypeError, match="key must be"):
        mrs_jax.certify(
            CLASSIFY, IMAGES, MASKS, 0.25, **{**common, "key": np.zeros((3, 2))}
        )
    with pytest.raises(ValueError, match="x must be"):
        mrs_jax.certify(CLASSIFY, IMAGES[None], MASKS, 0.25, **common)
    with pytest.raises(ValueError, match="x must have values in"):
        mrs_jax.certify(CLASSIFY, IMAGES * 2, MASKS, 0.25, **common)
    with pytest.raises(ValueError, match="radius"):
        mrs_jax.certify_at(
            CLASSIFY, IMAGES, MASKS, 0.25, -1.0, key=KEYS, max_n=64, **SMOOTHING
        )
    with pytest.raises(ValueError, match=r"n must be <= 2\*\*31 - 1"):
        mrs_jax.certify(CLASSIFY, IMAGES, MASKS, 0.25, **{**common, "n": 2**31})
    with pytest.raises(ValueError, match="images_per_batch must be >= 1"):
        tiny_config(images_per_batch=0)
    with pytest.raises(TypeError, match="images_per_batch must be an int"):
        tiny_config(images_per_batch=2.0)


def test_certify_cli_images_per_batch(tmp_path, capsys):
    from _job_helpers import write_certify_config, write_checkpoint

    from certify.__main__ import main as certify_main

    config = write_certify_config(
        tmp_path / "config.py", mode="clean", num_images=2, dilation=6
    )
    args = ["--config", str(config), "--checkpoint", str(tmp_path / "model")]
    args += ["--out", str(tmp_path / "out"), "--no_progress"]
    assert certify_main([*args, "--images_per_batch", "0"]) == 2
    assert "images_per_batch must be >= 1" in capsys.readouterr().err
    write_checkpoint(tmp_path / "model")
    assert certify_main([*args, "--images_per_batch", "2"]) == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["images_per_batch"] == 2
    assert len((tmp_path / "out" / "rows.jsonl").read_text().splitlines()) == 2


_COMPILES: list[str] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, _seconds, **_: _COMPILES.append(name)
    if name == "/jax/core/compile/backend_compile_duration"
    else None
)


@pytest.mark.parametrize(
    "changes",
    [dict(mode="practical", dilation=6), dict(mode="center", target_radius=0.1)],
    ids=["practical", "center_target_radius"],
)
def test_a_job_of_many_groups_compiles_each_program_once(tmp_path, changes):
    # Groups after the first have the same shapes (dilation 6: every noise
    # window is the whole image), so they must reuse every compiled program.
    run = dict(classify=CLASSIFY, num_classes=NUM_CLASSES, progress=False)
    config = tiny_config(images_per_batch=2, num_images=2, **changes)
    job.run(config, tmp_path, **run)
    compiled_first = len(_COMPILES)
    written = job.run(tiny_config(images_per_batch=2, num_images=8, **changes),
                      tmp_path, **run)
    assert len(written) == 8
    assert len(_COMPILES) == compiled_first  # three more groups, no new program
