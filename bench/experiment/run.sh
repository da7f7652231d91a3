#!/usr/bin/env bash
# The demo experiment (or FILE) with the shared prefix (layers and the prompts' common head) off, then on (TILLER_SHARED_PREFIX=0/1),
# back to back in fresh output folders: each stage's seconds and the ratio off/on, then the checks
# that sharing changes no result (every stored metric within 1e-5 relative, every other table and
# report.json identical). On a CPU with the packed kernel (AVX-512) the metrics are bit-identical:
# the count of values that are not is printed. Needs a release build (scripts/setup.sh).
#   bench/experiment/run.sh [FILE] [OUT_DIR]
# TILLER_BIN picks another binary (e.g. a build of an earlier commit, for comparing its report).
set -euo pipefail
cd "$(dirname "$0")/../.."
file=${1:-experiments/demo.yaml}
out=${2:-bench-experiment-output}
tiller=${TILLER_BIN:-.build/release/tiller}
[ -x "$tiller" ] || swift build -c release --product tiller
for mode in off on; do
    rm -rf "$out/$mode"
    flag=0; [ "$mode" = on ] && flag=1
    start=$(date +%s.%N)
    TILLER_SHARED_PREFIX=$flag "$tiller" run "$file" --out "$out/$mode" --no-progress 2> "$out.$mode.log" || { cat "$out.$mode.log"; exit 1; }
    echo "sharing $mode: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)") s wall"
done
python3 - "$out/off" "$out/on" <<'PY'
import json, sqlite3, sys
off, on = sys.argv[1], sys.argv[2]
def q(d, sql): return sqlite3.connect(f"{d}/results.sqlite").execute(sql).fetchall()
a = dict(q(off, "SELECT name, seconds FROM stages")); b = dict(q(on, "SELECT name, seconds FROM stages"))
print(f"{'stage':52} {'off s':>8} {'on s':>8} {'off/on':>7}")
for name in sorted(set(a) | set(b), key=lambda n: (n.split()[0], n)):
    x, y = a.get(name), b.get(name)
    r = f"{x / y:7.2f}" if x and y else "      –"
    print(f"{name[:52]:52} {x if x is not None else float('nan'):8.1f} {y if y is not None else float('nan'):8.1f} {r}")
n = {tuple(k): v for *k, v in q(on, "SELECT config_id, evaluator, item, value FROM metrics")}
m = {tuple(k): v for *k, v in q(off, "SELECT config_id, evaluator, item, value FROM metrics")}
assert m.keys() == n.keys(), "the two runs stored different metric rows"
worst = max((abs(m[k] - n[k]) / max(abs(m[k]), 1e-12) for k in m), default=0.0)
differ = sum(m[k] != n[k] for k in m)
print(f"metrics: {len(m)} values, {differ} not bit-identical, worst relative difference {worst:.2e} (bound 1e-5)")
ok = worst <= 1e-5
for table in ["configurations", "generations", "scores", "validations"]:
    cols = {"generations": "config_id, question, sample, response", "scores": "*", "configurations": "*", "validations": "model, trait, instrument, check_name, value, n, threshold"}[table]
    if q(off, f"SELECT {cols} FROM {table} ORDER BY 1, 2, 3") != q(on, f"SELECT {cols} FROM {table} ORDER BY 1, 2, 3"):
        print(f"{table}: DIFFERENT"); ok = False
same = open(f"{off}/report.json").read() == open(f"{on}/report.json").read()
print("report.json: identical" if same else "report.json: DIFFERENT"); ok = ok and same
sys.exit(0 if ok else 1)
PY
