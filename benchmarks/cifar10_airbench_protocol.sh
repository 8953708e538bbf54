#!/usr/bin/env bash
# The paper's CIFAR-10 protocol on the airbench-class model, and the one
# certificates table (MRS, PatchCleanser, DRS, masked-noise double masking) on
# the same images: resumable, one run after another
# (one heavy job at a time on a 2-core machine). Rerun the same command after a
# kill: every run continues from its rows, a finished run returns at once, a
# trained twin (a `done` file in its work dir) is not trained again.
#
#   bash benchmarks/cifar10_airbench_protocol.sh     # data in data/cifar10
#
# Runs: benchmarks/runs/airbench_{practical,center,gradcam,drs,pc,sdm}, the first
# 200 images of the protocol's fixed order (the order of the 500-image cifar10_cpu
# runs). Twins: benchmarks/checkpoints/cifar10_airbench_{occlusion,noise_squares,
# drs,no_noise} (the recipe with grey squares, noise squares, band ablations,
# and without the noise: the ablation row).
# Report: benchmarks/runs/airbench_report; the certificates table:
# benchmarks/runs/airbench_certificates/table.md. Last, the ablation's rows
# (benchmarks/cifar10_airbench_ablation.sh). Never `git stash` or `git checkout`
# the run directories while this runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
IMAGES=${IMAGES:-200}
CKPT=benchmarks/checkpoints/cifar10_airbench
OCCLUSION=benchmarks/checkpoints/cifar10_airbench_occlusion
NOISE_SQUARES=benchmarks/checkpoints/cifar10_airbench_noise_squares
DRS=benchmarks/checkpoints/cifar10_airbench_drs
NO_NOISE=benchmarks/checkpoints/cifar10_airbench_no_noise
RUNS=benchmarks/runs
CONFIG=certify/configs/cifar10_cpu.py
run() { "$PY" -m certify --no_progress --num_images "$IMAGES" "$@"; }
twin() {  # train a twin once: the same recipe, another augmentation
  if [ ! -f "$2/done" ]; then
    resume=(); [ -d "$2/checkpoints" ] && resume=(--resume)
    "$PY" -m train --config "$1" --workdir "$2" --no_progress "${resume[@]}"
    touch "$2/done"
  fi
}
run --checkpoint "$CKPT" --config "$CONFIG" --out "$RUNS/airbench_practical"
run --checkpoint "$CKPT" --config "$CONFIG" --mode center --out "$RUNS/airbench_center"
run --checkpoint "$CKPT" --config "$CONFIG" --mode gradcam --out "$RUNS/airbench_gradcam"
twin train/configs/cifar10_airbench_drs.py "$DRS"
run --checkpoint "$DRS" --config certify/configs/cifar10_cpu_drs.py --out "$RUNS/airbench_drs"
twin train/configs/cifar10_airbench_occlusion.py "$OCCLUSION"
run --checkpoint "$OCCLUSION" --config certify/configs/cifar10_cpu_pc.py --out "$RUNS/airbench_pc"
twin train/configs/cifar10_airbench_noise_squares.py "$NOISE_SQUARES"
run --checkpoint "$NOISE_SQUARES" --config certify/configs/cifar10_cpu_sdm.py --out "$RUNS/airbench_sdm"
"$PY" -m certify.analyze "$RUNS"/airbench_practical "$RUNS"/airbench_center \
  "$RUNS"/airbench_gradcam "$RUNS"/airbench_pc "$RUNS"/airbench_sdm \
  "$RUNS"/airbench_drs --radii 0 3.5 7 --out "$RUNS/airbench_report"
# The one table: every certificate for 5x5 patches on the same images.
"$PY" -m certify.analyze "$RUNS"/airbench_practical "$RUNS"/airbench_pc \
  "$RUNS"/airbench_drs "$RUNS"/airbench_sdm --common --radii 0 8.66 \
  --out "$RUNS/airbench_certificates"
"$PY" benchmarks/certificates_table.py "$RUNS/airbench_certificates/summary.json" \
  --model airbench_practical="$CKPT" --model airbench_pc="$OCCLUSION" \
  --model airbench_drs="$DRS" --model airbench_sdm="$NOISE_SQUARES" \
  > "$RUNS/airbench_certificates/table.md"
# The ablation: the recipe without the noise, evaluated as the recipe was.
twin train/configs/cifar10_airbench_no_noise.py "$NO_NOISE"
EVAL=benchmarks/results/cifar10_airbench_no_noise_eval.json
if [ ! -f "$EVAL" ]; then
  "$PY" benchmarks/bench_train.py --no-train --tta mirror_translate --draws 3 \
    --workdir "$NO_NOISE" --data_dir data/cifar10 > "$EVAL.part"
  mv "$EVAL.part" "$EVAL"
fi
# The per-trick rows of the ablation (4 epochs each), after the protocol.
bash benchmarks/cifar10_airbench_ablation.sh
