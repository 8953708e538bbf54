"""The benchmark suite: one command, JSON plus a Markdown summary.

Run from the repository root:

    python benchmarks/suite.py [--quick | --smoke] [--out benchmarks/results]

writes ``<out>/suite.json`` and ``<out>/suite.md``. Every figure is a rate or a
ratio of two rates measured in the same run, next to a description of the
machine (CPU model, cores, jax version, backend, devices, date, load average).

Sections:
  1. smoothing: ``sample_counts`` samples/s next to the plain forward pass's
     images/s of the same model and batch (overhead; target <= 10%;
     ``bench_counting.overhead``).
  2. memory: peak RSS of ``sample_counts`` for n = 10^3 .. 10^6, one fresh process
     per n, and XLA's compiled memory analysis (target: flat in n).
  3. localisation: inpainting variants/s for Telea and harmonic, 32x32 / s = 5 and
     224x224 / s = 32 (224: a subset of positions, extrapolated).
  4. end to end: seconds per image per phase through ``mrs_jax.job.image_row``,
     extrapolated to the paper's settings, next to the paper's 14.6 s.
  5. scaling: ``sample_counts`` on 1, 2, 4 devices (fake CPU devices on a CPU).
  6. utilisation: model FLOPs per sample (XLA cost analysis) x samples/s as a
     fraction of a measured dense matmul rate.

``--quick`` (a few minutes on 2 CPU cores) shrinks every section; ``--smoke``
(tests) uses a tiny model on 16x16 images and tiny n: its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_counting  # noqa: E402
import bench_e2e  # noqa: E402
import bench_localize  # noqa: E402
import bench_memory  # noqa: E402
import bench_scaling  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import best_of  # noqa: E402
from machine_info import machine  # noqa: E402

SECTIONS = (
    "smoothing",
    "memory",
    "localisation",
    "end_to_end",
    "scaling",
    "utilisation",
)
OVERHEAD_TARGET = 0.10

# Per-mode sizes. smoothing: (model, batch sizes, reps, repeats).
PLANS = {
    "full": {
        "shape": (32, 32, 3),
        "smoothing": [
            ("small_cnn", (128, 512), 4, 3),
            ("resnet20", (128, 512), 4, 3),
            ("resnet110", (128, 512), 2, 2),
        ],
        "memory": dict(
            ns=(10**3, 10**4, 10**5, 10**6), model="tiny_cnn", batch_size=1000, side=16
        ),
        "localisation": dict(small=(32, 5, None, None), large=(224, 32, 2000, 2048)),
        "scaling": dict(
            device_counts=(1, 2, 4), model="small_cnn", batch_size=512, reps=8, side=32
        ),
        "matmul": 2048,
    },
    "quick": {
        "shape": (32, 32, 3),
        "smoothing": [
            ("small_cnn", (128,), 4, 2),
            ("resnet20", (128,), 4, 2),
            ("resnet110", (128,), 1, 2),
        ],
        "memory": dict(
            ns=(10**3, 10**4, 10**5), model="tiny_cnn", batch_size=1000, side=16
        ),
        "localisation": dict(small=(32, 5, None, None), large=(224, 32, 300, 256)),
        "scaling": dict(
            device_counts=(1, 2, 4), model="small_cnn", batch_size=256, reps=4, side=32
        ),
        "matmul": 1024,
    },
    "smoke": {
        "shape": (16, 16, 3),
        "smoothing": [("tiny_cnn", (32,), 2, 1)],
        "memory": dict(
            ns=(10**2, 10**3), model="tiny_cnn", batch_size=64, side=16, parallel=True
        ),
        "localisation": dict(small=(16, 3, None, None), large=(32, 8, 40, 32)),
        "scaling": dict(
            device_counts=(1, 2),
            model="tiny_cnn",
            batch_size=32,
            reps=2,
            side=16,
            parallel=True,
        ),
        "matmul": 256,
    },
}


# ------------------------------------------------------------------- machine


# ------------------------------------------------------------- utilisation


def matmul_rates(side: int) -> dict:
    """Measured dense matmul FLOP/s: f32, and bf16 on an accelerator."""
    dtypes = ["float32"] + ([] if jax.default_backend() == "cpu" else ["bfloat16"])
    rates = {}
    for dtype in dtypes:
        a = jnp.ones((side, side), dtype)
        b = jnp.ones((side, side), dtype)
        matmul = jax.jit(jnp.matmul)
        matmul(a, b).block_until_ready()
        rates[dtype] = 2 * side**3 / best_of(lambda m=matmul, a=a, b=b: m(a, b), 3)
    return rates


def flops_per_sample(model: str, shape, num_classes: int = 10) -> float:
    """XLA's FLOP count of one forward pass (batch 1) of a model."""
    from mrs_jax.models import as_classifier, get_model

    classify = as_classifier(get_model(model, num_classes=num_classes, seed=0))
    x = jnp.zeros((1, *shape), jnp.float32)
    lowered = jax.jit(lambda c, b: c(b)).lower(classify, x)
    # The lowered (pre-optimisation) HLO's count needs no compile, which takes
    # longer than the measurement for ResNet-110 on a CPU; it agrees with the
    # compiled program's count to within ~1%.
    cost = lowered.cost_analysis()
    if not cost or "flops" not in cost:
        cost = lowered.compile().cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per program
        cost = cost[0]
    return float(cost["flops"])


