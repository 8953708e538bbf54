"""Ctrl-C ends every command with its one line and exit 130.

Python's default handler raises KeyboardInterrupt wherever the main thread is.
Inside an import of a jaxlib extension that tore the module and the process
died with SIGSEGV; inside JAX's garbage-collector callback it was printed and
dropped, and the run went on. ``mrs_jax.commands._cli.main_guard`` holds a
Ctrl-C until the import is done and raises a dropped one again.
"""

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _job_helpers import (
    ctrl_c_command,
    write_certify_config,
    write_checkpoint,
    xla_flags,
)

from mrs_jax.commands import _cli as cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for one test (pytest may inherit SIG_IGN)."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _ctrl_c_now():
    signal.raise_signal(signal.SIGINT)


def _run_on(main, capsys):
    code = cli.main_guard(main, [], interrupted="interrupted: test")
    return code, capsys.readouterr().err.strip().splitlines()


def test_ctrl_c_in_a_gc_callback_is_not_dropped(default_sigint, capsys):
    # JAX registers a gc callback; a KeyboardInterrupt raised in one is printed
    # and dropped by Python ("Exception ignored in ... KeyboardInterrupt").
    finished = []

    def interrupt_in_gc(phase, info):
        if phase == "start" and not fired:
            fired.append(True)
            _ctrl_c_now()
            for _ in range(1000):  # the handler runs here, inside the callback
                time.sleep(0.001)

    def main(argv):
        gc.callbacks.append(interrupt_in_gc)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(interrupt_in_gc)
        for _ in range(300):
            time.sleep(0.01)
        finished.append(True)
        return 0

    fired = []
    code, lines = _run_on(main, capsys)
    assert fired
    assert code == cli.INTERRUPT_EXIT and lines == ["interrupted: test"], lines
    assert not finished, "the run went on after Ctrl-C"


