"""How the base classifier copes with one square of smoothing noise, by its width.

MRS smooths inside the located block grown by ``dilation`` pixels on every side:
an 11 x 11 mask for a 5 x 5 patch and the paper's dilation 3, wider than the
squares the CIFAR-10 model was trained with (widths 5..10). This measures the
base classifier's accuracy on test images with Gaussian noise (sigma as in
training) inside one w x w square, for each width w, at the image centre and at a
uniformly random position, one noise draw per image: the accuracy that the
smoothed classifier's vote is built from. No certificate is computed.

Run (CIFAR-10)::

    python benchmarks/bench_mask_width.py \
        --checkpoint benchmarks/checkpoints/cifar10_cpu --dataset cifar10 \
        --data_dir data/cifar10 --num_images 2000 \
        --out benchmarks/results/mask_width_cifar10.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from machine_info import machine

import mrs_jax


def accuracies(classify, images, labels, width, sigma, key, batch=500):
    """(centre, random) accuracy with noise in one width x width square."""
    count, height, wide = images.shape[:3]
    centre_key, place_key, noise_key = jax.random.split(key, 3)
    tops = jax.random.randint(place_key, (count, 2), 0, height - width + 1)
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(wide)[None, None, :]

    def square(top, left):  # [count] -> [count, H, W] bool
        top, left = top[:, None, None], left[:, None, None]
        return (
            (rows >= top)
            & (rows < top + width)
            & (cols >= left)
            & (cols < left + width)
        )

    centre = jnp.full((count,), (height - width) // 2)
    results = []
    for masks, draw in (
        (square(centre, centre), centre_key),
        (square(tops[:, 0], tops[:, 1]), noise_key),
    ):
        correct = 0
        for start in range(0, count, batch):
            x = jnp.asarray(images[start : start + batch])
            m = masks[start : start + batch, :, :, None]
            noise = sigma * jax.random.normal(jax.random.fold_in(draw, start), x.shape)
            predicted = np.asarray(jnp.argmax(classify(x + noise * m), -1))
            correct += int((predicted == labels[start : start + batch]).sum())
        results.append(correct / count)
    return tuple(results)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data_dir", default="data/cifar10")
    parser.add_argument("--num_images", type=int, default=2000)
    parser.add_argument(
        "--widths", type=int, nargs="+", default=[0, 3, 5, 7, 9, 11, 13, 15]
    )
    parser.add_argument(
        "--sigma", type=float, default=None, help="default: training sigma"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    classify, meta = mrs_jax.load_classifier(args.checkpoint, fold=True)
    sigma = float(meta["sigma"] if args.sigma is None else args.sigma)
    images, labels = mrs_jax.load_dataset(args.dataset, "test", data_dir=args.data_dir)
    chosen = np.random.default_rng(args.seed).permutation(len(images))[
        : args.num_images
    ]
    images, labels = np.asarray(images)[chosen], np.asarray(labels)[chosen]
    start = time.perf_counter()
    rows = []
    print(f"sigma {sigma:g}, {len(images)} images")
    print("| width | centre % | random position % |")
    print("|---:|---:|---:|")
    for width in args.widths:
        if width == 0:
            clean = accuracies(
                classify, images, labels, 1, 0.0, jax.random.key(args.seed)
            )
            row = {"width": 0, "centre": clean[0], "random": clean[1]}
        else:
            key = jax.random.fold_in(jax.random.key(args.seed), width)
            centre, random = accuracies(classify, images, labels, width, sigma, key)
            row = {"width": width, "centre": centre, "random": random}
        rows.append(row)
        print(f"| {width} | {100 * row['centre']:.1f} | {100 * row['random']:.1f} |")
    result = {
        "command": "python benchmarks/bench_mask_width.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "checkpoint": args.checkpoint,
        "sigma": sigma,
        "num_images": len(images),
        "rows": rows,
        "seconds": time.perf_counter() - start,
        "machine": machine(),
    }
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
