"""The PyTorch reference's counting loop, for ``bench_peer.py`` (run in its own env).

Cohen et al.'s ``Smooth._sample_noise`` (locuslab/smoothing, ``core.py``): batches
of copies of the image plus Gaussian noise (here only inside the mask, as MRS
smooths), the model's argmax, per-class counts on the host. The model is the CIFAR
ResNet of He et al. (option B shortcuts, as ``mrs_jax.models.CifarResNet``), in
eval mode, float32, ``torch.no_grad``. Random weights: speed does not depend on
them.

Run (needs only torch and numpy: ``pip install torch numpy`` in its own env)::

    python benchmarks/peer_torch_certify.py --depth 110 --batch 400 --n 4000 --threads 2

Prints one JSON line: forward and counting samples/s.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.proj = None
        if stride != 1 or c_in != c_out:
            self.proj = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.proj is None else self.proj(x)))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        blocks, c_in = [], 16
        for stage, c in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(Block(c_in, c, 2 if stage > 0 and i == 0 else 1))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(64, num_classes)
        mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
        std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x):
        x = self.blocks(self.stem((x - self.mean) / self.std))
        return self.head(x.mean(dim=(2, 3)))


def sample_counts(model, x, mask, sigma, num, batch, num_classes=10):
    """Cohen et al.'s ``_sample_noise`` with the noise restricted to ``mask``."""
    counts = np.zeros(num_classes, dtype=int)
    remaining = num
    with torch.no_grad():
        while remaining > 0:
            this_batch = min(batch, remaining)
            remaining -= this_batch
            images = x.repeat((this_batch, 1, 1, 1))
            noise = torch.randn_like(images) * sigma * mask
            predictions = model(images + noise).argmax(1)
            counts += np.bincount(predictions.numpy(), minlength=num_classes)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CifarResNet(args.depth).eval()
    x = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 10:19, 10:19] = 1.0  # a 5x5 patch grown by 2: the located mask
    batch = torch.rand(args.batch, 3, 32, 32)
    with torch.no_grad():
        model(batch)  # warm-up
        forward = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(max(1, args.n // args.batch)):
                model(batch).argmax(1)
            forward.append(time.perf_counter() - start)
    counting = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        counts = sample_counts(model, x, mask, 0.5, args.n, args.batch)
        counting.append(time.perf_counter() - start)
    assert counts.sum() == args.n
    print(json.dumps({
        "framework": f"torch {torch.__version__}",
        "depth": args.depth, "batch": args.batch, "n": args.n,
        "threads": args.threads,
        "forward_samples_per_s": max(1, args.n // args.batch) * args.batch
        / min(forward),
        "counting_samples_per_s": args.n / min(counting),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
