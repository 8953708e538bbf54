"""Job modes adaptive and double_masking, and certifying at a target radius."""

import dataclasses
import json
import math
import time

import jax
import numpy as np
import pytest
from _job_helpers import NUM_CLASSES, tiny_classifier, tiny_config

from mrs_jax.attacks import adaptive_patch_attack
from mrs_jax.certification import (
    certify_at,
    patchcleanser,
    patchcleanser_masks,
    square_mask,
)
from mrs_jax.job import _run as job
from mrs_jax.job._source import job_source
from mrs_jax.report import _analysis as analysis
from mrs_jax.rows import _files as rows, _metrics as metrics


def _run(config, out):
    return job.run(
        config, out, classify=tiny_classifier(), num_classes=NUM_CLASSES, progress=False
    )


def _image(config, row):
    images, _ = job_source(config).get_batch(np.array([row["dataset_index"]]))
    return images[0]


def _keys(config, row):
    """The row's (attack, clean, certify) keys, as the job splits them."""
    key = jax.random.fold_in(jax.random.key(config.seed), row["dataset_index"])
    return jax.random.split(key, 3)


def _without_seconds(all_rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in all_rows]


def _check_resume(config, out):
    """Cuts a finished run to one row and half a line; the resume equals it."""
    full = rows.all_rows(out)
    lines = (out / "rows.jsonl").read_text().splitlines(keepends=True)
    (out / "rows.jsonl").write_text(lines[0] + lines[1][:15])
    resumed = _run(config, out)
    assert _without_seconds(resumed) == _without_seconds(full)


def test_adaptive_rows_are_practical_rows_made_with_the_adaptive_attack(tmp_path):
    config = tiny_config(
        mode="adaptive", num_images=2, adaptive_occlusions=1, adaptive_noise_draws=1
    )
    out = _run(config, tmp_path / "adaptive")
    practical = _run(tiny_config(num_images=2), tmp_path / "practical")
    assert json.loads((tmp_path / "adaptive" / "run.json").read_text())["mode"] == (
        "adaptive"
    )
    for row, reference in zip(out, practical, strict=True):
        assert set(row) == set(reference)
        assert set(row["seconds"]) == set(reference["seconds"])
        # The patch is the adaptive attack's, at the job's sigma and dilation.
        x = _image(config, row)
        x_adv, top_left = adaptive_patch_attack(
            tiny_classifier(),
            x,
            row["label"],
            config.patch_size,
            key=_keys(config, row)[0],
            num_locations=config.num_locations,
            steps=config.attack_steps,
            step_size=config.attack_step_size,
            sigma=config.sigma,
            dilation=config.dilation,
            num_occlusions=1,
            num_noise=1,
        )
        assert row["patch_top_left"] == [int(v) for v in np.asarray(top_left)]
        logits = np.asarray(tiny_classifier()(np.asarray(x_adv)[None]))[0]
        assert row["undefended_adv_prediction"] == int(np.argmax(logits))
    summary = analysis.summarize_run(tmp_path / "adaptive")
    assert summary.localised and summary.covered_rate is not None
    assert "| adaptive |" in analysis.markdown_table([summary], [0])
    _check_resume(config, tmp_path / "adaptive")


def test_saved_patches_rebuild_the_attacked_images(tmp_path):
    from mrs_jax.job import attacked_images

    config = tiny_config(num_images=2, save_patches=True)
    out = _run(config, tmp_path / "saved")
    images, labels = attacked_images(config, out)
    for row, image, label in zip(out, images, labels, strict=True):
        size = config.patch_size
        assert np.asarray(row["patch"]).shape == (size, size, 3)
        assert label == row["label"]
        clean = _image(config, row)
        top, left = row["patch_top_left"]
        changed = np.argwhere(np.any(image != clean, axis=-1))
        assert changed.size and changed.min(0).tolist() >= [top, left]
        assert (changed.max(0) < [top + size, left + size]).all()
        logits = np.asarray(tiny_classifier()(image[None]))[0]
        assert row["undefended_adv_prediction"] == int(np.argmax(logits))
    # The same rows but the patch (and the run_id, a hash of the config); a
    # run without saved patches cannot rebuild.
    plain = _run(tiny_config(num_images=2), tmp_path / "plain")
    strip = lambda rs: [  # noqa: E731
        {k: v for k, v in r.items() if k not in ("patch", "run_id")}
        for r in _without_seconds(rs)
    ]
    assert strip(plain) == strip(out)
    with pytest.raises(ValueError, match="save_patches"):
        attacked_images(config, plain)
    # Made again by the run's attack with the rows' keys: the same images.
    again, _ = attacked_images(config, plain, tiny_classifier(), NUM_CLASSES)
    np.testing.assert_allclose(again, images, atol=1e-6)
    with pytest.raises(ValueError, match="does not reproduce"):
        attacked_images(config, plain, tiny_classifier(seed=1), NUM_CLASSES)


