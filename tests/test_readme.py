"""Every Python block of the README runs on its own, as written, in a fresh process.

The blocks that read files find them where the README says: ``runs/digits`` (a
digits checkpoint, trained here for one smoke epoch) and ``data/cifar10/test`` (a
few class folders of PNGs), in a scratch working directory.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrs_jax.core import configfile
from mrs_jax.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


BLOCKS = python_blocks(README.read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    config = configfile.load("train/configs/digits.py", True, TrainConfig)
    train(config, root / "runs" / "digits", progress=False)
    rng = np.random.default_rng(0)
    for name in ("airplane", "cat"):
        folder = root / "data" / "cifar10" / "test" / name
        folder.mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_python_blocks_are_found():
    assert len(BLOCKS) >= 5
    sample = "```python\nprint(1)\n```\n```bash\nls\n```\n"
    assert python_blocks(sample) == ["print(1)\n"]


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_block_runs_alone(workdir, number):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-c", BLOCKS[number]], cwd=workdir, env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"block {number + 1}:\n{BLOCKS[number]}\n{done.stderr}"
    assert done.stdout.strip(), f"block {number + 1} printed nothing"
    # Nothing a reader cannot act on: no third-party warnings (orbax, absl).
    assert "WARNING" not in done.stderr, done.stderr
