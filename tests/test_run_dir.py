"""The run directory: one writer, no mixed models or runs, checks before writes."""

import json
from pathlib import Path

import jax.numpy as jnp
import pytest
from _job_helpers import (
    NUM_CLASSES,
    SHAPE,
    tiny_classifier,
    tiny_config,
    tiny_features_and_head,
)
from jax.tree_util import Partial

from mrs_jax.commands import _cli as cli
from mrs_jax.core import runlock
from mrs_jax.job import (
    _record as run_record,
    _resume as resume,
    _run as job,
    _run_dir as run_dir,
)
from mrs_jax.models import load_classifier, weights_fingerprint
from mrs_jax.rows import _files as rows

REPO = Path(__file__).resolve().parents[1]
META = {"model": "tiny", "dataset": "synthetic", "image_shape": list(SHAPE)}


def _run(out, config=None, **kwargs):
    args = dict(classify=tiny_classifier(), num_classes=NUM_CLASSES, progress=False)
    config = config or tiny_config(mode="center", num_images=2)
    return job.run(config, out, **(args | kwargs))


def test_a_held_run_directory_is_refused_naming_the_holder(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with run_dir.hold(tmp_path, 0, 1):
        with pytest.raises(runlock.LockedError, match=r"in use by another.*pid"):
            _run(tmp_path)
    # Released on exit: the same directory now runs.
    assert len(_run(tmp_path)) == 2


def test_processes_of_one_run_lock_their_own_shard(tmp_path):
    config = tiny_config(mode="center", num_images=2)
    with run_dir.hold(tmp_path, 0, 2):
        # Process 1 of the same run is not blocked by process 0's shard lock...
        _run(tmp_path, config, process_index=1, process_count=2)
        # ...but a second process 0 is.
        with pytest.raises(runlock.LockedError):
            _run(tmp_path, config, process_index=0, process_count=2)
    assert run_dir.lock_name(1, 2) != run_dir.lock_name(0, 2) != run_dir.lock_name(0, 1)


def test_single_and_multi_process_runs_exclude_each_other(tmp_path):
    config = tiny_config(mode="center", num_images=2)
    with run_dir.hold(tmp_path, 1, 2):
        with pytest.raises(runlock.LockedError, match="multi-process run"):
            _run(tmp_path, config)
    with run_dir.hold(tmp_path, 0, 1):
        with pytest.raises(runlock.LockedError, match="in use"):
            _run(tmp_path, config, process_index=1, process_count=2)


def test_run_json_records_the_weights_and_refuses_another_model(tmp_path):
    _run(tmp_path, meta=dict(META, sigma=0.25))
    record = json.loads((tmp_path / "run.json").read_text())
    expected = weights_fingerprint(tiny_classifier())
    assert record["model"] == {
        "weights_sha256": expected,
        "model": "tiny",
        "dataset": "synthetic",
        "image_shape": list(SHAPE),
        "train_sigma": 0.25,
    }
    assert record["sigma"] == 0.25 and record["train_sigma"] == 0.25
    before = (tmp_path / "rows.jsonl").read_text()
    with pytest.raises(ValueError, match="another classifier: weights_sha256"):
        _run(tmp_path, classify=tiny_classifier(seed=1), meta=dict(META, sigma=0.25))
    with pytest.raises(ValueError, match=r"train_sigma \(0.25 -> 0.5\)"):
        _run(tmp_path, meta=dict(META, sigma=0.5))
    with pytest.raises(ValueError, match="model \\('tiny' -> 'other'\\)"):
        _run(tmp_path, meta=dict(META, model="other", sigma=0.25))
    assert (tmp_path / "rows.jsonl").read_text() == before
    # The same model resumes.
    assert len(_run(tmp_path, meta=dict(META, sigma=0.25))) == 2


def test_fingerprint_sees_every_weight():
    base = tiny_classifier()
    changed = Partial(base.func, base.args[0].at[3, 4, 1, 2].add(1e-6))
    assert weights_fingerprint(base) == weights_fingerprint(tiny_classifier())
    assert weights_fingerprint(base) != weights_fingerprint(changed)
    assert weights_fingerprint(lambda b: b) is None



def _committed_runs() -> dict[str, list[Path]]:
    """The run directories under benchmarks/runs by the committed checkpoint
    (benchmarks/checkpoints) that ``mrs-certify`` certified in them."""
    runs = {}
    for path in sorted((REPO / "benchmarks" / "runs").glob("*/run.json")):
        checkpoint = json.loads(path.read_text())["meta"]["checkpoint"]
        if (REPO / checkpoint / "model.json").is_file():
            runs.setdefault(checkpoint, []).append(path.parent)
    return runs


COMMITTED_RUNS = _committed_runs()


@pytest.mark.parametrize("checkpoint", sorted(COMMITTED_RUNS))
def test_committed_runs_resume_with_their_checkpoint_loaded_by_the_library(
    checkpoint,
):
    """mrs-certify wrote these runs; load_classifier's classifier is accepted
    on resume, and the folded weights' own digest (what a library run recorded
    before the fingerprint moved to the models) is not."""
    classify, meta = load_classifier(REPO / checkpoint)
    model = run_record.model_record(classify, meta)
    own_digest = dict(model, weights_sha256=weights_fingerprint(classify))
    for out in COMMITTED_RUNS[checkpoint]:
        config = run_dir.read_run_file(out)["config"]
        resume.check_resume(out, {"config": config, "model": model})
        with pytest.raises(ValueError, match="another classifier: weights_sha256"):
            resume.check_resume(out, {"config": config, "model": own_digest})


def test_there_are_committed_runs_to_resume():
    assert len(COMMITTED_RUNS) >= 4
    assert sum(len(runs) for runs in COMMITTED_RUNS.values()) >= 10


def test_a_run_without_a_recorded_model_is_not_resumed(tmp_path):
    _run(tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    del record["model"]
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="no model fingerprint"):
        _run(tmp_path)


@pytest.mark.parametrize(
    "meta,match",
    [
        (dict(META, dataset="digits"), "trained on dataset 'digits'"),
        (dict(META, image_shape=[32, 32, 3]), r"shape \[32, 32, 3\].*\[16, 16, 3\]"),
    ],
)
def test_a_checkpoint_for_other_data_is_refused_before_writing(tmp_path, meta, match):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        _run(out, meta=meta)
    assert not out.exists()


@pytest.mark.parametrize(
    "config,classify_kwargs,match",
    [
        (tiny_config(patch_size=17), {}, "patch_size=17 does not fit in the 16x16"),
        (tiny_config(mode="gradcam"), {}, "features/head split"),
        (tiny_config(num_images=10_000), {}, "num_images"),
        (tiny_config(), {"num_classes": 1}, "num_classes"),
    ],
)
def test_bad_jobs_are_refused_before_the_run_dir_exists(
    tmp_path, config, classify_kwargs, match
):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        _run(out, config, **classify_kwargs)
    assert not out.exists()


def test_an_out_dir_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        _run(file)
    with pytest.raises(NotADirectoryError):
        _run(file / "run")


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(m=4), "m must"),
        (dict(tau=-1.0), "tau"),
        (dict(inpaint_method="magic"), "inpaint_method"),
    ],
)
def test_bad_localisation_settings_are_refused_in_the_config(changes, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**changes)