def utilisation(smoothing_rows: list[dict], shape, matmul_side: int) -> dict:
    rates = matmul_rates(matmul_side)
    reference = rates["float32"]
    flops = {}
    rows = []
    for r in smoothing_rows:
        if r["model"] not in flops:
            flops[r["model"]] = flops_per_sample(r["model"], shape)
        achieved = flops[r["model"]] * r["sample_counts_samples_per_s"]
        rows.append(
            {
                "model": r["model"],
                "batch_size": r["batch_size"],
                "flops_per_sample": flops[r["model"]],
                "achieved_flops_per_s": achieved,
                "fraction_of_f32_matmul": achieved / reference,
            }
        )
    return {"matmul_side": matmul_side, "matmul_flops_per_s": rates, "rows": rows}


def utilisation_markdown(result: dict) -> str:
    rates = ", ".join(
        f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in result["matmul_flops_per_s"].items()
    )
    lines = [
        f"Measured {result['matmul_side']}^2 matmul: {rates}.",
        "",
        "| model | batch | MFLOP / sample | sample_counts GFLOP/s | "
        "fraction of f32 matmul rate |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['flops_per_sample'] / 1e6:,.1f} "
            f"| {r['achieved_flops_per_s'] / 1e9:,.2f} | "
            f"{r['fraction_of_f32_matmul']:.1%} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- smoothing


def smoothing(plan) -> list[dict]:
    rows = []
    for model, batch_sizes, reps, repeats in plan["smoothing"]:
        for batch in batch_sizes:
            row = bench_counting.overhead(
                model, batch, shape=plan["shape"], reps=reps, repeats=repeats
            )
            row["meets_overhead_target"] = row["overhead"] <= OVERHEAD_TARGET
            rows.append(row)
    return rows


def smoothing_markdown(rows) -> str:
    return (
        bench_counting.overhead_markdown(rows)
        + f"\n\nTarget: overhead <= {OVERHEAD_TARGET:.0%} (1 - sample_counts rate / "
        "forward rate; negative = sample_counts faster, i.e. noise)."
        f" Met in {sum(r['meets_overhead_target'] for r in rows)} of {len(rows)}."
    )


# ------------------------------------------------------------- localisation


def _smooth_image(side: int, seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(size=(7, 7, 3)).astype(np.float32)
    image = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
    image += 0.03 * rng.standard_normal(image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def _inpaint_rates(side, size, telea_subset, harmonic_subset) -> list[dict]:
    """Variants/s of both inpainting methods (block fill only) on one image.

    Reuses ``bench_localize``'s timer and jitted harmonic block filler;
    positions are a random subset when ``*_subset`` is set, the full-image time
    then extrapolated linearly from the rate.
    """
    from mrs_jax import localization as inpaint

    x = _smooth_image(side, seed=side)
    positions = inpaint.block_positions(side, side, size, 1)
    rng = np.random.default_rng(0)
    rows = []

    def subset(count):
        if count is None or count >= len(positions):
            return positions
        pick = rng.choice(len(positions), count, replace=False)
        return positions[np.sort(pick)]

    timed = subset(telea_subset)
    workers = os.cpu_count()
    x8 = inpaint.to_uint8(x)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        seconds = bench_localize.timeit(
            lambda: inpaint.telea_blocks(x8, timed, size, pool), repeat=2
        )
    rows.append(("telea", f"OpenCV, {workers} threads", len(timed), seconds))

    timed = subset(harmonic_subset)
    chunk = min(256, len(timed))
    timed = timed[: len(timed) // chunk * chunk]  # equal chunks: one compile
    xd = jnp.asarray(x)
    chunks = [jnp.asarray(c) for c in np.split(timed, len(timed) // chunk)]

    def harmonic():
        return [bench_localize.harmonic_blocks(xd, c, size) for c in chunks]

    seconds = bench_localize.timeit(harmonic, repeat=2)
    rows.append(("harmonic", f"jit, chunks of {chunk}", len(timed), seconds))
    return [
        {
            "image": f"{side}x{side}",
            "size": size,
            "method": method,
            "how": how,
            "positions_timed": count,
            "positions_full": len(positions),
            "variants_per_s": count / seconds,
            "full_image_seconds": len(positions) * seconds / count,
            "extrapolated": count < len(positions),
        }
        for method, how, count, seconds in rows
    ]


def localisation(plan) -> list[dict]:
    rows = []
    for side, size, telea_subset, harmonic_subset in plan["localisation"].values():
        rows += _inpaint_rates(side, size, telea_subset, harmonic_subset)
    return rows


def localisation_markdown(rows) -> str:
    lines = [
        "Block fill only (no classification), synthetic smooth images, stride 1.",
        "",
        "| image | s | method | positions timed | variants/s | full image s |",
        "|---|---:|---|---|---:|---:|",
    ]
    for r in rows:
        note = " (extrapolated)" if r["extrapolated"] else ""
        lines.append(
            f"| {r['image']} | {r['size']} | {r['method']} ({r['how']}) | "
            f"{r['positions_timed']:,} of {r['positions_full']:,} | "
            f"{r['variants_per_s']:,.0f} | {r['full_image_seconds']:.2f}{note} |"
        )
    by = {(r["image"], r["method"]): r["variants_per_s"] for r in rows}
    for image in dict.fromkeys(r["image"] for r in rows):
        if (image, "telea") in by and (image, "harmonic") in by:
            lines.append(
                f"\n{image}: harmonic / Telea variants/s = "
                f"{by[(image, 'harmonic')] / by[(image, 'telea')]:.2f}"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------- the suite


def run(mode: str = "full", sections=SECTIONS) -> dict:
    """Runs the chosen sections with the sizes of ``PLANS[mode]``.

    In smoke mode the subprocess sections (memory, scaling) run in background
    threads, overlapping the in-process ones: their timings compete for the same
    cores, which is fine there and never done in the quick or full runs.
    """
    plan = PLANS[mode]
    result = {"mode": mode, "machine": machine(), "section_seconds": {}}
    overlap = concurrent.futures.ThreadPoolExecutor(2) if mode == "smoke" else None
    pending = []

    def measure(name, fn):
        start = time.perf_counter()
        print(f"[suite] {name} ...", flush=True)
        value = fn()
        seconds = time.perf_counter() - start
        print(
            f"[suite] {name} done in {seconds:.0f} s (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        return name, value, seconds

    def timed(name, fn, subprocesses=False):
        if overlap is not None and subprocesses:
            pending.append(overlap.submit(measure, name, fn))
            return
        _, result[name], result["section_seconds"][name] = measure(name, fn)

    if "memory" in sections:
        timed("memory", lambda: bench_memory.run(**plan["memory"]), True)
    if "scaling" in sections:
        timed("scaling", lambda: bench_scaling.run(**plan["scaling"]), True)
    if "smoothing" in sections or "utilisation" in sections:
        timed("smoothing", lambda: smoothing(plan))
    if "localisation" in sections:
        timed("localisation", lambda: localisation(plan))
    if "end_to_end" in sections:
        timed("end_to_end", lambda: bench_e2e.run(mode))
    if "utilisation" in sections:
        timed(
            "utilisation",
            lambda: utilisation(result["smoothing"], plan["shape"], plan["matmul"]),
        )
    for future in pending:
        name, result[name], result["section_seconds"][name] = future.result()
    if overlap is not None:
        overlap.shutdown()
    notes = []
    if mode == "smoke":
        notes.append(
            "smoke mode: tiny model, tiny n, 16x16 images, sections overlapped; "
            "not a benchmark"
        )
    result["machine"]["loadavg_at_end"] = list(os.getloadavg())
    result["notes"] = notes
    return result


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"# mrs-jax benchmark suite ({result['mode']})",
        "",
        f"- date: {m['date']}",
        f"- CPU: {m['cpu_model']}, {m['cpu_count']} cores ({m['cpus_usable']} usable)",
        f"- jax {m['jax']}, backend {m['backend']}, {m['device_count']} device(s): "
        f"{', '.join(m['device_kinds'])}",
        f"- platform: {m['platform']}, Python {m['python']}",
        f"- load average at start / end: {m['loadavg_at_start'][0]:.1f} / "
        f"{m['loadavg_at_end'][0]:.1f} (above the core count means a shared, "
        "noisy machine)",
        *[f"- note: {n}" for n in result["notes"]],
    ]
    sections = [
        ("smoothing", "1. Smoothing overhead", smoothing_markdown),
        ("memory", "2. Peak memory in n", bench_memory.markdown),
        (
            "localisation",
            "3. Localisation inpainting throughput",
            localisation_markdown,
        ),
        ("end_to_end", "4. End to end, seconds per image", bench_e2e.markdown),
        ("scaling", "5. Scaling over devices", bench_scaling.markdown),
        ("utilisation", "6. FLOP utilisation", utilisation_markdown),
    ]
    for key, title, render in sections:
        if key in result:
            seconds = result["section_seconds"][key]
            lines += [
                "",
                f"## {title}",
                "",
                f"_{seconds:.0f} s_",
                "",
                render(result[key]),
            ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a few minutes on a CPU")
    size.add_argument("--smoke", action="store_true", help="tiny; for tests")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=SECTIONS)
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    start = time.perf_counter()
    result = run(mode, args.sections)
    result["total_seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: a NaN or infinite figure is a bug, not a result.
    (out / "suite.json").write_text(json.dumps(result, indent=2, allow_nan=False))
    text = markdown(result)
    (out / "suite.md").write_text(text)
    print(text)
    print(
        f"wrote {out / 'suite.json'} and {out / 'suite.md'} "
        f"({result['total_seconds']:.0f} s)"
    )
    return result


if __name__ == "__main__":
    main()
