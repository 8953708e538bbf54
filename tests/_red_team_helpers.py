"""Tiny center-mode jobs for the run-directory red-team tests."""

import json

from _job_helpers import NUM_CLASSES, tiny_classifier, tiny_config

from mrs_jax.job import _run as job


def center_run(out, *, num_images=2, classify=None, config_changes=None, **kwargs):
    """Runs (or resumes) a tiny center-mode job into ``out``; returns its rows."""
    config = tiny_config(mode="center", num_images=num_images, **(config_changes or {}))
    args = dict(
        classify=tiny_classifier() if classify is None else classify,
        num_classes=NUM_CLASSES,
        progress=False,
    )
    return job.run(config, out, **(args | kwargs))


def read_lines(path):
    """The JSON rows of one rows file, in file order."""
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_legacy(out):
    """Strips what ties rows to their run, as a run written before it existed."""
    record = json.loads((out / "run.json").read_text())
    record.pop("run_id", None)
    record.pop("source_size", None)
    (out / "run.json").write_text(json.dumps(record))
    rows = read_lines(out / "rows.jsonl")
    write_lines(
        out / "rows.jsonl",
        [{k: v for k, v in r.items() if k != "run_id"} for r in rows],
    )
