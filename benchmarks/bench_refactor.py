"""Before/after speed of issue 20's functional core, through APIs both share.

Runs in a subprocess against the checkout ``--tree`` (this one, or a
``git worktree`` of an earlier commit), so the code before and after a change
is measured in one sitting on the same machine:

- ``counting``: samples/s of ``mrs_jax.predict`` (the host driver's counting
  program: masked noise, forward, argmax, counts) for ``n`` draws, best of
  ``--repeats`` after a compiling call, per model and batch size. Models:
  ``resnet110`` (random weights) and ``fast_cnn`` (the committed CIFAR-10
  checkpoint), BatchNorm folded, one JAX device per core (``python -m
  certify``'s settings).
- ``defence``: images/s of the job in mode ``clean`` (localise by Telea and
  joint voting, then ``certify_at`` at ``s * sqrt(C)``) on CIFAR-10 test images
  with the committed checkpoint, ``images_per_batch`` 1 and 8 (after a
  one-image run that compiles).
- ``readme``: counting samples/s of a researcher's own script: the classifier
  from ``load_classifier(path)`` with its defaults and ``certify`` called as the
  README shows, on one device (no ``use_cpu_cores``) and after
  ``use_cpu_cores()``.

Run (quiet machine; about 10 minutes on 2 cores)::

    git worktree add /tmp/before 5da872c
    python benchmarks/bench_refactor.py --trees /tmp/before . \\
        --data_dir data/cifar10 --json benchmarks/results/refactor.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKPOINT = HERE / "checkpoints" / "cifar10_cpu"


def _classifier(name: str, fold: bool):
    from mrs_jax.models import as_classifier, folded_classifier, get_model

    if name == "fast_cnn":
        from mrs_jax.models import load_model

        model, _ = load_model(CHECKPOINT)
    else:
        model = get_model(name, num_classes=10, seed=0)
    return folded_classifier(model) if fold else as_classifier(model)


def _samples_per_second(classify, n: int, batch: int, repeats: int) -> float:
    import jax
    import numpy as np

    import mrs_jax

    x = np.random.default_rng(0).uniform(size=(32, 32, 3)).astype(np.float32)
    mask = mrs_jax.square_mask(x.shape, 10, 10, 11)
    args = dict(n=n, alpha=0.001, num_classes=10, batch_size=batch)
    mrs_jax.predict(classify, x, mask, 7.0, key=jax.random.key(0), **args)
    best = 0.0
    for r in range(repeats):
        start = time.perf_counter()
        mrs_jax.predict(classify, x, mask, 7.0, key=jax.random.key(r + 1), **args)
        best = max(best, n / (time.perf_counter() - start))
    return best


def counting(args) -> list[dict]:
    out = []
    for name in args.models:
        classify = _classifier(name, fold=True)
        for batch in args.batches:
            rate = _samples_per_second(classify, args.n, batch, args.repeats)
            out.append({"model": name, "batch": batch, "samples_per_s": rate})
            print(f"  counting {name} batch {batch}: {rate:.0f} samples/s", flush=True)
    return out


def defence(args) -> list[dict]:
    import dataclasses
    import tempfile

    from mrs_jax import job
    from mrs_jax.core import configfile
    from mrs_jax.models import load_classifier

    config = configfile.load(
        str(Path(args.tree) / "certify/configs/cifar10_cpu.py"), False, job.JobConfig
    )
    config = dataclasses.replace(
        config, mode="clean", target_radius="unrestricted", data_dir=args.data_dir
    )
    classify, meta = load_classifier(CHECKPOINT, fold=True)
    out = []
    for group in (1, 8):
        with tempfile.TemporaryDirectory() as tmp:
            run = dict(classify=classify, num_classes=10, meta=None, progress=False)
            first = dataclasses.replace(
                config, num_images=group, images_per_batch=group
            )
            job.run(first, tmp, **run)  # compiles
            total = group + args.images
            rest = dataclasses.replace(config, num_images=total, images_per_batch=group)
            start = time.perf_counter()
            job.run(rest, tmp, **run)
            rate = args.images / (time.perf_counter() - start)
        out.append({"images_per_batch": group, "images_per_s": rate})
        print(f"  defence images_per_batch {group}: {rate:.3f} images/s", flush=True)
    return out


def readme(args) -> list[dict]:
    """The README's way: ``load_classifier`` defaults, ``certify`` per image."""
    import jax
    import numpy as np

    import mrs_jax

    classify, _ = mrs_jax.load_classifier(CHECKPOINT)
    x = np.random.default_rng(0).uniform(size=(32, 32, 3)).astype(np.float32)
    mask = mrs_jax.square_mask(x.shape, 10, 10, 11)
    settings = dict(n0=100, n=args.n, alpha=0.001, num_classes=10, batch_size=400)
    mrs_jax.certify(classify, x, mask, 7.0, key=jax.random.key(0), **settings)
    start = time.perf_counter()
    mrs_jax.certify(classify, x, mask, 7.0, key=jax.random.key(1), **settings)
    rate = (args.n + 100) / (time.perf_counter() - start)
    print(f"  readme ({jax.device_count()} devices): {rate:.0f} samples/s", flush=True)
    return [{"devices": jax.device_count(), "samples_per_s": rate}]


def child(args) -> dict:
    import jax

    if args.cpu_devices:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    result = {"tree": args.tree, "devices": args.cpu_devices}
    for part in args.parts:
        result[part] = globals()[part](args)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", default=["."])
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--parts", nargs="+", default=["counting", "defence"])
    parser.add_argument("--models", nargs="+", default=["resnet110", "fast_cnn"])
    parser.add_argument("--batches", nargs="+", type=int, default=[128, 400])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--data_dir", default="data/cifar10")
    parser.add_argument("--cpu_devices", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.tree:  # the child: measure this tree's code
        print(json.dumps(child(args)))
        return
    sys.path.insert(0, str(HERE))
    from machine_info import machine

    results = []
    runs = [(tree, args.parts, args.cpu_devices) for tree in args.trees]
    runs += [(tree, ["readme"], devices) for tree in args.trees for devices in (0, 2)]
    for tree, parts, devices in runs:
        tree = str(Path(tree).resolve())
        print(f"{tree} {parts} cpu_devices={devices}", flush=True)
        command = [
            sys.executable, __file__, "--tree", tree, "--parts", *parts,
            "--models", *args.models, "--batches", *map(str, args.batches),
            "--n", str(args.n), "--repeats", str(args.repeats),
            "--images", str(args.images),
            "--data_dir", str(Path(args.data_dir).resolve()),
            "--cpu_devices", str(devices),
        ]
        env = dict(os.environ, PYTHONPATH=tree)
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True,
                              text=True)
        if done.returncode:
            sys.stderr.write(done.stderr[-3000:])
            raise SystemExit(f"error: the run in {tree} failed")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        for line in done.stdout.strip().splitlines()[:-1]:
            print(line)
        results.append(result)
    record = {"command": " ".join(sys.argv), "machine": machine(), "results": results}
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
