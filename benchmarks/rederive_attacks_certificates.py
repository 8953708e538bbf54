"""Re-derives the figures of RESULTS.md's Attacks and Certificates compared
sections from the committed rows, so that a sentence cannot say more than the
rows show (the suite checks that RESULTS.md states each figure).

    python benchmarks/rederive_attacks_certificates.py   # prints name: figure

Each figure is computed by ``mrs_jax.rows`` metrics where one exists, and
rendered as RESULTS.md writes it (one decimal for a percentage of images, counts
as integers, seconds as written).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from mrs_jax import rows as metrics

RUNS = Path(__file__).resolve().parent / "runs"
UNRESTRICTED = 5 * 3**0.5  # s * sqrt(C) for a 5x5 RGB patch


def rows_of(run: str, images: int) -> list[dict]:
    """The run's rows of its first ``images`` images, in index order."""
    path = RUNS / run / "rows.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return sorted((r for r in rows if r["index"] < images), key=lambda r: r["index"])


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def attack_row(rows: list[dict], mode: str) -> dict[str, str]:
    """One line of the attacks tables: empirical, coverage, localised certified at
    0 and s*sqrt(C), base fooled, localisation outcomes, attack won, certified
    wherever the mask lies."""
    located = metrics.localization_rates(rows)
    count = {k: round(v * len(rows)) for k, v in located.items()}
    return {
        "empirical": _pct(metrics.empirical_accuracy(rows)),
        "coverage": _pct(metrics.coverage_rate(rows)),
        "cert0": _pct(metrics.certified_accuracy(rows, 0.0, mode=mode)),
        "cert866": _pct(metrics.certified_accuracy(rows, UNRESTRICTED, mode=mode)),
        "fooled": _pct(1 - metrics.base_accuracy(rows, "undefended_adv_prediction")),
        "outcomes": (
            f"{count['located']} / {count['no_change']} / {count['multiple_regions']}"
        ),
        "won": str(round(metrics.attack_won_rate(rows) * len(rows))),
        "any_mask": str(
            round(metrics.certified_correct_rate(rows, UNRESTRICTED) * len(rows))
        ),
    }


def _median_seconds(rows: list[dict], phases: tuple[str, ...] | None = None) -> float:
    return statistics.median(
        sum(v for k, v in r["seconds"].items() if phases is None or k in phases)
        for r in rows
    )


def figures() -> dict[str, str]:
    """``{name: figure as RESULTS.md writes it}``."""
    out: dict[str, str] = {}
    runs = {"PGD": ("cifar10_practical", "practical"),
            "adaptive": ("cifar10_adaptive", "adaptive"),
            "vote": ("cifar10_vote", "vote_adaptive"),
            "deployed": ("cifar10_vote_deployed", "vote_adaptive")}  # fmt: skip
    for images, names in (
        (50, ("PGD", "adaptive", "vote")),
        (100, ("PGD", "vote", "deployed")),
    ):
        for name in names:
            run, mode = runs[name]
            for key, value in attack_row(rows_of(run, images), mode).items():
                out[f"{name}{images}.{key}"] = value
    vote = rows_of("cifar10_vote", 50)
    no_change = [r for r in vote if r["localization"] == "no_change"]
    out["vote50.no_change"] = str(len(no_change))
    out["vote50.no_change_not_fooled"] = str(
        sum(r["undefended_adv_prediction"] == r["label"] for r in no_change)
    )
    first100 = {name: rows_of(runs[name][0], 100) for name in ("PGD", "deployed")}
    elsewhere = [r for r in first100["deployed"]
                 if r["localization"] == "located" and not r["covered"]]  # fmt: skip
    out["deployed100.elsewhere"] = str(len(elsewhere))
    out["deployed100.elsewhere_wrong"] = str(
        sum(r["prediction"] != r["label"] for r in elsewhere)
    )
    for name, rows in first100.items():  # a wrong label certified in the mask
        wrong = [r for r in rows if r["certified"] and r["prediction"] != r["label"]]
        out[f"{name}100.certified_wrong"] = str(len(wrong))
        out[f"{name}100.certified_wrong_missed"] = str(
            sum(not r["covered"] for r in wrong)
        )
    # Certificates compared: the first 100 images.
    practical = first100["PGD"]
    out["mrs.seconds_all"] = f"{_median_seconds(practical):.1f}"
    out["mrs.seconds_defence"] = (
        f"{_median_seconds(practical, ('localize', 'certify')):.1f}"
    )
    for run in ("occlusion", "occlusion_ft", "noise_squares"):
        pc = rows_of(f"cifar10_pc_{run}", 100)
        out[f"pc_{run}.seconds"] = f"{_median_seconds(pc):.2f}"
        out[f"pc_{run}.clean"] = _pct(metrics.empirical_accuracy(pc))
        out[f"pc_{run}.certified"] = _pct(metrics.certified_accuracy(pc, 0.0))
    sdm = rows_of("cifar10_sdm", 100)
    out["sdm.clean"] = _pct(metrics.empirical_accuracy(sdm))
    out["sdm.certified"] = _pct(metrics.certified_accuracy(sdm, UNRESTRICTED))
    out["sdm.seconds"] = f"{_median_seconds(sdm):.1f}"
    missed = [r for r in sdm if not r["certified"]]
    right = [r for r in missed if r["prediction"] == r["label"]]
    out["sdm.not_certified"] = str(len(missed))
    out["sdm.not_certified_right"] = str(len(right))
    out["sdm.one_mask_at_least"] = str(sum(_surely_one_mask(r) for r in right))
    return out


def _surely_one_mask(row: dict) -> bool:
    """Whether the row's draws are too few to have reached the two-mask stage.

    Inference draws 100 for each of the 36 one-mask combinations (and, in cases
    2 and 3, at least 64 two-mask ones more); reaching the two-mask stage takes
    at least 67 draws for every one of the 36 + 630 combinations (the first round
    of ``certify_at`` at R = 8.66, sigma 7, alpha 0.001).
    """
    inference = 100 * (36 + (0 if row["case"] == 1 else 64))
    return row["num_samples"] < inference + 67 * (36 + 630)


def main() -> int:
    for name, value in figures().items():
        print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
