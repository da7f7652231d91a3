#!/usr/bin/env bash
# Load benchmark for `tiller serve`: N concurrent greedy chat requests (curl), with batching
# (--max-batch 32) and without (--max-batch 1); prints requests/s for each. Loopback only.
#   bench/serve/run.sh [model] [requests] [max_tokens]
set -euo pipefail
MODEL=${1:-smollm2-135m-instruct}
N=${2:-32}
MAXTOK=${3:-8}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
swift build -c release --package-path "$ROOT" --product tiller >/dev/null
BIN="$ROOT/.build/release/tiller"
PORT=$((20000 + RANDOM % 20000))
for BATCH in 32 1; do
  "$BIN" serve --model "$MODEL" --port "$PORT" --max-batch "$BATCH" --batch-window-ms 10 2>/dev/null &
  PID=$!
  trap 'kill $PID 2>/dev/null || true' EXIT
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break; sleep 0.5; done
  START=$(date +%s.%N)
  seq 1 "$N" | xargs -P "$N" -I{} curl -sf -o /dev/null "http://127.0.0.1:$PORT/v1/chat/completions" \
    -H 'Content-Type: application/json' \
    -d "{\"messages\":[{\"role\":\"user\",\"content\":\"Name one animal that starts with the letter {}.\"}],\"max_tokens\":$MAXTOK,\"temperature\":0}"
  END=$(date +%s.%N)
  kill $PID; wait $PID 2>/dev/null || true
  python3 -c "import sys; n=$N; t=$END-$START; print(f'max-batch $BATCH: {n} requests in {t:.2f}s = {n/t:.2f} req/s')"
done
