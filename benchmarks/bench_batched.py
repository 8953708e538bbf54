"""Defence throughput: image by image against batched.

The defence step of a certification job (localise by joint voting, then
``certify_at`` at the "unrestricted" target radius ``s * sqrt(C)`` inside the
located mask) on N test images, run two ways with the job's own code:

- ``loop``: image by image, as ``images_per_batch = 1`` runs it (the same
  ``mrs_jax.pipeline.defend`` on groups of one);
- ``batched_B``: groups of B images, as ``images_per_batch = B`` runs it
  (``localize`` + ``certify_at`` on the batch, one device program per step).

It prints images/s of each, the speed-up over the loop, and whether every
batched defence gave the same fields as the loop (it must: same keys, same
draws). Settings come from a certify config (``--config``), in mode ``clean``
with ``target_radius = "unrestricted"``. Each method first runs untimed on one
group (compiles); a mask at an image border can still compile a program in
the timed pass, for every method alike.

Run (digits; trains ``runs/digits`` for ``--train_epochs`` if it is missing)::

    python benchmarks/bench_batched.py --config certify/configs/digits.py \\
        --checkpoint runs/digits

Run (CIFAR-10)::

    python benchmarks/bench_batched.py --config certify/configs/cifar10_cpu.py \\
        --checkpoint benchmarks/checkpoints/cifar10_cpu --data_dir data/cifar10

``--smoke``: an untrained tiny model on 4 digits images, B in (1, 2), small n
(its numbers mean nothing; it checks the benchmark runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import jax
import numpy as np
from _timing import timed
from machine_info import machine

from mrs_jax import job as pipeline
from mrs_jax.core import configfile, sharding
from mrs_jax.job import JobConfig

ROOT = Path(__file__).resolve().parents[1]


def classifier(args, config: JobConfig):
    """``(classify, num_classes, description)``."""
    from mrs_jax.models import as_classifier, get_model, load_classifier

    if args.smoke:
        model = get_model("tiny_cnn", num_classes=10, seed=0)
        return as_classifier(model), 10, "tiny_cnn, UNTRAINED (smoke)"
    checkpoint = Path(args.checkpoint)
    if not (checkpoint / "model.json").is_file():
        if config.dataset != "digits":
            raise SystemExit(f"error: no checkpoint at {checkpoint}")
        train_digits(checkpoint, args.train_epochs)
    classify, meta = load_classifier(checkpoint)
    description = f"{checkpoint} ({meta['model']}, epoch {meta.get('epoch')})"
    return classify, int(meta["num_classes"]), description


def train_digits(workdir: Path, epochs: int) -> None:
    """Trains the digits model of ``train/configs/digits.py`` for ``epochs``."""
    from mrs_jax.training import TrainConfig, train

    train_config = configfile.load(ROOT / "train/configs/digits.py", False, TrainConfig)
    train_config = dataclasses.replace(train_config, epochs=epochs)
    print(f"training {workdir} ({epochs} epochs)", file=sys.stderr, flush=True)
    train(train_config, workdir)


def job_config(args) -> JobConfig:
    config = configfile.load(args.config, args.smoke, JobConfig)
    changes = dict(mode="clean", target_radius="unrestricted")
    if args.data_dir is not None:
        changes["data_dir"] = args.data_dir
    if args.smoke:  # 67 draws a round at sigma 7 keep the smoke run short
        changes.update(sigma=7.0, n0=10, n=1000, localize_batch_size=128)
    return dataclasses.replace(config, **changes)


def defend(config, classify, num_classes, images, keys, group: int) -> list[dict]:
    """The job's defence fields of every image, ``group`` images at a time
    (0: the image-by-image loop)."""
    if group == 0:
        return [
            pipeline.defend(
                config, classify, num_classes, images[i : i + 1], keys[i : i + 1]
            )[0]
            for i in range(len(images))
        ]
    out = []
    for start in range(0, len(images), group):
        out += pipeline.defend(
            config,
            classify,
            num_classes,
            images[start : start + group],
            keys[start : start + group],
            {},
        )
    return out


def run(args) -> dict:
    config = job_config(args)
    classify, num_classes, description = classifier(args, config)
    from mrs_jax.data import dataset_source

    source = dataset_source(config.dataset, config.split, data_dir=config.data_dir)
    chosen = np.random.default_rng(config.image_seed).permutation(len(source))
    chosen = chosen[: args.num_images]
    images, _ = source.get_batch(chosen)
    # The job's certify keys: split(fold_in(key(seed), index), 3)[2].
    root = jax.random.key(config.seed)
    keys = jax.numpy.stack(
        [jax.random.split(jax.random.fold_in(root, int(i)), 3)[2] for i in chosen]
    )
    batched_config = dataclasses.replace(
        config, batch_size=args.batched_batch_size or config.batch_size
    )
    methods = {"loop": (config, 0)}
    for b in args.images_per_batch:
        methods[f"batched_{b}"] = (batched_config, b)
    results, reference = {}, None
    for name, (method_config, group) in methods.items():
        warm = max(group, 1)
        defend(method_config, classify, num_classes, images[:warm], keys[:warm], group)
        fields, seconds = timed(
            defend, method_config, classify, num_classes, images, keys, group
        )
        reference = fields if reference is None else reference
        results[name] = {
            "images_per_batch": group or 1,
            "seconds": seconds,
            "images_per_second": len(images) / seconds,
            "same_fields_as_loop": fields == reference,
            "mean_draws": float(np.mean([f.get("num_samples") or 0 for f in fields])),
            "certified_at_target": float(
                np.mean([bool(f.get("certified_at_target")) for f in fields])
            ),
        }
        loop = results["loop"]["images_per_second"]
        results[name]["speedup_over_loop"] = results[name]["images_per_second"] / loop
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    return {
        "command": " ".join([sys.executable, *sys.argv]),
        "machine": machine(),
        "model": description,
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "batched_batch_size": batched_config.batch_size,
        "jax_cpu_devices": args.cpu_devices,
        "num_images": len(images),
        "results": results,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "certify/configs/digits.py"))
    parser.add_argument("--checkpoint", default=str(ROOT / "runs/digits"))
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--num_images", type=int, default=64)
    parser.add_argument("--images_per_batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--batched_batch_size",
        type=int,
        default=None,
        help="(image, draw) pairs per device step when batched (default: the "
        "config's batch_size, the loop's samples per step)",
    )
    parser.add_argument(
        "--cpu_devices",
        type=int,
        default=1,
        help="JAX CPU devices, for the loop and the batched defence alike "
        "(python -m certify runs one per core; default 1, as this benchmark "
        "ran before one device per core)",
    )
    parser.add_argument("--train_epochs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    args.cpu_devices = sharding.use_cpu_cores(args.cpu_devices)
    if args.smoke:
        args.num_images, args.images_per_batch = 4, [1, 2]
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
