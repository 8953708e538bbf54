"""The row schema is defined once and describes every row the job writes."""

import ast
import json
from pathlib import Path

import pytest
from _job_helpers import NUM_CLASSES, tiny_classifier, tiny_config

from mrs_jax import job
from mrs_jax.core import ATTACKED_MODES, MODES, ROW_FIELDS, describe_rows

REPO = Path(__file__).resolve().parents[1]
FIELDS = {field.name: field for field in ROW_FIELDS}


def _committed_rows():
    for rows_file in sorted((REPO / "benchmarks" / "runs").glob("*/rows.jsonl")):
        run = json.loads((rows_file.parent / "run.json").read_text())
        mode = run.get("config", run).get("mode")
        for line in rows_file.read_text().splitlines():
            yield rows_file.parent.name, mode, json.loads(line)


def _check(where, mode, row):
    for name in row:
        assert name in FIELDS, f"{where}: {name} is not in ROW_FIELDS"
        assert mode in FIELDS[name].modes, f"{where}: {mode} does not write {name}"


def test_every_committed_row_field_is_described_for_its_mode():
    seen = 0
    for run, mode, row in _committed_rows():
        assert mode in MODES, run
        _check(run, mode, row)
        seen += 1
    assert seen > 1000


@pytest.mark.parametrize(
    "mode, changes", [("clean", {}), ("practical", {"target_radius": 0.05})]
)
def test_rows_written_now_are_described(tmp_path, mode, changes):
    # The committed runs cover the other modes; these two write fields they
    # do not (the clean mode's, and certify_at's at a target radius).
    config = tiny_config(mode=mode, num_images=1, **changes)
    rows = job.run(
        config, tmp_path, classify=tiny_classifier(), num_classes=NUM_CLASSES,
        progress=False,
    )
    assert len(rows) == 1
    _check(mode, mode, rows[0])
    if changes:
        assert "certified_at_target" in rows[0]


def test_the_check_sees_an_undescribed_field_and_a_wrong_mode():
    with pytest.raises(AssertionError, match="not in ROW_FIELDS"):
        _check("x", "practical", {"label": 1, "labell": 1})
    with pytest.raises(AssertionError, match="center does not write"):
        _check("x", "center", {"patch_top_left": [0, 0]})


def test_the_shared_constants_are_defined_once():
    names = {"ABSTAIN", "MAX_DRAWS", "MODES", "ATTACKED_MODES",
             "LOCALIZATION_OUTCOMES", "EVERY_PATCH_POSITION"}
    homes = {}
    for path in (REPO / "mrs_jax").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id in names:
                    homes.setdefault(target.id, []).append(path.name)
    assert homes == {name: ["_schema.py"] for name in names}, homes


def test_the_schema_prints_one_line_per_field():
    table = describe_rows().splitlines()
    assert len(table) == 2 + len(ROW_FIELDS)
    assert all(mode in MODES for field in ROW_FIELDS for mode in field.modes)
    assert set(ATTACKED_MODES) <= set(MODES)
