"""The ablation table of the airbench-class recipe, as RESULTS.md
quotes it, from the committed results.

    python benchmarks/ablation_table.py

Rows: the old recipe, the new one and the new one without the noise (9 and 10
epochs, ``benchmarks/results/*_eval.json``; the last against the new recipe),
then the short-budget rows of ``benchmarks/cifar10_airbench_ablation.sh``
(``benchmarks/results/airbench_ablation/``), each against the short recipe. A
row not yet run says so. Training seconds: the evaluation's ``train_seconds``,
else the sum of the checkpoint's (or short row's) epochs, each with its
2,000-image evaluation, as they ran.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
# (label, evaluation, checkpoint folder)
FULL_ROWS = (
    ("old recipe (`cifar10_cpu`, `fast_cnn`)", "train_cifar10_cpu.json", "cifar10_cpu"),
    (
        "new recipe (`cifar10_airbench`)",
        "cifar10_airbench_eval.json",
        "cifar10_airbench",
    ),
    (
        "new recipe without the noise (sigma 0)",
        "cifar10_airbench_no_noise_eval.json",
        "cifar10_airbench_no_noise",
    ),
)
NO_NOISE = FULL_ROWS[2][0]
SHORT_ROWS = (
    ("recipe", "the new recipe, 4 epochs"),
    ("no_whitening", "without the whitening layer (a trained 2x2 conv)"),
    ("no_dirac", "without identity initialisation"),
    ("bn_scale", "BatchNorm scale trained (not frozen at 1)"),
    ("no_bias_rate", "BatchNorm biases at the common rate (not 64x)"),
    ("no_label_smoothing", "without label smoothing"),
    ("no_lookahead", "without the lookahead average"),
    ("random_flips", "random flips (not alternating)"),
    ("no_translation", "without the 2-pixel translation"),
)
HEADER = (
    "| row | epochs | clean | under the noise | clean vs the recipe at its budget "
    "| training seconds |\n|---|---:|---:|---:|---:|---:|"
)


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _seconds(metrics: Path) -> str:
    if not metrics.is_file():
        return ""
    epochs = [json.loads(line) for line in metrics.read_text().splitlines() if line]
    return f"{sum(epoch['seconds'] for epoch in epochs):,.0f}"


def _cells(result: dict, reference: float | None) -> list[str]:
    clean = 100 * result["clean_accuracy"]
    delta = "" if reference is None else f"{clean - reference:+.2f}"
    noisy = result["noisy_accuracy_mean"]
    noisy = "" if result.get("sigma", 0) == 0 else f"{100 * noisy:.2f}"
    return [str(result["epoch"]), f"{clean:.2f}", noisy, delta]


def _line(
    label: str, result: dict | None, reference: float | None, seconds: str
) -> str:
    cells = _cells(result, reference) if result else ["", "not yet run", "", ""]
    return "| " + " | ".join([label, *cells, seconds]) + " |"


def table(results: Path = RESULTS, checkpoints: Path = CHECKPOINTS) -> str:
    """The markdown table (header and one line per row)."""
    lines = [HEADER]
    full_recipe = _load(results / FULL_ROWS[1][1])
    full_reference = 100 * full_recipe["clean_accuracy"] if full_recipe else None
    for label, name, folder in FULL_ROWS:
        result = _load(results / name)
        if result and "train_seconds" in result:
            seconds = f"{result['train_seconds']:,.0f}"
        else:
            seconds = _seconds(checkpoints / folder / "metrics.jsonl")
        against = full_reference if label == NO_NOISE else None
        lines.append(_line(label, result, against, seconds))
    short = results / "airbench_ablation"
    recipe = _load(short / "recipe.json")
    reference = 100 * recipe["clean_accuracy"] if recipe else None
    for name, label in SHORT_ROWS:
        against = None if name == "recipe" else reference
        seconds = _seconds(short / f"{name}.metrics.jsonl")
        lines.append(_line(label, _load(short / f"{name}.json"), against, seconds))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS)
    args = parser.parse_args(argv)
    print(table(args.results, args.checkpoints))


if __name__ == "__main__":
    main()
