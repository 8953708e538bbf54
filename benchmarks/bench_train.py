"""Digits training benchmark: wall time of ``python -m train`` and the accuracy of
the checkpoint it writes, measured independently through ``load_classifier``.

Run from the repository root:

    python benchmarks/bench_train.py                      # trains runs/bench_digits
    python benchmarks/bench_train.py --workdir runs/digits --no-train   # eval only

Reports the training wall time (subprocess, one host device, as a user runs it), the
load average seen while training, and on the 300 digits test images: clean accuracy,
and accuracy under the training noise (sigma and widths from ``model.json``) averaged
over ``--draws`` independent mask-and-noise draws per image.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import jax
import numpy as np

from mrs_jax.checkpoint import load_classifier
from mrs_jax.data import load_dataset
from mrs_jax.noise import masked_noise_augment


def _train(workdir: str) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    command = [sys.executable, "-m", "train", "--config", "train/configs/digits.py"]
    command += ["--workdir", workdir, "--no_progress"]
    load_before = os.getloadavg()
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    return {
        "train_seconds": round(seconds, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def _evaluate(workdir: str, draws: int) -> dict:
    classify, meta = load_classifier(workdir)
    images, labels = load_dataset("digits", "test")

    @jax.jit
    def hits(classify, images, labels, key):
        noisy = masked_noise_augment(
            key,
            images,
            meta["sigma"],
            meta["w_min"],
            meta["w_max"],
            meta["full_image_noise"],
        )
        return (jax.numpy.argmax(classify(noisy), -1) == labels).mean()

    clean = float(np.mean(np.argmax(classify(images), -1) == labels))
    root = jax.random.key(123)
    noisy = [
        float(hits(classify, images, labels, jax.random.fold_in(root, i)))
        for i in range(draws)
    ]
    return {
        "epoch": meta["epoch"],
        "sigma": meta["sigma"],
        "widths": [meta["w_min"], meta["w_max"]],
        "clean_accuracy": clean,
        "noisy_accuracy_mean": float(np.mean(noisy)),
        "noisy_accuracy_min": float(np.min(noisy)),
        "draws": draws,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="runs/bench_digits")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores, jax {jax.__version__}",
    }
    if not args.no_train:
        result.update(_train(args.workdir))
    result.update(_evaluate(args.workdir, args.draws))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
