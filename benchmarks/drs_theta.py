"""Derandomized smoothing's vote threshold ``theta``, chosen on held-out images.

    python benchmarks/drs_theta.py RUN... [--tune 200:700] [--report 0:200]

Each RUN is a ``--mode drs`` run of the same checkpoint, band and patch size
at one ``drs_theta`` (``--config.drs_theta=...``), over the same images of the
protocol's order. ``theta`` is chosen where the certified accuracy is highest
on the ``--tune`` images (ties: the higher clean accuracy, then the smaller
``theta``), and reported on the ``--report`` images, which took no part in the
choice. Slices are ``first:last`` positions in the order (``index`` of a row).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mrs_jax.rows import all_rows

_SAME = ("weights", "drs_band", "drs_mode", "patch_size")


def _slice(text: str) -> range:
    try:
        first, last = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected first:last, got {text!r}") from None
    if not 0 <= first < last:
        raise argparse.ArgumentTypeError(f"expected 0 <= first < last, got {text!r}")
    return range(first, last)


def load(run: Path) -> tuple[dict, dict[int, dict]]:
    """The run's config and its rows by position in the order."""
    meta = json.loads((run / "run.json").read_text())
    config = dict(meta["config"], weights=meta["model"]["weights_sha256"])
    if config.get("mode") != "drs":
        raise SystemExit(f"{run}: not a drs run (mode {config.get('mode')!r})")
    rows = all_rows(run, repair_files=False)  # shards too; a run may be writing
    return config, {row["index"]: row for row in rows}


def accuracy(rows: dict[int, dict], images: range, name: str) -> tuple[float, float]:
    """Clean and certified accuracy over ``images`` (every one must have a row)."""
    missing = [i for i in images if i not in rows]
    if missing:
        raise SystemExit(
            f"{name}: {len(missing)} of the images {images.start}:{images.stop} "
            f"have no row yet (first: {missing[0]})"
        )
    picked = [rows[i] for i in images]
    right = np.array([row["prediction"] == row["label"] for row in picked])
    certified = np.array([row["certified"] for row in picked]) & right
    return float(right.mean()), float(certified.mean())


def sweep(runs: list[Path], tune: range, report: range) -> list[dict]:
    """One entry per run, by ``theta``; the chosen one has ``chosen: True``."""
    table, first = [], None
    for run in runs:
        config, rows = load(run)
        same = {key: config.get(key) for key in _SAME}
        first = first or (run, same)
        if same != first[1]:
            raise SystemExit(f"{run} differs from {first[0]} in {same} vs {first[1]}")
        table.append(
            {
                "run": str(run),
                "theta": float(config["drs_theta"]),
                "tune": accuracy(rows, tune, str(run)),
                "report": accuracy(rows, report, str(run)),
            }
        )
    table.sort(key=lambda entry: entry["theta"])
    best = max(table, key=lambda e: (e["tune"][1], e["tune"][0], -e["theta"]))
    for entry in table:
        entry["chosen"] = entry is best
    return table


def markdown(table: list[dict], tune: range, report: range) -> str:
    span = lambda r: f"{r.start}-{r.stop - 1}"  # noqa: E731
    lines = [
        f"| theta | clean, images {span(tune)} | certified, {span(tune)} "
        f"| clean, images {span(report)} | certified, {span(report)} |",
        "|---:|---:|---:|---:|---:|",
    ]
    for entry in table:
        mark = " (chosen)" if entry["chosen"] else ""
        cells = [f"{100 * v:.1f}" for v in (*entry["tune"], *entry["report"])]
        lines.append(f"| {entry['theta']:g}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="drs runs, one per theta")
    parser.add_argument("--tune", type=_slice, default=_slice("200:700"))
    parser.add_argument("--report", type=_slice, default=_slice("0:200"))
    args = parser.parse_args(argv)
    if set(args.tune) & set(args.report):
        parser.error("--tune and --report must not share images")
    table = sweep(args.runs, args.tune, args.report)
    print(markdown(table, args.tune, args.report))
    chosen = next(entry for entry in table if entry["chosen"])
    clean, certified = chosen["report"]
    print(
        f"\ntheta = {chosen['theta']:g}, chosen on images {args.tune.start}-"
        f"{args.tune.stop - 1}: on images {args.report.start}-"
        f"{args.report.stop - 1}, clean {100 * clean:.1f}, certified "
        f"{100 * certified:.1f}."
    )


if __name__ == "__main__":
    main()