def test_double_masking_rows_are_patchcleanser_on_the_clean_image(tmp_path):
    config = tiny_config(mode="double_masking", num_images=4, pc_k=3, pc_fill=0.25)
    out = _run(config, tmp_path)
    masks = patchcleanser_masks(config.synthetic_shape, config.patch_size, 3)
    for row in out:
        x = _image(config, row)
        expected = patchcleanser(tiny_classifier(), x, masks, fill=0.25)
        assert row["prediction"] == expected.label
        assert row["certified"] is expected.certified
        assert row["case"] == expected.case
        assert row["radius"] is None and row["covered"] is None
        base = np.argmax(np.asarray(tiny_classifier()(x[None]))[0])
        assert row["base_clean_prediction"] == int(base)
        assert set(row["seconds"]) == {"patchcleanser"}
    # Certified accuracy: certified and correct, the same at every radius.
    share = np.mean([r["certified"] and r["prediction"] == r["label"] for r in out])
    summary = analysis.summarize_run(tmp_path)
    np.testing.assert_allclose(summary.certified_accuracy([0.0, 1e6]), [share] * 2)
    assert summary.clean_accuracy == pytest.approx(
        np.mean([r["prediction"] == r["label"] for r in out])
    )
    assert summary.certificate == "every patch position"
    table = analysis.markdown_table([summary], [0])
    assert "| double_masking |" in table
    assert "certified (every patch position)" in table
    _check_resume(config, tmp_path)


def test_a_table_of_mrs_and_patchcleanser_says_what_each_certifies(tmp_path):
    _run(tiny_config(mode="clean", num_images=1), tmp_path / "mrs")
    _run(tiny_config(mode="double_masking", num_images=1), tmp_path / "pc")
    summaries = [analysis.summarize_run(tmp_path / d) for d in ("mrs", "pc")]
    table = analysis.markdown_table(summaries, [0])
    assert (
        "certified (localised for practical/adaptive/clean; every patch position "
        "for double_masking and drs)"
    ) in table
    records = [analysis.summary_record(s, [0]) for s in summaries]
    assert [r["certificate"] for r in records] == ["localised", "every patch position"]


def test_patchcleanser_rows_count_at_every_radius_only_when_certified_and_right():
    pc = dict(certificate="every_patch_position", radius=None, covered=None)
    rows_ = [
        dict(label=1, prediction=1, certified=True, **pc),
        dict(label=1, prediction=1, certified=False, **pc),
        dict(label=2, prediction=1, certified=True, **pc),
    ]
    np.testing.assert_allclose(
        metrics.accuracy_curve(rows_, [0.0, 10.0, 1e9]), [1 / 3] * 3
    )
    # A missing radius is refused everywhere else.
    with pytest.raises(TypeError, match="radius"):
        metrics.certified_radii(
            [dict(label=1, prediction=1, certified=True, radius=None)]
        )


def test_target_radius_certifies_iff_certify_at_does(tmp_path):
    config = tiny_config(mode="center", num_images=4, target_radius=0.3, n=512)
    out = _run(config, tmp_path)
    mask = square_mask(config.synthetic_shape, 6, 6, config.patch_size)
    decisions = []
    for row in out:
        cert = certify_at(
            tiny_classifier(),
            _image(config, row),
            mask,
            config.sigma,
            0.3,
            key=_keys(config, row)[2],
            n0=config.n0,
            max_n=config.n,
            alpha=config.alpha,
            num_classes=NUM_CLASSES,
            batch_size=config.batch_size,
        )
        assert row["certified_at_target"] is cert.certified
        assert row["num_samples"] == cert.num_samples
        assert row["target_radius"] == 0.3
        assert row["p_lower"] == pytest.approx(cert.p_lower)
        # "certified" only where a label came back, at least the target if so.
        assert row["certified"] == (cert.p_lower > 0.5)
        assert row["prediction"] == (cert.selected_label if row["certified"] else -1)
        if cert.certified:
            assert row["radius"] >= 0.3
        decisions.append(cert.certified)
    assert set(decisions) == {True, False}  # both outcomes are checked
    summary = analysis.summarize_run(tmp_path)
    assert summary.target_radius == 0.3 and not summary.unrestricted_target
    counted = [r["certified_at_target"] and r["prediction"] == r["label"] for r in out]
    assert summary.target_accuracy == pytest.approx(np.mean(counted))
    assert job.running_accuracies(out)["at_target"] == f"{np.mean(counted):.1%}"
    draws = [r["num_samples"] for r in out]
    assert summary.mean_samples == pytest.approx(np.mean(draws))
    table = analysis.markdown_table([summary], [0])
    assert "| target R | cert at target | draws/image |" in table
    _check_resume(config, tmp_path)


