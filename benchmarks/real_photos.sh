#!/usr/bin/env bash
# Real-photo training runs on the public Clothing Co-Parsing release, from scratch:
# converts it (ccp.py), trains, and prints each run's row of the README's tables.
#
#   bash benchmarks/real_photos.sh CCP_RELEASE [shipped|ablation|original|improved|all]
#
# CCP_RELEASE is the release's folder (photos/, annotations/pixel-level/, label_list.mat;
# https://github.com/bearpaw/clothing-co-parsing). It is converted once to $DATA/ccp-128
# (128x128, the layout of the earlier runs) and $DATA/ccp-full (photos at full size, for
# crops taken from them); DATA defaults to data-ccp. Runs go to $RUNS (default runs/); a
# run folder that has test metrics already is reported, not retrained.
#
#   shipped   the recipe of models/person_unet.keras (~10 min on a 2-core CPU with native
#             bfloat16; see the README's model card)
#   ablation  the ablation of that recipe: every row the same 600 steps at filter scale 0.25
#   original, improved, all: the full U-net's runs (filter scale 1.0) of the README's earlier table (~35 min each)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "real_photos.sh: error: give the Clothing Co-Parsing release folder (photos/, annotations/, label_list.mat)" >&2
  exit 2
fi
SRC=$1
WHICH=${2:-shipped}
PY=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-runs}
DATA=${DATA:-data-ccp}

"$PY" ccp.py --src "$SRC" --out "$DATA/ccp-128" --size 128
"$PY" ccp.py --src "$SRC" --out "$DATA/ccp-full" --size 0

# The full U-net's recipes (filter scale 1.0) of the README's first real-photo table, on the 128x128 photos.
ORIGINAL=(--epochs 22 --steps-per-epoch 30 --validation-steps 0)
IMPROVED=(--epochs 36 --steps-per-epoch 30 --validation-steps 0 --mixed-precision --fused-batchnorm
  --precise-bn 8 --augment --loss bce_dice --schedule cosine --warmup-steps 60)

# The small real-photo model: the U-net at filter scale 0.25 (1.4M parameters, 5.8 MB), bfloat16 where
# the CPU has it, BatchNorm statistics re-estimated before each validation, cosine schedule.
SMALL=(--filter-scale 0.25 --validation-steps 0 --mixed-precision --fused-batchnorm --precise-bn 8
  --schedule cosine --warmup-steps 60)
# Ablation rows: 20 epochs of 30 steps each (600 steps of 32 photos).
SHORT=(--epochs 20 --steps-per-epoch 30)
# The shipped model: the ablation's third row, trained twice as long (80 epochs overfitted: the
# validation IoU peaked at epoch 35 and fell from there).
SHIPPED=(--epochs 40 --steps-per-epoch 30 --augment --crop-from 256 --seed 1)

run() {
  local name=$1 data=$2
  shift 2
  if [ ! -f "$RUNS/$name/test_metrics.json" ]; then
    local start
    start=$(date +%s)
    "$PY" train.py --data-dir "$data" --runs-dir "$RUNS" --name "$name" --verbose 2 "$@"
    echo $(($(date +%s) - start)) >"$RUNS/$name/wall_seconds"
  fi
  "$PY" benchmarks/real_report.py "$RUNS/$name" --data-dir "$data"
}

case $WHICH in
  shipped)
    run ccp-shipped "$DATA/ccp-full" "${SMALL[@]}" "${SHIPPED[@]}"
    # The model card's figures and the model file as shipped (float32, fixed input size).
    "$PY" benchmarks/real_report.py "$RUNS/ccp-shipped" --data-dir "$DATA/ccp-full" \
      --cases "$RUNS/ccp-shipped/cases.png" --ship "$RUNS/ccp-shipped/person_unet.keras"
    echo "Reproduced: $RUNS/ccp-shipped/person_unet.keras (compare with models/person_unet.keras and MODEL.md)"
    ;;
  ablation)
    run ab-small "$DATA/ccp-full" "${SMALL[@]}" "${SHORT[@]}"
    run ab-small-augment "$DATA/ccp-full" "${SMALL[@]}" "${SHORT[@]}" --augment
    run ab-small-augment-crop256 "$DATA/ccp-full" "${SMALL[@]}" "${SHORT[@]}" --augment --crop-from 256
    run ab-small-augment-crop256-160 "$DATA/ccp-full" "${SMALL[@]}" "${SHORT[@]}" --augment --crop-from 320 \
      --image-size 160
    ;;
  original) run ccp-original "$DATA/ccp-128" "${ORIGINAL[@]}" ;;
  improved) run ccp-improved "$DATA/ccp-128" "${IMPROVED[@]}" ;;
  all)
    run ccp-original "$DATA/ccp-128" "${ORIGINAL[@]}"
    run ccp-improved "$DATA/ccp-128" "${IMPROVED[@]}"
    ;;
  *)
    echo "real_photos.sh: error: the second argument must be shipped, ablation, original, improved or all (got $WHICH)" >&2
    exit 2
    ;;
esac
