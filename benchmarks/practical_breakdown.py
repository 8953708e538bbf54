"""Where a practical (or adaptive) run's images go, from its rows.

Splits the images by what the attack did to the undefended base classifier
(base wrong already; base right and fooled; base right and not fooled), and for
each group counts the localisation outcomes, how often the mask covers the patch,
and the defence's empirical and localised certified (R = 0) accuracy; then the
clean-image defence against the base classifier. Read-only; used for the
explanations in RESULTS.md, "CIFAR-10 protocol".

Run::

    python benchmarks/practical_breakdown.py benchmarks/runs/cifar10_practical
"""

from __future__ import annotations

import argparse
import collections
import sys

from mrs_jax import rows as row_files


def breakdown(rows: list[dict]) -> str:
    groups = collections.OrderedDict(
        [("all images", []), ("base wrong on the clean image", []),
         ("base right, fooled by the attack", []),
         ("base right, not fooled", [])]
    )  # fmt: skip
    for row in rows:
        groups["all images"].append(row)
        if row["base_clean_prediction"] != row["label"]:
            groups["base wrong on the clean image"].append(row)
        elif row["undefended_adv_prediction"] != row["label"]:
            groups["base right, fooled by the attack"].append(row)
        else:
            groups["base right, not fooled"].append(row)
    lines = [
        "| images | count | located | no_change | multiple regions | covered "
        "| empirical | loc. cert R=0 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, group in groups.items():
        outcomes = collections.Counter(r["localization"] for r in group)
        right = [r["prediction"] == r["label"] for r in group]
        certified = [
            ok and r["certified"] and bool(r["covered"])
            for ok, r in zip(right, group, strict=True)
        ]
        lines.append(
            f"| {name} | {len(group)} | {outcomes['located']} | "
            f"{outcomes['no_change']} | {outcomes['multiple_regions']} | "
            f"{sum(bool(r['covered']) for r in group)} | {sum(right)} | "
            f"{sum(certified)} |"
        )
    lines += ["", "| clean image: localisation | defence right, base right "
              "| defence wrong, base right | defence right, base wrong "
              "| both wrong |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for outcome in ("located", "no_change", "multiple_regions"):
        group = [r for r in rows if r["clean_localization"] == outcome]
        cells = collections.Counter(
            (
                r["clean_prediction"] == r["label"],
                r["base_clean_prediction"] == r["label"],
            )
            for r in group
        )
        lines.append(
            f"| {outcome} | {cells[(True, True)]} | {cells[(False, True)]} | "
            f"{cells[(True, False)]} | {cells[(False, False)]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    rows = row_files.all_rows(args.run_dir, repair_files=False)
    print(f"{args.run_dir}: {len(rows)} images")
    print(breakdown(sorted(rows, key=lambda r: r["index"])), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