def test_unrestricted_target_is_s_sqrt_c(tmp_path):
    config = tiny_config(
        mode="center", num_images=1, target_radius="unrestricted", sigma=2.0, n=2000
    )
    (row,) = _run(config, tmp_path)
    assert row["target_radius"] == pytest.approx(3 * math.sqrt(3))
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["target_radius"] == pytest.approx(3 * math.sqrt(3))
    assert run["config"]["target_radius"] == "unrestricted"
    summary = analysis.summarize_run(tmp_path)
    assert summary.unrestricted_target
    table = analysis.markdown_table([summary], [0])
    assert "5.2 (unrestricted)" in table
    assert "every possible patch inside the mask" in table


@pytest.mark.parametrize(
    "changes,error,match",
    [
        (dict(target_radius="far"), ValueError, "target_radius"),
        (dict(target_radius=-1.0), ValueError, "target_radius"),
        (dict(target_radius=True), TypeError, "target_radius"),
        (dict(mode="double_masking", target_radius=1.0), ValueError, "target_radius"),
        (dict(pc_k=0), ValueError, "pc_k"),
        (dict(pc_fill=1.5), ValueError, "pc_fill"),
        (dict(pc_batch_size=0), ValueError, "pc_batch_size"),
        (dict(adaptive_objective="pgd"), ValueError, "adaptive_objective"),
        (dict(adaptive_noise_draws=0), ValueError, "adaptive_noise_draws"),
        (dict(vote_goal="any"), ValueError, "vote_goal"),
        (dict(vote_judge="f"), ValueError, "vote_judge"),
        (dict(save_patches="yes"), TypeError, "save_patches"),
    ],
)
def test_bad_new_fields_are_refused(changes, error, match):
    with pytest.raises(error, match=match):
        tiny_config(**changes)


