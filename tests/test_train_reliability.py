"""Training runs that refuse mistakes up front and survive damage.

One writer per work dir, the whole config recorded and compared on resume, labels
checked before any step, a damaged latest checkpoint skipped with a warning, and
``python -m train`` answering each user mistake with one line and exit 2.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

import pytest
from _job_helpers import ctrl_c_command

from mrs_jax import models
from mrs_jax.core import runlock
from mrs_jax.models import _checkpoint as ckpt
from mrs_jax.training import TrainConfig, train
from train.__main__ import main as train_cli

REPO = Path(__file__).resolve().parents[1]

TINY = TrainConfig(
    dataset="synthetic",
    model="tiny_cnn",
    num_classes=3,
    image_shape=(8, 8, 3),
    synthetic_examples=32,
    epochs=2,
    batch_size=8,
    learning_rate=0.05,
    sigma=0.2,
    w_min=2,
    w_max=4,
    max_steps_per_epoch=2,
    max_eval_examples=8,
    eval_batch_size=8,
)

# The keys of a model.json written before the training config was recorded (as in
# a run started with the earlier code, e.g. benchmarks/checkpoints/cifar10_cpu).
OLD_MODEL_JSON_KEYS = {
    "dataset",
    "full_image_noise",
    "image_shape",
    "model",
    "model_kwargs",
    "num_classes",
    "sigma",
    "w_max",
    "w_min",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-epoch run of TINY (checkpoints 1 and 2); copy before changing."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train(TINY, workdir, progress=False)
    return workdir


def _copy(trained, tmp_path) -> Path:
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    return workdir


def _rows(workdir):
    lines = (workdir / ckpt.METRICS_JSONL).read_text().splitlines()
    return [json.loads(line) for line in lines]


def _no_seconds(row):
    return {k: v for k, v in row.items() if k != "seconds"}


# --- TrainConfig: every field checked, by name ----------------------------------


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("epochs", 0, ValueError),
        ("batch_size", -8, ValueError),
        ("eval_batch_size", 2.5, TypeError),
        ("learning_rate", 0.0, ValueError),
        ("learning_rate", float("nan"), ValueError),
        ("momentum", 1.0, ValueError),
        ("label_smoothing", 1.0, ValueError),
        ("label_smoothing", -0.1, ValueError),
        ("label_smoothing", "0.1", TypeError),
        ("weight_decay", -1e-4, ValueError),
        ("warmup_epochs", -1.0, ValueError),
        ("sigma", -0.5, ValueError),
        ("sigma", float("inf"), ValueError),
        ("num_classes", 1, ValueError),
        ("synthetic_examples", 0, ValueError),
        ("image_shape", (8, 8), ValueError),
        ("image_shape", (8, 0, 3), ValueError),
        ("max_steps_per_epoch", 0, ValueError),
        ("max_eval_examples", 0, ValueError),
        ("keep_checkpoints", 0, ValueError),
        ("seed", -1, ValueError),
        ("w_min", 0, ValueError),
        ("flip_crop", "yes", TypeError),
        ("full_image_noise", 1, TypeError),
        ("schedule", "linear", ValueError),
        ("model", "no_such_model", ValueError),
        ("dataset", None, TypeError),
        ("data_dir", 3, TypeError),
        ("model_kwargs", (("width", object()),), TypeError),
    ],
)
def test_config_field_out_of_range_is_named(field, value, error):
    with pytest.raises(error, match=field):
        dataclasses.replace(TINY, **{field: value})


def test_config_w_range_and_normalised_values():
    with pytest.raises(ValueError, match="w_min <= w_max"):
        dataclasses.replace(TINY, w_min=5, w_max=4)
    # Lists and dicts from a config file become tuples: hashable (the jitted step
    # is cached on the config) and equal to the tuple spelling.
    loose = dataclasses.replace(
        TINY, image_shape=[8, 8, 3], model_kwargs={"widths": [4, 8]}
    )
    tight = dataclasses.replace(TINY, model_kwargs=(("widths", (4, 8)),))
    assert loose == tight and hash(loose) == hash(tight)


# --- item 7: labels outside num_classes -----------------------------------------


def test_labels_outside_num_classes_are_refused_before_anything_is_written(
    tmp_path,
):
    config = dataclasses.replace(TINY, dataset="digits", num_classes=5)
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"digits train labels include 5, 6, 7, 8, 9"):
        train(config, workdir, progress=False)
    assert not workdir.exists()


# --- item 4: the whole config in model.json; resume refuses any change -----------


def test_model_json_records_the_config_and_resume_refuses_a_change(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    meta = ckpt.read_model_meta(workdir)
    assert meta["config"] == ckpt.json_normal(dataclasses.asdict(TINY))
    assert OLD_MODEL_JSON_KEYS < set(meta)  # still loadable by older readers
    before = (workdir / ckpt.METRICS_JSONL).read_text()
    for change, named in [
        ({"learning_rate": 0.1}, "learning_rate: 0.05 -> 0.1"),
        ({"batch_size": 4}, "batch_size: 8 -> 4"),
        ({"epochs": 3}, "epochs: 2 -> 3"),
        ({"max_eval_examples": 4}, "max_eval_examples"),
        ({"seed": 1, "momentum": 0.5}, "different momentum, seed"),
    ]:
        with pytest.raises(ValueError, match=named):
            train(dataclasses.replace(TINY, **change), workdir, resume=True)
    assert (workdir / ckpt.METRICS_JSONL).read_text() == before
    # The same config resumes (nothing left to train: the last row comes back).
    assert train(TINY, workdir, resume=True, progress=False) == _rows(workdir)[-1]


def test_model_json_of_the_earlier_code_loads_and_resume_compares_its_keys(
    trained, tmp_path
):
    workdir = _copy(trained, tmp_path)
    meta = ckpt.read_model_meta(workdir)
    old = {k: meta[k] for k in OLD_MODEL_JSON_KEYS}
    (workdir / ckpt.MODEL_JSON).write_text(json.dumps(old, indent=2, sort_keys=True))
    classify, loaded = models.load_classifier(workdir)
    assert loaded["epoch"] == 2 and loaded["model"] == "tiny_cnn"
    assert "config" not in loaded
    with pytest.raises(ValueError, match="different sigma"):
        train(dataclasses.replace(TINY, sigma=0.3), workdir, resume=True)
    # Only what the old record holds is compared: a longer run is accepted, and
    # model.json then records the whole config.
    longer = dataclasses.replace(TINY, epochs=3)
    row = train(longer, workdir, resume=True, progress=False)
    assert row["epoch"] == 3 and [r["epoch"] for r in _rows(workdir)] == [1, 2, 3]
    assert ckpt.read_model_meta(workdir)["config"]["epochs"] == 3


# --- item 11: a damaged latest checkpoint ---------------------------------------


def _damage(step_dir: Path) -> None:
    files = [p for p in step_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        path.write_bytes(b"\0damaged\0" * 3)


def test_damaged_latest_checkpoint_is_named_and_skipped(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    original = _rows(workdir)
    _damage(workdir / "checkpoints" / "2")
    with pytest.warns(UserWarning, match="step 2 .* unreadable, restored step 1"):
        _, meta = models.load_model(workdir)
    assert meta["epoch"] == 1
    # Asking for the damaged step itself is an error naming it, not a fallback.
    with pytest.raises(ValueError, match="step 2"):
        models.load_model(workdir / "checkpoints" / "2")
    # Resuming trains epoch 2 again from epoch 1, exactly as the first time.
    with pytest.warns(UserWarning, match="step 2 .* unreadable, restored step 1"):
        row = train(TINY, workdir, resume=True, progress=False)
    rows = _rows(workdir)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1] == row
    assert rows[0] == original[0]
    assert _no_seconds(rows[1]) == _no_seconds(original[1])
    assert (workdir / "broken_checkpoints" / "2").is_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, meta = models.load_model(workdir)
    assert meta["epoch"] == 2
    # With every step damaged, the error names each one.
    for step in ("1", "2"):
        _damage(workdir / "checkpoints" / step)
    with pytest.raises(ValueError, match="no readable checkpoint.*step 2.*step 1"):
        models.load_model(workdir)


# --- items 8/9: python -m train, one line per mistake, nothing written ------------


def _config_file(tmp_path, body: str, name: str = "config.py") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


_GOOD_CONFIG = """
import dataclasses
from mrs_jax.training import TrainConfig

