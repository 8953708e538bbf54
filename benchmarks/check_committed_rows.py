"""Re-runs the first images of a committed run and compares its rows.

The refactored code must reproduce the committed rows with the same keys. This
reruns ``python -m certify`` (the same command line as the committed run: the
run's config file, its checkpoint, ``--num_images N``) into a fresh directory,
once image by image and once with ``--images_per_batch N``, and compares every
field of every row but ``seconds`` with the committed ``rows.jsonl``. A row
depends only on its image and key (``fold_in(key(seed), dataset_index)``), not
on ``num_images``, so the first N rows of the 500-image run are the rows of an
N-image run.

Run (CIFAR-10 JPEG class folders in ``data/cifar10``; 2-core CPU: ~3 min)::

    python benchmarks/check_committed_rows.py \\
        --run benchmarks/runs/cifar10_practical \\
        --config certify/configs/cifar10_cpu.py \\
        --checkpoint benchmarks/checkpoints/cifar10_cpu --num_images 3

Exit status 0 when every compared field is equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rows_of(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return sorted(rows, key=lambda r: r["index"])


def certify(args, out: Path, images_per_batch: int) -> float:
    command = [
        sys.executable, "-m", "certify", "--config", args.config,
        "--checkpoint", args.checkpoint, "--out", str(out),
        "--num_images", str(args.num_images),
        "--images_per_batch", str(images_per_batch), "--no_progress",
    ]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    return time.perf_counter() - start


def differences(committed: list[dict], rerun: list[dict]) -> list[str]:
    """Every field (but ``seconds`` and ``run_id``) that differs, as
    ``index.field``. ``run_id`` names the run, not a result: it hashes the whole
    job config, so it changes whenever ``JobConfig`` gains a field."""
    found = []
    for old, new in zip(committed, rerun, strict=True):
        for name in sorted(set(old) | set(new)):
            if name in ("seconds", "run_id") or name not in old:
                continue  # fields added since the committed run are not compared
            if old.get(name) != new.get(name):
                found.append(f"{old['index']}.{name}: {old.get(name)!r} -> "
                             f"{new.get(name)!r}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--num_images", type=int, default=3)
    args = parser.parse_args(argv)
    committed = rows_of(ROOT / args.run / "rows.jsonl")[: args.num_images]
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        for group in sorted({1, args.num_images}):
            out = Path(tmp) / f"group_{group}"
            seconds = certify(args, out, group)
            rerun = rows_of(out / "rows.jsonl")
            found = differences(committed, rerun)
            fields = sum(len(r) - 1 for r in committed)
            print(f"images_per_batch={group}: {len(rerun)} rows, {fields} fields "
                  f"compared, {len(found)} differ ({seconds:.0f} s)")
            for line in found:
                print(f"  {line}")
            status |= bool(found)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
