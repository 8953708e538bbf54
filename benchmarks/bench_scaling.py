"""Throughput of ``sample_counts`` on 1, 2 and 4 devices.

Each device count runs in a fresh subprocess whose mesh is
``mrs_jax.core.sharding.sample_mesh(k)``. On the CPU backend the subprocess gets ``k``
fake host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=k``): they
share the same physical cores, so the figure is the sharding overhead (ideal
ratio 1.0), not a speedup. On an accelerator backend the first ``k`` real
devices are used and the ratio is a speedup (ideal ``k``); counts above the
device count are skipped.

Run: ``python benchmarks/bench_scaling.py [--devices 1 2 4] [--model small_cnn]``
"""

from __future__ import annotations

import argparse
import json

from _timing import best_of, timed
from bench_memory import run_workers


def worker(devices: int, model: str, batch_size: int, reps: int, side: int) -> dict:
    """Samples/s of ``sample_counts`` over the first ``devices`` devices."""
    import jax
    import numpy as np

    import mrs_jax
    from mrs_jax.models import as_classifier, get_model

    available = len(jax.local_devices())
    if devices > available:
        return {"devices": devices, "skipped": f"only {available} devices"}
    mesh = mrs_jax.core.sharding.sample_mesh(devices)
    classify = as_classifier(get_model(model, num_classes=10, seed=0))
    x = np.random.default_rng(0).uniform(size=(side, side, 3)).astype(np.float32)
    mask = mrs_jax.square_mask(x.shape, side // 4, side // 4, max(1, side // 4))
    num = reps * batch_size

    def count(seed):
        return mrs_jax.sample_counts(
            classify,
            x,
            mask,
            0.5,
            key=jax.random.key(seed),
            num=num,
            num_classes=10,
            batch_size=batch_size,
            mesh=mesh,
            window=mrs_jax.certification.noise_window(mask)[1],
        )

    timed(count, 0)  # compile
    seeds = iter((1, 2))
    best = best_of(lambda: count(next(seeds)), 2)
    return {
        "devices": devices,
        "device_kind": jax.local_devices()[0].device_kind,
        "backend": jax.default_backend(),
        "num": num,
        "seconds": best,
        "samples_per_s": num / best,
    }


def run(
    device_counts=(1, 2, 4),
    *,
    model: str = "small_cnn",
    batch_size: int = 512,
    reps: int = 8,
    side: int = 32,
    timeout: float = 600,
    parallel: bool = False,
) -> dict:
    """One subprocess per device count; rates relative to the first count.

    ``parallel`` starts them all at once (smoke runs only: the rates then
    compete for the same cores).
    """
    jobs = [
        (
            [
                "--devices",
                str(k),
                "--model",
                model,
                "--batch-size",
                str(batch_size),
                "--reps",
                str(reps),
                "--side",
                str(side),
            ],
            k,
        )
        for k in device_counts
    ]
    rows = run_workers(__file__, jobs, timeout, parallel)
    measured = [r for r in rows if "samples_per_s" in r]
    base = measured[0]["samples_per_s"]
    for r in measured:
        r["ratio_to_first"] = r["samples_per_s"] / base
    backend = measured[0]["backend"]
    return {
        "model": model,
        "batch_size": batch_size,
        "image_side": side,
        "backend": backend,
        "fake_cpu_devices": backend == "cpu",
        "rows": rows,
    }


def markdown(result: dict) -> str:
    lines = [
        f"Model `{result['model']}` on {result['image_side']}x{result['image_side']}"
        f"x3, chunks of {result['batch_size']}, one process per device count.",
        "",
        "| devices | samples/s | ratio to 1 device |",
        "|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['devices']} | skipped ({r['skipped']}) | |")
            continue
        lines.append(
            f"| {r['devices']} | {r['samples_per_s']:,.0f} | "
            f"{r['ratio_to_first']:.2f} |"
        )
    if result["fake_cpu_devices"]:
        lines += [
            "",
            "These are fake CPU devices sharing the same cores: the ratio measures "
            "the cost of sharding the sample axis (ideal 1.00), not a speedup.",
        ]
    else:
        lines += ["", "Real devices: the ratio is the speedup (ideal = devices)."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--side", type=int, default=32)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(
            args.devices[0], args.model, args.batch_size, args.reps, args.side
        )
        print(json.dumps(result))
        return
    result = run(
        args.devices,
        model=args.model,
        batch_size=args.batch_size,
        reps=args.reps,
        side=args.side,
    )
    print(markdown(result))


if __name__ == "__main__":
    main()
