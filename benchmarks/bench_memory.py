"""Peak memory of the host drivers' counting (``predict``) as n grows.

Each n runs in a fresh subprocess (one host device) so that peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) belongs to that n alone. The
worker builds the model, calls ``predict`` once with ``n = batch_size``
(compiles the program, runs one chunk) and reads the peak RSS, then calls it
with ``n`` draws and reads it again. The growth between the two is what n costs;
it should be ~0 because the counts program loops over chunks on the device.

It also reports what XLA says: the counts program's ``num`` is a traced scalar,
so the compiled program is the same for every n. The worker counts backend
compilations during the ``num = n`` call (expected 0: the jit cache does not
grow) and lowers the program with its n to read the compiled memory analysis
(temp bytes) and a hash of the compiled HLO text, which must agree across n.

Run: ``python benchmarks/bench_memory.py [--ns 1000 10000 100000 1000000]
[--model tiny_cnn] [--batch-size 1000] [--side 16]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import subprocess
import sys

from _timing import timed

FLAT_TOLERANCE_MIB = 32.0  # RSS noise (allocator, thread stacks) allowed as "flat"


def device_env(devices: int) -> dict:
    """This process's environment with ``devices`` fake host devices.

    Replaces any ``--xla_force_host_platform_device_count`` already in
    ``XLA_FLAGS`` (e.g. the test suite's four); on a GPU backend it only affects
    the host platform.
    """
    env = dict(os.environ)
    flags = re.sub(
        r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", "")
    )
    env["XLA_FLAGS"] = (
        f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    )
    return env


def run_workers(
    script: str, jobs: list[tuple[list[str], int]], timeout: float, parallel: bool
) -> list[dict]:
    """Runs ``python script --worker args`` once per ``(args, devices)`` job.

    Returns the JSON each printed on its last line, in order. ``parallel`` starts
    them all at once: only for smoke runs, whose timings mean nothing.
    """

    def start(args, devices):
        command = [sys.executable, script, "--worker", *args]
        process = subprocess.Popen(
            command,
            env=device_env(devices),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return command, process

    def finish(command, process):
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        if process.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-3000:]}"
            )
        return json.loads(stdout.strip().splitlines()[-1])

    if parallel:
        started = [start(args, devices) for args, devices in jobs]
        return [finish(*s) for s in started]
    return [finish(*start(args, devices)) for args, devices in jobs]


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def worker(n: int, model: str, batch_size: int, side: int) -> dict:
    """Measures one n in this (fresh) process; see the module docstring."""
    import jax
    import numpy as np

    import mrs_jax
    from mrs_jax import certification as counting
    from mrs_jax.core import sharding
    from mrs_jax.models import as_classifier, get_model

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: (
            compiles.append(event)
            if event == "/jax/core/compile/backend_compile_duration"
            else None
        )
    )
    classify = as_classifier(get_model(model, num_classes=10, seed=0))
    x = np.random.default_rng(0).uniform(size=(side, side, 3)).astype(np.float32)
    mask = mrs_jax.square_mask(x.shape, side // 4, side // 4, max(1, side // 4))
    # The host drivers' counting (``predict``: every device, the mask's noise
    # window, the number of draws an argument of one program).
    common = dict(alpha=0.001, num_classes=10, batch_size=batch_size)
    rss_setup = _max_rss_mib()
    mrs_jax.predict(classify, x, mask, 0.5, key=jax.random.key(0), n=batch_size,
                    **common)
    rss_warm = _max_rss_mib()
    compiles.clear()
    prediction, seconds = timed(
        mrs_jax.predict, classify, x, mask, 0.5, key=jax.random.key(1), n=n,
        **common,
    )  # fmt: skip
    counts = prediction.counts
    compiles_during_call = len(compiles)
    rss_peak = _max_rss_mib()
    if int(counts.sum()) != n:
        raise RuntimeError(f"counts sum to {counts.sum()}, expected {n}")

    # XLA's view of the same program, lowered with this n, from the counting
    # module's program factory (the public API does not expose compiled objects).
    mesh = sharding.sample_mesh()
    chunk = counting.device_chunk(counting.chunk_for(n, batch_size, mesh), mesh)
    (top, left), window = counting.noise_window(mask)
    key = jax.random.key(1)
    program = counting.pairs_program(
        mesh, chunk, 10, jax.random.key_impl(key), window, 1
    )
    window_mask = mask[top : top + window[0], left : left + window[1]]
    compiled = program.lower(
        counting.as_pytree(classify),
        x[None],
        window_mask.astype(np.float32)[None],
        np.array([[top, left]], np.int32),
        np.float32(0.5),
        np.asarray(jax.random.key_data(key[None])),
        np.zeros(1, np.int32),
        np.array([n], np.int32),
    ).compile()
    analysis = compiled.memory_analysis()
    temp = getattr(analysis, "temp_size_in_bytes", None) if analysis else None
    return {
        "n": n,
        "model": model,
        "batch_size": batch_size,
        "image_side": side,
        "seconds": seconds,
        "samples_per_s": n / seconds,
        "rss_after_setup_mib": rss_setup,
        "peak_rss_after_warm_call_mib": rss_warm,
        "peak_rss_mib": rss_peak,
        "growth_over_warm_mib": rss_peak - rss_warm,
        "compiles_during_call": compiles_during_call,
        "xla_temp_bytes": temp,
        "hlo_sha256": hashlib.sha256(compiled.as_text().encode()).hexdigest()[:16],
    }


def run(
    ns=(1_000, 10_000, 100_000, 1_000_000),
    *,
    model: str = "tiny_cnn",
    batch_size: int = 512,
    side: int = 32,
    timeout: float = 600,
    parallel: bool = False,
) -> dict:
    """One fresh subprocess per n; returns rows and the flatness summary.

    ``batch_size`` must not exceed the smallest n: ``sample_counts`` shrinks the
    chunk to ``num`` when ``num < batch_size``, which is a different program.
    """
    if batch_size > min(ns):
        raise ValueError(f"batch_size={batch_size} must be <= min(ns)={min(ns)}")
    jobs = [
        (
            [
                "--n",
                str(n),
                "--model",
                model,
                "--batch-size",
                str(batch_size),
                "--side",
                str(side),
            ],
            1,
        )
        for n in ns
    ]
    rows = run_workers(__file__, jobs, timeout, parallel)
    peaks = [r["peak_rss_mib"] for r in rows]
    temps = {r["xla_temp_bytes"] for r in rows}
    return {
        "model": model,
        "batch_size": batch_size,
        "image_side": side,
        "rows": rows,
        "peak_ratio_largest_to_smallest_n": peaks[-1] / peaks[0],
        "peak_spread_mib": max(peaks) - min(peaks),
        "max_growth_over_warm_mib": max(r["growth_over_warm_mib"] for r in rows),
        "flat": max(peaks) - min(peaks) <= FLAT_TOLERANCE_MIB,
        "flat_tolerance_mib": FLAT_TOLERANCE_MIB,
        "same_compiled_program": len({r["hlo_sha256"] for r in rows}) == 1,
        "same_xla_temp_bytes": len(temps) == 1,
        "recompiles": sum(r["compiles_during_call"] for r in rows),
    }


def markdown(result: dict) -> str:
    lines = [
        f"Model `{result['model']}` on {result['image_side']}x"
        f"{result['image_side']}x3, chunks of {result['batch_size']}, "
        "one fresh process per n (1 device).",
        "",
        "| n | peak RSS (MiB) | growth over the n = chunk call (MiB) | "
        "XLA temp (MiB) | compiles during call | samples/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        temp = r["xla_temp_bytes"]
        temp = "n/a" if temp is None else f"{temp / 2**20:.2f}"
        lines.append(
            f"| {r['n']:,} | {r['peak_rss_mib']:.0f} | "
            f"{r['growth_over_warm_mib']:+.1f} | {temp} | "
            f"{r['compiles_during_call']} | {r['samples_per_s']:,.0f} |"
        )
    verdict = "yes" if result["flat"] else "NO"
    lines += [
        "",
        f"Peak RSS at the largest n / smallest n: "
        f"{result['peak_ratio_largest_to_smallest_n']:.3f} (spread "
        f"{result['peak_spread_mib']:.1f} MiB). Target: flat in n -> "
        f"**{verdict}** (within {result['flat_tolerance_mib']:.0f} MiB). "
        f"Same compiled program for every n: {result['same_compiled_program']}; "
        f"same XLA temp size: {result['same_xla_temp_bytes']}; "
        f"recompilations while counting: {result['recompiles']}.",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument(
        "--ns", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000]
    )
    parser.add_argument("--model", default="tiny_cnn")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--side", type=int, default=32)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.n, args.model, args.batch_size, args.side)))
        return
    result = run(args.ns, model=args.model, batch_size=args.batch_size, side=args.side)
    print(markdown(result))


if __name__ == "__main__":
    main()
