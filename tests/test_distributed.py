"""Two processes on 127.0.0.1, two fake CPU devices each, against one process."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _job_helpers import NUM_CLASSES, tiny_classifier, tiny_config

from mrs_jax import distributed, job, rows

WORKER = Path(__file__).resolve().parent / "_distributed_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["practical"])
def test_two_processes_give_the_single_process_rows(tmp_path, mode):
    single = job.run(
        tiny_config(mode=mode),
        tmp_path / "single",
        classify=tiny_classifier(),
        num_classes=NUM_CLASSES,
        progress=False,
    )
    out = tmp_path / "multi"
    address = f"127.0.0.1:{_free_port()}"
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
    )
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "--out",
                str(out),
                "--mode",
                mode,
                "--coordinator_address",
                address,
                "--num_processes",
                "2",
                "--process_id",
                str(index),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(2)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, output

    merged = rows.read(out / "rows.jsonl")
    shards = sorted(p.name for p in out.glob("rows-*-of-*.jsonl"))
    assert shards == ["rows-000-of-002.jsonl", "rows-001-of-002.jsonl"]
    assert [r["index"] for r in merged] == [r["index"] for r in single]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    assert strip(merged) == strip(single)


def test_initialize_rejects_inconsistent_settings():
    with pytest.raises(ValueError, match="num_processes > 1"):
        distributed.initialize(None, 2, 0)
    with pytest.raises(ValueError, match="needs num_processes"):
        distributed.initialize("127.0.0.1:1234", None, 0)
    with pytest.raises(ValueError, match="process_id"):
        distributed.initialize("127.0.0.1:1234", 2, 2)
    assert distributed.initialize(None, None, None).count == 1
