"""Counting throughput (samples/s, as ``sample_counts`` runs it): the question
"how fast does mrs-jax count noisy samples", in two forms.

Options (the default): counting across BatchNorm folded or not (``--fold 0 1``;
``2`` and ``4`` add Winograd F(2x2, 3x3) or F(4x4, 3x3) convolutions), chunk
size, XLA CPU flags, float32 or bfloat16. Each XLA flag set runs in its own
subprocess (``XLA_FLAGS`` is read once, when the backend starts); inside it every
(model, fold, dtype, chunk) combination is measured: ``counting`` is
``mrs_jax.sample_counts`` for ``n`` draws of masked noise (best of ``repeats``
after one compiling call), ``forward`` is ``argmax classify(batch)`` on a
device-resident batch of ``chunk`` images (the forward pass alone, for
comparison). Random weights: speed does not depend on them.

Overhead (``--overhead``, and the suite's smoothing section): in this process,
``sample_counts`` samples/s against the same model's jitted forward pass (logits)
at the same batch, the two interleaved, best of ``repeats``; overhead =
1 - counting rate / forward rate.

Every timed call blocks until its result is computed (``_timing``).

Run (one line per option; ``--json`` also writes command, machine, date, rows)::

    python benchmarks/bench_counting.py --models resnet20 resnet110 \
        --chunks 64 128 400 --fold 0 1 --flags default ynn_conv --n 2000 \
        --json benchmarks/results/counting.json
    python benchmarks/bench_counting.py --overhead --models small_cnn resnet20 \
        --chunks 128 512

Flag sets are names from ``FLAG_SETS`` or ``name=--xla_flag=value ...``. Take it on
a quiet machine: the load average before each subprocess is recorded.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
from _timing import best_of, seconds, timed
from machine_info import machine

FLAG_SETS = {
    "default": "",
    "ynn_conv": "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution",
    "no_ynn": "--xla_cpu_experimental_ynn_fusion_type=",
    "xnn_conv": "--xla_cpu_experimental_xnn_fusion_type=+individual_convolution",
    "xnn_greedy": (
        "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY"
    ),
    "onednn_conv": (
        "--xla_cpu_use_onednn=true "
        "--xla_cpu_experimental_onednn_fusion_type=+individual_convolution"
    ),
    "fast_math": "--xla_cpu_enable_fast_math=true",
}

MODELS = {
    "resnet20": ("resnet20", {}),
    "resnet110": ("resnet110", {}),
    "fast_cnn": ("fast_cnn", {"widths": (32, 64, 128, 256), "clamp": True}),
    "small_cnn": ("small_cnn", {}),  # the digits demo's model
    "resnet_tiny": ("resnet_tiny", {}),  # smoke runs only
    "tiny_cnn": ("tiny_cnn", {}),  # smoke runs only
}


def _call_bf16(func, *args):
    *weights, images = args
    return func(*weights, images.astype("bfloat16")).astype("float32")


# An experiment, measured slower than the direct convolution (kept here, not in
# the library): Winograd 3x3 convolutions for --fold 2 and 4 and --layers.
# Winograd F(m x m, 3x3) (Lavin & Gray 2016): Y = A^T [(G g G^T) * (B^T d B)] A
# for each (m + 2) x (m + 2) input tile d, giving an m x m output tile.
_WINOGRAD = {
    2: (
        ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        ((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
        ((1, 1, 1, 0), (0, 1, -1, -1)),
    ),
    4: (
        (
            (4, 0, -5, 0, 1, 0),
            (0, -4, -4, 1, 1, 0),
            (0, 4, -4, -1, 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, 2, -1, -2, 1, 0),
            (0, 4, 0, -5, 0, 1),
        ),
        (
            (1 / 4, 0, 0),
            (-1 / 6, -1 / 6, -1 / 6),
            (-1 / 6, 1 / 6, -1 / 6),
            (1 / 24, 1 / 12, 1 / 6),
            (1 / 24, -1 / 12, 1 / 6),
            (0, 0, 1),
        ),
        (
            (1, 1, 1, 1, 1, 0),
            (0, 1, -1, 2, -2, 0),
            (0, 1, 1, 4, 4, 0),
            (0, 1, -1, 8, -8, 1),
        ),
    ),
}


def _combine(coeffs, items):
    """``sum(c * item)``, skipping zeros and multiplying only where ``|c| != 1``."""
    out = None
    for c, item in zip(coeffs, items, strict=True):
        if c:
            term = item if c == 1 else -item if c == -1 else c * item
            out = term if out is None else out + term
    return out


def winograd_conv3x3(x: jax.Array, kernel: jax.Array, tile: int = 2) -> jax.Array:
    """``x [N, H, W, C]`` convolved with ``kernel [3, 3, C, D]``, stride 1, SAME
    padding, as Winograd F(tile x tile, 3x3): ``[N, H, W, D]``.

    ``tile`` is 2 or 4 and must divide H and W.
    """
    bt, g, at = _WINOGRAD[tile]
    side = tile + 2  # input tile side
    n, height, width, c = x.shape
    d_out = kernel.shape[-1]
    th, tw = height // tile, width // tile
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # tiles[a][b]: element (a, b) of every input tile, [N, th, tw, C].
    tiles = [
        [padded[:, a : a + tile * th : tile, b : b + tile * tw : tile]
         for b in range(side)]
        for a in range(side)
    ]  # fmt: skip
    rows = [
        [_combine(bt[i], [tiles[a][b] for a in range(side)]) for b in range(side)]
        for i in range(side)
    ]
    v = jnp.stack([_combine(bt[j], rows[i]) for i in range(side) for j in range(side)])
    g = jnp.asarray(g, kernel.dtype)
    u = jnp.einsum("ia,abcd,jb->ijcd", g, kernel, g)
    m = jnp.einsum(
        "tpc,tcd->tpd",
        v.reshape(side * side, n * th * tw, c),
        u.reshape(side * side, c, d_out),
    ).reshape(side, side, n, th, tw, d_out)
    half = [
        [_combine(at[i], [m[a, b] for a in range(side)]) for b in range(side)]
        for i in range(tile)
    ]
    y = jnp.stack(
        [
            jnp.stack([_combine(at[j], half[i]) for j in range(tile)])
            for i in range(tile)
        ]
    )  # fmt: skip  [tile (row in tile), tile (column), N, th, tw, D]
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(n, height, width, d_out)


def _conv_winograd_when_possible(
    lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
    dimension_numbers=None, feature_group_count=1, precision=None, *, tile,
    **kwargs,
):  # fmt: skip
    """``lax.conv_general_dilated`` as ``nnx.Conv`` calls it, as Winograd where
    the convolution is 3x3, stride 1, SAME, undilated, ungrouped, NHWC/HWIO on
    maps whose sides ``tile`` divides."""
    plain = (
        rhs.shape[:2] == (3, 3)
        and tuple(window_strides) == (1, 1)
        and padding in ("SAME", ((1, 1), (1, 1)))
        and tuple(lhs_dilation or (1, 1)) == (1, 1)
        and tuple(rhs_dilation or (1, 1)) == (1, 1)
        and feature_group_count == 1
        and lhs.ndim == 4
        and lhs.shape[1] % tile == 0
        and lhs.shape[2] % tile == 0
        and dimension_numbers == _NHWC
        and not kwargs.get("preferred_element_type")
    )
    if plain:
        return winograd_conv3x3(lhs, rhs, tile)
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision, **kwargs,
    )  # fmt: skip


# What nnx.Conv passes for [N, H, W, C] inputs and [3, 3, C, D] kernels.
_NHWC = jax.lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))

# One function object per tile: folded models of one architecture then have equal
# graph definitions, so a jitted caller traces once for all their weights.
_CONV_FOR_TILE = {
    tile: functools.partial(_conv_winograd_when_possible, tile=tile) for tile in (2, 4)
}


def make_classifier(model: str, fold: int, dtype: str):
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax.tree_util import Partial

    from mrs_jax.models import (
        as_classifier,
        classifier_from_split,
        fold_batchnorm,
        folded_classifier,
        get_model,
    )

    name, kwargs = MODELS[model]
    net = get_model(name, num_classes=10, seed=0, **kwargs)
    # fold: 0 as trained, 1 BatchNorm folded, 2 or 4 folded + Winograd tile.
    if fold > 1:
        folded = fold_batchnorm(net)
        for _, conv in nnx.iter_modules(folded):
            if isinstance(conv, nnx.Conv):
                conv.conv_general_dilated = _CONV_FOR_TILE[fold]
        graphdef, state = nnx.split(folded)
        classify = classifier_from_split(graphdef, state)
    else:
        classify = folded_classifier(net) if fold else as_classifier(net)
    if dtype == "float32":
        return classify
    # Weights and activations in bfloat16, logits back to float32.
    weights = jax.tree.map(
        lambda a: (
            a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype, jnp.floating) else a
        ),
        classify.args,
    )
    return Partial(functools.partial(_call_bf16, classify.func), *weights)


def worker(args) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import mrs_jax
    from mrs_jax import certification as counting

    # The chunk measured is the chunk run: no cap unless --cpu_chunk_cap asks.
    counting.CPU_CHUNK_PER_DEVICE = args.cpu_chunk_cap
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 32, 3)).astype(np.float32)
    mask = mrs_jax.square_mask(x.shape, 10, 10, 9)  # a 5x5 patch grown by 2
    forward = jax.jit(lambda f, b: jnp.argmax(f(b), -1))
    rows = []
    for model in args.models:
        for fold in args.fold:
            for dtype in args.dtypes:
                classify = make_classifier(model, fold, dtype)
                for chunk in args.chunks:
                    row = dict(model=model, fold=fold, dtype=dtype, chunk=chunk,
                               cpu_chunk_cap=args.cpu_chunk_cap)  # fmt: skip
                    row.update(measure(classify, x, mask, chunk, args, forward))
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def measure(classify, x, mask, chunk, args, forward) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import mrs_jax
    from mrs_jax import certification as counting
    from mrs_jax.core import sharding

    def counts(seed):
        # The host drivers' program: every device, the mask's noise window.
        return mrs_jax.sample_counts(
            classify, x, mask, 0.5, key=jax.random.key(seed), num=args.n,
            num_classes=10, batch_size=chunk, mesh=sharding.sample_mesh(),
            window=counting.noise_window(mask)[1],
        )  # fmt: skip

    _, compile_s = timed(counts, 0)
    count_times = [timed(counts, seed)[1] for seed in range(1, args.repeats + 1)]
    images = jnp.asarray(
        np.random.default_rng(1).uniform(size=(chunk, *x.shape)), jnp.float32
    )
    forward(classify, images).block_until_ready()
    steps = max(1, args.n // chunk)

    def run_forward():
        return [forward(classify, images) for _ in range(steps)]

    return {
        "counting_samples_per_s": args.n / min(count_times),
        "counting_median_samples_per_s": args.n / float(np.median(count_times)),
        "forward_samples_per_s": steps * chunk / best_of(run_forward, args.repeats),
        "first_call_s": compile_s,
    }


def overhead(
    model: str, batch_size: int, *, shape=(32, 32, 3), reps=4, repeats=3,
    num_classes=10,
) -> dict:  # fmt: skip
    """``sample_counts`` samples/s against the plain forward pass, same batch.

    Times the jitted forward pass of ``model`` (random weights) on a
    device-resident batch of ``batch_size`` images ``reps`` times, and
    ``sample_counts`` drawing ``reps * batch_size`` samples in steps of
    ``batch_size`` (noise, forward, argmax and counts on the device), the two
    interleaved so that a change in machine load hits both alike.
    """
    import numpy as np

    import mrs_jax
    from mrs_jax import certification as counting
    from mrs_jax.core import sharding
    from mrs_jax.models import as_classifier, get_model

    classify = as_classifier(get_model(model, num_classes=num_classes, seed=0))
    rng = np.random.default_rng(0)
    x = rng.uniform(size=shape).astype(np.float32)
    mask = mrs_jax.square_mask(shape, 4, 4, 8)
    images = jnp.asarray(rng.uniform(size=(batch_size, *shape)).astype(np.float32))
    forward = jax.jit(lambda f, b: f(b))
    num = reps * batch_size

    def run_forward():
        return [forward(classify, images) for _ in range(reps)]

    def run_counts():
        # The host drivers' program: every device, the mask's noise window.
        return mrs_jax.sample_counts(
            classify, x, mask, 0.5, key=jax.random.key(0), num=num,
            num_classes=num_classes, batch_size=batch_size,
            mesh=sharding.sample_mesh(), window=counting.noise_window(mask)[1],
        )  # fmt: skip

    seconds(run_forward)  # compile both
    seconds(run_counts)
    t_forward = t_counts = float("inf")
    for _ in range(repeats):
        t_forward = min(t_forward, seconds(run_forward))
        t_counts = min(t_counts, seconds(run_counts))
    forward_rate, counts_rate = num / t_forward, num / t_counts
    return {
        "model": model,
        "batch_size": batch_size,
        "num": num,
        "forward_images_per_s": forward_rate,
        "sample_counts_samples_per_s": counts_rate,
        "overhead": 1.0 - counts_rate / forward_rate,
    }


def overhead_markdown(rows: list[dict]) -> str:
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


def _calls(fn, steps: int, *args) -> list:
    """``steps`` calls of ``fn(*args)``: the outputs, for the timer to block on."""
    return [fn(*args) for _ in range(steps)]


def layers(args) -> list[dict]:
    """Where the time goes: one ``conv 3x3 -> bias -> relu`` of each ResNet stage
    (and the stage-changing stride-2 conv), per sample, at each chunk size."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    shapes = [  # (name, side, c_in, c_out, stride)
        ("stage1 3x3 16->16 @32", 32, 16, 16, 1),
        ("stage2 3x3 32->32 @16", 16, 32, 32, 1),
        ("stage3 3x3 64->64 @8", 8, 64, 64, 1),
        ("stride2 3x3 16->32 @32", 32, 16, 32, 2),
    ]

    def layer(x, w, b, stride, winograd=0):
        if winograd:
            return jax.nn.relu(winograd_conv3x3(x, w, winograd) + b)
        y = jax.lax.conv_general_dilated(
            x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.relu(y + b)

    rows = []
    rng = np.random.default_rng(0)
    for name, side, c_in, c_out, stride in shapes:
        w = jnp.asarray(rng.normal(0, 0.1, (3, 3, c_in, c_out)), jnp.float32)
        b = jnp.zeros((c_out,), jnp.float32)
        fn = jax.jit(layer, static_argnums=(3, 4))
        for chunk, winograd in itertools.product(args.chunks, (0, 2, 4)):
            if winograd and stride != 1:
                continue
            x = jnp.asarray(rng.uniform(size=(chunk, side, side, c_in)), jnp.float32)
            fn(x, w, b, stride, winograd).block_until_ready()
            steps = max(1, args.n // chunk)
            run = functools.partial(_calls, fn, steps, x, w, b, stride, winograd)
            per_sample = best_of(run, args.repeats) / (steps * chunk)
            # Direct-convolution FLOPs, also for Winograd (an effective rate).
            flops = 2 * 9 * c_in * c_out * (side // stride) ** 2
            label = name + (f" winograd F({winograd}x{winograd})" if winograd else "")
            row = dict(layer=label, chunk=chunk, us_per_sample=per_sample * 1e6,
                       gflops=flops / per_sample / 1e9)  # fmt: skip
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def flag_set(spec: str) -> tuple[str, str]:
    if "=" in spec and spec.split("=", 1)[0] not in FLAG_SETS:
        name, flags = spec.split("=", 1)
        return name, flags
    if spec not in FLAG_SETS:
        raise SystemExit(f"unknown flag set {spec!r}; known: {sorted(FLAG_SETS)}")
    return spec, FLAG_SETS[spec]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["resnet20"],
                        choices=sorted(MODELS))  # fmt: skip
    parser.add_argument("--chunks", type=int, nargs="+", default=[128, 400])
    parser.add_argument("--fold", type=int, nargs="+", default=[0, 1],
                        choices=[0, 1, 2, 4], help="0: as_classifier; 1: "
                        "BatchNorm folded; 2, 4: and Winograd F(2x2, 4x4)")  # fmt: skip
    parser.add_argument("--dtypes", nargs="+", default=["float32"],
                        choices=["float32", "bfloat16"])  # fmt: skip
    parser.add_argument("--flags", nargs="+", default=["default"])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--cpu_chunk_cap", type=int, default=None,
                        help="counting.CPU_CHUNK_PER_DEVICE while measuring; "
                        "default none, so --chunks is what runs")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--layers",
        action="store_true",
        help="time one conv layer of each ResNet stage instead",
    )
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="counting against the forward pass, in this process (the module doc)",
    )
    parser.add_argument("--reps", type=int, default=4,
                        help="--overhead: forward batches per timing")  # fmt: skip
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(layers(args) if args.layers else worker(args)))
        return 0
    command = " ".join(["python benchmarks/bench_counting.py", *(argv or sys.argv[1:])])
    where = machine()
    print(f"{where['cpu_model']}, {where['cpu_count']} cores; {where['date']}")
    if args.overhead:
        rows = [
            overhead(model, chunk, reps=args.reps, repeats=args.repeats)
            for model in args.models
            for chunk in args.chunks
        ]
        print(overhead_markdown(rows))
        if args.json:
            out = {"command": command, "machine": where, "rows": rows}
            Path(args.json).write_text(json.dumps(out, indent=2))
        return 0
    if args.layers:
        print("| flags | layer | chunk | time | rate |\n|---|---|---:|---:|---:|")
    else:
        print("| flags | model | fold | dtype | chunk | count/s | count/s (median) "
              "| forward/s | first call s | load avg |")  # fmt: skip
        print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for spec in args.flags:
        name, flags = flag_set(spec)
        load = os.getloadavg()[0]
        env = dict(os.environ, XLA_FLAGS=flags)
        worker_args = [a for a in (argv or sys.argv[1:]) if a != "--json"]
        if args.json:
            worker_args.remove(args.json)
        run = subprocess.run(
            [sys.executable, __file__, "--worker", *worker_args],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if run.returncode:
            print(f"| {name} | failed: {run.stderr.strip().splitlines()[-1:]} |")
            rows.append(
                {"flags": name, "xla_flags": flags, "failed": run.stderr[-2000:]}
            )
            continue
        for row in json.loads(run.stdout.strip().splitlines()[-1]):
            row = dict(flags=name, xla_flags=flags, load_avg_before=load, **row)
            rows.append(row)
            if args.layers:
                print(f"| {name} | {row['layer']} | {row['chunk']} | "
                      f"{row['us_per_sample']:.1f} us/sample | "
                      f"{row['gflops']:.1f} GFLOP/s |", flush=True)  # fmt: skip
                continue
            print(
                f"| {name} | {row['model']} | {int(row['fold'])} | {row['dtype']} | "
                f"{row['chunk']} | {row['counting_samples_per_s']:.0f} | "
                f"{row['counting_median_samples_per_s']:.0f} | "
                f"{row['forward_samples_per_s']:.0f} | {row['first_call_s']:.1f} | "
                f"{load:.2f} |",
                flush=True,
            )
    if args.json:
        out = {"command": command, "machine": where, "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
