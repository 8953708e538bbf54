"""Attacks on the same images, image by image: what the defence made of each.

Reads two or more attacked runs (modes ``practical``, ``adaptive``,
``vote_adaptive``; any attacked mode), pairs their rows by test image and prints
markdown, over the images every run holds:

1. image by image: for each run, the defence's answer (right, wrong or abstain),
   whether the located mask covered the patch, and the largest of the radii at
   which the row counts as localised-certified (``certified_accuracy``); then
   which attack was worst for the defence;
2. per run: empirical accuracy, coverage, localised certified accuracy at each
   radius, the base classifier's fooling rate and the localisation outcomes;
3. for the last run against each other one: on how many images it did worse for
   the defence, and why (``why_worse``);
4. for the first run against each other one, the paired outcome table:
   ``certified`` (right, the located mask covers the patch and CERTIFY
   certified at R = 0), ``right`` (right but not localised-certified),
   ``wrong`` (wrong label or abstained), with the reasons for the other run's
   gains and who fooled the base classifier.

Radii: 0 and the unrestricted radius s * sqrt(C) from the first run's
``run.json`` (8.66 on CIFAR-10 with a 5 x 5 patch), or ``--radii``. Read-only.

Run::

    python benchmarks/attack_comparison.py benchmarks/runs/cifar10_practical \\
        benchmarks/runs/cifar10_adaptive benchmarks/runs/cifar10_vote
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from mrs_jax import rows as metrics

OUTCOMES = ("certified", "right", "wrong")


def outcome(row: dict) -> str:
    """``certified`` / ``right`` / ``wrong`` for one attacked row (module doc)."""
    if row["prediction"] != row["label"]:
        return "wrong"
    if row["certified"] and bool(row["covered"]):
        return "certified"
    return "right"


def why_worse(row: dict) -> str:
    """Why the defence did worse on this row than on another attack's."""
    if row["undefended_adv_prediction"] == row["label"]:
        return "base classifier not fooled"
    if not row["covered"]:
        return f"mask missed the patch ({row['localization']})"
    return "mask covered the patch, smoothing failed"


def _table_row(name: str, counts: list[int]) -> str:
    return f"| {name} | " + " | ".join(map(str, counts)) + f" | {sum(counts)} |"


def paired(
    first: list[dict], other: list[dict], names=("standard", "adaptive")
) -> str:
    """Markdown: the paired outcome table of two runs, and the reasons for the
    second run's gains over the first (``names``: how to call the two)."""
    one, two = names
    by_index = {row["index"]: row for row in first}
    pairs = [(by_index[r["index"]], r) for r in other if r["index"] in by_index]
    if not pairs:
        raise ValueError("the two runs share no test image")
    cells = collections.Counter((outcome(s), outcome(a)) for s, a in pairs)
    lines = [
        f"{len(pairs)} images in both runs; rows: {one} attack, columns: {two} attack",
        "",
        f"| {one} \\ {two} | " + " | ".join(OUTCOMES) + " | total |",
        "|---|" + "---:|" * (len(OUTCOMES) + 1),
    ]
    for kind in OUTCOMES:
        lines.append(_table_row(kind, [cells[(kind, s)] for s in OUTCOMES]))
    lines.append(
        _table_row("total", [sum(cells[(f, s)] for f in OUTCOMES) for s in OUTCOMES])
    )
    rank = {name: i for i, name in enumerate(OUTCOMES)}
    worse = [a for s, a in pairs if rank[outcome(a)] > rank[outcome(s)]]
    better = [s for s, a in pairs if rank[outcome(a)] < rank[outcome(s)]]
    reasons = collections.Counter(why_worse(row) for row in worse)
    lines += ["", f"{two} worse on {len(worse)} images, better on {len(better)}:"]
    lines += [f"- {reason}: {count}" for reason, count in sorted(reasons.items())]
    base = collections.Counter(
        (s["undefended_adv_prediction"] != s["label"],
         a["undefended_adv_prediction"] != a["label"])
        for s, a in pairs if s["base_clean_prediction"] == s["label"]
    )  # fmt: skip
    lines += [
        "",
        "base classifier right on the clean image, fooled by: both attacks "
        f"{base[(True, True)]}, {one} only {base[(True, False)]}, {two} only "
        f"{base[(False, True)]}, neither {base[(False, False)]}",
    ]
    return "\n".join(lines) + "\n"


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
    """Markdown: sections 1-3 of the module doc, over the images all runs hold."""
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
    parser.add_argument("runs", nargs="+", help="run directories (two or more)")
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
            runs[name] = metrics.all_rows(path, repair_files=False)
        radii = args.radii if args.radii else default_radii(args.runs[0])
        text = compare(runs, modes, radii)
        first, *others = runs
        for other in others:
            text += "\n" + paired(runs[first], runs[other], (first, other))
        print(text, end="")
    except (ValueError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
