"""certify_at against fixed-n CERTIFY: draws, seconds and decisions per image.

For each of N test images, with the mask at the image centre (the patch size)
and the target radius ``patch_l2_bound(s, C)`` (every possible s x s patch inside
the mask; ``--radius`` overrides it), this decides "certified at the target?"
three ways with the same per-image key (so all three share the selection draws
and the first estimation draws):

- fixed: ``mrs_jax.certify`` with ``n`` (default the paper's 100,000) estimation
  draws; certified iff it returns a label with radius >= target;
- certify_at: ``mrs_jax.certify_at`` with ``max_n = n`` (stops early only when the
  answer can no longer change);
- certify_at + futility: the same with ``futility_alpha = alpha`` (also gives up
  once the top class's probability is below the threshold at that confidence).

It reports the draws and seconds per image of each (the first image's compile is
excluded: every method runs on it once before the timed pass), how often the
decisions agree with fixed-n CERTIFY, and the share certified and correct.

Run (digits): ``python benchmarks/bench_certify_at.py --checkpoint runs/digits``
Run (CIFAR-10): ``python benchmarks/bench_certify_at.py --checkpoint
benchmarks/checkpoints/cifar10_cpu --dataset cifar10 --data_dir data/cifar10``
Add ``--quick`` for 10 images and n = 10,000.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np
from _timing import timed
from machine_info import machine

import mrs_jax

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("fixed", "certify_at", "certify_at_futility")


def decide(method, classify, x, mask, key, settings):
    """``(certified, label, draws)`` of one method on one image."""
    common = dict(
        key=key,
        n0=settings["n0"],
        alpha=settings["alpha"],
        num_classes=settings["num_classes"],
        batch_size=settings["batch_size"],
    )
    sigma, radius = settings["sigma"], settings["radius"]
    if method == "fixed":
        cert = mrs_jax.certify(classify, x, mask, sigma, n=settings["n"], **common)
        certified = cert.label != mrs_jax.ABSTAIN and cert.radius >= radius
        return certified, cert.label, settings["n0"] + settings["n"]
    futility = settings["alpha"] if method == "certify_at_futility" else None
    result = mrs_jax.certify_at(
        classify,
        x,
        mask,
        sigma,
        radius,
        max_n=settings["n"],
        futility_alpha=futility,
        **common,
    )
    return result.certified, result.selected_label, result.num_samples


def run(args) -> dict:
    classify, meta = mrs_jax.load_classifier(args.checkpoint)
    # A seeded random subset, as the job draws it: folder data sets are sorted by
    # class, so the first images would all be one class.
    source = mrs_jax.dataset_source(args.dataset, args.split, data_dir=args.data_dir)
    chosen = np.random.default_rng(0).permutation(len(source))[: args.num_images]
    images, labels = source.get_batch(np.sort(chosen))
    height, width, channels = images.shape[1:]
    top, left = (height - args.patch_size) // 2, (width - args.patch_size) // 2
    mask = mrs_jax.square_mask(images.shape[1:], top, left, args.patch_size)
    sigma = args.sigma if args.sigma is not None else float(meta["sigma"])
    radius = args.radius
    if radius is None:
        radius = mrs_jax.patch_l2_bound(args.patch_size, channels)
    settings = dict(
        sigma=sigma,
        radius=radius,
        n0=args.n0,
        n=args.n,
        alpha=args.alpha,
        num_classes=int(meta["num_classes"]),
        batch_size=args.batch_size,
    )
    base_key = jax.random.key(args.seed)
    for method in METHODS:  # compile every program once, untimed
        decide(method, classify, images[0], mask, base_key, settings)
    rows = []
    for index, (x, y) in enumerate(zip(images, labels, strict=True)):
        key = jax.random.fold_in(base_key, index)
        row = {"index": index, "label": int(y)}
        for method in METHODS:
            (certified, label, draws), seconds = timed(
                decide, method, classify, x, mask, key, settings
            )
            row[method] = {
                "certified": bool(certified),
                "label": int(label),
                "draws": int(draws),
                "seconds": seconds,
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {
        "machine": machine(),
        "checkpoint": str(args.checkpoint),
        "model": meta.get("model"),
        "dataset": args.dataset,
        "split": args.split,
        "num_images": len(rows),
        "patch_size": args.patch_size,
        "mask": "centre",
        "seed": args.seed,
        "settings": settings,
        "summary": summarise(rows),
        "rows": rows,
    }


def summarise(rows) -> dict:
    summary = {}
    for method in METHODS:
        draws = np.array([r[method]["draws"] for r in rows], float)
        seconds = np.array([r[method]["seconds"] for r in rows])
        summary[method] = {
            "mean_draws": float(draws.mean()),
            "median_draws": float(np.median(draws)),
            "max_draws": float(draws.max()),
            "mean_seconds": float(seconds.mean()),
            "certified": float(np.mean([r[method]["certified"] for r in rows])),
            "certified_correct": float(
                np.mean(
                    [
                        r[method]["certified"] and r[method]["label"] == r["label"]
                        for r in rows
                    ]
                )
            ),
        }
    fixed = summary["fixed"]
    for method in METHODS[1:]:
        same = [
            (r[method]["certified"], r[method]["label"])
            == (r["fixed"]["certified"], r["fixed"]["label"])
            if r["fixed"]["certified"]
            else not r[method]["certified"]
            for r in rows
        ]
        summary[method]["agreement_with_fixed"] = float(np.mean(same))
        summary[method]["draws_ratio"] = (
            fixed["mean_draws"] / summary[method]["mean_draws"]
        )
        summary[method]["seconds_ratio"] = (
            fixed["mean_seconds"] / summary[method]["mean_seconds"]
        )
    return summary


def markdown(result: dict) -> str:
    s, m = result["settings"], result["machine"]
    lines = [
        f"certify_at vs CERTIFY(n = {s['n']:,}), {result['dataset']} "
        f"({result['model']}), {result['num_images']} images, centre "
        f"{result['patch_size']}x{result['patch_size']} mask, sigma {s['sigma']}, "
        f"target radius {s['radius']:.3f}, n0 {s['n0']}, alpha {s['alpha']}, "
        f"batch {s['batch_size']}; {m['processor']}, {m['backend']}, "
        f"{len(m['devices'])} device(s), {m['date']}",
        "",
        "| method | mean draws | median | max | s / image | certified | "
        "certified & correct | agrees with fixed | draws saved | time saved |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method in METHODS:
        r = result["summary"][method]
        agree = r.get("agreement_with_fixed")
        lines.append(
            f"| {method} | {r['mean_draws']:,.0f} | {r['median_draws']:,.0f} | "
            f"{r['max_draws']:,.0f} | {r['mean_seconds']:.3f} | "
            f"{100 * r['certified']:.1f}% | {100 * r['certified_correct']:.1f}% | "
            + ("-" if agree is None else f"{100 * agree:.1f}%")
            + " | "
            + ("-" if agree is None else f"{r['draws_ratio']:.1f}x")
            + " | "
            + ("-" if agree is None else f"{r['seconds_ratio']:.1f}x")
            + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "runs/digits"))
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--num_images", type=int, default=100)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument(
        "--sigma", type=float, default=None, help="default: the checkpoint's"
    )
    parser.add_argument("--patch_size", type=int, default=5)
    parser.add_argument(
        "--radius", type=float, default=None, help="default: patch_l2_bound(s, C)"
    )
    parser.add_argument("--batch_size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10 images, n = 10,000")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks/results/certify_at"), help="prefix"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.num_images, args.n = min(args.num_images, 10), min(args.n, 10_000)
    result = run(args)
    text = markdown(result)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
