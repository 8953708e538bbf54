"""Peer comparison: mrs-jax against the PyTorch reference, same model, n, batch,
threads.

One run measures, for a CIFAR ResNet of the given depth with random weights:
forward samples/s (a device-resident batch, argmax) and counting samples/s (masked
noise, forward, argmax, counts for ``n`` draws in batches) in mrs-jax
(``mrs_jax.sample_counts``) and in PyTorch (Cohen et al.'s ``_sample_noise`` loop,
``peer_torch_certify.py``, run by ``--torch_python`` in its own environment: torch
is never a dependency of mrs-jax, its tests or CI).

Run (two CPU threads each; give a Python that has torch)::

    python benchmarks/bench_peer.py --torch_python /path/to/torch-env/bin/python \
        --depths 20 110 --batches 128 400 --n 4000

Without ``--torch_python`` only the mrs-jax side runs (its columns alone).

Each mrs-jax classifier of ``--jax_classifiers`` (``VARIANTS``) gets its own row
beside the same torch figures. mrs-jax splits the CPU into one device per core
(``--cpu_devices``, as ``python -m certify`` does) and shares the forward batch and
the draws out over them; torch runs ``--threads`` intra-op threads: the same cores.
Take it on a quiet machine: the two frameworks run one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _timing import best_of, seconds
from machine_info import machine

HERE = Path(__file__).resolve().parent


VARIANTS = {
    "plain": "as_classifier (BatchNorm as trained)",
    "folded": "folded_classifier (BatchNorm folded into the convolutions)",
}


def make_classifier(depth: int, variant: str):
    from mrs_jax.models import as_classifier, folded_classifier, get_model

    # Any CIFAR ResNet depth 6n + 2, as peer_torch_certify.py builds it.
    model = get_model("resnet20", num_classes=10, seed=0, depth=depth)
    if variant == "plain":
        return as_classifier(model)
    return folded_classifier(model)


def measure_jax(depth: int, batch: int, n: int, repeats: int, variant: str) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import mrs_jax

    classify = make_classifier(depth, variant)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 32, 3)).astype(np.float32)
    mask = mrs_jax.square_mask(x.shape, 10, 10, 9)  # a 5x5 patch grown by 2
    # One batch shared out over the devices, as sample_counts shares its draws.
    mesh = mrs_jax.core.sharding.sample_mesh()
    images = rng.uniform(size=(batch, 32, 32, 3)).astype(np.float32)
    images = jax.device_put(images, mrs_jax.core.sharding.along_samples(mesh, 4))
    forward = jax.jit(lambda f, b: jnp.argmax(f(b), -1))
    forward(classify, images).block_until_ready()
    steps = max(1, n // batch)

    def run_forward():
        return [forward(classify, images) for _ in range(steps)]

    def run_counts():
        # The host drivers' program: every device, the mask's noise window.
        return mrs_jax.sample_counts(
            classify, x, mask, 0.5, key=jax.random.key(0), num=n,
            num_classes=10, batch_size=batch, mesh=mrs_jax.core.sharding.sample_mesh(),
            window=mrs_jax.certification.noise_window(mask)[1],
        )  # fmt: skip

    seconds(run_counts)  # compile
    return {
        "framework": f"mrs-jax (jax {jax.__version__})",
        "classifier": VARIANTS[variant],
        "depth": depth, "batch": batch, "n": n, "devices": mesh.size,
        "forward_samples_per_s": steps * batch / best_of(run_forward, repeats),
        "counting_samples_per_s": n / best_of(run_counts, repeats),
    }  # fmt: skip


def measure_torch(python: str, depth: int, batch: int, n: int, threads: int) -> dict:
    command = [python, str(HERE / "peer_torch_certify.py"), "--depth", str(depth)]
    command += ["--batch", str(batch), "--n", str(n), "--threads", str(threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--torch_python", default=None,
                        help="a Python with torch; none: mrs-jax alone")  # fmt: skip
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 110])
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 400])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jax_classifiers", nargs="+", choices=sorted(VARIANTS),
                        default=["plain", "folded"],
                        help="mrs-jax classifiers, one row each")  # fmt: skip
    parser.add_argument("--cpu_devices", type=int, default=None,
                        help="JAX CPU devices (default: one per core, as the "
                        "certify CLI; 1: one device over every core)")  # fmt: skip
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    from mrs_jax.core import sharding

    devices = sharding.use_cpu_cores(args.cpu_devices)
    # XLA's CPU backend uses one thread per core; match torch to the same count.
    print(
        f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads "
        f"{args.threads}, mrs-jax CPU devices {devices}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        flush=True,
    )
    print("| depth | batch | n | jax classifier | torch fwd/s | jax fwd/s "
          "| jax / torch (fwd) | torch count/s | jax count/s "
          "| jax / torch (count) |")  # fmt: skip
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for depth in args.depths:
        for batch in args.batches:
            peer = None
            if args.torch_python:
                peer = measure_torch(
                    args.torch_python, depth, batch, args.n, args.threads
                )
            for variant in args.jax_classifiers:
                ours = measure_jax(depth, batch, args.n, args.repeats, variant)
                row = {"torch": peer, "jax": ours}
                cells = ["-"] * 6
                cells[1], cells[4] = (
                    f"{ours['forward_samples_per_s']:.0f}",
                    f"{ours['counting_samples_per_s']:.0f}",
                )
                if peer is not None:
                    row["forward_ratio"] = (
                        ours["forward_samples_per_s"] / peer["forward_samples_per_s"]
                    )
                    row["count_ratio"] = (
                        ours["counting_samples_per_s"] / peer["counting_samples_per_s"]
                    )
                    cells[0] = f"{peer['forward_samples_per_s']:.0f}"
                    cells[2] = f"{row['forward_ratio']:.2f}x"
                    cells[3] = f"{peer['counting_samples_per_s']:.0f}"
                    cells[5] = f"{row['count_ratio']:.2f}x"
                rows.append(row)
                print(
                    f"| {depth} | {batch} | {args.n} | {variant} | "
                    + " | ".join(cells) + " |",
                    flush=True,
                )  # fmt: skip
    if args.json:
        out = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine(),
            "threads": args.threads,
            "jax_cpu_devices": devices,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
