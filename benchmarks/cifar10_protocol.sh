#!/usr/bin/env bash
# The paper's CIFAR-10 protocol on this CPU, and every attack and defence compared,
# resumable: rerun the same command after a kill and every run continues from its
# rows (a finished run returns at once). Runs one after another (one heavy job at a
# time on a 2-core machine), in the order that completes a comparable table soonest:
# the first 50 images under every attack and defence, then the rest.
#
#   bash benchmarks/cifar10_protocol.sh            # data in data/cifar10
#
# Run directories: benchmarks/runs/cifar10_{pc,practical,pc_occlusion,adaptive,
# center,gradcam}; the occlusion-trained model: benchmarks/checkpoints/
# cifar10_cpu_occlusion; the reports: benchmarks/runs/cifar10_report (every
# row) and cifar10_report_common (the images every defence and attack ran on).
# Never `git stash` or `git checkout` the run directories while this runs: the
# job would refuse its next row (rows.Writer) and stop.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CKPT=benchmarks/checkpoints/cifar10_cpu
OCCLUSION=benchmarks/checkpoints/cifar10_cpu_occlusion
RUNS=benchmarks/runs
CONFIG=certify/configs/cifar10_cpu.py
run() { "$PY" -m certify --no_progress "$@"; }
# PatchCleanser (~666 forward passes an image) and the first 50 practical images.
run --checkpoint "$CKPT" --config certify/configs/cifar10_cpu_pc.py --out "$RUNS/cifar10_pc"
# Skipped once the run has been extended to 500 (a resume may not shrink it).
extended() {
  "$PY" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["num_images"] <= 50)' \
    "$RUNS/cifar10_practical/run.json" 2>/dev/null
}
if ! extended; then
  run --checkpoint "$CKPT" --config "$CONFIG" --num_images 50 --out "$RUNS/cifar10_practical"
fi
# PatchCleanser's fair model: trained with occlusion squares (resumes per epoch).
if [ ! -f "$OCCLUSION/done" ]; then
  "$PY" -m train --config train/configs/cifar10_cpu_occlusion.py --workdir "$OCCLUSION" --no_progress
  touch "$OCCLUSION/done"
fi
run --checkpoint "$OCCLUSION" --config certify/configs/cifar10_cpu_pc.py --out "$RUNS/cifar10_pc_occlusion"
run --checkpoint "$CKPT" --config certify/configs/cifar10_cpu_adaptive.py --out "$RUNS/cifar10_adaptive"
run --checkpoint "$CKPT" --config "$CONFIG" --mode center --num_images 200 --out "$RUNS/cifar10_center"
run --checkpoint "$CKPT" --config "$CONFIG" --mode gradcam --num_images 200 --out "$RUNS/cifar10_gradcam"
# The practical run extended to the paper's 500 images.
run --checkpoint "$CKPT" --config "$CONFIG" --out "$RUNS/cifar10_practical"
"$PY" -m certify.analyze "$RUNS"/cifar10_practical "$RUNS"/cifar10_adaptive \
  "$RUNS"/cifar10_center "$RUNS"/cifar10_gradcam "$RUNS"/cifar10_pc \
  "$RUNS"/cifar10_pc_occlusion --radii 0 3.5 7 --out "$RUNS/cifar10_report"
# The one table: every defence and attack on the images all runs hold.
"$PY" -m certify.analyze "$RUNS"/cifar10_practical "$RUNS"/cifar10_adaptive \
  "$RUNS"/cifar10_pc "$RUNS"/cifar10_pc_occlusion --common --radii 0 3.5 7 \
  --out "$RUNS/cifar10_report_common"
