#!/usr/bin/env bash
# Real-photo training runs from the public releases, from scratch: converts them (ccp.py,
# photos.py), trains, scores each model at every photo's full size through results.py
# (benchmarks/full_size.py) and prints its row of MODEL.md's tables.
#
#   bash benchmarks/real_photos.sh [shipped|ablation|ccp-ablation|original|improved]
#
# The releases, each as its authors publish it (see MODEL.md for the links and licences):
#   CCP           Clothing Co-Parsing: photos/, annotations/pixel-level/, label_list.mat
#   HUMAN_SEG     Human-Segmentation-Dataset: Training_Images/, Ground_Truth/
#   ID_PORTRAITS  pytorch-portrait-segmentation: picture/source360/, picture/mask360/ (inverted)
#   CUTOUTS       Human-Segmentation-main's SyntheticData_main: Obj/ (RGBA people), Bg/ (no people)
#   PFCN          AutoPortraitMatting's data/: images_data_crop/NNNNN.jpg, images_mask/NNNNN_mask.mat
#   VITON         VITON with CP-VTON+'s masks: {train,test}/image/, {train,test}/image-mask/ (0/1/254/255)
#   PENN_FUDAN    PennFudanPed/: PNGImages/, PedMasks/<name>_mask.png (instance ids)
# Each defaults to a folder of that name's short form under REALDATA (ccp-raw, human-seg,
# id-portraits, cutouts, pfcn/data, viton/data, penn-fudan/PennFudanPed). They are converted once
# under DATA (default data-real); runs go to RUNS (default runs/). A run folder with its scores
# already is reported, not retrained.
#
#   shipped       the recipe of models/person_unet.keras (MODEL.md)
#   ablation      the rows that chose it: sources and weights, compositing, input size, filter scale
#   ccp-ablation, original, improved: the earlier Clothing Co-Parsing-only runs (docs/results.md)
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-shipped}
PY=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-runs}
DATA=${DATA:-data-real}
REALDATA=${REALDATA:-realdata}
CCP=${CCP:-$REALDATA/ccp-raw}
HUMAN_SEG=${HUMAN_SEG:-$REALDATA/human-seg}
ID_PORTRAITS=${ID_PORTRAITS:-$REALDATA/id-portraits}
CUTOUTS=${CUTOUTS:-$REALDATA/cutouts}
PFCN=${PFCN:-$REALDATA/pfcn/data}
VITON=${VITON:-$REALDATA/viton/data}
PENN_FUDAN=${PENN_FUDAN:-$REALDATA/penn-fudan/PennFudanPed}
for release in "$CCP" "$HUMAN_SEG" "$ID_PORTRAITS" "$CUTOUTS" "$PFCN" "$VITON" "$PENN_FUDAN"; do
  if [ ! -d "$release" ]; then
    echo "real_photos.sh: error: $release not found: set REALDATA, or CCP, HUMAN_SEG, ID_PORTRAITS, CUTOUTS, PFCN, VITON" \
      "and PENN_FUDAN (MODEL.md)" >&2
    exit 2
  fi
done

# Every source at full size; the model's input size is chosen at training time.
"$PY" ccp.py --src "$CCP" --out "$DATA/ccp" --size 0
"$PY" photos.py --photos "$HUMAN_SEG/Training_Images" --masks "$HUMAN_SEG/Ground_Truth" --out "$DATA/human-seg" --size 0
"$PY" photos.py --photos "$ID_PORTRAITS/picture/source360" --masks "$ID_PORTRAITS/picture/mask360" --invert \
  --out "$DATA/id-portraits" --size 0
"$PY" photos.py --photos "$CUTOUTS/Obj" --out "$DATA/cutouts" --size 0
# PFCN: three masks cover over 98% of the frame, six photos are there twice. VITON: its test photos are
# held out (all in test/), and the 78 train photos that are copies of them left out. Penn-Fudan: all held out.
"$PY" photos.py --photos "$PFCN/images_data_crop" --masks "$PFCN/images_mask" --mask-suffix _mask --skip-duplicates \
  --max-coverage 0.98 --out "$DATA/pfcn" --size 0
"$PY" photos.py --photos "$VITON/train/image" --masks "$VITON/train/image-mask" --skip-duplicates \
  --held-out "$VITON/test/image" --out "$DATA/viton" --size 0
"$PY" photos.py --photos "$VITON/test/image" --masks "$VITON/test/image-mask" --skip-duplicates --split test \
  --out "$DATA/viton-test" --size 0
"$PY" photos.py --photos "$PENN_FUDAN/PNGImages" --masks "$PENN_FUDAN/PedMasks" --mask-suffix _mask --instances \
  --skip-duplicates --split test --out "$DATA/penn-fudan" --size 0
SOURCES=("$DATA/ccp" "$DATA/human-seg" "$DATA/id-portraits")

# Every run: bfloat16 where the CPU has it (else float32), fused BatchNorm, BatchNorm statistics
# re-estimated before each validation, a cosine schedule, validation on all of each val split.
COMMON=(--validation-steps 0 --mixed-precision --fused-batchnorm --precise-bn 8 --schedule cosine --seed 1)
# The base of the ablation: three sources, half-body portraits weighted up; compositing over
# photos without people; a quarter of the filters at a 256x256 input (crops from 384x384 photos).
SCENE=(--augment --composite 0.5 --backgrounds "$CUTOUTS/Bg" --cutouts "$DATA/cutouts")
BASE=(--data-dir "${SOURCES[@]}" --weights 1 1.5 0.5 "${SCENE[@]}" --filter-scale 0.25 --image-size 256
  --crop-from 384 --warmup-steps 30 "${COMMON[@]}")
