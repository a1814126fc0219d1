#!/usr/bin/env bash
# Regenerate the committed evaluation reports in docs/results/ for the bundled model (needs
# ../shared/data). Extra arguments go to every `ctsam3d evaluate` call, e.g. `-d cuda` or `-q`.
# The model is named explicitly (MODEL, default the bundled ctsam3d-lite-wb): without --model,
# evaluate uses the default model, which is the released CT-SAM3D weights once
# `ctsam3d download` has installed them.
#
# MODEL_ROWS_ONLY=1 docs/results/regenerate.sh recomputes only the model rows (model, model-noexp)
# and carries the baselines' rows (random walker, region growing: they use neither the session
# nor the weights) over from the committed reports with merge_rows.py, which checks that data,
# protocol, cases and structures match. Use it after a change to the session or the weights;
# run without it after a change to the evaluation protocol, the data or the baselines.
#
# JOBS=N runs N evaluations side by side (default 2, one PyTorch thread each).
set -euo pipefail
cd "$(dirname "$0")/../.."
# One PyTorch thread per process: on a busy 2-core machine two threads spin-wait (one OpenKBP
# case, 28 clicks: 19 s vs 1.4 s; training beside other processes: 10x slower).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
EXTRA=("$@")
METHODS="model,model-noexp,random-walker,region-growing"
BASELINES="random-walker,region-growing"
MODEL="${MODEL:-ctsam3d-lite-wb}"
JOBS="${JOBS:-2}"
CMD="docs/results/regenerate.sh ${EXTRA[*]}"
if [ "${MODEL_ROWS_ONLY:-0}" = 1 ]; then CMD="MODEL_ROWS_ONLY=1 $CMD"; fi

running=0
spawn() {  # run "$@" in the background, at most JOBS at a time
  "$@" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
}

# every method (baselines merged from the committed report with MODEL_ROWS_ONLY=1)
full_set() {  # DATA CATALOGUE TITLE OUT
  local data=$1 catalogue=$2 title=$3 out=$4
  if [ "${MODEL_ROWS_ONLY:-0}" = 1 ] && [ -f "$out/report.json" ]; then
    local tmp
    tmp=$(mktemp -d)
    ctsam3d evaluate --data "$data" --format pairs --catalogue "$catalogue" \
      --model "$MODEL" --method model,model-noexp --clicks 10 --seed 0 --overwrite \
      --title "$title" -o "$tmp/report" "${EXTRA[@]}"
    python docs/results/merge_rows.py --new "$tmp/report" --base "$out" --keep "$BASELINES" -o "$out" \
      --command "$CMD"
    rm -rf "$tmp"
  else
    ctsam3d evaluate --data "$data" --format pairs --catalogue "$catalogue" \
      --model "$MODEL" --method "$METHODS" --clicks 10 --seed 0 --overwrite \
      --title "$title" -o "$out" "${EXTRA[@]}"
  fi
}

# Manual organs at risk, OpenKBP validation split (33 head-and-neck CTs).
spawn full_set ../shared/data/openkbp/validation openkbp \
  "OpenKBP validation (manual contours), $MODEL" docs/results/openkbp_validation

# Thoraco-abdominal CT never trained on (TotalSegmentator's DICOM example, the aorta and
# pulmonary-artery crops): agreement with TotalSegmentator's labels (model output, not manual).
# TotalSegmentator's example_ct.nii.gz is NOT here: the whole-body model was trained on it.
spawn full_set docs/results/manifests/wholebody_heldout.json totalseg_v2 \
  "Thoraco-abdominal held-out set (agreement with TotalSegmentator), $MODEL" docs/results/wholebody_heldout

# One 2D box, lasso or scribble as interaction 1, then clicks (docs/prompts.md); the click row
# of the same comparison is the model row of the two reports above.
for prompt in box2d lasso scribble; do
  spawn ctsam3d evaluate --data ../shared/data/openkbp/validation --format pairs --catalogue openkbp \
    --model "$MODEL" --method model --clicks 3 --seed 0 --first-prompt "$prompt" --overwrite \
    --title "OpenKBP validation, first prompt: $prompt, $MODEL" -o "docs/results/prompts/okbp33_$prompt" "${EXTRA[@]}"
  spawn ctsam3d evaluate --data docs/results/manifests/wholebody_heldout.json --format pairs --catalogue totalseg_v2 \
    --model "$MODEL" --method model --clicks 3 --seed 0 --first-prompt "$prompt" --overwrite \
    --title "Thoraco-abdominal held-out set, first prompt: $prompt, $MODEL" -o "docs/results/prompts/heldout_$prompt" "${EXTRA[@]}"
done
# One lasso on the largest coronal / sagittal slice instead: anatomical planes, found for each image
# from its direction (OpenKBP volumes are stored P, L, I: their sagittal slices are normal to array
# axis 1, the held-out LPS CTs' to array axis 2).
for name in coronal sagittal; do
  spawn ctsam3d evaluate --data ../shared/data/openkbp/validation --format pairs --catalogue openkbp \
    --model "$MODEL" --method model --clicks 3 --seed 0 --first-prompt lasso --prompt-axis "$name" --overwrite \
    --title "OpenKBP validation, first prompt: lasso ($name), $MODEL" -o "docs/results/prompts/okbp33_lasso_$name" "${EXTRA[@]}"
  spawn ctsam3d evaluate --data docs/results/manifests/wholebody_heldout.json --format pairs --catalogue totalseg_v2 \
    --model "$MODEL" --method model --clicks 3 --seed 0 --first-prompt lasso --prompt-axis "$name" --overwrite \
    --title "Thoraco-abdominal held-out set, first prompt: lasso ($name), $MODEL" -o "docs/results/prompts/heldout_lasso_$name" "${EXTRA[@]}"
done
wait

# Per-region / per-family tables (model card): printed, and kept beside the reports.
python -m ctsam3d.evaluation.by_region docs/results/wholebody_heldout/report.csv > docs/results/wholebody_heldout/by_region.md
python -m ctsam3d.evaluation.by_region docs/results/openkbp_validation/report.csv > docs/results/openkbp_validation/by_region.md
