#!/usr/bin/env bash
# The paper's CIFAR-10 protocol on this CPU, resumable: rerun the same command after
# a kill and every run continues from its rows. Runs one after another (one heavy
# job at a time on a 2-core machine); the report is rewritten at the end.
#
#   bash benchmarks/cifar10_protocol.sh            # data in data/cifar10
#
# Run directories: benchmarks/runs/cifar10_{practical,center,gradcam,pc}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CKPT=benchmarks/checkpoints/cifar10_cpu
RUNS=benchmarks/runs
CONFIG=certify/configs/cifar10_cpu.py
run() { "$PY" -m certify --no_progress --checkpoint "$CKPT" "$@"; }
# Cheapest first: PatchCleanser (~666 forward passes an image), then MRS.
run --config certify/configs/cifar10_cpu_pc.py --out "$RUNS/cifar10_pc"
run --config "$CONFIG" --out "$RUNS/cifar10_practical"
run --config "$CONFIG" --mode center --num_images 200 --out "$RUNS/cifar10_center"
run --config "$CONFIG" --mode gradcam --num_images 200 --out "$RUNS/cifar10_gradcam"
"$PY" -m certify.analyze "$RUNS"/cifar10_practical "$RUNS"/cifar10_center \
  "$RUNS"/cifar10_gradcam "$RUNS"/cifar10_pc --out "$RUNS/cifar10_report"
