"""A user's mistake on the command line is named by the flag typed."""

import subprocess
import sys
from pathlib import Path

from mrs_jax.commands._cli import in_flags

REPO = Path(__file__).resolve().parents[1]


def test_library_names_become_the_flags():
    flags = {"workdir": "--workdir", "resume": "--resume"}
    line = "workdir /x already has checkpoints: pass resume=True (--resume) or not"
    assert in_flags(line, flags) == (
        "--workdir /x already has checkpoints: pass --resume or not"
    )
    assert in_flags("see --workdir", flags) == "see --workdir"  # no ----workdir
    assert in_flags("workdirs and resumes", flags) == "workdirs and resumes"


def test_mrs_certify_names_checkpoint_by_its_flag(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "certify", "--config", "digits:smoke", "--checkpoint",
         str(tmp_path / "missing"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 2, result.stderr
    assert "--checkpoint does not exist" in result.stderr
    assert "checkpoint_path" not in result.stderr
