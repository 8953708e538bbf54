"""The refactored pipeline reproduces rows written before it.

``tests/data/digits_rows.json`` holds the rows (every field but ``seconds``) of
the digits demo's settings on a fixed template classifier for the first three
test images, in four modes, written by commit 5da872c, the last before the
functional core (``python tests/_digits_rows.py``). The same keys must give the
same rows, image by image and in groups. They are computed in a subprocess under
XLA's default settings, as they were written: the suite's cheaper compiler
settings (``conftest.py``) round floats differently.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from _digits_rows import CASES, NUM_IMAGES

HERE = Path(__file__).parent
EXPECTED = json.loads((HERE / "data" / "digits_rows.json").read_text())


def _rows_under_default_xla(tmp_path) -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = tmp_path / "rows.json"
    subprocess.run(
        [sys.executable, str(HERE / "_digits_rows.py"), str(out), "--grouped"],
        cwd=HERE.parent, env=env, check=True,
    )  # fmt: skip
    return json.loads(out.read_text())


def test_digits_demo_rows_equal_the_rows_before_the_refactor(tmp_path):
    written = _rows_under_default_xla(tmp_path)
    cases = {case: case for case in CASES} | {"grouped_practical": "practical"}
    for case, expected_case in cases.items():
        assert len(written[case]) == NUM_IMAGES, case
        for old, new in zip(EXPECTED[expected_case], written[case], strict=True):
            assert {k: new.get(k) for k in old} == old, case
