"""``--config FILE_OR_NAME[:smoke]`` and ``--config.FIELD=value``."""

import dataclasses
import json
from pathlib import Path

import pytest
from _job_helpers import NUM_CLASSES, SHAPE, write_checkpoint

from certify.__main__ import main as certify_main
from mrs_jax.core import configfile
from mrs_jax.job import JobConfig
from mrs_jax.models import _checkpoint as ckpt
from mrs_jax.training import TrainConfig
from train.__main__ import main as train_cli

REPO = Path(__file__).resolve().parents[1]
KINDS = {"train": TrainConfig, "certify": JobConfig}


# --- a config by name or by path ----------------------------------------------------


def test_a_name_is_a_shipped_config_and_smoke_a_suffix():
    path, smoke = configfile.resolve("cifar10_cpu", "certify")
    assert Path(path) == configfile.SHIPPED / "certify" / "cifar10_cpu.py"
    assert not smoke
    assert configfile.resolve("digits:smoke", "train") == (
        str(configfile.SHIPPED / "train" / "digits.py"),
        True,
    )
    local = "certify/configs/digits.py"
    assert configfile.resolve(local, "certify") == (local, False)
    assert configfile.resolve(f"{local}:smoke", "certify") == (local, True)


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="nor a shipped train config") as e:
        configfile.resolve("cifar100", "train")
    assert "cifar10_cpu_occlusion" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        configfile.resolve("no/such/file.py", "certify")
    with pytest.raises(ValueError, match="kind"):
        configfile.shipped_names("attack")


@pytest.mark.parametrize("kind", KINDS)
def test_the_checkout_paths_load_the_shipped_configs(kind):
    names = configfile.shipped_names(kind)
    assert names == sorted(p.stem for p in (REPO / kind / "configs").glob("*.py"))
    for name in names:
        for smoke in (False, True):
            local = configfile.load(
                REPO / kind / "configs" / f"{name}.py", smoke, KINDS[kind]
            )
            shipped = configfile.load(
                configfile.shipped(name, kind), smoke, KINDS[kind]
            )
            assert local == shipped, (name, smoke)


# --- parsing --config.FIELD=value ----------------------------------------------------


def test_overrides_are_set_apart_from_the_other_arguments():
    argv = ["--config", "digits", "--config.sigma=0.25", "--smoke"]
    argv += ["--config.synthetic_shape", "16,16,3", "--out", "o"]
    rest, overrides = configfile.split_overrides(argv)
    assert rest == ["--config", "digits", "--smoke", "--out", "o"]
    assert overrides == [("sigma", "0.25"), ("synthetic_shape", "16,16,3")]
    with pytest.raises(ValueError, match=r"--config.sigma needs a value"):
        configfile.split_overrides(["--config.sigma", "--smoke"])
    with pytest.raises(ValueError, match="name a field"):
        configfile.split_overrides(["--config.=3"])


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)


@pytest.mark.parametrize(
    ("kind", "name"), [("train", "digits"), ("certify", "cifar10_cpu")]
)
def test_every_field_takes_its_own_value_back_from_text(kind, name):
    config = configfile.load(configfile.shipped(name, kind), False, KINDS[kind])
    for field in dataclasses.fields(config):
        text = _as_text(getattr(config, field.name))
        assert configfile.override(config, [(field.name, text)]) == config, field.name


