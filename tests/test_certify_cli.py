"""The command-line entry points on a real (tiny) trained checkpoint."""

import json

import pytest

from certify.__main__ import main as certify_main
from mrs_jax import analysis, configfile, job
from mrs_jax.models import as_classifier, get_model
from mrs_jax.training import TrainConfig, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("digits_smoke")
    config = configfile.load("train/configs/digits.py", True, TrainConfig)
    train(config, workdir, progress=False)
    return workdir


@pytest.mark.parametrize("name", ["digits", "cifar10"])
def test_certify_cli_smoke_and_analyze(tmp_path, checkpoint, name):
    out = tmp_path / name
    args = [
        "--config",
        f"certify/configs/{name}.py",
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
        "--smoke",
        "--no_progress",
    ]
    certify_main(args)
    lines = (out / "rows.jsonl").read_text().splitlines()
    assert len(lines) == 2
    run = json.loads((out / "run.json").read_text())
    assert run["mode"] == "practical" and run["meta"]["model"] == "tiny_cnn"
    # Restarting a finished job adds nothing.
    certify_main(args)
    assert (out / "rows.jsonl").read_text().splitlines() == lines

    for mode in ("center", "gradcam"):
        extra = ["--smoke", "--no_progress", "--mode", mode]
        certify_main([*args[:5], str(tmp_path / mode), *extra])
    gradcam_rows = (tmp_path / "gradcam" / "rows.jsonl").read_text().splitlines()
    assert all(json.loads(r)["saliency"] == "gradcam" for r in gradcam_rows)
    report = tmp_path / "report"
    assert (
        analysis.main([str(out), str(tmp_path / "center"), "--out", str(report)]) == 0
    )
    assert (report / "curves.png").stat().st_size > 0
    assert "practical" in (report / "summary.md").read_text()


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


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        configfile.load(str(tmp_path / "none.py"), False, job.JobConfig)
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ValueError, match="get_config"):
        configfile.load(str(bad), False, job.JobConfig)
    with pytest.raises(TypeError, match="JobConfig"):
        configfile.load("train/configs/digits.py", False, job.JobConfig)
