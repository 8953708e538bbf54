"""PGD, the adaptive and the vote-aware attack on the same images (issue 22).

Reads two or more attacked runs (modes ``practical``, ``adaptive``,
``vote_adaptive``; any attacked mode), pairs their rows by test image and prints
markdown: for each image, what the defence made of each attack (prediction right
or wrong, whether the located mask covered the patch, and the largest of the
radii the row counts at as localised-certified, ``metrics.certified_accuracy``),
and which attack was worst for the defence; then per run, over the shared
images: empirical accuracy, coverage, localised certified accuracy at each
radius, the base classifier's fooling rate and the localisation outcomes; then,
for the last run against each other one, on how many images it did worse for
the defence and why (``attack_comparison.why_worse``). Radii: 0 and the true
unrestricted radius s * sqrt(C) from the first run's ``run.json`` (8.66 on
CIFAR-10 with a 5 x 5 patch), or ``--radii``. Read-only.

Run::

    python benchmarks/vote_attack_comparison.py benchmarks/runs/cifar10_practical \\
        benchmarks/runs/cifar10_adaptive benchmarks/runs/cifar10_vote
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from attack_comparison import why_worse

from mrs_jax import rows as metrics
from mrs_jax import rows as row_files


def default_radii(run_dir) -> list[float]:
    """[0, s * sqrt(C)] from a run's ``run.json`` (``size``, ``channels``)."""
    info = json.loads((Path(run_dir) / "run.json").read_text())
    marker = metrics.radius_markers(int(info["size"]), int(info["channels"]))
    return [0.0, round(marker["true unrestricted (s*sqrt(C))"], 2)]


def _shared(runs: dict[str, list[dict]]) -> tuple[list[int], dict[str, dict]]:
    """Indices present in every run, and each run's rows by index."""
    by_index = {name: {r["index"]: r for r in rows} for name, rows in runs.items()}
    shared = sorted(set.intersection(*(set(rows) for rows in by_index.values())))
    if not shared:
        raise ValueError("the runs share no test image")
    return shared, by_index


def _standing(row: dict, mode: str, radii: list[float]) -> tuple[int, int]:
    """(right, number of radii the row counts at): greater = better defended."""
    counted = sum(
        metrics.certified_accuracy([row], radius, mode=mode) == 1.0 for radius in radii
    )
    return int(row["prediction"] == row["label"]), counted


def _cell(row: dict, mode: str, radii: list[float]) -> str:
    right, counted = _standing(row, mode, radii)
    what = "right" if right else (
        "abstain" if row["prediction"] == metrics.ABSTAIN else "wrong"
    )  # fmt: skip
    where = "covered" if row["covered"] else f"missed ({row['localization']})"
    certified = f"R>={radii[counted - 1]:g}" if counted else "-"
    return f"{what}, {where}, {certified}"


def per_image(runs, modes, radii) -> list[str]:
    """The image-by-image table (one line per shared image)."""
    shared, by_index = _shared(runs)
    names = list(runs)
    lines = [
        "| index | label | " + " | ".join(names) + " | worst for the defence |",
        "|---:|---:|" + "---|" * (len(names) + 1),
    ]
    for index in shared:
        pairs = [(name, by_index[name][index]) for name in names]
        standing = [_standing(r, modes[n], radii) for n, r in pairs]
        lowest = min(standing)
        worst = [n for (n, _), s in zip(pairs, standing, strict=True) if s == lowest]
        cells = [_cell(r, modes[n], radii) for n, r in pairs]
        worst_text = "tie" if len(worst) == len(names) else ", ".join(worst)
        lines.append(
            f"| {index} | {pairs[0][1]['label']} | " + " | ".join(cells)
            + f" | {worst_text} |"
        )  # fmt: skip
    return lines


def totals(runs, modes, radii) -> list[str]:
    """Per run, over the shared images: the accuracies and outcomes."""
    shared, by_index = _shared(runs)
    radius_heads = " | ".join(f"localised certified R={r:g}" for r in radii)
    lines = [
        f"| run | mode | images | empirical | coverage | {radius_heads} "
        "| base fooled | located / no_change / multiple_regions |",
        "|---|---|---:|---:|---:|" + "---:|" * (len(radii) + 2),
    ]
    for name in runs:
        rows = [by_index[name][i] for i in shared]
        mode = modes[name]
        certified = " | ".join(
            f"{metrics.certified_accuracy(rows, r, mode=mode):.3f}" for r in radii
        )
        fooled = sum(r["undefended_adv_prediction"] != r["label"] for r in rows)
        where = collections.Counter(r["localization"] for r in rows)
        lines.append(
            f"| {name} | {mode} | {len(rows)} | "
            f"{metrics.empirical_accuracy(rows):.3f} | "
            f"{metrics.coverage_rate(rows):.3f} | {certified} | "
            f"{fooled / len(rows):.3f} | {where['located']} / {where['no_change']} "
            f"/ {where['multiple_regions']} |"
        )
    return lines


def reasons(runs, modes, radii) -> list[str]:
    """Where the last run did worse for the defence than each other one, and why."""
    shared, by_index = _shared(runs)
    names = list(runs)
    last = names[-1]
    lines = []
    for other in names[:-1]:
        worse, better = collections.Counter(), 0
        for index in shared:
            mine = _standing(by_index[last][index], modes[last], radii)
            theirs = _standing(by_index[other][index], modes[other], radii)
            if mine < theirs:
                worse[why_worse(by_index[last][index])] += 1
            better += mine > theirs
        total = sum(worse.values())
        lines.append(
            f"{last} worse for the defence than {other} on {total} images, "
            f"better on {better}:"
        )
        lines += [f"- {reason}: {count}" for reason, count in sorted(worse.items())]
    return lines


def compare(runs: dict[str, list[dict]], modes: dict[str, str], radii) -> str:
    """Markdown: image by image, totals, and the last run's gains (module doc)."""
    if len(runs) < 2:
        raise ValueError("give at least two runs to compare")
    for name, mode in modes.items():
        if mode not in metrics.ATTACKED_MODES:
            raise ValueError(f"{name}: mode {mode!r} is not an attacked mode")
    shared, _ = _shared(runs)
    head = [f"{len(shared)} images in all {len(runs)} runs", ""]
    sections = [per_image(runs, modes, radii), totals(runs, modes, radii)]
    body = head + sections[0] + [""] + sections[1] + [""]
    return "\n".join(body + reasons(runs, modes, radii)) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories, the vote run last")
    parser.add_argument("--radii", type=float, nargs="+", default=None)
    args = parser.parse_args(argv)
    runs, modes = {}, {}
    try:
        for path in args.runs:
            name = Path(path).name
            if name in runs:
                raise ValueError(f"two runs are named {name!r}")
            info = json.loads((Path(path) / "run.json").read_text())
            modes[name] = info["mode"]
            runs[name] = row_files.all_rows(path, repair_files=False)
        radii = args.radii if args.radii else default_radii(args.runs[0])
        print(compare(runs, modes, radii), end="")
    except (ValueError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
