"""use_cpu_cores: one JAX device per core, unless a count was already chosen."""

import os
import subprocess
import sys

import pytest

from certify.__main__ import main as certify_main
from mrs_jax.core import sharding


def _devices_after(code: str, xla_flags: str | None = None) -> str:
    """Runs ``code`` after ``import jax`` in a fresh process; its last line."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # the suite's own four devices
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    script = "import jax\nfrom mrs_jax.core import sharding\n" + code
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_host_is_split_into_the_devices_asked_for():
    code = "print(sharding.use_cpu_cores(3), jax.device_count(), "
    code += "sharding.sample_mesh().size)"
    assert _devices_after(code) == "3 3 3"
    cores = len(os.sched_getaffinity(0))
    assert _devices_after("print(sharding.use_cpu_cores(), jax.device_count())") == (
        f"{cores} {cores}"
    )


def test_a_count_already_chosen_is_kept():
    flags = "--xla_force_host_platform_device_count=5"
    code = "print(sharding.use_cpu_cores(3), jax.device_count())"
    assert _devices_after(code, flags) == "5 5"
    code = (
        "jax.config.update('jax_num_cpu_devices', 2)\n"
        "print(sharding.use_cpu_cores(3), jax.device_count())"
    )
    assert _devices_after(code) == "2 2"


def test_too_late_or_a_bad_count_is_refused():
    code = (
        "jax.numpy.zeros(1).block_until_ready()\n"
        "try:\n    sharding.use_cpu_cores(3)\n"
        "except RuntimeError as error:\n    print('refused', 'before' in str(error))"
    )
    assert _devices_after(code) == "refused True"
    most = sharding.max_cpu_devices()
    for bad in (0, most + 1, 2049):
        with pytest.raises(ValueError, match=rf"count must be in \[1, {most}\]"):
            sharding.use_cpu_cores(bad)
    with pytest.raises(TypeError, match="count must be an int"):
        sharding.use_cpu_cores(2.0)


def test_the_certify_cli_refuses_a_bad_device_count_in_one_line(tmp_path, capsys):
    argv = ["--config", "certify/configs/digits.py", "--checkpoint", str(tmp_path)]
    most = sharding.max_cpu_devices()
    for bad in ("0", "2049"):
        flags = ["--out", str(tmp_path / "o"), "--cpu_devices", bad]
        assert certify_main(argv + flags) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: --cpu_devices must be in [1, {most}] on this")
        assert line.endswith(f"got {bad}")
    assert not (tmp_path / "o").exists()
