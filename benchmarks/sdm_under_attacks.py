"""The deployed masked-noise double masking under the attacks on MRS.

The smoothed double masking's certificate holds for the exact smoothed
classifiers; what a user runs is its deployed inference (PatchCleanser's three
cases over PREDICTs of n0 draws), which may abstain and answers a wrong label on
a certified image with probability at most alpha (``MRS_SPEC.md`` s. 9). This
measures that inference on the attacked images of MRS runs: for each attacked
run given, each image's attacked image is rebuilt (its saved patch, or the
run's attack made again with the row's key and checked against the row), the
deployed inference runs on it with the SDM run's model and settings, and the
answer is tabled beside the SDM run's certificate for the same clean image.
The inference uses the SDM row's own PREDICT key, so clean and attacked answers
are paired draw for draw.

Run (CIFAR-10 JPEG class folders in data/cifar10; PGD patches are made again at
about 12 s an image on the 2-core CPU, the inference about 2-6 s)::

    python benchmarks/sdm_under_attacks.py --num_images 50 \\
        --sdm_run benchmarks/runs/cifar10_sdm \\
        --sdm_checkpoint benchmarks/checkpoints/cifar10_cpu_noise_squares \\
        --attack_checkpoint benchmarks/checkpoints/cifar10_cpu \\
        benchmarks/runs/cifar10_practical

One JSON line per (run, image) in ``--out``; a second call skips what is there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

import mrs_jax
from mrs_jax.certification import smoothed_double_masking
from mrs_jax.core import ABSTAIN
from mrs_jax.job import JobConfig, attacked_images
from mrs_jax.rows import all_rows

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "sdm_under_attacks.jsonl"


def config_of(run_dir: Path) -> JobConfig:
    """The run's ``JobConfig`` from its ``run.json``."""
    stored = json.loads((run_dir / "run.json").read_text())["config"]
    names = {f.name for f in dataclasses.fields(JobConfig)}
    fields = {k: v for k, v in stored.items() if k in names}
    if "synthetic_shape" in fields:
        fields["synthetic_shape"] = tuple(fields["synthetic_shape"])
    return JobConfig(**fields)


def predict_key(config: JobConfig, dataset_index: int) -> jax.Array:
    """The SDM row's PREDICT key: its certify key's first half."""
    key = jax.random.fold_in(jax.random.key(config.seed), dataset_index)
    return jax.random.split(jax.random.split(key, 3)[2])[0]


def done_keys(out: Path) -> set[tuple[str, int]]:
    if not out.is_file():
        return set()
    done = set()
    for line in out.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line is made again
        done.add((row["run"], row["dataset_index"]))
    return done


def measure(args, run_dir: Path, sdm_rows: dict, sdm_config, sdm_model, attacker):
    config = config_of(run_dir)
    rows = [r for r in all_rows(run_dir) if r["dataset_index"] in sdm_rows]
    rows = sorted(rows, key=lambda r: r["index"])[: args.num_images]
    done = done_keys(args.out)
    classify, meta = sdm_model
    height, width = attacker[2]
    masks = mrs_jax.patchcleanser_masks(
        (height, width), sdm_config.patch_size, sdm_config.pc_k
    )
    for row in rows:
        if (run_dir.name, row["dataset_index"]) in done:
            continue
        start = time.perf_counter()
        x_adv, labels = attacked_images(config, [row], attacker[0], attacker[1])
        made = time.perf_counter() - start
        start = time.perf_counter()
        label = smoothed_double_masking(
            classify, x_adv[0], masks, sdm_config.sigma,
            key=predict_key(sdm_config, row["dataset_index"]), n=sdm_config.n0,
            alpha=sdm_config.alpha, num_classes=int(meta["num_classes"]),
            batch_size=sdm_config.batch_size,
        )  # fmt: skip
        sdm = sdm_rows[row["dataset_index"]]
        record = {
            "run": run_dir.name,
            "index": row["index"],
            "dataset_index": row["dataset_index"],
            "label": int(labels[0]),
            "sdm_clean_prediction": sdm["prediction"],
            "sdm_certified": bool(sdm["certified"]),
            "attacked_prediction": int(label),
            "mrs_prediction": row["prediction"],
            "seconds": {"image": made, "sdm": time.perf_counter() - start},
        }
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


def table(out: Path) -> str:
    """One line per attacked run: answers under attack, on certified images
    and on all."""
    records = [json.loads(line) for line in out.read_text().splitlines() if line]
    lines = [
        "| attack run | images | SDM certified (clean) | certified: right / "
        "abstain / wrong under attack | all: right / abstain / wrong | MRS right "
        "| s/image (SDM inference, median) |",
        "|---|---:|---:|---|---|---:|---:|",
    ]
    for run in dict.fromkeys(r["run"] for r in records):
        mine = [r for r in records if r["run"] == run]

        def answers(rs):
            right = sum(r["attacked_prediction"] == r["label"] for r in rs)
            abstain = sum(r["attacked_prediction"] == ABSTAIN for r in rs)
            return f"{right} / {abstain} / {len(rs) - right - abstain}"

        certified = [
            r
            for r in mine
            if r["sdm_certified"] and r["sdm_clean_prediction"] == r["label"]
        ]
        mrs = sum(r["mrs_prediction"] == r["label"] for r in mine)
        seconds = np.median([r["seconds"]["sdm"] for r in mine])
        lines.append(
            f"| {run} | {len(mine)} | {len(certified)} | {answers(certified)} | "
            f"{answers(mine)} | {mrs} | {seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="attacked run dirs")
    runs, checkpoints = ROOT / "benchmarks" / "runs", "benchmarks/checkpoints/"
    parser.add_argument("--sdm_run", type=Path, default=runs / "cifar10_sdm")
    parser.add_argument(
        "--sdm_checkpoint", default=checkpoints + "cifar10_cpu_noise_squares"
    )
    parser.add_argument("--attack_checkpoint", default=checkpoints + "cifar10_cpu")
    parser.add_argument("--num_images", type=int, default=50)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--table", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    if not args.table:
        sdm_config = config_of(args.sdm_run)
        sdm_rows = {r["dataset_index"]: r for r in all_rows(args.sdm_run)}
        sdm_model = mrs_jax.load_classifier(args.sdm_checkpoint)
        classify, meta = mrs_jax.load_classifier(args.attack_checkpoint)
        attacker = (classify, int(meta["num_classes"]), tuple(meta["image_shape"][:2]))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for run_dir in args.runs:
            measure(args, run_dir, sdm_rows, sdm_config, sdm_model, attacker)
    print(table(args.out))


if __name__ == "__main__":
    main()
