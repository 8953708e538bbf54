"""The certification job: every mode, kill and resume, shards, bad configs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _job_helpers import (
    NUM_CLASSES,
    encoded_classifier,
    tiny_classifier,
    tiny_config,
    tiny_features_and_head,
    xla_flags,
)

from mrs_jax.job import _run as job
from mrs_jax.rows import _files as rows, _metrics as metrics

ROOT = Path(__file__).resolve().parent.parent


def _without_seconds(all_rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in all_rows]


@pytest.mark.parametrize("mode", job.MODES)
def test_every_mode_writes_one_complete_row_per_image(tmp_path, mode):
    # The masked-noise double masking certifies every patch content below its
    # target: a small one here (the tiny sigma cannot reach s * sqrt(C)).
    sdm = mode == "smoothed_double_masking"
    changes = dict(target_radius=0.05, pc_k=3, n0=32) if sdm else {}
    config = tiny_config(mode=mode, num_images=2, **changes)
    out = job.run(
        config,
        tmp_path,
        classify=encoded_classifier() if mode == "drs" else tiny_classifier(),
        num_classes=NUM_CLASSES,
        features_and_head=tiny_features_and_head(),
        progress=False,
    )
    assert [r["index"] for r in out] == [0, 1]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["mode"] == mode and run["size"] == 3 and run["channels"] == 3
    for row in out:
        assert row["base_clean_prediction"] in range(NUM_CLASSES)
        if mode == "double_masking":
            # PatchCleanser never abstains and has no radius (tests/test_job_modes).
            assert row["prediction"] in range(NUM_CLASSES) and row["radius"] is None
            assert row["case"] in (1, 2, 3) and row["covered"] is None
            assert row["certificate"] == "every_patch_position"
            continue
        if mode == "drs":
            # Derandomized smoothing: a vote over the 16 column bands, no radius.
            assert row["prediction"] in range(NUM_CLASSES) and row["radius"] is None
            assert sum(row["votes"]) == 16 and row["covered"] is None
            assert row["certificate"] == "every_patch_position"
            continue
        if sdm:
            assert row["prediction"] in range(-1, NUM_CLASSES)
            assert row["radius"] == 0.05 and row["covered"] is None
            assert row["certificate"] == "every_patch_position_l2"
            assert row["certified"] <= (row["prediction"] >= 0)
            assert row["num_samples"] >= 32 * 9  # a PREDICT per mask at least
            continue
        assert row["prediction"] in range(-1, NUM_CLASSES)
        assert row["radius"] >= 0.0
        assert (row["prediction"] == -1) <= (row["radius"] == 0.0)
        # Certified only where CERTIFY ran and returned the row's label.
        ran = row["p_lower"] is not None
        assert row["certified"] == (ran and row["prediction"] >= 0)
        if mode in ("practical", "adaptive", "vote_adaptive", "clean"):
            assert row["localization"] in ("located", "no_change", "multiple_regions")
            # Only two separate regions skip CERTIFY; no_change certifies too.
            assert (not ran) == (row["localization"] == "multiple_regions")
        if mode in metrics.ATTACKED_MODES:
            assert row["clean_certified"] in (True, False)
            assert row["covered"] in (True, False)
            assert {"attack", "localize", "clean"} <= set(row["seconds"])
            assert row["undefended_adv_prediction"] in range(NUM_CLASSES)
        else:
            assert row["covered"] is None
        if mode in ("center", "gradcam"):
            top, left, bottom, right = row["mask_box"]
            assert (bottom - top, right - left) == (3, 3)
    if mode == "center":
        assert out[0]["mask_box"] == [6, 6, 9, 9]
    # The rows are what the metrics read.
    metrics.empirical_accuracy(out)
    metrics.certified_accuracy(out, 0.0)


def test_harmonic_localisation_sharded_over_devices(tmp_path):
    config = tiny_config(num_images=2, inpaint_method="harmonic")
    out = job.run(
        config,
        tmp_path,
        classify=tiny_classifier(),
        num_classes=NUM_CLASSES,
        progress=False,
    )
    assert [r["index"] for r in out] == [0, 1]
    assert all("localize" in r["seconds"] for r in out)


def test_rows_do_not_depend_on_order_or_sharding(tmp_path):
    """Two process shards, run one after the other and merged, equal one run."""
    config = tiny_config(mode="center")
    clf = tiny_classifier()
    whole = job.run(
        config, tmp_path / "one", classify=clf, num_classes=4, progress=False
    )
    for index in (1, 0):
        job.run(
            config,
            tmp_path / "two",
            classify=clf,
            num_classes=4,
            progress=False,
            process_index=index,
            process_count=2,
        )
    merged = rows.read(tmp_path / "two" / "rows.jsonl")
    assert _without_seconds(merged) == _without_seconds(whole)
    assert [r["index"] for r in merged] == list(range(config.num_images))


def test_resume_skips_finished_rows_and_repairs_a_cut_line(tmp_path):
    config = tiny_config(mode="center")
    clf = tiny_classifier()
    full = job.run(
        config, tmp_path / "full", classify=clf, num_classes=4, progress=False
    )
    part = tmp_path / "part"
    job.run(
        tiny_config(mode="center", num_images=6),
        part,
        classify=clf,
        num_classes=4,
        progress=False,
    )
    lines = (part / "rows.jsonl").read_text().splitlines(keepends=True)
    # Keep three rows and half of the fourth, as a kill mid-write would.
    (part / "rows.jsonl").write_text("".join(lines[:3]) + lines[3][:20])
    resumed = job.run(config, part, classify=clf, num_classes=4, progress=False)
    assert _without_seconds(resumed) == _without_seconds(full)
    assert len((part / "rows.jsonl").read_text().splitlines()) == 6


def test_a_different_config_in_the_same_dir_is_refused(tmp_path):
    clf = tiny_classifier()
    job.run(
        tiny_config(mode="center", num_images=1),
        tmp_path,
        classify=clf,
        num_classes=4,
        progress=False,
    )
    with pytest.raises(ValueError, match="different config.*sigma"):
        job.run(
            tiny_config(mode="center", num_images=1, sigma=0.5),
            tmp_path,
            classify=clf,
            num_classes=4,
            progress=False,
        )


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(mode="worst"), "mode must be one of"),
        (dict(num_images=0), "num_images"),
        (dict(sigma=0.0), "sigma"),
        (dict(alpha=2.0), "alpha"),
        (dict(n=0), "n must"),
        (dict(attack_steps=-1), "attack_steps"),
    ],
)
def test_bad_config_raises(changes, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**changes)


def test_bad_run_arguments_raise(tmp_path):
    config = tiny_config(num_images=1)
    with pytest.raises(TypeError, match="config"):
        job.run({"mode": "center"}, tmp_path, classify=tiny_classifier(), num_classes=4)
    with pytest.raises(ValueError, match="process_index"):
        job.run(
            config,
            tmp_path,
            classify=tiny_classifier(),
            num_classes=4,
            process_index=2,
            process_count=2,
        )
    with pytest.raises(ValueError, match="num_images"):
        job.run(
            tiny_config(num_images=10_000),
            tmp_path,
            classify=tiny_classifier(),
            num_classes=4,
        )


_KILLABLE = """
import sys, time
sys.path.insert(0, {tests!r})
from _job_helpers import tiny_classifier, tiny_config
from mrs_jax.job import _run as job
job.run(tiny_config(mode="center", num_images=8, n=20000), {out!r},
        classify=tiny_classifier(), num_classes=4, progress=False)
