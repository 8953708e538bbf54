"""Benchmark: Telea vs on-device harmonic inpainting for patch localisation.

Run from the repository root:

    python benchmarks/bench_localize.py            # full (about 10 min on 2 CPU cores)
    python benchmarks/bench_localize.py --quick    # fewer images and positions

Measures
  1. PSNR inside the block: harmonic vs Telea, and each vs the original pixels, on
     foolbox's 20 CIFAR-10 and 20 ImageNet test images and on sklearn digits
     (upsampled to 32 x 32 as in ``mrs_jax.data``).
  2. Throughput (variants/s) of both methods at 32 x 32 (s = 5) and 224 x 224
     (s = 32; Telea timed on a random subset of positions and extrapolated).
  3. End-to-end ``localize`` time per 32 x 32 image with the trained digits model.
  4. Agreement of the two methods' prediction maps and localisations with a trained
     classifier on clean and patch-attacked digits.

The trained model is ``runs/digits`` (``mrs_jax.checkpoint.load_classifier``) when
present; otherwise a small MLP is trained on digits here (stated in the output).
foolbox's images need ``pip install --no-deps foolbox``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import glob
import importlib
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _timing import best_of, seconds  # noqa: E402

from mrs_jax import localization as inpaint  # noqa: E402

# The package exports the function `localize`, which hides the module of that name.
localize = importlib.import_module("mrs_jax.localization._localize")
joint = importlib.import_module("mrs_jax.localization._joint_vote")
prediction_maps = importlib.import_module("mrs_jax.localization._prediction_maps")
from mrs_jax.data import load_dataset  # noqa: E402

PAPER_SECONDS_PER_CIFAR_IMAGE = 14.6


def _foolbox_images(prefix: str, side: int) -> np.ndarray:
    # Locate the package without importing it (its runtime deps are not needed).
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs foolbox's test images: pip install --no-deps foolbox")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    files = sorted(glob.glob(str(folder / f"{prefix}_*")))
    images = []
    for f in files:
        im = cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB)
        h, w = im.shape[:2]
        scale = side / min(h, w)  # shorter side to `side`, then centre crop
        im = cv2.resize(im, (round(w * scale), round(h * scale)), cv2.INTER_AREA)
        h, w = im.shape[:2]
        top, left = (h - side) // 2, (w - side) // 2
        images.append(im[top : top + side, left : left + side])
    return np.stack(images).astype(np.float32) / 255.0


def _classifier():
    if (ROOT / "runs/digits/model.json").is_file():
        from mrs_jax.models import load_classifier

        classify, meta = load_classifier(ROOT / "runs/digits")
        return classify, f"runs/digits ({meta['model']}, epoch {meta['epoch']})"
    import optax  # fallback: a small MLP trained here

    x, y = load_dataset("digits", "train")
    key = jax.random.key(0)
    k1, k2 = jax.random.split(key)
    dims = [x[0].size, 256, 10]
    params = [
        (jax.random.normal(k, (a, b)) / np.sqrt(a), jnp.zeros(b))
        for k, a, b in zip((k1, k2), dims[:-1], dims[1:], strict=True)
    ]

    def mlp(params, images):
        h = images.reshape(images.shape[0], -1)
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        return h @ params[-1][0] + params[-1][1]

    opt = optax.adam(1e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(  # noqa
            mlp(p, xb), yb
        ).mean()
        grads = jax.grad(loss)(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state

    rng = np.random.default_rng(0)
    for _ in range(400):
        idx = rng.integers(0, len(x), 128)
        params, state = step(params, state, x[idx], y[idx])
    return jax.tree_util.Partial(mlp, params), "MLP trained in this script (400 steps)"


def _psnr(mse: float) -> float:
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


harmonic_blocks = jax.jit(
    jax.vmap(inpaint.harmonic_block, in_axes=(None, 0, None)), static_argnums=2
)


def psnr_table(name, images, size, stride, max_positions, rng):
    """Mean over images of block-PSNR (pooled over positions)."""
    rows = {"harmonic vs telea": [], "telea vs original": [], "harmonic vs orig": []}
    for x in images:
        pos = inpaint.block_positions(*x.shape[:2], size, stride)
        if len(pos) > max_positions:
            pos = pos[np.sort(rng.choice(len(pos), max_positions, replace=False))]
        telea = inpaint.telea_blocks(inpaint.to_uint8(x), pos, size) / 255.0
        harm = np.asarray(harmonic_blocks(jnp.asarray(x), jnp.asarray(pos), size))
        orig = np.stack([x[i : i + size, j : j + size] for i, j in pos])
        rows["harmonic vs telea"].append(_psnr(np.mean((harm - telea) ** 2)))
        rows["telea vs original"].append(_psnr(np.mean((telea - orig) ** 2)))
        rows["harmonic vs orig"].append(_psnr(np.mean((harm - orig) ** 2)))
    cells = " | ".join(f"{np.mean(v):.1f}" for v in rows.values())
    return f"| {name} | {len(images)} | {size} | {stride} | {len(pos)} | {cells} |"


def timeit(fn, repeat=2):
    """Best of ``repeat`` blocking calls of ``fn()`` after one warm-up call."""
    seconds(fn)  # warm-up / compile
    return best_of(fn, repeat)


def throughput(images32, images224, subset224, rng):
    lines = ["| image | s | method | positions timed | variants/s | full image (s) |"]
    lines.append("|---|---|---|---|---|---|")
    workers = os.cpu_count()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for x, size, subset in ((images32[0], 5, None), (images224[0], 32, subset224)):
            pos = inpaint.block_positions(*x.shape[:2], size, 1)
            n_full = len(pos)
            timed = pos
            if subset and subset < n_full:
                timed = pos[np.sort(rng.choice(n_full, subset, replace=False))]
            x8 = inpaint.to_uint8(x)
            t = timeit(functools.partial(inpaint.telea_blocks, x8, timed, size, pool))
            rate = len(timed) / t
            note = "" if len(timed) == n_full else " (extrapolated)"
            lines.append(
                f"| {x.shape[0]}x{x.shape[1]} | {size} | telea, {workers} threads, "
                f"block only | {len(timed)} of {n_full} | {rate:,.0f} | "
                f"{n_full / rate:.2f}{note} |"
            )
            batch = 256 if size == 5 else 32
            chunks = jnp.asarray(prediction_maps.chunked_positions(pos, batch))
            fn = jax.jit(
                lambda x, c, size=size: jax.lax.map(
                    lambda p: jax.vmap(
                        inpaint.harmonic_variant, in_axes=(None, 0, None)
                    )(x, p, size).mean(axis=(1, 2, 3)),
                    c,
                )
            )
            xj = jnp.asarray(x)
            t = timeit(lambda f=fn, a=xj, c=chunks: f(a, c).block_until_ready())
            rate = n_full / t
            lines.append(
                f"| {x.shape[0]}x{x.shape[1]} | {size} | harmonic, jit (fill + paste "
                f"full image) | {n_full} of {n_full} | {rate:,.0f} | {t:.2f} |"
            )
    return lines


def end_to_end(classify, digits, n):
    lines = [f"| method | s | positions | seconds / image (mean of {n}) |"]
    lines.append("|---|---|---|---|")
    for method in ("telea", "harmonic"):
        run = lambda x, method=method: localize.localize(  # noqa: E731
            classify, x, 5, method=method, batch_size=256
        ).mask.block_until_ready()
        run(digits[0])  # compile
        t0 = time.perf_counter()
        for x in digits[:n]:
            run(x)
        sec = (time.perf_counter() - t0) / n
        lines.append(f"| {method} | 5 | 784 | {sec:.3f} |")
    lines.append(
        f"| paper (GPU, localisation + certification) | 5 | 784 | "
        f"{PAPER_SECONDS_PER_CIFAR_IMAGE} |"
    )
    return lines


def end_to_end_224(image, stride):
    """ImageNet-size localisation with a stand-in classifier (pool + linear).

    Times the localisation machinery (inpainting, transfers, voting) at 224 x 224,
    s = 32; a real ImageNet network's forward passes come on top.
    """
    weights = jax.random.normal(jax.random.key(1), (3 * 16, 10))

    def pooled_linear(w, images):
        pooled = jax.image.resize(images, (images.shape[0], 4, 4, 3), "linear")
        return pooled.reshape(images.shape[0], -1) @ w

    classify = jax.tree_util.Partial(pooled_linear, weights)
    positions = len(inpaint.block_positions(224, 224, 32, stride))
    lines = [
        "| method | s | stride | positions | seconds / image | "
        "stride 1 (37,249 positions), extrapolated s |"
    ]
    lines.append("|---|---|---|---|---|---|")
    for method in ("harmonic", "telea"):
        run = lambda method=method: localize.localize(  # noqa: E731
            classify, image, 32, stride=stride, method=method, batch_size=128
        ).mask.block_until_ready()
        sec = timeit(run, 1)
        full = sec * 37249 / positions
        lines.append(
            f"| {method} | 32 | {stride} | {positions} | {sec:.2f} | {full:.1f} |"
        )
    return lines


def agreement(classify, digits, labels, n_attack, steps):
    from mrs_jax.attacks import patch_attack

    size = 5
    result = patch_attack(
        classify,
        digits[:n_attack],
        labels[:n_attack],
        size,
        key=jax.random.key(0),
        num_locations=20,
        steps=steps,
        step_size=0.1,
        return_loss=True,
    )
    adv = np.asarray(result.image)
    patch_at = np.asarray(result.top_left)
    fooled = np.asarray(jnp.argmax(classify(jnp.asarray(adv)), -1)) != labels[:n_attack]
    lines = [
        "| images | n | position agreement | same location | location offset "
        "median / max (px) | same reason | telea covers patch | harmonic covers "
        "patch | abstain telea / harmonic |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, batch, coverable in (
        ("clean", digits[:n_attack], None),
        ("attacked (all)", adv, patch_at),
        ("attacked (fooled only)", adv[fooled], patch_at[fooled]),
    ):
        agree, same_loc, same_reason, covers, abstain = [], [], [], [[], []], [[], []]
        offsets = []
        for k, x in enumerate(batch):
            res = [
                localize.localize(classify, x, size, method=m, batch_size=256)
                for m in ("telea", "harmonic")
            ]
            agree.append(
                np.mean(np.asarray(res[0].prediction_map == res[1].prediction_map))
            )
            same_loc.append(np.array_equal(res[0].top_left, res[1].top_left))
            if min(int(res[0].top_left[0]), int(res[1].top_left[0])) >= 0:
                offsets.append(int(jnp.max(jnp.abs(res[0].top_left - res[1].top_left))))
            same_reason.append(int(res[0].reason) == int(res[1].reason))
            for a, r in enumerate(res):
                abstain[a].append(bool(r.abstain))
                if coverable is not None:
                    i, j = coverable[k]
                    covers[a].append(
                        bool(np.asarray(r.mask)[i : i + size, j : j + size].all())
                    )
        cov = [f"{100 * np.mean(c):.0f}%" if c else "n/a" for c in covers]
        lines.append(
            f"| {name} | {len(batch)} | {100 * np.mean(agree):.2f}% | "
            f"{100 * np.mean(same_loc):.0f}% | "
            f"{np.median(offsets) if offsets else 'n/a'} / "
            f"{max(offsets) if offsets else 'n/a'} | "
            f"{100 * np.mean(same_reason):.0f}% | "
            f"{cov[0]} | {cov[1]} | {sum(abstain[0])} / {sum(abstain[1])} |"
        )
    lines.append(
        f"\nattack success (base classifier fooled): {fooled.sum()}/{n_attack}"
    )
    return lines


def sweep(classify, digits, labels, steps):
    """Coverage and abstention of joint voting for a grid of m and tau (Telea maps).

    This is the evidence behind the defaults m = ceil(s / 2), tau = T / 2.
    """
    from mrs_jax.attacks import patch_attack

    size, dilation = 5, 3
    adv, patch_at = patch_attack(
        classify,
        digits,
        labels,
        size,
        key=jax.random.key(1),
        num_locations=20,
        steps=steps,
        step_size=0.1,
    )
    adv, patch_at = np.asarray(adv), np.asarray(patch_at)
    fooled = np.asarray(jnp.argmax(classify(jnp.asarray(adv)), -1)) != labels
    attacked = [prediction_maps.prediction_map(classify, x, size) for x in adv[fooled]]
    clean = [prediction_maps.prediction_map(classify, x, size) for x in digits]
    lines = [
        f"{fooled.sum()} of {len(digits)} attacked images fool the classifier; "
        f"clean maps from the same {len(digits)} images.\n",
        "| m | tau / T | covered and not abstained (fooled) | abstain (fooled) |"
        " abstain (clean) |",
        "|---|---|---|---|---|",
    ]
    for m in sorted({1, (size + 1) // 2, size - 1, size}):
        for frac in (0.25, 0.5):
            tau = frac * joint.template_size(size, 1, m)
            good, abstained = [], []
            for pmap, (i, j) in zip(attacked, patch_at[fooled], strict=True):
                vote = joint.joint_vote(pmap, size, m=m, tau=tau)
                ti, tj = np.asarray(vote.top_left)
                covered = (
                    ti - dilation <= i <= ti + dilation
                    and tj - dilation <= j <= tj + dilation
                )
                good.append(covered and not bool(vote.abstain))
                abstained.append(bool(vote.abstain))
            clean_abstain = sum(
                bool(joint.joint_vote(p, size, m=m, tau=tau).abstain) for p in clean
            )
            lines.append(
                f"| {m} | {frac} | {100 * np.mean(good):.0f}% | {sum(abstained)} | "
                f"{clean_abstain} / {len(clean)} |"
            )
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n_digits = 8 if args.quick else 40
    print(f"# bench_localize {'--quick' if args.quick else ''}")
    print(
        f"jax {jax.__version__}, cv2 {cv2.__version__}, devices {jax.devices()}, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    )
    print(f"load average at start: {os.getloadavg()}")
    t_start = time.perf_counter()
    cifar = _foolbox_images("cifar10", 32)
    imagenet = _foolbox_images("imagenet", 224)
    digits, labels = load_dataset("digits", "test", max_examples=n_digits)

    print("\n## PSNR inside the block (dB, higher = closer)\n")
    print(
        "| images | n | s | stride | positions / image | harmonic vs telea |"
        " telea vs original | harmonic vs original |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(psnr_table("CIFAR-10 (foolbox)", cifar, 5, 1, 10_000, rng))
    print(psnr_table("digits 32x32", digits, 5, 1, 10_000, rng))
    n_img = 5 if args.quick else 20
    print(psnr_table("ImageNet 224 (foolbox)", imagenet[:n_img], 32, 1, 400, rng))

    print("\n## Throughput\n")
    print("\n".join(throughput(cifar, imagenet, 500 if args.quick else 2000, rng)))

    classify, model_name = _classifier()
    print(f"\nclassifier: {model_name}")
    print("\n## End-to-end localisation, 32x32x3, s = 5, stride 1, defaults m, tau\n")
    print("\n".join(end_to_end(classify, digits, 3 if args.quick else 10)))

    stride224 = 4 if args.quick else 2
    print(
        f"\n## End-to-end localisation, 224x224x3, s = 32, stride {stride224}, "
        "stand-in pool + linear classifier\n"
    )
    print("\n".join(end_to_end_224(imagenet[0], stride224)))

    print("\n## Agreement with Telea (trained classifier, digits test images)\n")
    steps = 10 if args.quick else 30
    print("\n".join(agreement(classify, digits, labels, n_digits, steps)))
    print("\n## Choice of m and tau (s = 5, dilation 3, Telea maps, new attack key)\n")
    sweep_images = slice(n_digits, n_digits + (20 if args.quick else 60))
    sweep_x, sweep_y = load_dataset("digits", "test", max_examples=sweep_images.stop)
    lines = sweep(classify, sweep_x[sweep_images], sweep_y[sweep_images], steps)
    print("\n".join(lines))
    print(f"\nload average at end: {os.getloadavg()}")
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
