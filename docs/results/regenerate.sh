#!/usr/bin/env bash
# Regenerate the committed evaluation reports in docs/results/ (needs ../shared/data and the
# two bundled models). Extra arguments go to every `ctsam3d evaluate` call, e.g. `-d cuda` or `-q`.
# The models are named explicitly (`ctsam3d models`): without --model, evaluate uses the default
# model, which is the released CT-SAM3D weights once `ctsam3d download` has installed them.
#
# MODEL_ROWS_ONLY=1 docs/results/regenerate.sh recomputes only the model rows (model, model-noexp)
# and carries the baselines' rows (random walker, region growing: they use neither the session
# nor the weights) over from the committed reports with merge_rows.py, which checks that data,
# protocol, cases and structures match. Use it after a change to the session or the weights;
# run without it after a change to the evaluation protocol, the data or the baselines.
set -euo pipefail
cd "$(dirname "$0")/../.."
# One PyTorch thread per process (as the 2026-11-27 reports): on a busy 2-core machine the
# default (one per core) spun for ~13x the CPU time (one OpenKBP case, 28 clicks: 19 s vs 1.4 s).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
EXTRA=("$@")
METHODS="model,model-noexp,random-walker,region-growing"
BASELINES="random-walker,region-growing"
STARTER=ctsam3d-lite-starter   # bundled, folder weights/ctsam3d-lite (the name ctsam3d-lite is the untrained preset)
TORSO=ctsam3d-lite-torso

# every method for the starter (baselines merged from the committed report with MODEL_ROWS_ONLY=1)
starter_set() {  # DATA CATALOGUE TITLE OUT
  local data=$1 catalogue=$2 title=$3 out=$4
  if [ "${MODEL_ROWS_ONLY:-0}" = 1 ]; then
    local tmp
    tmp=$(mktemp -d)
    ctsam3d evaluate --data "$data" --format pairs --catalogue "$catalogue" \
      --model "$STARTER" --method model,model-noexp --clicks 10 --seed 0 --overwrite \
      --title "$title" -o "$tmp/report" "${EXTRA[@]}"
    python docs/results/merge_rows.py --new "$tmp/report" --base "$out" --keep "$BASELINES" -o "$out" \
      --command "MODEL_ROWS_ONLY=1 docs/results/regenerate.sh ${EXTRA[*]}"
    rm -rf "$tmp"
  else
    ctsam3d evaluate --data "$data" --format pairs --catalogue "$catalogue" \
      --model "$STARTER" --method "$METHODS" --clicks 10 --seed 0 --overwrite \
      --title "$title" -o "$out" "${EXTRA[@]}"
  fi
}

# Manual organs at risk, OpenKBP validation split (33 head-and-neck CTs).
starter_set ../shared/data/openkbp/validation openkbp \
  "OpenKBP validation (manual contours)" docs/results/openkbp_validation

# TotalSegmentator example CTs: labels are TotalSegmentator output, so this is agreement
# with TotalSegmentator, not accuracy against manual ground truth.
starter_set docs/results/manifests/totalseg_examples.json totalseg_v2 \
  "Agreement with TotalSegmentator (its example CTs)" docs/results/totalseg_agreement

# The second bundled model, ctsam3d-lite-torso (the starter fine-tuned with synthetic
# thoraco-abdominal CT and pseudo-structures; docs/model_card.md): same data, model rows only.
ctsam3d evaluate --data ../shared/data/openkbp/validation --format pairs --catalogue openkbp \
  --model "$TORSO" --method model,model-noexp --clicks 10 --seed 0 --overwrite \
  --title "OpenKBP validation (manual contours), ctsam3d-lite-torso" -o docs/results/openkbp_validation_torso "${EXTRA[@]}"
ctsam3d evaluate --data docs/results/manifests/totalseg_examples.json --format pairs --catalogue totalseg_v2 \
  --model "$TORSO" --method model,model-noexp --clicks 10 --seed 0 --overwrite \
  --title "Agreement with TotalSegmentator (its example CTs), ctsam3d-lite-torso" -o docs/results/totalseg_agreement_torso "${EXTRA[@]}"

# The two structures longer than one patch (aorta and pulmonary-artery crops, also in the set
# above), both models, model rows only: a quick check of cross-patch expansion and later clicks.
ctsam3d evaluate --data docs/results/manifests/long_structures.json --format pairs --catalogue totalseg_v2 \
  --model "$STARTER" --method model,model-noexp --clicks 10 --seed 0 --overwrite \
  --title "Long structures (aorta and pulmonary-artery crops, TotalSegmentator labels)" -o docs/results/long_structures "${EXTRA[@]}"
ctsam3d evaluate --data docs/results/manifests/long_structures.json --format pairs --catalogue totalseg_v2 \
  --model "$TORSO" --method model,model-noexp --clicks 10 --seed 0 --overwrite \
  --title "Long structures (aorta and pulmonary-artery crops, TotalSegmentator labels), ctsam3d-lite-torso" -o docs/results/long_structures_torso "${EXTRA[@]}"
