"""How often masked noise in one or two PatchCleanser masks keeps the label.

For the first CIFAR-10 test images of the practical run's order (image_seed 0) and
each checkpoint given: PREDICT with n = 100 draws (sigma 7) for the 36 one-mask
combinations of the k = 6 covering set and 36 random two-mask unions; prints, per
image, the share of draws on the true label (smallest, median, and the fraction
of combinations above Phi(8.66 / 7) = 0.892, the share every one of the 666
combinations needs for the smoothed-double-masking certificate at the
unrestricted radius).

Run (data in data/cifar10; about 1 min per checkpoint here)::

    python benchmarks/sdm_combination_shares.py benchmarks/checkpoints/cifar10_cpu \\
        benchmarks/checkpoints/cifar10_cpu_noise_squares
"""

import argparse

import jax
import numpy as np

import mrs_jax
from mrs_jax.data import dataset_source

SIGMA, DRAWS, PATCH, K = 7.0, 100, 5, 6
THRESHOLD = mrs_jax.certification.normal_cdf(mrs_jax.patch_l2_bound(PATCH, 3) / SIGMA)


def shares(classify, x, label, masks, key, num_classes=10) -> np.ndarray:
    """The share of DRAWS noisy draws on ``label`` for each ``[P, H, W]`` mask."""
    predictions = mrs_jax.predict(
        classify, np.broadcast_to(x, (len(masks), *x.shape)), masks, SIGMA,
        key=jax.random.split(key, len(masks)), n=DRAWS, alpha=0.001,
        num_classes=num_classes, batch_size=400,
    )  # fmt: skip
    return np.array([p.counts[label] / DRAWS for p in predictions])


def summary(name: str, values: np.ndarray) -> str:
    return (
        f"{name}: min {values.min():.2f} median {np.median(values):.2f} "
        f"above {THRESHOLD:.3f}: {(values > THRESHOLD).mean():.0%}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data_dir", default="data/cifar10")
    args = parser.parse_args(argv)
    source = dataset_source(args.dataset, "test", data_dir=args.data_dir)
    order = np.random.default_rng(0).permutation(len(source))[: args.images]
    images, labels = source.get_batch(order)
    masks = mrs_jax.patchcleanser_masks(images.shape[1:3], PATCH, K)
    pairs = np.stack(np.triu_indices(len(masks)), axis=1)
    two = pairs[pairs[:, 0] != pairs[:, 1]]
    two = two[np.random.default_rng(0).choice(len(two), len(masks), replace=False)]
    for checkpoint in args.checkpoints:
        classify, meta = mrs_jax.load_classifier(checkpoint)
        num_classes = int(meta["num_classes"])
        print(f"# {checkpoint}", flush=True)
        for b, (x, y) in enumerate(zip(images, labels, strict=True)):
            key = jax.random.key(b)
            one_key, two_key = jax.random.split(key)
            one = shares(classify, x, int(y), masks, one_key, num_classes)
            unions = masks[two[:, 0]] | masks[two[:, 1]]
            both = shares(classify, x, int(y), unions, two_key, num_classes)
            base = int(np.argmax(np.asarray(classify(x[None]))[0]))
            print(
                f"{b} label {int(y)} base {base} | {summary('one mask', one)} | "
                f"{summary('two masks', both)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
