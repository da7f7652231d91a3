#!/usr/bin/env bash
# Tokenizer speed, Tiller beside transformers' fast (Rust) tokenizer, on the same ~1 MB of English text.
# The text is the docstrings of Python's standard library (English prose with some code), cut to 1 MB.
# Needs python3 with transformers and the default models in $TILLER_HOME/models (scripts/setup.sh).
# Usage: bench/tokenizer/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
models="${TILLER_HOME:-$HOME/.cache/tiller}/models"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$work" "$models" <<'PY'
import importlib, inspect, json, pkgutil, sys, time, warnings
warnings.filterwarnings("ignore")
work, models = sys.argv[1], sys.argv[2]
parts, size = [], 0
for name in sorted(m.name for m in pkgutil.iter_modules() if not m.name.startswith("_")):
    if name in ("antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo") or size > 1_000_000:
        continue
    try:
        mod = importlib.import_module(name)
    except Exception:
        continue
    for _, obj in inspect.getmembers(mod):
        doc = inspect.getdoc(obj) if (inspect.isfunction(obj) or inspect.isclass(obj)) else None
        if doc and len(doc) > 200:
            parts.append(doc)
            size += len(doc.encode()) + 2
text = "\n\n".join(parts).encode()[:1_000_000].decode("utf-8", "ignore")
open(f"{work}/text.txt", "w").write(text)
from transformers import AutoTokenizer
for short, name in (("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"), ("gemma3", "gemma-3-270m-q4_k_m.gguf")):
    t0 = time.perf_counter(); tok = AutoTokenizer.from_pretrained(models, gguf_file=name); load = time.perf_counter() - t0
    t0 = time.perf_counter(); ids = tok(text).input_ids; first = time.perf_counter() - t0
    t0 = time.perf_counter(); ids = tok(text).input_ids; second = time.perf_counter() - t0
    json.dump(ids, open(f"{work}/{short}.json", "w"))
    print(f"transformers {name}: load {load:.2f} s, encode {first:.3f} s first / {second:.3f} s again, {len(ids)} tokens")
PY

cd "$here"
swift build -c release --product TokenizerBench >/dev/null
"$here/.build/release/TokenizerBench" "$work/text.txt" \
    "$models/SmolLM2-135M-Instruct.Q4_1.gguf" "$work/smollm2.json" \
    "$models/gemma-3-270m-q4_k_m.gguf" "$work/gemma3.json"
