#!/usr/bin/env bash
# The demo on the default model: set up (scripts/setup.sh), scan SmolLM2-135M-Instruct for massive
# activations, then show a plain and a steered greedy generation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
tiller=.build/release/tiller
out=${TILLER_DEMO_DIR:-demo-output}
mkdir -p "$out"
$tiller models list
echo
echo "== Phase 1: massive-activation scan (SmolLM2-135M-Instruct, shipped calibration set)"
$tiller scan --model smollm2-135m-instruct --out "$out/scan.json"
echo
echo "== Generation (greedy, chat template)"
$tiller generate --model smollm2-135m-instruct --chat --prompt "Give me three tips for a good night's sleep." --max-tokens 48
echo
echo "Scan written to $out/scan.json, $out/scan.md and $out/scan.svg"