"""


def test_a_killed_job_resumes_without_losing_or_duplicating_rows(tmp_path):
    out = tmp_path / "run"
    script = _KILLABLE.format(tests=str(ROOT / "tests"), out=str(out))
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    rows_file = out / "rows.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if rows_file.exists() and len(rows_file.read_text().splitlines()) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("the job ended before it could be killed")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(rows_file.read_text().splitlines())
    assert 2 <= written < 8, "the kill should land mid-run"

    config = tiny_config(mode="center", num_images=8, n=20000)
    resumed = job.run(
        config, out, classify=tiny_classifier(), num_classes=4, progress=False
    )
    fresh = job.run(
        config,
        tmp_path / "fresh",
        classify=tiny_classifier(),
        num_classes=4,
        progress=False,
    )
    assert [r["index"] for r in resumed] == list(range(8))
    assert len(rows_file.read_text().splitlines()) == 8
    assert _without_seconds(resumed) == _without_seconds(fresh)
    np.testing.assert_allclose(
        [r["radius"] for r in resumed], [r["radius"] for r in fresh]
    )


def test_every_mode_can_be_analysed(tmp_path):
    from mrs_jax.report import _analysis as analysis

    for mode in job.MODES:
        sdm = mode == "smoothed_double_masking"
        changes = dict(target_radius=0.05, pc_k=3, n0=32) if sdm else {}
        job.run(
            tiny_config(mode=mode, num_images=2, **changes),
            tmp_path / mode,
            classify=encoded_classifier() if mode == "drs" else tiny_classifier(),
            num_classes=NUM_CLASSES,
            features_and_head=tiny_features_and_head(),
            progress=False,
        )
        summary = analysis.summarize_run(tmp_path / mode)
        assert summary.mode == mode and summary.num_images == 2
