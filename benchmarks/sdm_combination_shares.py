"""How often masked noise in one or two PatchCleanser masks keeps the label (issue 22).

For the first 6 CIFAR-10 test images of the practical run's order and the
committed masked-noise model (sigma 7): PREDICT with n = 100 draws for the 36
one-mask combinations of the k = 6 covering set and 36 random two-mask unions;
prints the share of draws on the true label (min, median, and the fraction above
Phi(8.66 / 7) = 0.892, the share every combination needs for the
smoothed-double-masking certificate at the unrestricted radius).

Run: ``python benchmarks/sdm_combination_shares.py`` (data in data/cifar10; ~1 min).
"""
import jax
jax.config.update("jax_num_cpu_devices", 2)
import numpy as np, mrs_jax
from mrs_jax.data import dataset_source
classify, meta = mrs_jax.load_classifier("benchmarks/checkpoints/cifar10_cpu")
src = dataset_source("cifar10", "test", data_dir="data/cifar10")
sel = np.random.default_rng(0).permutation(len(src))[:6]
images, labels = src.get_batch(sel)
masks = mrs_jax.patchcleanser_masks((32, 32), 5, 6)
pairs = np.stack(np.triu_indices(36), 1)
rng = np.random.default_rng(0)
for b in range(6):
    x, y = images[b], int(labels[b])
    one = np.stack([masks[i] for i in range(36)])
    two_idx = pairs[pairs[:, 0] != pairs[:, 1]][rng.choice(630, 36, replace=False)]
    two = masks[two_idx[:, 0]] | masks[two_idx[:, 1]]
    res = []
    for name, ms in (("one", one), ("two", two)):
        preds = mrs_jax.predict(classify, np.broadcast_to(x, (36, *x.shape)), ms, 7.0,
                                key=jax.random.key(b), n=100, alpha=0.001, num_classes=10, batch_size=400)
        share = np.array([p.counts[y] / 100 for p in preds])
        res.append(f"{name}: share of y min {share.min():.2f} median {np.median(share):.2f}, >0.892: {(share > 0.892).mean():.0%}")
    print(b, y, "base", int(np.argmax(np.asarray(classify(x[None]))[0])), "|", " | ".join(res), flush=True)
