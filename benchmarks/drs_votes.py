"""Why a derandomized smoothing run certifies what it does: its votes.

    python benchmarks/drs_votes.py RUN [--max_patch 5]

From a ``--mode drs`` run's rows (``votes``: each class's bands of all ``W``
band positions): the share of the votes the true class won (the base
classifier's accuracy over every band of these images), the share of images
whose true class won at least three quarters of the bands, the images answered
right but not certified with their median lead, and the certified accuracy for
square patches of width 1 to ``--max_patch`` from the same votes (the library's
``certify_votes`` with ``delta = m + b - 1``; the band and mode from run.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mrs_jax.certification import certify_votes, derandomized_delta
from mrs_jax.rows import all_rows


def _rows(run: Path) -> tuple[list[dict], dict]:
    config = json.loads((run / "run.json").read_text())["config"]
    if config.get("mode") != "drs":
        raise SystemExit(f"{run}: not a drs run (mode {config.get('mode')!r})")
    rows = all_rows(run, repair_files=False)  # shards too; a run may be writing
    if not rows:
        raise SystemExit(f"{run}: no rows yet")
    return rows, config


def summary(rows: list[dict], band: int, mode: str, max_patch: int) -> dict:
    """The figures above, as fractions of the images (``lead``: in votes)."""
    votes = np.array([row["votes"] for row in rows])
    labels = np.array([row["label"] for row in rows])
    predictions = np.array([row["prediction"] for row in rows])
    certified = np.array([row["certified"] for row in rows])
    true_votes = votes[np.arange(len(rows)), labels]
    ranked = np.sort(votes, axis=1)
    lead = ranked[:, -1] - ranked[:, -2]
    right = predictions == labels
    missed = right & ~certified
    certify_all = jax.vmap(certify_votes, in_axes=(0, None))
    by_patch = {}
    for width in range(1, max_patch + 1):
        changed = derandomized_delta(width, band, mode)
        label, ok = certify_all(jnp.asarray(votes), changed)
        by_patch[width] = float(np.mean(np.asarray(ok) & (np.asarray(label) == labels)))
    return {
        "images": len(rows),
        "true_vote_share": float(true_votes.sum() / votes.sum()),
        "three_quarters": float(np.mean(true_votes >= 0.75 * votes.sum(1))),
        "clean": float(right.mean()),
        "right_not_certified": int(missed.sum()),
        "median_lead_of_those": float(np.median(lead[missed])) if missed.any() else 0.0,
        "certified_by_patch": by_patch,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a --mode drs run directory")
    parser.add_argument("--max_patch", type=int, default=5)
    args = parser.parse_args(argv)
    rows, config = _rows(args.run)
    result = summary(rows, config["drs_band"], config["drs_mode"], args.max_patch)
    print(
        f"{result['images']} images: the true class won "
        f"{100 * result['true_vote_share']:.1f}% of the votes; at least three "
        f"quarters of them on {100 * result['three_quarters']:.1f}% of the images."
    )
    print(
        f"clean {100 * result['clean']:.1f}%; right but not certified: "
        f"{result['right_not_certified']} images, median lead "
        f"{result['median_lead_of_those']:g} votes"
    )
    by_patch = result["certified_by_patch"].items()
    cells = ", ".join(f"{w}x{w}: {100 * share:.1f}" for w, share in by_patch)
    print(f"certified accuracy by patch width: {cells}")


if __name__ == "__main__":
    main()
