"""Smoothing overhead: ``sample_counts`` samples/s next to the plain forward pass.

For each model and batch size, times (a) the jitted forward pass of the same
classifier on a device-resident batch of ``B`` images and (b) ``sample_counts``
drawing ``num = reps * B`` noisy samples in chunks of ``B`` (noise, forward,
argmax and counts on the device). The overhead is ``1 - (b) / (a)``: what the
noise, counting and chunk loop cost on top of the model.

Run: ``python benchmarks/bench_smoothing.py [--models small_cnn resnet20]
[--batch-sizes 256 1024] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from machine_info import machine

import mrs_jax
from mrs_jax.models import as_classifier, get_model


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(model_name: str, batch_size: int, *, shape=(32, 32, 3), reps=4,
            repeats=3, num_classes=10) -> dict:
    classify = as_classifier(get_model(model_name, num_classes=num_classes, seed=0))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=shape).astype(np.float32)
    mask = mrs_jax.square_mask(shape, 4, 4, 8)
    images = jnp.asarray(rng.uniform(size=(batch_size, *shape)).astype(np.float32))

    forward = jax.jit(lambda f, b: f(b))
    forward(classify, images).block_until_ready()

    def run_forward():
        for _ in range(reps):
            out = forward(classify, images)
        out.block_until_ready()

    num = reps * batch_size

    def run_counts():
        # The host drivers' program: every device, the mask's noise window.
        mrs_jax.sample_counts(
            classify, x, mask, 0.5, key=jax.random.key(0), num=num,
            num_classes=num_classes, batch_size=batch_size,
            mesh=mrs_jax.core.sharding.sample_mesh(),
            window=mrs_jax.certification.noise_window(mask)[1],
        )

    run_counts()  # compile
    # Interleave the two so that a change in machine load hits both alike.
    t_forward, t_counts = float("inf"), float("inf")
    for _ in range(repeats):
        t_forward = min(t_forward, _best_of(run_forward, 1))
        t_counts = min(t_counts, _best_of(run_counts, 1))
    forward_rate = num / t_forward
    counts_rate = num / t_counts
    return {
        "model": model_name,
        "batch_size": batch_size,
        "num": num,
        "forward_images_per_s": forward_rate,
        "sample_counts_samples_per_s": counts_rate,
        "overhead": 1.0 - counts_rate / forward_rate,
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | batch | forward img/s | sample_counts samples/s | overhead |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['forward_images_per_s']:,.0f} "
            f"| {r['sample_counts_samples_per_s']:,.0f} | {100 * r['overhead']:+.1f}% |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["small_cnn", "resnet20"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    rows = [
        measure(m, b, reps=args.reps) for m in args.models for b in args.batch_sizes
    ]
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