def test_an_unreachable_target_is_refused_before_the_run_dir_is_written(tmp_path):
    # s*sqrt(C) = 5.2 at sigma 0.25 is 20.8 sigmas: no number of draws certifies.
    for changes in (dict(target_radius="unrestricted"), dict(target_radius=1.0)):
        config = tiny_config(mode="center", num_images=1, n=256, **changes)
        with pytest.raises(ValueError, match="target_radius"):
            _run(config, tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_a_run_from_before_the_new_fields_resumes(tmp_path):
    config = tiny_config(mode="center", num_images=2)
    _run(config, tmp_path)
    lines = (tmp_path / "rows.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "rows.jsonl").write_text(lines[0])
    run = json.loads((tmp_path / "run.json").read_text())
    for field in ("target_radius", "pc_k", "pc_fill", "adaptive_objective",
                  "vote_goal", "vote_judge", "save_patches"):  # fmt: skip
        del run["config"][field]
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert [r["index"] for r in _run(config, tmp_path)] == [0, 1]
    with pytest.raises(ValueError, match=r"different config.*pc_k"):
        _run(tiny_config(mode="center", num_images=2, pc_k=3), tmp_path)


def test_the_cifar10_patchcleanser_config_runs_through_the_cli(tmp_path, capsys):
    from _job_helpers import write_checkpoint

    from certify.__main__ import main as certify_main
    from certify.analyze import main as analyze_main
    from mrs_jax.core import configfile

    path = "certify/configs/cifar10_cpu_pc.py"
    full = configfile.load(path, False, job.JobConfig)
    assert (full.mode, full.dataset) == ("double_masking", "cifar10")
    assert (full.num_images, full.patch_size, full.pc_k) == (200, 5, 6)
    assert full.data_dir == "data/cifar10"
    model = write_checkpoint(
        tmp_path / "model", shape=(32, 32, 3), num_classes=10, sigma=0.5
    )
    out = tmp_path / "pc"
    args = ["--config", path, "--checkpoint", str(model), "--out", str(out)]
    assert certify_main([*args, "--smoke", "--no_progress"]) == 0
    assert len(rows.all_rows(out)) == 2
    capsys.readouterr()
    report = tmp_path / "report"
    assert analyze_main([str(out), "--out", str(report)]) == 0
    assert "| double_masking |" in capsys.readouterr().out
    # PatchCleanser's curve is flat: its accuracy at every radius of the CSV.
    summary = analysis.summarize_run(out)
    with open(report / "curves.csv") as f:
        accuracies = {line.split(",")[-2] for line in f.readlines()[1:]}
    assert accuracies == {repr(float(summary.certified_accuracy([0.0])[0]))}
    assert (report / "curves.png").stat().st_size > 0


def test_the_cifar10_adaptive_config_is_the_practical_one_with_the_adaptive_attack(
    tmp_path,
):
    from _job_helpers import write_checkpoint

    from certify.__main__ import main as certify_main
    from mrs_jax.core import configfile

    path = "certify/configs/cifar10_cpu_adaptive.py"
    full = configfile.load(path, False, job.JobConfig)
    practical = configfile.load("certify/configs/cifar10_cpu.py", False, job.JobConfig)
    changed = {
        field.name
        for field in dataclasses.fields(full)
        if getattr(full, field.name) != getattr(practical, field.name)
    }
    # Same defence, same images (a prefix of the practical run's): only the attack.
    assert {"mode", "num_images"} <= changed
    attack = {"adaptive_objective", "adaptive_occlusions", "adaptive_noise_draws"}
    assert changed <= {"mode", "num_images", *attack}
    assert (full.mode, full.num_images, full.adaptive_objective) == (
        "adaptive",
        50,
        "eot_inpaint_noise",
    )
    model = write_checkpoint(
        tmp_path / "model", shape=(32, 32, 3), num_classes=10, sigma=0.5
    )
    out = tmp_path / "adaptive"
    args = ["--config", path, "--checkpoint", str(model), "--out", str(out)]
    assert certify_main([*args, "--smoke", "--no_progress"]) == 0
    written = rows.all_rows(out)
    assert len(written) == 2 and all("covered" in row for row in written)


def test_the_localise_phase_is_timed_until_its_result_is_on_the_host(monkeypatch):
    # localize returns once its device work is queued; reading the result waits
    # for it. A result whose first read waits stands in for that: the wait must
    # count as localise time (it once counted in no phase at all).
    from mrs_jax.job import _defence as pipeline

    config, classify = tiny_config(), tiny_classifier()
    x = np.random.default_rng(0).uniform(size=(1, 16, 16, 3)).astype(np.float32)
    settings = pipeline.localize_settings(config)
    (located,) = pipeline.localize(classify, x, config.patch_size, **settings)

    class Queued:
        def __init__(self):
            self._waited = False

        def __getattr__(self, name):
            if not self._waited:
                time.sleep(0.3)
                self._waited = True
            return getattr(located, name)

    monkeypatch.setattr(pipeline, "localize", lambda *a, **k: [Queued()])
    seconds = {}
    pipeline.defend(config, classify, NUM_CLASSES, x, jax.random.key(0)[None], seconds)
    assert seconds["localize"] >= 0.3


def test_the_digits_adaptive_config_is_the_demo_one_with_the_adaptive_attack():
    from mrs_jax.core import configfile

    for smoke in (False, True):
        full = configfile.load(
            "certify/configs/digits_adaptive.py", smoke, job.JobConfig
        )
        demo = configfile.load("certify/configs/digits.py", smoke, job.JobConfig)
        changed = {
            field.name
            for field in dataclasses.fields(full)
            if getattr(full, field.name) != getattr(demo, field.name)
        }
        # Same defence, same images in the same order: only the attack changes.
        attack = {"adaptive_objective", "adaptive_occlusions", "adaptive_noise_draws"}
        assert "mode" in changed and changed <= {"mode", *attack}
        assert (full.mode, full.adaptive_objective) == ("adaptive", "eot_inpaint_noise")