def test_ctrl_c_during_an_import_waits_for_the_import(
    default_sigint, capsys, tmp_path, monkeypatch
):
    # A KeyboardInterrupt inside an import leaves a half-initialised module
    # (for jaxlib's extensions: SIGSEGV at exit); it is raised once it is done.
    (tmp_path / "slow_module_for_ctrl_c.py").write_text(
        "import signal, time\n"
        "signal.raise_signal(signal.SIGINT)\n"
        "for _ in range(20):\n"
        "    time.sleep(0.005)\n"
        "COMPLETE = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    after_import = []

    def main(argv):
        import slow_module_for_ctrl_c  # noqa: F401

        for _ in range(300):
            after_import.append(True)
            time.sleep(0.01)
        return 0

    try:
        code, lines = _run_on(main, capsys)
        module = sys.modules.get("slow_module_for_ctrl_c")
        assert module is not None and module.COMPLETE
    finally:
        sys.modules.pop("slow_module_for_ctrl_c", None)
    assert code == cli.INTERRUPT_EXIT and lines == ["interrupted: test"], lines
    assert 0 < len(after_import) < 300, "raised after the import, promptly"


def test_a_swallowed_ctrl_c_still_exits_130(default_sigint, capsys):
    def main(argv):
        try:
            _ctrl_c_now()
            time.sleep(1)
        except KeyboardInterrupt:  # a library that swallows it
            pass
        return 0

    code, lines = _run_on(main, capsys)
    assert code == cli.INTERRUPT_EXIT and lines == ["interrupted: test"], lines


def test_a_ctrl_c_held_while_the_program_loaded_is_raised_first(capsys):
    before = signal.signal(signal.SIGINT, cli.HeldInterrupts([signal.SIGINT]))
    ran = []
    try:
        code, lines = _run_on(lambda argv: ran.append(True), capsys)
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert code == cli.INTERRUPT_EXIT and lines == ["interrupted: test"], lines
    assert not ran
    assert after is signal.default_int_handler  # the holder is not put back


def test_an_ignored_sigint_stays_ignored(capsys):
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def main(argv):
        _ctrl_c_now()
        time.sleep(0.05)
        return 0

    try:
        code, lines = _run_on(main, capsys)
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert code == 0 and lines == []
    assert after is signal.SIG_IGN


_STUBBORN_CLEANUP = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from mrs_jax.commands import _cli as cli

def main(argv):
    try:
        signal.raise_signal(signal.SIGINT)
        time.sleep(60)
    except KeyboardInterrupt:
        try:  # a slow clean-up: the user presses Ctrl-C again
            signal.raise_signal(signal.SIGINT)
            time.sleep(60)
        except KeyboardInterrupt:
            time.sleep(60)
    return 0

sys.exit(cli.main_guard(main, [], interrupted="interrupted: test"))
"""


def test_a_second_ctrl_c_exits_at_once():
    done = subprocess.run(
        [sys.executable, "-c", _STUBBORN_CLEANUP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == cli.INTERRUPT_EXIT, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == ["interrupted: test"], done.stderr


_ENDLESS_TRAINING = """
from mrs_jax.training import TrainConfig

def get_config(smoke=False):
    return TrainConfig(
        dataset="synthetic", model="tiny_cnn", num_classes=3, image_shape=(8, 8, 3),
        synthetic_examples=32, epochs=100000, batch_size=8, learning_rate=0.05,
        sigma=0.2, w_min=2, w_max=4, max_steps_per_epoch=2, max_eval_examples=8,
        eval_batch_size=8, keep_checkpoints=1,
    )
"""

# (event, seconds after it): "launch" lands in Python's imports, "started" (the
# work dir or run directory is held) in the first compiles (JAX compiles in
# worker threads), and later in the first steps or images.
_MOMENTS = [
    ("launch", 0.5),
    ("launch", 2.0),
    ("started", 0.0),
    ("started", 1.0),
    ("started", 2.5),
]


def _commands(tmp_path):
    """``{name: (argv builder, the file that appears once the job started)}``."""
    train_config = tmp_path / "endless.py"
    train_config.write_text(_ENDLESS_TRAINING)
    model = write_checkpoint(tmp_path / "model")
    certify_config = write_certify_config(
        tmp_path / "slow.py", num_images=30, n0=256, n=40_000, batch_size=256
    )

    def train(folder):
        argv = ["--config", str(train_config), "--workdir", str(folder)]
        return [*ctrl_c_command("train"), *argv, "--no_progress"], folder / ".lock"

    def certify(folder):
        argv = ["--config", str(certify_config), "--checkpoint", str(model)]
        argv += ["--out", str(folder), "--no_progress"]
        return [*ctrl_c_command("certify"), *argv], folder / "run.json"

    return {"train": train, "certify": certify}


def test_ctrl_c_at_any_moment_is_one_line_and_exit_130(tmp_path):
    """Train and certify, interrupted in imports, compiles and steps (at once)."""
    env = dict(os.environ, XLA_FLAGS=xla_flags(2))
    env.pop("MRS_DEBUG", None)
    tries = []
    for name, build in _commands(tmp_path).items():
        for event, delay in _MOMENTS:
            command, marker = build(tmp_path / f"{name}-{event}-{delay}")
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            tries.append(
                {"name": f"{name} {event}+{delay}s", "process": process,
                 "marker": marker if event == "started" else None,
                 "delay": delay, "since": time.monotonic(), "sent": False}
            )  # fmt: skip
    try:
        _interrupt_when_due(tries, deadline=time.monotonic() + 240)
        for one in tries:
            _, one["stderr"] = one["process"].communicate(timeout=120)
    finally:
        for one in tries:
            if one["process"].poll() is None:
                one["process"].kill()
                one["process"].wait()
    for one in tries:
        _check_interrupted(one["name"], one["process"].returncode, one["stderr"])


def _check_interrupted(name, returncode, stderr):
    assert returncode == cli.INTERRUPT_EXIT, (name, returncode, stderr[-3000:])
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("interrupted"), (name, stderr[-3000:])
    assert sum(line.startswith("interrupted") for line in lines) == 1, stderr


def _interrupt_when_due(tries, deadline):
    """Sends each try its SIGINT at its moment (its marker file, then delay)."""
    while not all(one["sent"] for one in tries):
        assert time.monotonic() < deadline, [t["name"] for t in tries if not t["sent"]]
        for one in tries:
            if one["sent"]:
                continue
            process = one["process"]
            assert process.poll() is None, (one["name"], process.communicate())
            if one["marker"] is not None and one["marker"].exists():
                one["marker"], one["since"] = None, time.monotonic()
            if (
                one["marker"] is None
                and time.monotonic() >= one["since"] + one["delay"]
            ):
                process.send_signal(signal.SIGINT)
                one["sent"] = True
        time.sleep(0.02)


# Runs argv[1:] with SIGINT at its default (a test run under ``nohup`` ignores
# it), by exec: no fork of this multithreaded process (``preexec_fn`` would).
_WITH_DEFAULT_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


def test_every_entry_point_holds_a_ctrl_c_while_it_imports(tmp_path):
    """The four console scripts and the checkout's modules, interrupted half a
    second in (still importing JAX): one line, exit 130, no traceback."""
    scripts = Path(sys.executable).parent
    missing = tmp_path / "no_such_run"
    commands = {
        "mrs-train": [str(scripts / "mrs-train"), "--config", "digits:smoke",
                      "--workdir", str(tmp_path / "t")],
        "mrs-certify": [str(scripts / "mrs-certify"), "--config", "digits:smoke",
                        "--checkpoint", str(missing), "--out", str(tmp_path / "c")],
        "mrs-analyze": [str(scripts / "mrs-analyze"), str(missing)],
        "mrs-demo": [str(scripts / "mrs-demo"), "--smoke", "--workdir",
                     str(tmp_path / "d")],
        "certify.analyze": [sys.executable, "-m", "certify.analyze", str(missing)],
        "certify.demo": [sys.executable, "-m", "certify.demo", "--smoke",
                         "--workdir", str(tmp_path / "m")],
    }  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MRS_DEBUG"}
    processes = {
        name: subprocess.Popen(
            [*_WITH_DEFAULT_SIGINT, *command], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for name, command in commands.items()
    }
    try:
        time.sleep(0.5)
        for process in processes.values():
            process.send_signal(signal.SIGINT)
        for name, process in processes.items():
            _, stderr = process.communicate(timeout=180)
            _check_interrupted(name, process.returncode, stderr)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
