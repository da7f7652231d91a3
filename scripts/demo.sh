#!/usr/bin/env bash
# The demo: set up (scripts/setup.sh: release build, default models), then run a small real
# experiment from experiments/demo.yaml — a steering experiment on SmolLM2-135M-Instruct, refusal
# trait: massive-activation scan, extraction, probe/mean_diff with preclean/postclean variants,
# a steering sweep (layers × coefficients relative to the layer norm), local judge, selection —
# ending with the summary table and the report's path. Rerunning resumes (every stage is cached);
# TILLER_DEMO_DIR picks the output folder (default demo-output/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
tiller=.build/release/tiller
out=${TILLER_DEMO_DIR:-demo-output}
start=$(date +%s)
$tiller run experiments/demo.yaml --out "$out"
echo "Demo finished in $(( $(date +%s) - start ))s. Open $out/report.html in a browser."
