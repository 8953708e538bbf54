#!/usr/bin/env bash
# The digits demo's figures over seeds: the demo's two steps (train the digits
# model, then certify 30 test digits at its sigma) with training seed and job
# seed S for each S given, on the same 30 images; then one table of every seed
# beside the committed demo run (seed 0). Resumable: rerun after a kill.
#
#   bash benchmarks/demo_seeds.sh 1 2 3     # about 5 min a seed, quiet 2-core CPU
#
# Writes runs/demo_seeds/{model,run}_S and benchmarks/results/demo_seeds.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=runs/demo_seeds
runs=(benchmarks/runs/digits_practical)
for seed in "$@"; do
  model="$OUT/model_$seed" run="$OUT/run_$seed"
  resume=(); [ -d "$model/checkpoints" ] && resume=(--resume)
  "$PY" -m train --config train/configs/digits.py --config.seed="$seed" \
    --workdir "$model" --no_progress "${resume[@]}"
  "$PY" -m certify --config certify/configs/digits.py --config.seed="$seed" \
    --checkpoint "$model" --out "$run" --no_progress
  runs+=("$run")
done
"$PY" -m certify.analyze "${runs[@]}" --radii 0 8.66 --out "$OUT/report"
cp "$OUT/report/summary.md" benchmarks/results/demo_seeds.md
