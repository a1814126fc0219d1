#!/usr/bin/env bash
# Regenerate the committed evaluation reports in docs/results/ (needs ../shared/data and the
# bundled starter model). Extra arguments go to every `ctsam3d evaluate` call, e.g. `-d cuda`
# or `--method random-walker,region-growing` for the baselines alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
METHODS="model,model-noexp,random-walker,region-growing"

# Manual organs at risk, OpenKBP validation split (33 head-and-neck CTs).
ctsam3d evaluate --data ../shared/data/openkbp/validation --format pairs --catalogue openkbp \
  --method "$METHODS" --clicks 10 --seed 0 --overwrite \
  --title "OpenKBP validation (manual contours)" -o docs/results/openkbp_validation "$@"

# TotalSegmentator example CTs: labels are TotalSegmentator output, so this is agreement
# with TotalSegmentator, not accuracy against manual ground truth.
ctsam3d evaluate --data docs/results/manifests/totalseg_examples.json --format pairs --catalogue totalseg_v2 \
  --method "$METHODS" --clicks 10 --seed 0 --overwrite \
  --title "Agreement with TotalSegmentator (its example CTs)" -o docs/results/totalseg_agreement "$@"

# The second bundled model, ctsam3d-lite-torso (the starter fine-tuned with synthetic
# thoraco-abdominal CT and pseudo-structures; docs/model_card.md): same data, model rows only.
ctsam3d evaluate --data ../shared/data/openkbp/validation --format pairs --catalogue openkbp \
  --model ctsam3d-lite-torso --method model,model-noexp --clicks 10 --seed 0 --overwrite \
  --title "OpenKBP validation (manual contours), ctsam3d-lite-torso" -o docs/results/openkbp_validation_torso "$@"
ctsam3d evaluate --data docs/results/manifests/totalseg_examples.json --format pairs --catalogue totalseg_v2 \
  --model ctsam3d-lite-torso --method model,model-noexp --clicks 10 --seed 0 --overwrite \
  --title "Agreement with TotalSegmentator (its example CTs), ctsam3d-lite-torso" -o docs/results/totalseg_agreement_torso "$@"