def get_config(smoke=False):
    return TrainConfig(
        dataset="synthetic", model="tiny_cnn", num_classes=3, image_shape=(8, 8, 3),
        synthetic_examples=32, epochs={epochs}, batch_size=8, learning_rate=0.05,
        sigma=0.2, w_min=2, w_max=4, max_steps_per_epoch=1, max_eval_examples=8,
        eval_batch_size=8, keep_checkpoints=2,
    )
"""


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_config_file_mistakes_are_one_line(tmp_path, capsys):
    workdir = tmp_path / "run"
    missing = tmp_path / "missing.py"
    assert train_cli(["--config", str(missing), "--workdir", str(workdir)]) == 2
    assert "config file not found" in _one_error_line(capsys)
    with pytest.raises(FileNotFoundError):  # --debug: the traceback, on request
        train_cli(["--config", str(missing), "--workdir", str(workdir), "--debug"])

    broken = _config_file(tmp_path, "def get_config(smoke=False)\n    return 1\n")
    assert train_cli(["--config", str(broken), "--workdir", str(workdir)]) == 2
    line = _one_error_line(capsys)
    assert str(broken) in line and "syntax error at line 1" in line

    raising = _config_file(tmp_path, "import no_such_module_here\n", "raising.py")
    assert train_cli(["--config", str(raising), "--workdir", str(workdir)]) == 2
    line = _one_error_line(capsys)
    assert str(raising) in line and "no_such_module_here" in line

    out_of_range = _config_file(
        tmp_path, _GOOD_CONFIG.format(epochs=0), "out_of_range.py"
    )
    assert train_cli(["--config", str(out_of_range), "--workdir", str(workdir)]) == 2
    line = _one_error_line(capsys)
    assert str(out_of_range) in line and "epochs must be >= 1, got 0" in line
    assert not workdir.exists()


def test_cli_path_mistakes_are_one_line_and_write_nothing(
    tmp_path, capsys, monkeypatch
):
    config = str(_config_file(tmp_path, _GOOD_CONFIG.format(epochs=1)))
    workdir = tmp_path / "run"

    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    for init_from in (tmp_path / "nowhere", not_a_run):
        argv = ["--config", config, "--workdir", str(workdir)]
        assert train_cli([*argv, "--init_from", str(init_from)]) == 2
        assert f"init_from {init_from}" in _one_error_line(capsys)
    assert not workdir.exists()

    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    for target in (a_file, a_file / "run"):
        assert train_cli(["--config", config, "--workdir", str(target)]) == 2
        assert "a_file is a file" in _one_error_line(capsys)
    assert a_file.read_text() == "keep me"

    # No permission (as root the OS grants everything, so the check is faked).
    locked_parent = tmp_path / "read_only"
    locked_parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: Path(p) != locked_parent and real_access(p, mode)
    )
    assert train_cli(["--config", config, "--workdir", str(locked_parent / "r")]) == 2
    assert "no permission to write in" in _one_error_line(capsys)
    assert list(locked_parent.iterdir()) == []


def test_cli_init_from_another_architecture_is_one_line(trained, tmp_path, capsys):
    body = _GOOD_CONFIG.format(epochs=1).replace("num_classes=3", "num_classes=4")
    config = str(_config_file(tmp_path, body))
    workdir = tmp_path / "run"
    argv = ["--config", config, "--workdir", str(workdir), "--init_from", str(trained)]
    assert train_cli(argv) == 2
    line = _one_error_line(capsys)
    assert "holds another model" in line and "num_classes 3, config has 4" in line
    assert not workdir.exists()


def test_cli_resume_with_another_config_is_one_line(trained, tmp_path, capsys):
    workdir = _copy(trained, tmp_path)
    config = str(_config_file(tmp_path, _GOOD_CONFIG.format(epochs=2)))
    assert train_cli(["--config", config, "--workdir", str(workdir), "--resume"]) == 2
    line = _one_error_line(capsys)
    assert "different" in line and "max_steps_per_epoch: 2 -> 1" in line


# --- item 1 (training side) and item 10: one writer; Ctrl-C ----------------------


def test_second_train_on_a_held_workdir_is_refused_and_ctrl_c_exits_130(tmp_path):
    config = _config_file(tmp_path, _GOOD_CONFIG.format(epochs=100000))
    workdir = tmp_path / "run"
    command = [*ctrl_c_command("train"), "--config", str(config)]
    command += ["--workdir", str(workdir), "--no_progress"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    first = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (workdir / "checkpoints" / "1").is_dir():
            assert first.poll() is None, first.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        holder = json.loads((workdir / runlock.LOCK_FILE).read_text())
        assert holder["pid"] == first.pid

        second = subprocess.run(
            [*command, "--resume"], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=240,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr[-2000:]
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: work dir"), lines
        assert f'"pid": {first.pid}' in lines[0] and "in use" in lines[0]
        assert first.poll() is None  # the holder carries on

        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    kept = ckpt.latest_epoch(workdir)
    assert last == (
        f"interrupted: epoch {kept} is kept in {workdir}; rerun with --resume "
        "to continue"
    )
    # The kept epoch loads, and the lock went with the process.
    assert models.load_model(workdir)[1]["epoch"] == kept
    with runlock.hold(workdir, "work dir"):
        pass


def test_public_training_functions_name_a_bad_argument():
    import jax

    from mrs_jax.training import (
        augment,
        data_sources,
        evaluate,
        make_optimizer,
        make_train_step,
    )

    images = jax.numpy.zeros((2, 8, 8, 3))
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        augment(jax.random.key(0), images, {"sigma": 0.2})
    with pytest.raises(ValueError, match="steps_per_epoch"):
        make_optimizer(TINY, 0)
    with pytest.raises(TypeError, match="graphdef"):
        make_train_step("tiny_cnn", TINY, 4)
    with pytest.raises(TypeError, match="classify"):
        evaluate(None, [], TINY, jax.make_mesh((1,), ("data",)), jax.random.key(0))
    with pytest.raises(TypeError, match="mesh"):
        evaluate(lambda x: x, [], TINY, None, jax.random.key(0))
    with pytest.raises(TypeError, match="config"):
        data_sources(dataclasses.asdict(TINY))
    with pytest.raises(TypeError, match="workdir"):
        train(TINY, 3)
    with pytest.raises(TypeError, match="init_from"):
        train(TINY, "unused", init_from=3)
    with pytest.raises(TypeError, match="resume"):
        train(TINY, "unused", resume="yes")
    with pytest.raises(TypeError, match="progress"):
        train(TINY, "unused", progress=1)
    with pytest.raises(TypeError, match="checkpoint_path"):
        models.load_model(None)


def test_configfile_load_names_the_file_that_fails(tmp_path):
    from mrs_jax.core import configfile

    broken = _config_file(tmp_path, "x = (\n", "broken.py")
    with pytest.raises(ValueError, match=r"broken\.py: cannot import: syntax error"):
        configfile.load(str(broken), False, TrainConfig)
    raising = _config_file(
        tmp_path, "def get_config(smoke=False):\n    return 1 / 0\n", "raising.py"
    )
    with pytest.raises(ValueError, match=r"raising\.py: get_config\(smoke=True\): "
                       "ZeroDivisionError") as caught:  # fmt: skip
        configfile.load(str(raising), True, TrainConfig)
    assert isinstance(caught.value.__cause__, ZeroDivisionError)  # kept for --debug


def test_configfile_derive_changes_only_the_named_fields():
    from mrs_jax.core import configfile

    base = "train/configs/cifar10_cpu.py"
    derived = configfile.derive(base, True, TrainConfig, epochs=2, sigma=0.25)
    loaded = configfile.load(base, True, TrainConfig)
    assert derived == dataclasses.replace(loaded, epochs=2, sigma=0.25)
    with pytest.raises(ValueError, match="TrainConfig has no field epoch, sigmaa"):
        configfile.derive(base, True, TrainConfig, epoch=2, sigmaa=1.0)
    with pytest.raises(ValueError, match="sigma"):  # the config's own check
        configfile.derive(base, True, TrainConfig, sigma=-1.0)


class _InterruptedManager:
    """A checkpoint manager that receives Ctrl-C in the middle of its save."""

    def __init__(self):
        self.saved = []

    def save(self, epoch, args):
        os.kill(os.getpid(), signal.SIGINT)
        self.saved.append(epoch)

    def wait_until_finished(self):
        self.saved.append("finished")


@pytest.fixture
def sigint_handler():
    """Sets SIGINT's disposition for one test (pytest may inherit SIG_IGN)."""
    before = signal.getsignal(signal.SIGINT)
    yield lambda handler: signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_during_a_checkpoint_save_waits_for_the_save(sigint_handler):
    # SIGINT arriving inside save_checkpoint is delivered only once the step is
    # fully written: the step is intact and KeyboardInterrupt still reaches us.
    from mrs_jax.models import _checkpoint as ckpt_module

    sigint_handler(signal.default_int_handler)
    manager = _InterruptedManager()
    with pytest.raises(KeyboardInterrupt):
        ckpt_module.save_checkpoint(manager, 3, {}, {}, {"epoch": 3})
    assert manager.saved == [3, "finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored_through_a_checkpoint_save(sigint_handler):
    # A job started with `nohup ... &` ignores SIGINT; deferring it during a save
    # must not turn it into a KeyboardInterrupt.
    from mrs_jax.models import _checkpoint as ckpt_module

    sigint_handler(signal.SIG_IGN)
    manager = _InterruptedManager()
    ckpt_module.save_checkpoint(manager, 3, {}, {}, {"epoch": 3})
    assert manager.saved == [3, "finished"]
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_diverging_training_keeps_no_checkpoint_and_is_one_line(tmp_path, capsys):
    # With warm-up the two steps' losses are finite but the weights they leave
    # overflow the logits: the epoch must be neither saved nor reported.
    body = _GOOD_CONFIG.format(epochs=2)
    for old, new in (("0.05", "1e30"), ("per_epoch=1", "per_epoch=2")):
        body = body.replace(old, new)
    workdir = tmp_path / "run"
    argv = ["--config", str(_config_file(tmp_path, body)), "--workdir", str(workdir)]
    assert train_cli([*argv, "--no_progress"]) == 2
    line = _one_error_line(capsys)
    assert "training diverged in epoch 1" in line and "not finite" in line, line
    assert "learning_rate=1e+30" in line and "sigma=0.2" in line, line
    assert ckpt.latest_epoch(workdir) is None
    assert _rows(workdir) == []
