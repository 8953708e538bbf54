"""The command-line entry points on a real (tiny) trained checkpoint."""

import configparser
import importlib
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from _job_helpers import (
    SHAPE,
    ctrl_c_command,
    write_certify_config,
    write_checkpoint,
    xla_flags,
)

import mrs_jax
from certify.__main__ import main as certify_main
from certify.analyze import main as analyze_main
from certify.demo import main as demo_main
from mrs_jax.core import configfile
from mrs_jax.job import _run as job
from mrs_jax.models import (
    as_classifier,
    checkpoint_fingerprint,
    classifier_fingerprint,
    get_model,
    load_classifier,
    load_model,
    weights_fingerprint,
)
from mrs_jax.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("digits_smoke")
    config = configfile.load("train/configs/digits.py", True, TrainConfig)
    train(config, workdir, progress=False)
    return workdir


@pytest.fixture(scope="module")
def synthetic32(tmp_path_factory):
    """An untrained tiny_cnn for the cifar10 smoke config's synthetic 32x32 data."""
    workdir = tmp_path_factory.mktemp("synthetic32")
    return write_checkpoint(workdir, shape=(32, 32, 3), num_classes=10, sigma=0.5)


@pytest.mark.parametrize("name", ["digits", "cifar10"])
def test_certify_cli_smoke_and_analyze(
    tmp_path, checkpoint, synthetic32, name, capsys, caplog
):
    caplog.set_level(logging.WARNING)
    out = tmp_path / name
    model = checkpoint if name == "digits" else synthetic32
    args = [
        "--config",
        f"certify/configs/{name}.py",
        "--checkpoint",
        str(model),
        "--out",
        str(out),
        "--smoke",
        "--no_progress",
    ]
    assert certify_main(args) == 0
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 2
    run = json.loads((out / "run.json").read_text())
    assert run["mode"] == "practical" and run["meta"]["model"] == "tiny_cnn"
    assert len(run["model"]["weights_sha256"]) == 64
    assert run["model"]["dataset"] == run["config"]["dataset"]
    stdout = capsys.readouterr().out
    # The digits config certifies at the training sigma; cifar10's at 7, not 0.5.
    sigma_notes = [line for line in stdout.splitlines() if "trained at sigma" in line]
    assert sigma_notes == ([] if name == "digits" else [
        "note: certifying at sigma 7; the checkpoint was trained at sigma 0.5 "
        "(both recorded in run.json)"
    ])
    assert run["sigma"] == 7.0 if name == "cifar10" else run["sigma"] == 3.0
    assert run["train_sigma"] == (0.5 if name == "cifar10" else 3.0)
    # Restarting a finished job adds nothing.
    assert certify_main(args) == 0
    assert (out / "rows.jsonl").read_text().splitlines() == lines
    # Orbax's read-only notes (absl WARNINGs on every load) are not logged.
    messages = [r.getMessage().lower() for r in caplog.records]
    assert not [m for m in messages if "read only" in m or "read_only" in m]

    for mode in ("center", "gradcam"):
        extra = ["--smoke", "--no_progress", "--mode", mode]
        assert certify_main([*args[:5], str(tmp_path / mode), *extra]) == 0
    gradcam_run = json.loads((tmp_path / "gradcam" / "run.json").read_text())
    assert gradcam_run["saliency"] == "gradcam"
    report = tmp_path / "report"
    assert analyze_main([str(out), str(tmp_path / "center"), "--out", str(report)]) == 0
    assert (report / "curves.png").stat().st_size > 0
    assert "practical" in (report / "summary.md").read_text()


def _one_line_error(capsys, code, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], err
    return err[0]


