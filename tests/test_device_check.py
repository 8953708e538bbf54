"""The device check's CPU form: every figure present, positive and possible."""

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import device_check  # noqa: E402


def test_the_quick_device_check_writes_every_figure(tmp_path):
    out = tmp_path / "check.json"
    result = device_check.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result, default=str))
    assert {r["model"] for r in result["counting"]} == {"resnet110", "airbench"}
    for row in result["counting"]:
        assert row["samples_per_s"] > 0 and row["compile_s"] > 0
        if row["flop_per_s"] is not None:  # a 2-core CPU: far below 10 TFLOP/s
            assert 0 < row["flop_per_s"] < 1e13
    assert [r["images_per_batch"] for r in result["defence"]] == [1, 2]
    assert all(r["images_per_s"] > 0 for r in result["defence"])
    assert result["training"]["epoch_s"] > result["training"]["step_s"] > 0
    assert result["peak_flop_per_s"] is None  # no known peak for a CPU
