#!/usr/bin/env bash
# Regenerate the committed evaluation reports in docs/results/ (needs ../shared/data and the
# two bundled models). Extra arguments go to every `ctsam3d evaluate` call, e.g. `-d cuda` or `-q`.
# The models are named explicitly (`ctsam3d models`): without --model, evaluate uses the default
# model, which is the released CT-SAM3D weights once `ctsam3d download` has installed them.
set -euo pipefail
cd "$(dirname "$0")/../.."
METHODS="model,model-noexp,random-walker,region-growing"
STARTER=ctsam3d-lite-starter   # bundled, folder weights/ctsam3d-lite (the name ctsam3d-lite is the untrained preset)
TORSO=ctsam3d-lite-torso

# Manual organs at risk, OpenKBP validation split (33 head-and-neck CTs).
ctsam3d evaluate --data ../shared/data/openkbp/validation --format pairs --catalogue openkbp \
  --model "$STARTER" --method "$METHODS" --clicks 10 --seed 0 --overwrite \
  --title "OpenKBP validation (manual contours)" -o docs/results/openkbp_validation "$@"

# TotalSegmentator example CTs: labels are TotalSegmentator output, so this is agreement
# with TotalSegmentator, not accuracy against manual ground truth.
ctsam3d evaluate --data docs/results/manifests/totalseg_examples.json --format pairs --catalogue totalseg_v2 \
  --model "$STARTER" --method "$METHODS" --clicks 10 --seed 0 --overwrite \
  --title "Agreement with TotalSegmentator (its example CTs)" -o docs/results/totalseg_agreement "$@"

# The second bundled model, ctsam3d-lite-torso (the starter fine-tuned with synthetic
# thoraco-abdominal CT and pseudo-structures; docs/model_card.md): same data, model rows only.
ctsam3d evaluate --data ../shared/data/openkbp/validation --format pairs --catalogue openkbp \
  --model "$TORSO" --method model,model-noexp --clicks 10 --seed 0 --overwrite \
  --title "OpenKBP validation (manual contours), ctsam3d-lite-torso" -o docs/results/openkbp_validation_torso "$@"
ctsam3d evaluate --data docs/results/manifests/totalseg_examples.json --format pairs --catalogue totalseg_v2 \
  --model "$TORSO" --method model,model-noexp --clicks 10 --seed 0 --overwrite \
  --title "Agreement with TotalSegmentator (its example CTs), ctsam3d-lite-torso" -o docs/results/totalseg_agreement_torso "$@"
