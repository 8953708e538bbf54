"""Decoded and cropped images/s: a streamed FolderSource vs a bare OpenCV loop.

Both read the same JPEG files, in the same (seeded random) order, with the same
number of threads, from a warm page cache:

- **bare**: ``threads`` threads share one counter over the files; each does
  ``cv2.imread`` (BGR, no colour conversion), ``cv2.resize`` of the shorter side
  to ``--resize`` (``INTER_AREA``) and the centre ``--crop``, and keeps nothing.
- **source**: :class:`mrs_jax.image_folder.FolderSource` with the ImageNet
  transform (:func:`mrs_jax.data.resize_center_crop`) and ``num_workers=threads``,
  read through ``iter_batches(order, --batch-size, prefetch=--prefetch,
  dtype=--dtype)``: RGB float32 batches in [0, 1] (what training reads) or uint8
  (decoded and cropped, the bare loop's work plus batching).

Runs alternate (bare, source, bare, ...) ``--repeats`` times; the best run of
each counts. ``cv2.setNumThreads(--cv2-threads)`` applies to both, so with the
default 1 each loop uses exactly ``threads`` threads. The target is a source
at least 90% as fast as the bare loop. The time to open the folder (list the
files, read the first image) is reported as well.

Without ``--dir`` it writes ``--images`` JPEGs of ``--size`` (default 375x500, a
typical ImageNet image) into a temporary folder, in ``--classes`` class folders.
With ``--dir SPLIT_DIR`` (e.g. ``.../imagenet/val``) it reads ``--images`` files
of that folder (a seeded random subset).

Run: ``python benchmarks/bench_streaming.py --images 5000 --threads 16``
(``--dir /data/imagenet/val`` for real ImageNet files).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from mrs_jax.data import FolderSource, default_workers, resize_center_crop


def write_folder(split_dir: Path, count: int, size: tuple[int, int], classes: int):
    """``count`` smooth random JPEGs (quality 90) of ``size`` (H, W)."""
    rng = np.random.default_rng(0)
    folders = [split_dir / f"n{k:08d}" for k in range(classes)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC)
        image = cv2.add(image, rng.integers(0, 24, image.shape, dtype=np.uint8))
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError("cv2.imencode failed")
        (folders[i % classes] / f"img_{i:07d}.JPEG").write_bytes(data.tobytes())


def _bare_crop(path: str, resize: int, crop: int) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    height, width = image.shape[:2]
    scale = resize / min(height, width)
    new_h, new_w = max(resize, round(height * scale)), max(resize, round(width * scale))
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    return image[top : top + crop, left : left + crop]


def bare_loop(paths: list[str], threads: int, resize: int, crop: int) -> float:
    """Seconds for ``threads`` threads to read, resize and crop every path."""
    counter = itertools.count()  # next() on it is atomic under the GIL

    def work():
        while (i := next(counter)) < len(paths):
            _bare_crop(paths[i], resize, crop)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def through_source(
    split_dir: Path, order: np.ndarray, args: argparse.Namespace
) -> tuple[float, float]:
    """``(open seconds, read seconds)`` of every image in ``order`` via the source."""
    transform = functools.partial(
        resize_center_crop, resize=args.resize, crop=args.crop
    )
    started = time.perf_counter()
    source = FolderSource(split_dir, transform=transform, num_workers=args.threads)
    opened = time.perf_counter()
    count = 0
    with source:
        for images, _ in source.iter_batches(
            order, args.batch_size, prefetch=args.prefetch, dtype=args.dtype
        ):
            count += len(images)
    finished = time.perf_counter()
    if count != len(order):
        raise RuntimeError(f"the source gave {count} images, not {len(order)}")
    return opened - started, finished - opened


def measure(split_dir: Path, args: argparse.Namespace) -> dict:
    """Alternating bare and source runs over the same files; best of each."""
    with FolderSource(split_dir, num_workers=1) as listing:
        total = len(listing)
        count = total if args.images is None else min(args.images, total)
        order = np.random.default_rng(1).permutation(total)[:count]
        paths = [listing.path(i) for i in order]
    for path in paths:  # warm the page cache for both loops alike
        Path(path).read_bytes()
    bare, source, opens = [], [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(paths, args.threads, args.resize, args.crop))
        open_s, read_s = through_source(split_dir, order, args)
        opens.append(open_s)
        source.append(read_s)
    bare_rate, source_rate = count / min(bare), count / min(source)
    return {
        "split_dir": str(split_dir),
        "files_in_folder": total,
        "images": count,
        "threads": args.threads,
        "cv2_threads": args.cv2_threads,
        "batch_size": args.batch_size,
        "prefetch": args.prefetch,
        "dtype": args.dtype,
        "resize": args.resize,
        "crop": args.crop,
        "bare_images_per_s": bare_rate,
        "source_images_per_s": source_rate,
        "source_over_bare": source_rate / bare_rate,
        "open_seconds": min(opens),
        "bare_seconds": bare,
        "source_seconds": source,
        "cpus": os.cpu_count(),
    }


def markdown(result: dict) -> str:
    ratio = result["source_over_bare"]
    return "\n".join(
        [
            f"{result['images']:,} JPEGs of {result['split_dir']} "
            f"({result['files_in_folder']:,} in the folder), resize "
            f"{result['resize']} / crop {result['crop']}, {result['threads']} "
            f"threads (cv2 threads {result['cv2_threads']}), batches of "
            f"{result['batch_size']}, prefetch {result['prefetch']}; best of "
            f"{len(result['bare_seconds'])} alternating runs.",
            "",
            "| loop | images/s |",
            "|---|---:|",
            f"| bare OpenCV read-decode-resize-crop | "
            f"{result['bare_images_per_s']:,.0f} |",
            f"| FolderSource.iter_batches (RGB {result['dtype']}) | "
            f"{result['source_images_per_s']:,.0f} |",
            "",
            f"Source / bare: {ratio:.1%} (target >= 90%: "
            f"**{'yes' if ratio >= 0.9 else 'NO'}**). Opening the folder: "
            f"{result['open_seconds']:.3f} s.",
        ]
    )


def _size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="an existing ROOT/<split> folder")
    parser.add_argument("--images", type=int, default=None, help="default: 2000")
    parser.add_argument("--size", type=_size, default=(375, 500), help="HxW")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=default_workers())
    parser.add_argument("--cv2-threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--dtype", choices=["float32", "uint8"], default="float32",
        help="the source's batches: float32 in [0, 1] (training's) or uint8 "
        "(decoded and cropped, as the bare loop keeps them)",
    )
    args = parser.parse_args(argv)
    if min(args.threads, args.batch_size, args.repeats, args.classes) < 1:
        parser.error("--threads, --batch-size, --repeats and --classes must be >= 1")
    cv2.setNumThreads(args.cv2_threads)
    if args.dir is not None:
        result = measure(args.dir, args)
    else:
        args.images = 2000 if args.images is None else args.images
        with tempfile.TemporaryDirectory(prefix="bench_streaming_") as root:
            split_dir = Path(root) / "train"
            write_folder(split_dir, args.images, args.size, args.classes)
            result = measure(split_dir, args)
    print(markdown(result))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
