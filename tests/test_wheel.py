"""The built wheel works outside the checkout.

Builds the wheel from a copy of the sources, installs it without dependencies
into a fresh virtual environment that sees this interpreter's packages (jax,
flax, ...) but not the checkout, and runs the console scripts from a directory
outside it: ``--help`` of each, a shipped config by name with field overrides,
and the analysis of the run it wrote.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from _job_helpers import write_checkpoint

import mrs_jax

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("mrs-train", "mrs-certify", "mrs-analyze", "mrs-demo")


def _can_build_wheels() -> bool:
    # setuptools >= 70.1 has bdist_wheel; older ones need the wheel package.
    major, minor = (
        int(part) for part in installed_version("setuptools").split(".")[:2]
    )
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


pytestmark = pytest.mark.skipif(
    not _can_build_wheels(), reason="needs wheel (pip install -e '.[test]')"
)


def _build_wheel(tmp: Path) -> Path:
    # A copy of the sources: setuptools writes build/ and *.egg-info next to
    # them, and a stale build/ in the checkout could ship deleted modules.
    source = tmp / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "mrs_jax",
        source / "mrs_jax",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
        + ["--no-build-isolation", "--no-index", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("*.whl")
    return wheel


def _venv_with(wheel: Path, tmp: Path) -> Path:
    """A venv holding only the wheel; this interpreter's site-packages is on its
    path as a plain directory (its .pth files, such as an editable install of the
    checkout, are not run), so the dependencies are found but not the checkout."""
    venv = tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (Path(site) / "_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
        + ["--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp)
    outside = tmp / "elsewhere"  # the working directory: not the checkout
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return wheel, _venv_with(wheel, tmp), outside, env


def test_the_wheel_holds_only_mrs_jax_with_its_configs_and_scripts(installed):
    wheel = zipfile.ZipFile(installed[0])
    names = wheel.namelist()
    dist_info = f"mrs_jax-{mrs_jax.__version__}.dist-info"
    assert {name.split("/")[0] for name in names} == {"mrs_jax", dist_info}
    assert "mrs_jax/py.typed" in names
    assert "mrs_jax/configs/certify/cifar10_cpu.py" in names
    assert "mrs_jax/configs/train/digits.py" in names
    assert "Apache License" in wheel.read(f"{dist_info}/LICENSE").decode()
    metadata = wheel.read(f"{dist_info}/METADATA").decode()
    assert f"Version: {mrs_jax.__version__}\n" in metadata
    assert 'Requires-Dist: jax[cuda12]>=0.5.0; extra == "cuda12"' in metadata
    assert 'extra == "tfds"' in metadata
    assert "chex" not in metadata
    scripts = wheel.read(f"{dist_info}/entry_points.txt").decode()
    for script in SCRIPTS:
        # Every program's console entry point is its main (run raises).
        command = script.removeprefix("mrs-")
        assert f"{script} = mrs_jax.commands.{command}:main\n" in scripts


PROBE = """
import importlib
for generic in ("train", "certify"):
    try:
        importlib.import_module(generic)
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(f"import {generic} worked")
import mrs_jax
print(mrs_jax.__file__)
"""


def test_console_scripts_answer_help_outside_the_checkout(installed):
    _, bin_dir, outside, env = installed
    commands = [[bin_dir / script, "--help"] for script in SCRIPTS]
    # Nothing generic is installed, and mrs_jax comes from the wheel.
    commands.append([bin_dir / "python", "-c", PROBE])
    running = [
        subprocess.Popen(
            command,
            cwd=outside,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    outputs = []
    for process in running:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        outputs.append(out)
    for script, out in zip(SCRIPTS, outputs, strict=False):
        assert out.startswith(f"usage: {script} "), out[:200]
    assert "--config.FIELD=value" in outputs[SCRIPTS.index("mrs-certify")]
    where = outputs[-1]
    assert str(bin_dir.parent) in where and str(REPO) not in where


def test_a_shipped_config_by_name_certifies_and_analyzes(installed, tmp_path):
    _, bin_dir, outside, env = installed
    checkpoint = write_checkpoint(
        tmp_path / "model", shape=(32, 32, 3), num_classes=10, sigma=0.5
    )
    out = outside / "run"
    certify = [bin_dir / "mrs-certify", "--config", "cifar10:smoke", "--mode"]
    certify += ["center", "--checkpoint", str(checkpoint), "--out", "run"]
    certify += ["--config.num_images=1", "--config.n", "64", "--config.sigma=0.5"]
    done = subprocess.run(
        [*certify, "--no_progress"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = [json.loads(line) for line in (out / "rows.jsonl").open()]
    assert row["index"] == 0
    config = json.loads((out / "run.json").read_text())["config"]
    assert (config["num_images"], config["n"], config["sigma"]) == (1, 64, 0.5)
    assert config["mode"] == "center" and config["dataset"] == "synthetic"
    table = subprocess.run(
        [bin_dir / "mrs-analyze", "run"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| run | center |" in table