def _row(index, **changes):
    row = dict(index=index, label=1, prediction=1, radius=0.5, certified=True)
    return row | changes


def _write(path, rows_):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows_))


def test_duplicate_indices_are_refused(tmp_path):
    _write(tmp_path / "rows.jsonl", [_row(0), _row(1), _row(1)])
    with pytest.raises(ValueError, match="two rows for index 1"):
        rows.all_rows(tmp_path)


def test_a_shard_and_the_merged_file_may_share_rows_but_not_disagree(tmp_path):
    _write(tmp_path / "rows.jsonl", [_row(0), _row(1, seconds={"a": 1.0})])
    _write(tmp_path / "rows-001-of-002.jsonl", [_row(1, seconds={"a": 2.0}), _row(3)])
    assert [r["index"] for r in rows.all_rows(tmp_path)] == [0, 1, 3]
    _write(tmp_path / "rows-000-of-002.jsonl", [_row(0, prediction=2)])
    with pytest.raises(ValueError, match="different rows for index 0"):
        rows.all_rows(tmp_path)


def test_readers_skip_a_torn_line_without_writing(tmp_path):
    text = json.dumps(_row(0)) + "\n" + json.dumps(_row(1))[:9]
    (tmp_path / "rows.jsonl").write_text(text)
    with pytest.warns(UserWarning, match="truncated last line"):
        assert [r["index"] for r in rows.all_rows(tmp_path, repair_files=False)] == [0]
    assert (tmp_path / "rows.jsonl").read_text() == text