def test_certify_mistakes_are_one_line_and_write_nothing(
    tmp_path, checkpoint, capsys, monkeypatch
):
    monkeypatch.delenv("MRS_DEBUG", raising=False)
    out = tmp_path / "out"
    good = ["--checkpoint", str(checkpoint), "--out", str(out), "--no_progress"]
    digits = ["--config", "certify/configs/digits.py", "--smoke"]

    def certify(*args):
        return certify_main([*args])

    missing = str(tmp_path / "none.py")
    _one_line_error(capsys, certify("--config", missing, *good), "none.py")
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(smoke=False):\n    return JobConfig(\n")
    _one_line_error(capsys, certify("--config", str(broken), *good), "broken.py")
    bad_value = write_certify_config(tmp_path / "bad_value.py", num_images=0)
    _one_line_error(
        capsys, certify("--config", str(bad_value), *good), "bad_value.py", "num_images"
    )
    # A patch larger than the 32x32 digits: refused before run.json exists.
    too_big = write_certify_config(
        tmp_path / "too_big.py", dataset="digits", patch_size=33
    )
    code = certify("--config", str(too_big), *good)
    _one_line_error(capsys, code, "patch_size=33", "32x32")
    # Not a checkpoint, a broken model.json.
    not_ckpt = tmp_path / "empty"
    not_ckpt.mkdir()
    args = [*digits, "--checkpoint", str(not_ckpt), "--out", str(out)]
    _one_line_error(capsys, certify(*args), "model.json")
    (not_ckpt / "model.json").write_text("{oops")
    _one_line_error(capsys, certify(*args), "model.json")
    # --out is a file.
    file = tmp_path / "file"
    file.write_text("")
    args = [*digits, "--checkpoint", str(checkpoint), "--out", str(file)]
    _one_line_error(capsys, certify(*args), "not a directory")
    # A 16x16 synthetic model on 32x32 digits.
    small = write_checkpoint(tmp_path / "small", num_classes=10, shape=SHAPE)
    args = [*digits, "--checkpoint", str(small), "--out", str(out)]
    _one_line_error(capsys, certify(*args), "trained on dataset 'synthetic'")
    assert not out.exists()
    # --debug shows the traceback instead.
    with pytest.raises(FileNotFoundError):
        certify("--config", missing, *good, "--debug")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_no_permission_is_one_line(tmp_path, checkpoint, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    args = ["--config", "certify/configs/digits.py", "--smoke"]
    args += ["--checkpoint", str(checkpoint), "--out", str(locked / "run")]
    _one_line_error(capsys, certify_main(args), "permission")


def test_demo_refuses_zero_images_before_training(tmp_path, capsys):
    code = demo_main(["--workdir", str(tmp_path), "--smoke", "--num_images", "0"])
    _one_line_error(capsys, code, "--num_images")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    code = demo_main(["--workdir", str(tmp_path / "file"), "--smoke"])
    _one_line_error(capsys, code, "not a directory")


ROOT = Path(__file__).resolve().parent.parent


def test_one_writer_per_run_dir_and_ctrl_c_keeps_rows(tmp_path):
    """Two processes on one run directory; then Ctrl-C on the first."""
    model = write_checkpoint(tmp_path / "model")
    # n0 = batch_size: one compiled counting program; ~seconds per image.
    config = write_certify_config(
        tmp_path / "slow.py", num_images=30, n0=256, n=40_000, batch_size=256
    )
    out = tmp_path / "run"
    command = [*ctrl_c_command("certify"), "--config", str(config)]
    command += ["--checkpoint", str(model), "--out", str(out), "--no_progress"]
    env = dict(os.environ, XLA_FLAGS=xla_flags(1))
    env.pop("MRS_DEBUG", None)

    def start():
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = start()
    rows_file = out / "rows.jsonl"
    deadline = time.monotonic() + 180
    while not (rows_file.exists() and rows_file.read_text().count("\n") >= 1):
        if first.poll() is not None or time.monotonic() > deadline:
            first.kill()
            pytest.fail(f"the first run ended or stalled: {first.communicate()}")
        time.sleep(0.1)

    second = start()
    _, err = second.communicate(timeout=180)
    assert second.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "in use by another process" in lines[0], err
    assert f'"pid": {first.pid}' in lines[0]
    assert first.poll() is None, "the first run must still be going"

    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: finished rows")
    assert "Traceback" not in err
    kept = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert 1 <= len(kept) < 30, "the interrupt should land mid-run"
    assert len({r["index"] for r in kept}) == len(kept)


def test_imagenet_smoke_config_runs(tmp_path):
    config = configfile.load("certify/configs/imagenet.py", True, job.JobConfig)
    classify = as_classifier(get_model("tiny_cnn", num_classes=1000, seed=0))
    out = job.run(config, tmp_path, classify=classify, num_classes=1000, progress=False)
    assert len(out) == 2 and all(r["label"] < 1000 for r in out)


def test_class_count_mismatch_is_refused(tmp_path):
    config = configfile.load("certify/configs/imagenet.py", True, job.JobConfig)
    classify = as_classifier(get_model("tiny_cnn", num_classes=10, seed=0))
    with pytest.raises(ValueError, match="does not match"):
        job.run(config, tmp_path, classify=classify, num_classes=10)


@pytest.mark.parametrize(
    "program, argv",
    [
        ("train", ["--config", "missing.py", "--workdir", "w"]),
        ("certify", ["--config", "missing.py", "--checkpoint", "c", "--out", "o"]),
        ("analyze", ["missing_run"]),
        ("demo", ["--num_images", "0", "--workdir", "w"]),
    ],
)
def test_every_program_has_a_console_main_and_a_run_that_raises(
    program, argv, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(f"mrs_jax.commands.{program}")
    with pytest.raises((FileNotFoundError, ValueError)):
        module.run(argv)
    capsys.readouterr()
    assert module.main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ")
    assert not any(tmp_path.iterdir())  # nothing written
    # The checkout's thin entry points and the console scripts are these mains.
    thin = {"train": "train.__main__", "certify": "certify.__main__"}
    entry = importlib.import_module(thin.get(program, f"certify.{program}"))
    assert (entry.main, entry.run) == (module.main, module.run)
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    scripts = setup["options.entry_points"]["console_scripts"]
    assert f"mrs-{program} = mrs_jax.commands.{program}:main" in scripts


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        configfile.load(str(tmp_path / "none.py"), False, job.JobConfig)
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ValueError, match="get_config"):
        configfile.load(str(bad), False, job.JobConfig)
    with pytest.raises(TypeError, match="JobConfig"):
        configfile.load("train/configs/digits.py", False, job.JobConfig)


def test_certify_folds_batchnorm_and_a_resume_keeps_the_choice(
    tmp_path, checkpoint, capsys
):
    from mrs_jax.models import folded_classifier

    out = tmp_path / "folded"
    args = ["--config", "certify/configs/digits.py", "--smoke", "--no_progress"]
    args += ["--checkpoint", str(checkpoint), "--out", str(out)]
    assert certify_main(args) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["meta"]["batchnorm_folded"] is True
    # The fingerprint names the stored weights and the fold, not the folded
    # weights (their last bits depend on the CPU), so it differs from the plain
    # model's and from the folded weights' digest.
    model, _ = load_model(checkpoint)
    folded = weights_fingerprint(folded_classifier(model))
    plain = weights_fingerprint(load_classifier(checkpoint, fold=False)[0])
    stored = checkpoint_fingerprint(model, folded=True)
    assert record["model"]["weights_sha256"] == stored
    assert len({record["model"]["weights_sha256"], folded, plain}) == 3
    capsys.readouterr()
    # Resuming with the model as trained would mix two classifiers: refused.
    _one_line_error(capsys, certify_main([*args, "--no_fold"]), "another classifier")
    unfolded = tmp_path / "plain"
    assert certify_main([*args[:-1], str(unfolded), "--no_fold"]) == 0
    record = json.loads((unfolded / "run.json").read_text())
    assert record["meta"]["batchnorm_folded"] is False
    assert record["model"]["weights_sha256"] == plain
    assert checkpoint_fingerprint(model, folded=False) == plain


def test_the_fingerprint_does_not_depend_on_how_the_fold_rounds(
    tmp_path, checkpoint, monkeypatch
):
    """Another CPU rounds the folded weights differently; a run started there
    must resume here. Perturbing the folded weights by one ulp stands in."""
    from mrs_jax.models import folded_classifier

    out = tmp_path / "run"
    args = ["--config", "certify/configs/digits.py", "--smoke", "--no_progress"]
    args += ["--checkpoint", str(checkpoint), "--out", str(out)]

    def run_json():
        assert certify_main(args) == 0
        return json.loads((out / "run.json").read_text())

    first = run_json()

    folds = []

    def rounded_otherwise(model):
        folds.append(model)
        classify = folded_classifier(model)
        return jax.tree.map(
            lambda w: np.nextafter(w, np.inf).astype(w.dtype)
            if np.issubdtype(np.asarray(w).dtype, np.floating)
            else w,
            classify,
        )

    monkeypatch.setattr("mrs_jax.models._fold.folded_classifier", rounded_otherwise)
    before = weights_fingerprint(folded_classifier(load_model(checkpoint)[0]))
    after = weights_fingerprint(rounded_otherwise(load_model(checkpoint)[0]))
    assert before != after  # the stand-in does change the folded weights
    folds.clear()
    assert run_json()["model"] == first["model"]  # resumed, not refused
    assert len(folds) == 1  # the command certified the stand-in's weights


def test_a_library_run_records_the_fingerprint_mrs_certify_records(
    tmp_path, checkpoint
):
    """load_classifier + run_job and mrs-certify name one checkpoint alike, so
    either resumes the other's run directory."""
    config = configfile.load("certify/configs/digits.py", True, job.JobConfig)
    args = ["--config", "certify/configs/digits.py", "--smoke", "--no_progress"]
    args += ["--checkpoint", str(checkpoint), "--out"]
    model, _ = load_model(checkpoint)

    def library_run(out, fold):
        classify, meta = load_classifier(checkpoint, fold=fold)
        assert meta["folded"] is fold
        assert classifier_fingerprint(classify) == checkpoint_fingerprint(
            model, folded=fold
        )
        return mrs_jax.run_job(
            config,
            out,
            classify=classify,
            num_classes=int(meta["num_classes"]),
            meta=meta,
            progress=False,
        )

    for fold in (True, False):
        by_command, by_library = tmp_path / f"command{fold}", tmp_path / f"lib{fold}"
        flags = [] if fold else ["--no_fold"]
        assert certify_main([*args, str(by_command), *flags]) == 0
        library_run(by_library, fold)
        command_model, library_model = (
            json.loads((out / "run.json").read_text())["model"]
            for out in (by_command, by_library)
        )
        assert library_model == command_model
        # The library resumes the command's run (every row is there already).
        assert len(library_run(by_command, fold)) == config.num_images
    # The plain classifier on the folded run is refused: the two fingerprints
    # tell the classifiers apart.
    with pytest.raises(ValueError, match="another classifier"):
        library_run(tmp_path / "commandTrue", False)
