"""One command that measures what the GPU figures need, and writes JSON.

Measures, on whatever device JAX finds first:

- counting samples/s (``mrs_jax.sample_counts``, a 5x5 mask on a 32x32 image)
  for ResNet-110 and the airbench-class model at batch 128, 400 and 1024;
- the defence's images/s (``mrs_jax.run_job``, mode ``clean``: localise, then
  CERTIFY) at ``images_per_batch`` 1, 8, 32 and 128;
- a training epoch of the ``cifar10_airbench`` recipe (steps timed, the epoch
  extrapolated to 50,000 images);
- achieved FLOP/s (XLA's cost analysis of the timed programs) against the
  device's peak where it is known.

Run (about 8 minutes on one GPU; ``--quick``: tiny models and sizes, under a
minute on a 2-core CPU, what the test suite runs)::

    python benchmarks/device_check.py --out benchmarks/results/device_check.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import machine_info  # noqa: E402
from _timing import best_of, timed  # noqa: E402

import mrs_jax  # noqa: E402

# Dense peaks in FLOP/s (vendor data sheets: float32 without and with TF32
# tensor cores, bf16 tensor cores). Unknown devices get None.
PEAKS = {
    "H100": {"float32": 67e12, "tf32": 494e12, "bfloat16": 989e12},
    "H200": {"float32": 67e12, "tf32": 494e12, "bfloat16": 989e12},
    "A100": {"float32": 19.5e12, "tf32": 156e12, "bfloat16": 312e12},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny, for the CPU")
    parser.add_argument("--out", type=Path, default=None, help="the JSON file")
    return parser.parse_args(argv)


def _flops(fn, *args) -> float | None:
    try:
        cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001  (some backends report no costs)
        return None
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    return float(cost.get("flops", 0.0)) or None


def counting(models: dict[str, str], batches: list[int], num: int) -> list[dict]:
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(32, 32, 3)), jnp.float32)
    mask = mrs_jax.square_mask(x.shape, 13, 13, 5)
    out = []
    for label, name in models.items():
        model = mrs_jax.get_model(name, num_classes=10, seed=0)
        classify = mrs_jax.as_classifier(model)
        for batch in batches:
            def counts(seed, batch=batch, classify=classify):
                return mrs_jax.sample_counts(
                    classify, x, mask, 0.5, key=jax.random.key(seed), num=num,
                    num_classes=10, batch_size=batch,
                )  # fmt: skip

            _, compile_s = timed(counts, 0)
            seconds = best_of(lambda: counts(1), 2)
            images = jnp.zeros((batch, 32, 32, 3), jnp.float32)
            flops = _flops(classify, images)
            out.append({
                "model": label, "batch": batch, "num": num,
                "samples_per_s": num / seconds, "compile_s": compile_s,
                "flop_per_s": None if flops is None else flops * num / batch / seconds,
            })  # fmt: skip
    return out


def defence(per_batch: list[int], quick: bool) -> list[dict]:
    config = mrs_jax.JobConfig(
        mode="clean", dataset="synthetic", synthetic_shape=(32, 32, 3),
        synthetic_classes=10, synthetic_examples=max(per_batch) * 2, patch_size=5,
        sigma=0.5, n0=16 if quick else 100, n=64 if quick else 10_000,
        batch_size=64 if quick else 1000, localize_batch_size=256,
        inpaint_method="harmonic",
    )  # fmt: skip
    model = mrs_jax.get_model("tiny_cnn" if quick else "resnet110", num_classes=10,
                              seed=0)
    classify = mrs_jax.as_classifier(model)
    out = []
    for ipb in per_batch:
        with tempfile.TemporaryDirectory() as tmp:
            run = dataclasses.replace(config, images_per_batch=ipb, num_images=ipb)
            mrs_jax.run_job(run, Path(tmp) / "warm", classify=classify,
                            num_classes=10, progress=False, fingerprint="check")
            run = dataclasses.replace(run, num_images=2 * ipb)
            start = time.perf_counter()
            mrs_jax.run_job(run, Path(tmp) / "timed", classify=classify,
                            num_classes=10, progress=False, fingerprint="check")
            seconds = time.perf_counter() - start
        out.append({"images_per_batch": ipb, "images_per_s": 2 * ipb / seconds})
    return out


def training_epoch(quick: bool) -> dict:
    from flax import nnx

    from mrs_jax.configs.train.cifar10_airbench import get_config
    from mrs_jax.training import make_optimizer, make_train_step

    config = get_config(smoke=quick)
    model = mrs_jax.get_model(config.model, num_classes=10, seed=0,
                              **dict(config.model_kwargs))
    graphdef, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    state = {"params": params, "batch_stats": stats}
    step = make_train_step(graphdef, config, 100)
    opt = make_optimizer(config, 100).init(params)
    batch = config.batch_size
    images = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, 32, 32, 3)),
                         jnp.float32)
    labels = jnp.zeros(batch, jnp.int32)
    state, opt, loss, _ = step(state, opt, rest, images, labels, jax.random.key(0))
    jax.block_until_ready(loss)
    steps = 3 if quick else 20
    start = time.perf_counter()
    for i in range(steps):
        state, opt, loss, _ = step(state, opt, rest, images, labels,
                                   jax.random.key(i + 1))
    jax.block_until_ready(loss)
    per_step = (time.perf_counter() - start) / steps
    return {"model": config.model, "batch": batch, "step_s": per_step,
            "epoch_s": per_step * 50_000 / batch}


def peak(device) -> dict | None:
    kind = getattr(device, "device_kind", "")
    return next((p for name, p in PEAKS.items() if name in kind), None)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = jax.devices()[0]
    quick = args.quick
    models = {"resnet110": "resnet_tiny", "airbench": "airbench_tiny"} if quick else {
        "resnet110": "resnet110", "airbench": "airbench"}
    result = {
        "machine": machine_info.machine(),
        "device": str(device), "device_kind": getattr(device, "device_kind", None),
        "quick": quick, "peak_flop_per_s": peak(device),
        "counting": counting(models, [16] if quick else [128, 400, 1024],
                             64 if quick else 100_000),
        "defence": defence([1, 2] if quick else [1, 8, 32, 128], quick),
        "training": training_epoch(quick),
    }  # fmt: skip
    text = json.dumps(result, indent=1, default=str)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
