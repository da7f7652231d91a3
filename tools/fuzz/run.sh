#!/usr/bin/env bash
# Fuzzes Tiller's parsers: ITERATIONS mutants (default 1,000,000) of each format's seeds
# (tools/fuzz/seeds) through the loader a user hits (tools/fuzz/main.swift). A mutant that crashes
# the process is kept under tools/fuzz/crashes/ and the run goes on after it. Not part of CI.
#   tools/fuzz/run.sh                       every format
#   FORMATS="gguf trait" ITERATIONS=20000 SEED=1 tools/fuzz/run.sh
# BUILD=debug uses the debug build (the engine targets are optimised in it too).
set -uo pipefail
cd "$(dirname "$0")/../.."
config=${BUILD:-release}
swift build -c "$config" --product tiller-fuzz 2>&1 | grep -E "error|warning: unre" || true
bin=.build/$config/tiller-fuzz
[ -x "$bin" ] || { echo "error: the build failed (no $bin)"; exit 1; }
# A copy runs, so that rebuilding meanwhile does not hit a busy executable.
copy=$(mktemp -d)/tiller-fuzz
cp "$bin" "$copy"
bin=$copy
n=${ITERATIONS:-1000000}
status=0
for f in ${FORMATS:-gguf safetensors tokenizer trait experiment chat completions}; do
    work=$(mktemp -d)
    start=0
    crashes=0
    t0=$(date +%s)
    while :; do
        "$bin" "$f" --iterations "$n" --start "$start" --seed "${SEED:-0}" --work "$work" >"$work/out.txt" 2>"$work/err.txt"
        rc=$?
        if [ $rc -le 2 ]; then
            [ $rc -eq 0 ] || status=1
            break
        fi
        # A crash (a signal): keep the mutant and its backtrace, then go on after it.
        i=$(od -An -t u8 -N8 "$work/iteration" | tr -d ' ')
        mkdir -p tools/fuzz/crashes
        input=$(ls "$work"/input.* "$work"/tok/tokenizer.json 2>/dev/null | head -n 1)
        cp "$input" "tools/fuzz/crashes/$f-$i.${input##*.}"
        cp "$work/err.txt" "tools/fuzz/crashes/$f-$i.txt"
        echo "$f: CRASH at iteration $i (tools/fuzz/crashes/$f-$i.*): $(grep -m1 -E 'Fatal error|error:' "$work/err.txt")"
        crashes=$((crashes + 1))
        status=1
        start=$((i + 1))
    done
    cat "$work/out.txt"
    echo "$f: $crashes crashes, $(( $(date +%s) - t0 )) s in all"
    rm -rf "$work"
done
exit $status