SHORT=(--epochs 15 --steps-per-epoch 30)  # an ablation row: 450 steps of 32 photos
# The shipped model, chosen by the ablation (MODEL.md): a 128x128 input (as good as 256 at a third of the
# cost), half the filters (more capacity for the cost of a 256 input at a quarter), compositing on a
# smaller share of the photos (it costs accuracy on the sources' own photos, and is there for the other
# kinds), 1,800 steps.
SHIPPED=(--image-size 128 --crop-from 192 --filter-scale 0.5 --composite 0.3 --epochs 60 --steps-per-epoch 30)

# Scored at full size through results.py: each source's val split (ablation) or val and test (shipped).
score() {
  local name=$1 which=$2
  shift 2
  if [ ! -f "$RUNS/$name/full_size_$which.json" ]; then
    "$PY" -m benchmarks.full_size --model "$RUNS/$name/best.keras" --json "$RUNS/$name/full_size_$which.json" \
      "ccp=$DATA/ccp/$which" "human-seg=$DATA/human-seg/$which" "id-portraits=$DATA/id-portraits/$which" "$@"
  fi
}

run() {
  local name=$1
  shift
  if [ ! -f "$RUNS/$name/test_metrics.json" ]; then
    rm -rf "${RUNS:?}/$name.partial"
    # CPU and wall seconds of the whole run (training, validation, test), by /usr/bin/time.
    /usr/bin/time -f "%e %U %S" -o "$RUNS/$name.time" "$PY" train.py --runs-dir "$RUNS" --name "$name" --verbose 2 "$@"
    mv "$RUNS/$name.time" "$RUNS/$name/time.txt"
  fi
}

case $WHICH in
  shipped)
    run shipped "${BASE[@]}" "${SHIPPED[@]}"
    score shipped val
    score shipped test --compare=--no-guided-filter
    # The model file as shipped: float32, its input fixed at the size it was trained at.
    "$PY" export.py --model "$RUNS/shipped/best.keras" --format keras --out "$RUNS/shipped/person_unet.keras" --overwrite
    "$PY" -m benchmarks.full_size --model "$RUNS/shipped/person_unet.keras" --cases "$RUNS/shipped/cases.png" \
      "ccp=$DATA/ccp/test" "human-seg=$DATA/human-seg/test" "id-portraits=$DATA/id-portraits/test"
    "$PY" -m benchmarks.full_size --summarize "$RUNS/shipped"
    echo "Reproduced: $RUNS/shipped/person_unet.keras (compare with models/person_unet.keras and MODEL.md)"
    ;;
  ablation)
    # The one-source model it replaces: models/person_unet.keras as shipped before (Clothing Co-Parsing
    # only, 128x128) is scored by MODEL.md's command on the same val splits.
    ROWS=(ab-base ab-no-composite ab-128 ab-128-scale-0.5 ab-by-size)
    run ab-base "${BASE[@]}" "${SHORT[@]}"
    run ab-no-composite "${BASE[@]}" "${SHORT[@]}" --composite 0 --backgrounds "" --cutouts ""
    run ab-128 "${BASE[@]}" "${SHORT[@]}" --image-size 128 --crop-from 192
    run ab-128-scale-0.5 "${BASE[@]}" "${SHORT[@]}" --image-size 128 --crop-from 192 --filter-scale 0.5
    run ab-by-size "${BASE[@]}" "${SHORT[@]}" --weights
    for name in "${ROWS[@]}"; do
      score "$name" val
    done
    "$PY" -m benchmarks.full_size --summarize "${ROWS[@]/#/$RUNS/}"
    ;;
  ccp-ablation | original | improved)
    # The Clothing Co-Parsing-only runs of docs/results.md, on its own conversions.
    "$PY" ccp.py --src "$CCP" --out "$DATA/ccp-128" --size 128
    SMALL=(--data-dir "$DATA/ccp" --filter-scale 0.25 --warmup-steps 60 "${COMMON[@]}")
    case $WHICH in
      original) run ccp-original --data-dir "$DATA/ccp-128" --epochs 22 --steps-per-epoch 30 --validation-steps 0 ;;
      improved)
        run ccp-improved --data-dir "$DATA/ccp-128" --epochs 36 --steps-per-epoch 30 --validation-steps 0 \
          --mixed-precision --fused-batchnorm --precise-bn 8 --augment --loss bce_dice --schedule cosine --warmup-steps 60
        ;;
      ccp-ablation)
        run ccp-small "${SMALL[@]}" --epochs 20 --steps-per-epoch 30
        run ccp-small-augment-crop256 "${SMALL[@]}" --epochs 20 --steps-per-epoch 30 --augment --crop-from 256
        ;;
    esac
    ;;
  *)
    echo "real_photos.sh: error: the argument must be shipped, ablation, ccp-ablation, original or improved (got $WHICH)" >&2
    exit 2
    ;;
esac
