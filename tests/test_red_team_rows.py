"""Run directories that must not adopt, mix or miscount rows.

Each test is one red-team finding: rows without their run.json, a foreign row,
analysis counting what is there instead of what was asked, a classifier with
no fingerprint, two runs of the same folder name, an empty --out, a rows file
that cannot be written, and a single-process resume of a two-process run.
"""

import json
import os
import shutil

import jax.numpy as jnp
import pytest
from _job_helpers import NUM_CLASSES, tiny_classifier, tiny_config
from _red_team_helpers import center_run, make_legacy, read_lines, write_lines

from certify.analyze import main as analyze_main
from mrs_jax.job import (
    _record as run_record,
    _run as job,
    _run_dir as run_dir,
)
from mrs_jax.report import _analysis as analysis
from mrs_jax.rows import _files as rows


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-image run (sigma 0.25) and a 3-image run of another sigma."""
    base = tmp_path_factory.mktemp("finished")
    center_run(base / "a")
    center_run(base / "b", num_images=3, config_changes=dict(sigma=0.5))
    return base


def _copy(finished, name, tmp_path):
    return shutil.copytree(finished / name, tmp_path / name)


def test_rows_without_their_run_json_are_refused_naming_the_file(finished, tmp_path):
    out = _copy(finished, "a", tmp_path)
    (out / "run.json").unlink()
    before = (out / "rows.jsonl").read_text()
    with pytest.raises(ValueError, match=r"rows\.jsonl.*no run\.json"):
        center_run(out, config_changes=dict(sigma=0.5))
    assert (out / "rows.jsonl").read_text() == before
    assert not (out / "run.json").exists()
    # Shard files alone count as rows too.
    (out / "rows.jsonl").rename(out / "rows-001-of-002.jsonl")
    with pytest.raises(ValueError, match=r"rows-001-of-002\.jsonl.*no run\.json"):
        center_run(out)


def test_every_row_carries_its_run_id(finished):
    record = json.loads((finished / "a" / "run.json").read_text())
    assert isinstance(record["run_id"], str) and record["run_id"]
    stamps = {r["run_id"] for r in read_lines(finished / "a" / "rows.jsonl")}
    assert stamps == {record["run_id"]}
    other = json.loads((finished / "b" / "run.json").read_text())["run_id"]
    assert other != record["run_id"]


def test_a_foreign_row_is_refused_on_resume_and_in_analyze(finished, tmp_path):
    out = _copy(finished, "a", tmp_path)
    foreign = read_lines(finished / "b" / "rows.jsonl")[2]  # index 2, sigma 0.5
    write_lines(out / "rows.jsonl", [*read_lines(out / "rows.jsonl"), foreign])
    before = (out / "rows.jsonl").read_text()
    with pytest.raises(ValueError, match="index 2.*another run"):
        center_run(out, num_images=3)
    assert (out / "rows.jsonl").read_text() == before
    with pytest.raises(ValueError, match="index 2.*another run"):
        analysis.summarize_run(out)


def test_a_row_outside_the_runs_images_is_refused(finished, tmp_path):
    out = _copy(finished, "a", tmp_path)
    first, second = read_lines(out / "rows.jsonl")
    # The run's own stamp, but an index the run never asked for.
    write_lines(out / "rows.jsonl", [first, second, dict(second, index=5)])
    with pytest.raises(ValueError, match=r"index 5.*num_images=2"):
        center_run(out)
    with pytest.raises(ValueError, match=r"index 5.*num_images=2"):
        center_run(out, num_images=3)
    with pytest.raises(ValueError, match=r"index 5.*num_images=2"):
        analysis.summarize_run(out)


def test_a_row_of_another_image_is_refused(finished, tmp_path):
    out = _copy(finished, "a", tmp_path)
    first, second = read_lines(out / "rows.jsonl")
    wrong = second["dataset_index"] + 1
    write_lines(out / "rows.jsonl", [first, dict(second, dataset_index=wrong)])
    with pytest.raises(ValueError, match=rf"index 1.*dataset_index {wrong}"):
        center_run(out, num_images=3)
    with pytest.raises(ValueError, match=rf"index 1.*dataset_index {wrong}"):
        analysis.summarize_run(out)


def test_a_legacy_run_is_read_resumed_and_still_checked(finished, tmp_path):
    out = _copy(finished, "a", tmp_path)
    make_legacy(out)
    assert analysis.summarize_run(out).num_images == 2
    # A resume extends it; the legacy run stays legacy (no run id).
    assert [r["index"] for r in center_run(out, num_images=3)] == [0, 1, 2]
    assert json.loads((out / "run.json").read_text()).get("run_id") is None
    assert analysis.summarize_run(out).num_images == 3
    # A legacy run's rows are still checked by index and image.
    first, second, third = read_lines(out / "rows.jsonl")
    write_lines(out / "rows.jsonl", [first, second, dict(third, dataset_index=-1)])
    with pytest.raises(ValueError, match="dataset_index -1"):
        center_run(out, num_images=3)
    # A stamped row (from a run with an id) does not belong in a legacy run.
    stamped = read_lines(finished / "a" / "rows.jsonl")[0]
    write_lines(out / "rows.jsonl", [stamped, second, third])
    with pytest.raises(ValueError, match="index 0.*another run"):
        analysis.summarize_run(out)


@pytest.mark.parametrize("name", ["digits_practical", "digits_adaptive"])
def test_committed_legacy_runs_pass_the_row_checks(name):
    from mrs_jax.data import dataset_source

    committed = os.path.join(
        os.path.dirname(__file__), "..", "benchmarks", "runs", name
    )
    record = run_dir.read_run_file(committed)
    assert record.get("run_id") is None  # written before run ids
    source = dataset_source("digits", record["config"]["split"])
    on_disk = rows.all_rows(committed, repair_files=False)
    rows.check_rows(on_disk, record, committed, source_size=len(source))
    assert analysis.summarize_run(committed).num_images == record["num_images"]


def test_analyze_refuses_more_rows_than_run_json_asked_for(finished, tmp_path, capsys):
    out = _copy(finished, "a", tmp_path)
    record = json.loads((out / "run.json").read_text())
    record["num_images"] = record["config"]["num_images"] = 1  # edited by hand
    (out / "run.json").write_text(json.dumps(record))
    assert analyze_main([str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "index 1" in err[0] and "num_images=1" in err[0]


def _plain_classifier(seed=0):
    """A plain function (no pytree leaves): its weights are invisible constants."""
    weights = tiny_classifier(seed).args[0]
    return lambda images: jnp.einsum("bhwc,hwck->bk", images, weights)


def test_a_classifier_without_a_fingerprint_cannot_resume(finished, tmp_path):
    plain = _plain_classifier()
    assert run_record.model_record(plain, None)["weights_sha256"] is None
    # A run of a plain function records no fingerprint (as job.run writes it).
    out = _copy(finished, "a", tmp_path)
    record = json.loads((out / "run.json").read_text())
    record["model"]["weights_sha256"] = None
    (out / "run.json").write_text(json.dumps(record))
    before = (out / "rows.jsonl").read_text()
    for classify in (plain, _plain_classifier(seed=1)):
        with pytest.raises(ValueError, match="no weights fingerprint.*fingerprint="):
            center_run(out, num_images=3, classify=classify)
    assert (out / "rows.jsonl").read_text() == before
    assert json.loads((out / "run.json").read_text()) == record


def test_a_caller_fingerprint_is_recorded_and_checked(tmp_path):
    out = tmp_path / "named"
    center_run(out, num_images=1, fingerprint="model-a")
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["weights_sha256"] == "model-a"
    plain = _plain_classifier()
    with pytest.raises(ValueError, match="weights_sha256 \\('model-a' -> 'model-b'\\)"):
        center_run(out, num_images=2, classify=plain, fingerprint="model-b")
    with pytest.raises(ValueError, match="no weights fingerprint"):
        center_run(out, num_images=2, classify=plain)
    resumed = center_run(out, num_images=2, fingerprint="model-a")
    assert [r["index"] for r in resumed] == [0, 1]
    with pytest.raises(TypeError, match="fingerprint"):
        center_run(tmp_path / "bad", fingerprint=123)
    with pytest.raises(ValueError, match="fingerprint"):
        center_run(tmp_path / "bad", fingerprint="")
    assert not (tmp_path / "bad").exists()


def test_runs_of_the_same_folder_name_get_distinct_labels(finished, tmp_path, capsys):
    for parent in ("A", "B"):
        (tmp_path / parent).mkdir()
        shutil.copytree(finished / "a", tmp_path / parent / "run")
    shutil.copytree(finished / "b", tmp_path / "B" / "other")
    dirs = [tmp_path / "A" / "run", tmp_path / "B" / "run", tmp_path / "B" / "other"]
    assert analysis.run_labels(dirs) == ["A/run", "B/run", "other"]
    with pytest.raises(ValueError, match="twice"):
        analysis.run_labels([dirs[0], tmp_path / "A" / ".." / "A" / "run"])
    report = tmp_path / "report"
    assert analyze_main([*map(str, dirs), "--out", str(report)]) == 0
    table = capsys.readouterr().out
    assert "| A/run |" in table and "| B/run |" in table and "| other |" in table
    names = [s["name"] for s in json.loads((report / "summary.json").read_text())]
    assert names == ["A/run", "B/run", "other"]
    with open(report / "curves.csv") as f:
        runs = {line.split(",")[0] for line in list(f)[1:]}
    assert runs == {"A/run", "B/run", "other"}


@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_dir_is_refused(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="out_dir is empty"):
        run_dir.check_out_dir(out)
    with pytest.raises(ValueError, match="out_dir is empty"):
        run_dir.check_free(out, 0, 1)
    with pytest.raises(ValueError, match="out_dir is empty"):
        center_run(out)
    assert os.listdir(tmp_path) == []


def test_certify_with_an_empty_out_is_one_line(tmp_path, monkeypatch, capsys):
    from _job_helpers import write_certify_config

    from certify.__main__ import main as certify_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MRS_DEBUG", raising=False)
    config = write_certify_config(tmp_path / "config.py")
    args = ["--config", str(config), "--checkpoint", "none", "--out", ""]
    assert certify_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out is empty" in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["config.py"]


def _unwritable_rows(out):
    """Makes rows.jsonl impossible to append to (root ignores file modes)."""
    if os.geteuid() == 0:
        (out / "rows.jsonl").unlink()
        (out / "rows.jsonl").mkdir()
        return "rows.jsonl"
    os.chmod(out / "rows.jsonl", 0o444)
    return "rows.jsonl"


def test_an_unwritable_rows_file_is_refused_before_run_json_changes(finished, tmp_path):
    out = _copy(finished, "a", tmp_path)
    before = (out / "run.json").read_text()
    name = _unwritable_rows(out)
    with pytest.raises(OSError, match=name):
        center_run(out, num_images=3)  # an extension would rewrite run.json
    assert (out / "run.json").read_text() == before


def test_a_single_process_resume_of_a_two_process_run_merges_every_row(tmp_path):
    config = tiny_config(mode="center", num_images=3)
    run = dict(classify=tiny_classifier(), num_classes=NUM_CLASSES, progress=False)
    out = tmp_path / "two"
    # Process 1 of 2 finished its share; process 0 died before writing a row.
    job.run(config, out, process_index=1, process_count=2, **run)
    assert not (out / "rows.jsonl").exists()
    resumed = job.run(config, out, **run)
    assert [r["index"] for r in resumed] == [0, 1, 2]
    merged = rows.read(out / "rows.jsonl")
    assert [r["index"] for r in merged] == [0, 1, 2]
