#!/usr/bin/env bash
# Tiller vs transformers (torch CPU, fp32) on the same workloads, same machine, same thread count,
# in one run; prints both throughputs and the ratio. Needs a release build (scripts/setup.sh) and
# pip install torch==2.13.0+cpu transformers gguf accelerate.
#   bench/engine/run.sh [MODEL_NAME] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:-smollm2-135m-instruct}
threads=${2:-2}
tiller=.build/release/tiller
[ -x "$tiller" ] || swift build -c release --product tiller
case "$model" in
    smollm2-135m-instruct) file=SmolLM2-135M-Instruct.Q4_1.gguf ;;
    gemma-3-270m) file=gemma-3-270m-q4_k_m.gguf ;;
    *) echo "unknown model $model (smollm2-135m-instruct or gemma-3-270m)"; exit 1 ;;
esac
gguf="${TILLER_HOME:-$HOME/.cache/tiller}/models/$file"
[ -f "$gguf" ] || { echo "$gguf missing: run scripts/setup.sh"; exit 1; }
echo "model $model ($gguf), $threads threads"
mine=$(TILLER_THREADS=$threads OPENBLAS_NUM_THREADS=$threads $tiller bench --model "$model" --json)
theirs=$(python3 bench/engine/transformers_bench.py --gguf "$gguf" --threads "$threads")
python3 - "$mine" "$theirs" <<'PY'
import json, sys
m, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rows = [("capture (32×64, all layers)", "capture_tokens_per_second", 2),
        ("generate (32×64 new, steered)", "generate_new_tokens_per_second", 3),
        ("decode batch-1 (tok/s)", "decode_tokens_per_second", 4)]
print(f"{'workload':34} {'tiller':>12} {'transformers':>13} {'ratio':>7}  goal")
for name, key, goal in rows:
    if key in m and key in t:
        r = m[key] / t[key]
        print(f"{name:34} {m[key]:12.1f} {t[key]:13.1f} {r:6.2f}×  ≥{goal}× {'ok' if r >= goal else 'MISSED'}")
print(f"load: tiller {m['load_seconds']:.2f}s, transformers {t['load_seconds']:.2f}s")
PY