def test_values_are_parsed_by_the_field_type():
    config = configfile.load(configfile.shipped("digits", "certify"), True, JobConfig)
    changed = configfile.override(
        config,
        [
            ("sigma", "0.25"),
            ("n", "1_000"),
            ("target_radius", "unrestricted"),
            ("synthetic_shape", "(16, 16, 3)"),
            ("data_dir", "data/digits"),
            ("m", "2"),
            ("tau", "none"),
            ("mode", "center"),
            ("sigma", "0.5"),  # the later one wins
        ],
    )
    assert changed == dataclasses.replace(
        config,
        sigma=0.5,
        n=1000,
        target_radius="unrestricted",
        synthetic_shape=(16, 16, 3),
        data_dir="data/digits",
        m=2,
        tau=None,
        mode="center",
    )
    assert configfile.override(changed, [("target_radius", "3.5")]).target_radius == 3.5
    train = configfile.load(configfile.shipped("digits", "train"), True, TrainConfig)
    changed = configfile.override(
        train,
        [
            ("flip_crop", "yes"),
            ("model_kwargs", "(('widths', (8, 16)),)"),
            ("occlusion_fill", "0.1,0.2,0.3"),
            ("max_steps_per_epoch", "None"),
            ("image_shape", "[16, 16, 3]"),
        ],
    )
    assert changed.flip_crop is True
    assert changed.model_kwargs == (("widths", (8, 16)),)
    assert changed.occlusion_fill == (0.1, 0.2, 0.3)
    assert changed.max_steps_per_epoch is None
    assert changed.image_shape == (16, 16, 3)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (("sigmaa", "1"), r"^--config.sigmaa: JobConfig has no field 'sigmaa' \(did "),
        (("sigma", "abc"), r"^--config.sigma: expected float, got 'abc'$"),
        (("n", "1.5"), r"^--config.n: expected int, got '1.5'$"),
        (("m", "two"), r"^--config.m: expected int or None, got 'two'$"),
        (("synthetic_shape", "big"), r"^--config.synthetic_shape: expected tuple"),
        (("n", "0"), r"^--config.n=0: n must be >= 1"),
        (("mode", "fast"), r"^--config.mode=fast: mode must be one of"),
    ],
)
def test_mistakes_are_one_line_naming_the_field(override, message):
    config = configfile.load(configfile.shipped("digits", "certify"), True, JobConfig)
    with pytest.raises(ValueError, match=message) as error:
        configfile.override(config, [override])
    assert "\n" not in str(error.value)


def test_a_flag_and_the_overrides_are_checked_together():
    # drs refuses a target radius; the override that removes it comes after --mode.
    path = configfile.shipped("cifar10_cpu_sdm", "certify")
    sdm = configfile.load(path, True, JobConfig)
    assert sdm.target_radius == "unrestricted"
    with pytest.raises(ValueError, match=r"^--mode drs: target_radius does not apply"):
        configfile.override(sdm, [], {"mode": "drs"})
    drs = configfile.override(sdm, [("target_radius", "None")], {"mode": "drs"})
    assert (drs.mode, drs.target_radius) == ("drs", None)
    # The override still wins over the flag on the same field.
    both = configfile.override(sdm, [("num_images", "2")], {"num_images": 5})
    assert both.num_images == 2


# --- the command lines ---------------------------------------------------------------


def test_train_records_the_overridden_config(tmp_path):
    workdir = tmp_path / "model"
    args = ["--config", "cifar10:smoke", "--workdir", str(workdir), "--no_progress"]
    args += ["--config.model=tiny_cnn", "--config.image_shape=16,16,3"]
    args += ["--config.max_steps_per_epoch", "1", "--config.sigma=0.75"]
    assert train_cli(args) == 0
    config = ckpt.read_model_meta(workdir)["config"]
    assert (config["sigma"], config["model"], config["image_shape"]) == (
        0.75,
        "tiny_cnn",
        [16, 16, 3],
    )
    assert config["max_steps_per_epoch"] == 1


def test_certify_records_the_overridden_config(tmp_path, capsys):
    model = write_checkpoint(tmp_path / "model")
    out = tmp_path / "run"
    args = ["--config", "cifar10:smoke", "--checkpoint", str(model), "--out", str(out)]
    args += ["--mode", "center", "--num_images", "3", "--no_progress"]
    args += [f"--config.synthetic_shape={','.join(map(str, SHAPE))}"]
    args += [f"--config.synthetic_classes={NUM_CLASSES}", "--config.patch_size=3"]
    args += ["--config.n0=8", "--config.n", "32", "--config.sigma=0.25"]
    args += ["--config.num_images=1"]  # after --num_images: the override wins
    assert certify_main(args) == 0
    config = json.loads((out / "run.json").read_text())["config"]
    assert (config["mode"], config["num_images"], config["n"]) == ("center", 1, 32)
    assert (config["sigma"], config["synthetic_shape"]) == (0.25, list(SHAPE))
    assert len((out / "rows.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--config.sigmaa=1", "error: --config.sigmaa: JobConfig has no field"),
        ("--config.n=-1", "error: --config.n=-1: n must be >= 1, got -1"),
        ("--config.alpha=x", "error: --config.alpha: expected float, got 'x'"),
    ],
)
def test_certify_override_mistakes_exit_2_before_anything_is_written(
    tmp_path, capsys, flag, message
):
    out = tmp_path / "run"
    args = ["--config", "digits:smoke", "--checkpoint", str(tmp_path), "--out"]
    assert certify_main([*args, str(out), flag]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not out.exists()
