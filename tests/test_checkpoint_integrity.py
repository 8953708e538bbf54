"""A damaged checkpoint is one line naming it, never a silently loaded model."""

import json
from pathlib import Path

import pytest
from _job_helpers import write_checkpoint

from mrs_jax.models import load_classifier


def _progress_files(workdir: Path) -> list[Path]:
    return sorted((workdir / "checkpoints").glob("*/progress/*"))


def test_a_checkpoint_loads_and_carries_the_digest_of_its_weights(tmp_path):
    write_checkpoint(tmp_path)
    classify, meta = load_classifier(tmp_path, fold=False)
    assert meta["epoch"] == 1
    saved = [f for f in _progress_files(tmp_path) if f.suffix != ".tmp"]
    assert any("weights_sha256" in f.read_text(errors="ignore") for f in saved)


def test_weights_that_differ_from_their_digest_are_refused(tmp_path):
    write_checkpoint(tmp_path)
    edited = 0
    for path in _progress_files(tmp_path):
        text = path.read_text(errors="ignore")
        if "weights_sha256" in text:
            record = json.loads(text)
            record["weights_sha256"] = "0" * 64
            path.write_text(json.dumps(record))
            edited += 1
    assert edited == 1
    with pytest.raises(ValueError, match=r"damaged checkpoint: .*checkpoints/1"):
        load_classifier(tmp_path, fold=False)


def test_a_flipped_byte_in_the_weights_is_refused(tmp_path):
    write_checkpoint(tmp_path)
    data = max(
        (p for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()
         and "model" in p.parts),
        key=lambda p: p.stat().st_size,
    )
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    data.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checkpoints"):
        load_classifier(tmp_path, fold=False)


def test_an_edited_num_classes_says_model_json_and_the_weights_disagree(tmp_path):
    write_checkpoint(tmp_path)
    meta_path = tmp_path / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["num_classes"] += 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="model.json and the weights .* disagree"):
        load_classifier(tmp_path, fold=False)
