#!/usr/bin/env bash
# The ablation of the airbench-class recipe: a short budget (4 epochs
# instead of 10), once whole and once without each trick, every row trained
# from the same seed and evaluated on the 10,000 CIFAR-10 JPEG test images.
# Resumable like the protocol: rerun the same command after a kill; a row with
# its result is not trained again. One heavy job: run it alone, or after
# benchmarks/cifar10_airbench_protocol.sh. DRY_RUN=1 prints each row's
# overrides instead.
#
#   bash benchmarks/cifar10_airbench_ablation.sh     # data in data/cifar10
#   python benchmarks/ablation_table.py               # the table in RESULTS.md
#
# Nesterov momentum is not a row: the old recipe had it too.
# The short budget keeps the recipe's proportions: the whitening bias trains
# 1 epoch (3 of 10 in the full recipe) and the lookahead starts after epoch 1
# (3 of 10). Work dirs: runs/airbench_ablation/<row> (not committed); results:
# benchmarks/results/airbench_ablation/<row>.json (whole test set, clean and
# one draw of the training noise) and <row>.metrics.jsonl (the epochs, with
# their seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${WORK:-runs/airbench_ablation}
OUT=benchmarks/results/airbench_ablation
SHORT=(--config.epochs=4 --config.whiten_bias_epochs=1 --config.ema_start_epoch=1)
ROWS=(recipe no_whitening no_dirac bn_scale no_bias_rate no_label_smoothing
  no_lookahead random_flips no_translation)
overrides() {  # one override a line: what the row takes out of the recipe
  case $1 in
    recipe) ;;
    no_whitening) printf '%s\n' --config.whiten_examples=0 \
      --config.whiten_bias_epochs=None ;;  # a trained 2x2 conv, random start
    no_dirac) echo "--config.model_kwargs=(('clamp', True), \
('bn_momentum', 0.9686), ('dirac', False))" ;;
    bn_scale) echo "--config.model_kwargs=(('clamp', True), \
('bn_momentum', 0.9686), ('bn_scale', True))" ;;  # trained with the biases
    no_bias_rate) echo --config.bias_lr_scale=1.0 ;;
    no_label_smoothing) echo --config.label_smoothing=0.0 ;;
    no_lookahead) echo --config.ema_start_epoch=None ;;
    random_flips) echo --config.flip_mode=random ;;
    no_translation) echo --config.crop_pad=0 ;;
  esac
}
mkdir -p "$OUT"
for name in "${ROWS[@]}"; do
  mapfile -t extra < <(overrides "$name")
  if [ -n "${DRY_RUN:-}" ]; then  # the rows' overrides, tab-separated (tests)
    printf '%s\t' "$name" "${SHORT[@]}" "${extra[@]}"; echo; continue
  fi
  result="$OUT/$name.json"
  [ -f "$result" ] && continue
  dir="$WORK/$name"
  resume=(); [ -d "$dir/checkpoints" ] && resume=(--resume)
  "$PY" -m train --config train/configs/cifar10_airbench.py --workdir "$dir" \
    --no_progress "${SHORT[@]}" "${extra[@]}" "${resume[@]}"
  cp "$dir/metrics.jsonl" "$OUT/$name.metrics.jsonl"
  "$PY" benchmarks/bench_train.py --no-train --draws 1 --workdir "$dir" \
    --data_dir data/cifar10 > "$result.part"
  mv "$result.part" "$result"
done
