"""Training benchmark: wall time of ``python -m train`` and the accuracy of the
checkpoint it writes, measured independently through ``load_classifier``.

Run from the repository root:

    python benchmarks/bench_train.py                      # trains runs/bench_digits
    python benchmarks/bench_train.py --workdir runs/digits --no-train   # eval only
    python benchmarks/bench_train.py --no-train --draws 5 \
        --workdir benchmarks/checkpoints/cifar10_cpu --data_dir data/cifar10

Reports the training wall time (subprocess, one host device, as a user runs it), the
load average seen while training, and on the whole test split of the checkpoint's
data set: clean accuracy (one view), with ``--tta mirror`` or ``mirror_translate``
also the accuracy averaged over test-time views (evaluation only), and accuracy
under the training noise (sigma and widths from ``model.json``) averaged over
``--draws`` independent mask-and-noise draws per image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
from _timing import timed
from machine_info import machine

from mrs_jax.data import load_dataset
from mrs_jax.models import load_classifier
from mrs_jax.training import masked_noise_augment, tta_logits

EVAL_BATCH = 1000
ROOT = Path(__file__).resolve().parents[1]


def _train(workdir: str, config: str) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    command = [sys.executable, "-m", "train", "--config", config]
    command += ["--workdir", str(Path(workdir).resolve()), "--no_progress"]
    load_before = os.getloadavg()
    _, seconds = timed(subprocess.run, command, cwd=ROOT, check=True)
    return {
        "train_seconds": round(seconds, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def _evaluate(workdir: str, draws: int, data_dir: str | None, tta: str) -> dict:
    classify, meta = load_classifier(workdir)
    images, labels = load_dataset(meta["dataset"], "test", data_dir=data_dir)

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
        return (jax.numpy.argmax(classify(noisy), -1) == labels).sum()

    def accuracy(key=None) -> float:
        correct = 0
        for start in range(0, len(labels), EVAL_BATCH):
            part = slice(start, start + EVAL_BATCH)
            x, y = images[part], labels[part]
            if key is None:
                correct += int((np.argmax(classify(x), -1) == y).sum())
            else:
                correct += int(hits(classify, x, y, jax.random.fold_in(key, start)))
        return correct / len(labels)

    clean = accuracy()
    with_tta = {}
    if tta != "none":
        views = jax.jit(lambda classify, x: tta_logits(classify, x, tta))
        correct = 0
        for start in range(0, len(labels), EVAL_BATCH):
            part = slice(start, start + EVAL_BATCH)
            predicted = np.argmax(views(classify, images[part]), -1)
            correct += int((predicted == labels[part]).sum())
        with_tta = {"tta": tta, "tta_accuracy": correct / len(labels)}
    root = jax.random.key(123)
    noisy = [accuracy(jax.random.fold_in(root, i)) for i in range(draws)]
    return {
        "dataset": meta["dataset"],
        "test_images": len(labels),
        "epoch": meta["epoch"],
        "sigma": meta["sigma"],
        "widths": [meta["w_min"], meta["w_max"]],
        "clean_accuracy": clean,
        **with_tta,
        "noisy_accuracy_mean": float(np.mean(noisy)),
        "noisy_accuracy_min": float(np.min(noisy)),
        "draws": draws,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="runs/bench_digits")
    parser.add_argument("--config", default="train/configs/digits.py")
    parser.add_argument("--data_dir", default=None, help="for cifar10 / folders")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument(
        "--tta", default="none", choices=("none", "mirror", "mirror_translate")
    )
    args = parser.parse_args(argv)
    result = {"machine": machine()}
    if not args.no_train:
        result.update(_train(args.workdir, args.config))
    result.update(_evaluate(args.workdir, args.draws, args.data_dir, args.tta))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
