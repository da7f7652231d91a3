#!/usr/bin/env bash
# Tiller beside llama.cpp and transformers, same GGUF, same thread count, and the machine's
# measured sgemm and memory-bandwidth limits; prints one table with the ratios. Not part of CI.
#   bench/peers/run.sh [THREADS]                 SmolLM2-135M Q4_1, plus the random-weight
#                                                checkpoints of bench/peers/random_checkpoints.py when present
#   MODELS="path/a.gguf path/b.gguf" bench/peers/run.sh 2
#   ROUNDS=5 bench/peers/run.sh 2                rounds (default 3)
# The machines this runs on drift by ±15% over minutes, so one Tiller run and one llama.cpp run
# a few minutes apart can put a ratio anywhere in a 30% band. Each round therefore measures the
# limits, then per model each Tiller workload right after (or before) llama.cpp's, and the table
# gives each ratio's median over the rounds, its range and every round's value (a ratio is
# taken within a round, never across).
# Needs cmake (llama.cpp is built by bench/peers/build_llamacpp.sh into $TILLER_HOME/bench) and,
# for the transformers column, pip install torch==2.13.0+cpu transformers gguf accelerate
# (NO_TRANSFORMERS=1 skips it; it is skipped by default for models above 1 GB, and runs in the
# first round only).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-2}
rounds=${ROUNDS:-3}
home=${TILLER_HOME:-$HOME/.cache/tiller}
tiller=.build/release/tiller
[ -x "$tiller" ] || swift build -c release --product tiller 2>&1 | grep -E "error" || true
bin=$(bash bench/peers/build_llamacpp.sh)
models=${MODELS:-"$home/models/SmolLM2-135M-Instruct.Q4_1.gguf $(ls "$home"/bench/random/*.gguf 2>/dev/null | tr '\n' ' ')"}
out=$(mktemp -d)
# The read-bandwidth limit (batch-1 decode's), built once into the cache with the system compiler.
bw=$home/bench/bandwidth
if [ ! -x "$bw" ] || [ bench/peers/bandwidth.c -nt "$bw" ]; then
    cc -O2 -march=native -pthread bench/peers/bandwidth.c -o "$bw"
fi
for round in $(seq 1 "$rounds"); do
    dir="$out/round$round"
    mkdir -p "$dir"
    python3 bench/peers/sgemm_limit.py --threads "$threads" > "$dir/sgemm.json"
    "$bw" "$threads" > "$dir/bandwidth.json"
    for m in $models; do
        name=$(basename "$m" .gguf)
        echo "== round $round/$rounds: $name ($threads threads)" >&2
        # Each workload right after its peer's, so that a pair is a minute apart, not several.
        tb() { TILLER_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$tiller" bench --model "$m" --workload "$1" --json > "$dir/$name.tiller.$1.json"; }
        tb decode
        "$bin/llama-bench" -m "$m" -t "$threads" -p 0 -n 64 -r 2 -o json > "$dir/$name.bench.tg.json" 2>/dev/null
        tb generate
        # 32 sequences × 64 new tokens after 16-token prompts, as `tiller bench`'s generate workload.
        "$bin/llama-batched-bench" -m "$m" -t "$threads" -tb "$threads" -c 4096 -b 2048 -ub 512 -npp 16 -ntg 64 -npl 32 -pps --output-format jsonl \
            > "$dir/$name.batched.jsonl" 2>/dev/null || true
        tb capture
        "$bin/llama-bench" -m "$m" -t "$threads" -p 512 -n 0 -r 2 -o json > "$dir/$name.bench.pp.json" 2>/dev/null
        size=$(stat -c %s "$m")
        if [ "$round" = 1 ] && [ "${NO_TRANSFORMERS:-0}" != 1 ] && [ "$size" -lt 1000000000 ] && python3 -c "import torch, transformers" 2>/dev/null; then
            python3 bench/engine/transformers_bench.py --gguf "$m" --threads "$threads" > "$dir/$name.transformers.json" 2>/dev/null || true
        fi
    done
done
python3 bench/peers/table.py "$out" $models
