"""Standard vs adaptive patch attacks against localise-then-smooth.

For N test images, each attack (``patch_attack`` and every objective of
``adaptive_patch_attack``, with the same budget) is run, then MRS's defence:
localise the patch by joint voting, and PREDICT the smoothed classifier inside the
located mask. One row per attack:

- base acc: the base classifier's accuracy on x_adv (lower = stronger attack);
- covered: share of images whose located mask contains the whole patch;
- no_change / multiple: shares of localisation outcomes that certify nothing;
- MRS acc: PREDICT at the located mask returned y (``--smooth_n`` draws; no_change,
  multiple regions and PREDICT abstentions count as wrong, as in the spec);
- attack s/img: wall seconds of the attack per image (compilation included, the
  attacks run as one batch).

Run from the repository root:

    python benchmarks/bench_adaptive.py --checkpoint runs/digits
    python benchmarks/bench_adaptive.py --checkpoint runs/cifar10 \\
        --dataset cifar10 --data_dir data/cifar10
    python benchmarks/bench_adaptive.py --checkpoint /tmp/ckpt --n 2 --smoke
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _timing import timed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrs_jax import (  # noqa: E402
    attacks,
    attacks as adaptive,
    certification as smoothing,
    rows as metrics,
)
from mrs_jax.data import dataset_source  # noqa: E402
from mrs_jax.localization import localize  # noqa: E402
from mrs_jax.models import load_classifier  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="training workdir")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=16, help="test images")
    parser.add_argument("--size", type=int, default=5, help="patch side s")
    parser.add_argument("--num_locations", type=int, default=80)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--step_size", type=float, default=0.05)
    parser.add_argument("--location_chunk", type=int, default=16)
    parser.add_argument(
        "--objectives",
        default=",".join(adaptive.OBJECTIVES),
        help="comma-separated adaptive objectives to compare",
    )
    parser.add_argument("--num_occlusions", type=int, default=8)
    parser.add_argument("--num_noise", type=int, default=4)
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="default: the checkpoint's training sigma",
    )
    parser.add_argument("--dilation", type=int, default=3)
    parser.add_argument("--inpaint", default="harmonic", choices=("harmonic", "telea"))
    parser.add_argument(
        "--smooth_n",
        type=int,
        default=1000,
        help="PREDICT draws; 0 skips the MRS column",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the rows as JSON")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="2 locations, 2 steps, 2 samples: checks it runs",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_locations, args.steps, args.smooth_n = 2, 2, 16
        args.num_occlusions = args.num_noise = 2
    return args


def defend(classify, num_classes, x, y, top_left, args, sigma, key) -> dict:
    """Localise on x, then PREDICT inside the located mask; one row of outcomes.

    As the job: on ``no_change`` the localiser's mask is the block its tie-break
    picks, so the smoothed classifier still runs; ``multiple_regions`` abstains.
    """
    located = localize(
        classify, x, args.size, dilation=args.dilation, method=args.inpaint
    )
    reason = located.reason_name
    mask = np.asarray(located.mask)
    row = {
        "reason": reason,
        "covered": reason != "multiple_regions"
        and metrics.mask_covers(mask, np.asarray(top_left), args.size),
        "mrs_correct": None,
    }
    if args.smooth_n:
        row["mrs_correct"] = False
        # On no_change the mask is the tie-break block: smooth there, as the job does.
        if reason != "multiple_regions":
            prediction = smoothing.predict(
                classify,
                x,
                mask,
                sigma,
                key=key,
                n=args.smooth_n,
                alpha=0.001,
                num_classes=num_classes,
                batch_size=min(args.smooth_n, 256),
            )
            row["mrs_correct"] = prediction.label == int(y)
    return row


def _share(rows: list[dict], predicate) -> float:
    return float(np.mean([bool(predicate(row)) for row in rows]))


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    classify, meta = load_classifier(args.checkpoint)
    num_classes = int(meta["num_classes"])
    sigma = float(args.sigma if args.sigma is not None else meta.get("sigma", 0.5))
    kwargs = {"data_dir": args.data_dir} if args.data_dir else {}
    # A seeded random subset, as the job draws it: folder data sets are sorted by
    # class, so the first images would all be one class.
    source = dataset_source(args.dataset, args.split, **kwargs)
    chosen = np.random.default_rng(0).permutation(len(source))[: args.n]
    images, labels = source.get_batch(np.sort(chosen))
    clean_logits = classify(jnp.asarray(images))
    clean_acc = float(np.mean(np.asarray(jnp.argmax(clean_logits, 1)) == labels))
    key = jax.random.key(args.seed)
    attack_key, defend_key = jax.random.split(key)
    budget = dict(
        key=attack_key,
        num_locations=args.num_locations,
        steps=args.steps,
        step_size=args.step_size,
        location_chunk=args.location_chunk,
    )
    runs = {
        "patch_attack": lambda: attacks.patch_attack(
            classify, images, labels, args.size, **budget
        )
    }
    for objective in [o for o in args.objectives.split(",") if o]:
        runs[f"adaptive:{objective}"] = lambda objective=objective: (
            adaptive.adaptive_patch_attack(
                classify,
                images,
                labels,
                args.size,
                objective=objective,
                sigma=sigma,
                dilation=args.dilation,
                num_occlusions=args.num_occlusions,
                num_noise=args.num_noise,
                **budget,
            )
        )
    print(
        f"checkpoint {args.checkpoint} ({meta['model']}, epoch {meta['epoch']}), "
        f"{args.dataset} {args.split} n={len(images)}, s={args.size}, "
        f"K={args.num_locations}, steps={args.steps}, sigma={sigma}, "
        f"localiser={args.inpaint}, base clean acc {clean_acc:.1%}"
    )
    print(
        "| attack | base acc | covered | no_change | multiple | MRS acc "
        "| attack s/img |"
    )
    print("|---|---|---|---|---|---|---|")
    results = []
    for name, run in runs.items():
        (x_adv, top_left), seconds = timed(run)
        seconds /= len(images)
        base = np.asarray(jnp.argmax(classify(x_adv), 1)) == labels
        rows = [
            defend(
                classify,
                num_classes,
                np.asarray(x_adv[i]),
                labels[i],
                top_left[i],
                args,
                sigma,
                jax.random.fold_in(defend_key, i),
            )
            for i in range(len(images))
        ]
        result = {
            "attack": name,
            "base_acc": float(base.mean()),
            "covered": _share(rows, lambda r: r["covered"]),
            "no_change": _share(rows, lambda r: r["reason"] == "no_change"),
            "multiple_regions": _share(
                rows, lambda r: r["reason"] == "multiple_regions"
            ),
            "mrs_acc": _share(rows, lambda r: r["mrs_correct"])
            if args.smooth_n
            else None,
            "attack_seconds_per_image": seconds,
        }
        results.append(result)
        mrs = "-" if result["mrs_acc"] is None else f"{result['mrs_acc']:.1%}"
        print(
            f"| {name} | {result['base_acc']:.1%} | {result['covered']:.1%} | "
            f"{result['no_change']:.1%} | {result['multiple_regions']:.1%} | "
            f"{mrs} | {seconds:.2f} |",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": results}))
    return results


if __name__ == "__main__":
    main()
