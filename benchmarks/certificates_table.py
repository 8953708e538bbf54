"""The certificates side by side: each one for 5x5 patches on the same
images, beside the paper's Table 1, from ``certify.analyze``'s summary.

    python -m certify.analyze RUN... --common --out REPORT
    python benchmarks/certificates_table.py REPORT/summary.json \
        --model RUN=CHECKPOINT ...

For each run: the defence (by its mode), its model (``--model``: the
checkpoint's name, epochs, training wall time and median epoch from its
``metrics.jsonl``; the median shows the quiet pace where an epoch ran beside
another job), clean accuracy, certified accuracy at R = s * sqrt(C) (8.66 for
a 5x5x3 patch in [0, 1]: every patch content), seconds per image (median; for
MRS the medians of localising and certifying summed, then the whole row's,
which also attacks and certifies the clean image), and what the certificate
holds for.
Then the paper's Table 1 (CIFAR-10, figures as published, not run here).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

DEFENCES = {
    "practical": "MRS localised (PGD patch, localise, CERTIFY)",
    "adaptive": "MRS localised (adaptive patch)",
    "double_masking": "PatchCleanser (grey fill)",
    "drs": "derandomized smoothing (columns)",
    "smoothed_double_masking": "masked-noise double masking",
}
EVERY_POSITION = "every patch position and content"
HOLDS_FOR = {
    "localised": "the attack's patch, where the located mask covers it",
    "every patch position": EVERY_POSITION,
    "every patch position, l2 < R": f"{EVERY_POSITION}, with probability >= 1 - alpha",
    "fixed mask": "a patch inside the fixed mask",
}
PAPER_TABLE_1 = (  # CIFAR-10 clean / certified, MRS paper Table 1
    ("DRS (Levine & Feizi)", 83.9, 56.3, EVERY_POSITION),
    ("MASK-BN (PatchGuard)", 83.9, 47.3, EVERY_POSITION),
    ("MASK-DS (PatchGuard)", 84.6, 57.7, EVERY_POSITION),
    ("BagCert", 86.0, 60.0, EVERY_POSITION),
    (
        "MRS (the paper)",
        86.4,
        71.8,
        "the attack's patch, where the located mask "
        "covers it; at R = 25, above 8.66 (MRS_SPEC)",
    ),
)
DEFENCE_PHASES = ("localize", "certify")  # MRS's defence, without attack/clean
HEADER = (
    "| defence | model | clean | certified, 5x5 | s/image | certificate holds "
    "for |\n|---|---|---:|---:|---:|---|"
)


def _model(checkpoint: Path) -> str:
    meta = json.loads((checkpoint / "model.json").read_text())
    text = f"`{checkpoint.name}` ({meta['model']}"
    metrics = checkpoint / "metrics.jsonl"
    if metrics.is_file():
        epochs = [json.loads(x) for x in metrics.read_text().splitlines() if x]
        seconds = sorted(epoch["seconds"] for epoch in epochs)
        median = statistics.median(seconds)
        text += (
            f", {len(epochs)} epochs, {sum(seconds) / 60:,.0f} min wall,"
            f" median epoch {median / 60:,.1f} min"
        )
    return text + ")"


def _certified(record: dict) -> float:
    key = "localised_certified" if "localised_certified" in record else "certified"
    marker = record["markers"]["true unrestricted (s*sqrt(C))"]
    return 100 * marker[key]


def _seconds(record: dict) -> str:
    phases = record["seconds_per_image"]
    total = f"{phases['total']:.3g}"
    if "attack" not in phases:
        return total
    alone = sum(phases.get(name) or 0.0 for name in DEFENCE_PHASES)
    return f"{alone:.3g} (row {total})"


def row(record: dict, model: str) -> str:
    """One defence's line of the table."""
    cells = [
        DEFENCES.get(record["mode"], record["mode"]),
        model,
        f"{100 * record['clean_accuracy']:.1f}",
        f"{_certified(record):.1f}",
        _seconds(record),
        HOLDS_FOR.get(record["certificate"], record["certificate"]),
    ]
    return "| " + " | ".join(cells) + " |"


def table(summary: list[dict], models: dict[str, Path]) -> str:
    """The markdown table: one line per run, then the paper's Table 1."""
    lines = [HEADER]
    for record in summary:
        checkpoint = models.get(record["name"])
        lines.append(row(record, _model(checkpoint) if checkpoint else ""))
    for name, clean, certified, holds_for in PAPER_TABLE_1:
        lines.append(
            f"| {name}, as published | | {clean} | {certified} | | {holds_for} |"
        )
    images = {record["num_images"] for record in summary}
    lines.append("")
    lines.append(
        f"Images: {', '.join(map(str, sorted(images)))} (the same for every run)."
    )
    return "\n".join(lines)


def _model_arg(text: str) -> tuple[str, Path]:
    name, equals, path = text.partition("=")
    if not equals or not (Path(path) / "model.json").is_file():
        raise argparse.ArgumentTypeError(
            f"{text}: give RUN=CHECKPOINT (a dir with model.json)"
        )
    return name, Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path, help="certify.analyze's summary.json")
    parser.add_argument(
        "--model", type=_model_arg, action="append", default=[],
        help="RUN=CHECKPOINT: the model a run certified",
    )  # fmt: skip
    args = parser.parse_args(argv)
    summary = json.loads(args.summary.read_text())
    print(table(summary, dict(args.model)))


if __name__ == "__main__":
    main()
