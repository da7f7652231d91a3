#!/usr/bin/env bash
# Tiller beside llama.cpp and transformers, one run, same GGUF, same thread count, and the
# machine's measured sgemm limit; prints one table with the ratios. Not part of CI.
#   bench/peers/run.sh [THREADS]                 SmolLM2-135M Q4_1, plus the random-weight
#                                                checkpoints of bench/peers/random_checkpoints.py when present
#   MODELS="path/a.gguf path/b.gguf" bench/peers/run.sh 2
# Needs cmake (llama.cpp is built by bench/peers/build_llamacpp.sh into $TILLER_HOME/bench) and,
# for the transformers column, pip install torch==2.13.0+cpu transformers gguf accelerate
# (NO_TRANSFORMERS=1 skips it; it is skipped by default for models above 1 GB).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-2}
home=${TILLER_HOME:-$HOME/.cache/tiller}
tiller=.build/release/tiller
[ -x "$tiller" ] || swift build -c release --product tiller 2>&1 | grep -E "error" || true
bin=$(bash bench/peers/build_llamacpp.sh)
models=${MODELS:-"$home/models/SmolLM2-135M-Instruct.Q4_1.gguf $(ls "$home"/bench/random/*.gguf 2>/dev/null | tr '\n' ' ')"}
out=$(mktemp -d)
python3 bench/peers/sgemm_limit.py --threads "$threads" > "$out/sgemm.json"
for m in $models; do
    name=$(basename "$m" .gguf)
    echo "== $name ($threads threads)" >&2
    TILLER_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$tiller" bench --model "$m" --json > "$out/$name.tiller.json"
    "$bin/llama-bench" -m "$m" -t "$threads" -p 512 -n 64 -r 2 -o json > "$out/$name.bench.json" 2>/dev/null
    # 32 sequences × 64 new tokens after 16-token prompts, as `tiller bench`'s generate workload.
    "$bin/llama-batched-bench" -m "$m" -t "$threads" -tb "$threads" -c 4096 -b 2048 -ub 512 -npp 16 -ntg 64 -npl 1,32 -pps --output-format jsonl \
        > "$out/$name.batched.jsonl" 2>/dev/null || true
    size=$(stat -c %s "$m")
    if [ "${NO_TRANSFORMERS:-0}" != 1 ] && [ "$size" -lt 1000000000 ] && python3 -c "import torch, transformers" 2>/dev/null; then
        python3 bench/engine/transformers_bench.py --gguf "$m" --threads "$threads" > "$out/$name.transformers.json" 2>/dev/null || true
    fi
done
python3 bench/peers/table.py "$out" $models
