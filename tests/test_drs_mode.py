"""Job mode ``drs``: rows like the other modes, read by the report, resumable."""

import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from _job_helpers import NUM_CLASSES, SHAPE, tiny_config
from jax.tree_util import Partial

from mrs_jax import derandomized_smoothing, job
from mrs_jax.core import ROW_FIELDS
from mrs_jax.report import summarize_run, summary_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import certificates_table  # noqa: E402

sys.path.pop(0)


def _linear(weights, images):
    return jnp.einsum("bhwc,hwck->bk", images, weights)


def _encoded_classifier(seed=0):
    """A linear classifier of the encoded ablations: [B, H, W, 2C] -> [B, K]."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(*SHAPE[:2], 2 * SHAPE[2], NUM_CLASSES))
    return Partial(_linear, jnp.asarray(weights, jnp.float32))


def test_drs_rows_match_the_library_and_the_report_reads_them(tmp_path):
    config = tiny_config(mode="drs", num_images=3, drs_band=2)
    classify = _encoded_classifier()
    rows = job.run(config, tmp_path, classify=classify, num_classes=NUM_CLASSES,
                   progress=False, fingerprint="drs")
    assert [r["index"] for r in rows] == [0, 1, 2]
    allowed = {f.name for f in ROW_FIELDS if "drs" in f.modes}
    for row in rows:
        assert set(row) <= allowed, set(row) - allowed
        assert row["certificate"] == "every_patch_position" and row["radius"] is None
        assert sum(row["votes"]) == SHAPE[1]  # one vote per column position
    # The rows are the library's answer for the same images.
    from mrs_jax.data import dataset_source

    source = dataset_source(
        "synthetic", "test", image_shape=SHAPE, num_classes=NUM_CLASSES,
        num_examples=config.synthetic_examples, seed=config.seed,
    )
    images = source.get_batch(np.array([r["dataset_index"] for r in rows]))[0]
    direct = derandomized_smoothing(classify, images, config.patch_size, 2)
    assert [r["prediction"] for r in rows] == [d.label for d in direct]
    assert [r["certified"] for r in rows] == [d.certified for d in direct]
    run = json.loads((tmp_path / "run.json").read_text())
    summary = summarize_run(tmp_path)
    assert run["mode"] == "drs" and summary.certificate == "every patch position"
    # The certificates' table reads the summary's record of a DRS run.
    record = summary_record(summary, [0.0])
    line = certificates_table.row(record, "").split(" | ")
    right = [r["certified"] and r["prediction"] == r["label"] for r in rows]
    certified = 100 * np.mean(right)
    assert line[3] == f"{certified:.1f}"
    assert line[5].startswith("every patch position and content")
    # A second call resumes: nothing is redone.
    again = job.run(config, tmp_path, classify=classify, num_classes=NUM_CLASSES,
                    progress=False, fingerprint="drs")
    assert [r["seconds"] for r in again] == [r["seconds"] for r in rows]


def test_drs_settings_are_checked_by_name():
    with pytest.raises(ValueError, match="drs_mode"):
        tiny_config(mode="drs", drs_mode="rows")
    with pytest.raises(ValueError, match="drs_theta"):
        tiny_config(mode="drs", drs_theta=1.5)
    with pytest.raises(ValueError, match="target_radius does not apply to mode 'drs'"):
        tiny_config(mode="drs", target_radius=1.0)
