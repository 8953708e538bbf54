"""The standard and the adaptive attack on the same images, image by image.

Pairs two attacked runs (modes ``practical`` and ``adaptive``) by test image and
says, for each image, what the defence made of each attack: ``certified`` (the
defence is right, the located mask covers the patch and CERTIFY certified at
R = 0), ``right`` (right but not localised-certified), ``wrong`` (wrong label or
abstained). Then, for the images where the adaptive attack took something the
standard one did not, why: the undefended base classifier was not fooled, the
mask missed the adaptive patch, or the mask covered it and the smoothed
prediction inside it still failed. Read-only; used in RESULTS.md section 8.

Run::

    python benchmarks/attack_comparison.py benchmarks/runs/cifar10_practical \\
        benchmarks/runs/cifar10_adaptive
"""

from __future__ import annotations

import argparse
import collections
import sys

from mrs_jax import rows as row_files

OUTCOMES = ("certified", "right", "wrong")


def outcome(row: dict) -> str:
    """``certified`` / ``right`` / ``wrong`` for one attacked row (see above)."""
    if row["prediction"] != row["label"]:
        return "wrong"
    if row["certified"] and bool(row["covered"]):
        return "certified"
    return "right"


def why_worse(row: dict) -> str:
    """Why the defence did worse on an adaptive row than on the standard one."""
    if row["undefended_adv_prediction"] == row["label"]:
        return "base classifier not fooled"
    if not row["covered"]:
        return f"mask missed the patch ({row['localization']})"
    return "mask covered the patch, smoothing failed"


def _table_row(name: str, counts: list[int]) -> str:
    return f"| {name} | " + " | ".join(map(str, counts)) + f" | {sum(counts)} |"


def compare(standard: list[dict], adaptive: list[dict]) -> str:
    """Markdown: the paired outcome table and the reasons for the adaptive gains."""
    by_index = {row["index"]: row for row in standard}
    pairs = [(by_index[r["index"]], r) for r in adaptive if r["index"] in by_index]
    if not pairs:
        raise ValueError("the two runs share no test image")
    cells = collections.Counter((outcome(s), outcome(a)) for s, a in pairs)
    lines = [
        f"{len(pairs)} images in both runs; rows: standard attack, "
        "columns: adaptive attack",
        "",
        "| standard \\ adaptive | " + " | ".join(OUTCOMES) + " | total |",
        "|---|" + "---:|" * (len(OUTCOMES) + 1),
    ]
    for first in OUTCOMES:
        lines.append(_table_row(first, [cells[(first, s)] for s in OUTCOMES]))
    lines.append(
        _table_row("total", [sum(cells[(f, s)] for f in OUTCOMES) for s in OUTCOMES])
    )
    rank = {name: i for i, name in enumerate(OUTCOMES)}
    worse = [a for s, a in pairs if rank[outcome(a)] > rank[outcome(s)]]
    better = [s for s, a in pairs if rank[outcome(a)] < rank[outcome(s)]]
    reasons = collections.Counter(why_worse(row) for row in worse)
    lines += ["", f"adaptive worse on {len(worse)} images, better on {len(better)}:"]
    lines += [f"- {reason}: {count}" for reason, count in sorted(reasons.items())]
    base = collections.Counter(
        (s["undefended_adv_prediction"] != s["label"],
         a["undefended_adv_prediction"] != a["label"])
        for s, a in pairs if s["base_clean_prediction"] == s["label"]
    )  # fmt: skip
    lines += [
        "",
        "base classifier right on the clean image, fooled by: both attacks "
        f"{base[(True, True)]}, standard only {base[(True, False)]}, adaptive only "
        f"{base[(False, True)]}, neither {base[(False, False)]}",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("standard_run")
    parser.add_argument("adaptive_run")
    args = parser.parse_args(argv)
    runs = [
        row_files.all_rows(path, repair_files=False)
        for path in (args.standard_run, args.adaptive_run)
    ]
    try:
        print(compare(*runs), end="")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