@pytest.mark.parametrize("change", ["replace", "remove", "truncate", "append"])
def test_a_rows_file_changed_under_the_writer_stops_it_without_losing_rows(
    tmp_path, change
):
    # A git checkout or stash replaces the file: without the check every later
    # row would go to the deleted file, silently.
    path = tmp_path / "rows.jsonl"
    with rows.Writer(path) as out:
        out.append(_row(0))
        out.append(_row(1))
        saved = path.read_text()
        if change == "replace":
            replacement = tmp_path / "copy.jsonl"
            replacement.write_text(saved)
            replacement.replace(path)
        elif change == "remove":
            path.unlink()
        elif change == "truncate":
            _write(path, [_row(0)])
        else:
            with open(path, "a") as other:
                other.write(json.dumps(_row(5)) + "\n")
        before = path.read_text() if path.exists() else None
        with pytest.raises(rows.RowsChangedError, match="2 rows written by this run"):
            out.append(_row(2))
        assert (path.read_text() if path.exists() else None) == before
    with rows.Writer(path) as out:  # a new run resumes on the file as it is
        out.append(_row(2))
    if change == "replace":
        assert [r["index"] for r in rows.all_rows(tmp_path)] == [0, 1, 2]
    assert issubclass(rows.RowsChangedError, cli.user_errors())  # one line


def _constant(bias, images):
    return jnp.zeros((images.shape[0], NUM_CLASSES)) + bias


def test_no_change_certifies_in_the_tie_break_block(tmp_path):
    """No block changes a constant classifier: CERTIFY still runs (spec s. 4.6)."""
    classify = Partial(_constant, jnp.array([0.0, 1.0, 0.0, 0.0]))
    out = _run(tmp_path, tiny_config(mode="clean", num_images=2), classify=classify)
    for row in out:
        assert row["localization"] == "no_change"
        # 14 x 14 positions, all tied at score 0: the central one (first of four).
        assert row["located_top_left"] == [6, 6]
        assert row["mask_box"] == [3, 3, 12, 12]  # the block grown by dilation 3
        assert row["certified"] is True and row["p_lower"] > 0.5
        assert row["prediction"] == 1 and row["radius"] > 0
        assert row["base_clean_prediction"] == 1


class _RecordingBar:
    """Stands in for tqdm: remembers the postfix shown at each redraw."""

    def __init__(self):
        self.postfix, self.shown = {}, []

    def set_postfix(self, postfix, refresh=True):
        self.postfix = dict(postfix)

    def update(self, n):
        self.shown.append(self.postfix)

    def close(self):
        pass


def test_progress_bar_shows_the_accuracies_of_every_image(tmp_path, monkeypatch):
    bar = _RecordingBar()
    monkeypatch.setattr(job, "certify_bar", lambda todo, total, progress: bar)
    out = _run(tmp_path, tiny_config(mode="center", num_images=3), progress=True)
    assert len(bar.shown) == 3
    for k, shown in enumerate(bar.shown, start=1):
        assert shown == job.running_accuracies(out[:k])


def test_gradcam_runs_record_their_saliency_once(tmp_path):
    _run(
        tmp_path,
        tiny_config(mode="gradcam", num_images=1),
        features_and_head=tiny_features_and_head(),
    )
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["saliency"] == "gradcam"
    assert "saliency" not in rows.all_rows(tmp_path)[0]


def test_a_resume_may_extend_the_images_and_change_batch_sizes_only(tmp_path):
    import dataclasses

    config = tiny_config(mode="center", num_images=2)
    first = {row["index"]: row for row in _run(tmp_path / "grown", config)}
    grown = dataclasses.replace(config, num_images=4, batch_size=config.batch_size * 2)
    rows_grown = {row["index"]: row for row in _run(tmp_path / "grown", grown)}
    fresh = {row["index"]: row for row in _run(tmp_path / "fresh", grown)}
    strip = lambda row: {k: v for k, v in row.items() if k != "seconds"}  # noqa: E731
    assert sorted(rows_grown) == [0, 1, 2, 3]
    for index, row in first.items():  # the finished rows were kept, not redone
        assert rows_grown[index] == row
    assert {i: strip(r) for i, r in rows_grown.items()} == {
        i: strip(r) for i, r in fresh.items()
    }
    record = json.loads((tmp_path / "grown" / "run.json").read_text())
    assert record["num_images"] == 4 and record["config"]["num_images"] == 4
    assert record["config"]["batch_size"] == grown.batch_size
    with pytest.raises(ValueError, match="may extend it but not shrink it"):
        _run(tmp_path / "grown", dataclasses.replace(grown, num_images=3))
    with pytest.raises(ValueError, match=r"differs in \['sigma'\]"):
        _run(tmp_path / "grown", dataclasses.replace(grown, sigma=grown.sigma * 2))
