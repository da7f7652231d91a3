#!/usr/bin/env bash
# Tiller on a GPU beside transformers on CUDA (fp32 and bf16), for a machine with an NVIDIA GPU,
# no Swift toolchain and no network: everything it needs travels with the repository tree.
#   bench/gpu/run.sh [ARCHIVE]     ARCHIVE: bench/gpu/package.sh's output (default
#                                  bench/gpu/dist/tiller-linux-x86_64.tar.xz), unpacked into bench/gpu/work/
#   TILLER=path/to/tiller          use that binary instead of an archive
#   SMOKE=1 TILLER=.build/debug/tiller bench/gpu/run.sh
#                                  every step at toy shapes (random_checkpoints.py --tiny), Tiller on
#                                  vulkan:0 (lavapipe where there is no GPU), transformers on the CPU:
#                                  checks the script end to end on a build machine; its figures mean nothing
#   BUDGET=480                     seconds for the whole run (SMOKE: 900); every step has a timeout within it
#   DEVICE=vulkan:N                the Tiller device (default: the first discrete GPU `tiller devices` lists)
# Steps, each guarded by a timeout, most important first (the targets are on the 2B shape):
#   tiller devices; random-weight Gemma-2-2B and Llama-3.2-1B shapes as bf16 HF directories
#   (bench/peers/random_checkpoints.py: torch on CUDA when present, else numpy); per shape
#   `tiller bench` (capture 32 × 512 tokens at every layer; steered generation 64 × 128 new tokens;
#   batch-1 decode of 128) and bench/engine/transformers_bench.py on the same workloads in fp32
#   and bf16; `tiller run bench/gpu/grid-2b.yaml --plan` on the 2B shape; then one table of
#   throughputs and ratios, and the whole script's time.
# Vulkan loader: Tiller opens libvulkan.so.1 at run time. The NVIDIA driver's container images do
# not always ship the loader; then carry it as Debian packages in .gl/ (the device README's recipe:
# apt-get download libvulkan1 … into .gl/ on the build machine, carry .gl), and this script
# unpacks them (dpkg -x into /, then ldconfig) before anything else. When the loader finds no
# driver, it retries with VK_DRIVER_FILES set to the NVIDIA ICD file the image provides.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
t_start=$(date +%s)
smoke=${SMOKE:-0}
# SMOKE's plan calibrates on lavapipe, where the teacher-forced metrics' many small submits take minutes.
budget=${BUDGET:-$([ "$smoke" = 1 ] && echo 900 || echo 480)}
plan_cap=$([ "$smoke" = 1 ] && echo 420 || echo 90)
work=$root/bench/gpu/work
res=$work/results
archive=${1:-bench/gpu/dist/tiller-linux-x86_64.tar.xz}
if [ -z "${TILLER:-}" ] && [ ! -f "$archive" ]; then
    echo "error: $archive is missing: run bench/gpu/package.sh on the build machine and carry it (or set TILLER)"
    exit 1
fi
mkdir -p "$work"
rm -rf "$res"
mkdir -p "$res"
# Step lines go to fd 3, the terminal's stdout, also from steps whose stdout is a results file.
exec 3>&1
say() { printf '%s\n' "$*" >&3; }
# guard NAME CAP CMD…: CMD under a timeout of CAP seconds, less when the budget's end is nearer;
# prints how it ended. Steps after the budget is spent are skipped, and the table says so.
guard() {
    local name=$1 cap=$2
    shift 2
    local left=$((t_start + budget - $(date +%s)))
    local t=$((cap < left ? cap : left))
    if [ "$t" -lt 10 ]; then say "[$name] skipped: the ${budget}s budget is spent"; return 124; fi
    local s=$(date +%s) rc
    timeout -k 5 "$t" "$@"
    rc=$?
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        say "[$name] TIMED OUT after ${t}s"
    else
        say "[$name] exit $rc after $(($(date +%s) - s))s"
    fi
    return $rc
}

say "== bench/gpu/run.sh $( [ "$smoke" = 1 ] && echo "SMOKE (toy shapes, transformers on the CPU: no figure here means anything)" ) — $(date -u '+%F %T') UTC, $(nproc) cores"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# --- Vulkan loader -------------------------------------------------------------------------------
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    if ls .gl/*.deb >/dev/null 2>&1; then
        say "no libvulkan.so.1 in ldconfig -p: unpacking the carried loader packages in .gl/"
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    else
        say "no libvulkan.so.1 in ldconfig -p, and no .gl/*.deb carried: Tiller cannot reach the GPU"
        say "  (carry the loader: see bench/gpu/README.md, 'No Vulkan loader')"
    fi
fi

# --- Tiller ------------------------------------------------------------------------------------
if [ -n "${TILLER:-}" ]; then
    tiller_bin=$(readlink -f "$TILLER")
    libs=""
else
    rm -rf "$work/tiller"
    if command -v xz >/dev/null; then
        tar -C "$work" -xJf "$archive"
    else  # no xz binary: Python's lzma reads it
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$work"
    fi || { say "error: cannot unpack $archive"; exit 1; }
    tiller_bin=$work/tiller/bin/tiller
    libs=$work/tiller/lib
fi
# A wrapper, so that the carried libraries reach tiller alone (never torch).
tiller=$work/tiller.sh
printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' "$libs" "$tiller_bin" > "$tiller"
chmod +x "$tiller"

say "== tiller devices"
guard devices 30 "$tiller" devices | tee "$res/devices.txt"
first_gpu() { awk '/^vulkan:/ { id = $1 } /^ *type discrete/ && id { print id; exit }' "$res/devices.txt"; }
gpu=$(first_gpu)
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "$gpu" ] && [ "$smoke" != 1 ] && [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ]; then
    say "no discrete GPU listed: retrying with VK_DRIVER_FILES=$nvidia_icd"
    export VK_DRIVER_FILES=$nvidia_icd
    guard devices 30 "$tiller" devices | tee "$res/devices.txt"
    gpu=$(first_gpu)
fi
if [ -n "${DEVICE:-}" ]; then
    device=$DEVICE
elif [ -n "$gpu" ]; then
    device=$gpu
else
    device=vulkan:0
    [ "$smoke" = 1 ] || say "no discrete GPU in the list above: Tiller runs on vulkan:0, whatever it is"
fi
say "Tiller device: $device"

# --- Python side -------------------------------------------------------------------------------
torch_state=$(python3 -c 'import torch; print(torch.__version__, "cuda" if torch.cuda.is_available() else "no-cuda")' 2>/dev/null)
tf_state=$(python3 -c 'import transformers; print(transformers.__version__)' 2>/dev/null)
tf_device=""
if [ -z "$torch_state" ]; then
    say "torch is not installed (and this machine cannot install it): the transformers columns are skipped"
elif [ -z "$tf_state" ]; then
    say "torch $torch_state, but transformers is not installed: the transformers columns are skipped"
elif [ "$smoke" = 1 ]; then
    tf_device=cpu
    say "torch $torch_state, transformers $tf_state: transformers runs on the CPU (SMOKE)"
elif [ "${torch_state#* }" = cuda ]; then
    tf_device=cuda
    say "torch $torch_state, transformers $tf_state: transformers runs on CUDA"
else
    say "torch $torch_state has no CUDA device: the transformers columns are skipped (the CPU would not finish in time)"
fi

# --- Checkpoints -------------------------------------------------------------------------------
shapes="gemma-2-2b llama-3.2-1b"
tiny=$([ "$smoke" = 1 ] && echo --tiny)
say "== random-weight checkpoints ($shapes${tiny:+, tiny}) in $work"
guard checkpoints 150 python3 bench/peers/random_checkpoints.py --out "$work" --no-gguf $tiny $shapes
# The plan tokenizes the trait's questions: a small Gemma-2-style tokenizer (a test fixture).
cp Tests/TillerTokenizersTests/Fixtures/styles/gemma2/tokenizer.json Tests/TillerTokenizersTests/Fixtures/styles/gemma2/tokenizer_config.json "$work/gemma-2-2b/" 2>/dev/null

# --- Workloads ---------------------------------------------------------------------------------
if [ "$smoke" = 1 ]; then
    cap_p=4 cap_t=32 gen_p=4 new=8 repeats=1 threads=2
else
    cap_p=32 cap_t=512 gen_p=64 new=128 repeats=2 threads=$(nproc)
fi
say "workloads: capture ${cap_p} × ${cap_t} tokens (every layer), steered generation ${gen_p} × ${new} new tokens, batch-1 decode ${new} new tokens; best of ${repeats}"
tf() {  # tf SHAPE DTYPE
    [ -n "$tf_device" ] || return 0
    local m=$work/$1
    guard "transformers $2 $1 capture" 60 python3 bench/engine/transformers_bench.py --model-dir "$m" --device "$tf_device" --dtype "$2" \
        --threads "$threads" --repeats "$repeats" --capture-without-head --workload capture --prompts "$cap_p" --tokens "$cap_t" \
        > "$res/$1.tf-$2.capture.json" 2> "$res/$1.tf-$2.capture.err" || tail -3 "$res/$1.tf-$2.capture.err"
    guard "transformers $2 $1 generate+decode" 75 python3 bench/engine/transformers_bench.py --model-dir "$m" --device "$tf_device" --dtype "$2" \
        --threads "$threads" --repeats "$repeats" --workload generate --workload decode --prompts "$gen_p" --new-tokens "$new" \
        > "$res/$1.tf-$2.generate.json" 2> "$res/$1.tf-$2.generate.err" || tail -3 "$res/$1.tf-$2.generate.err"
}
tb() {  # tb SHAPE
    local m=$work/$1
    guard "tiller $1 capture" 60 "$tiller" bench --device "$device" --model "$m" --json --repeats "$repeats" --workload capture \
        --prompts "$cap_p" --tokens "$cap_t" > "$res/$1.tiller.capture.json" 2> "$res/$1.tiller.capture.err" || tail -3 "$res/$1.tiller.capture.err"
    guard "tiller $1 generate+decode" 75 "$tiller" bench --device "$device" --model "$m" --json --repeats "$repeats" --workload generate \
        --workload decode --prompts "$gen_p" --new-tokens "$new" > "$res/$1.tiller.generate.json" 2> "$res/$1.tiller.generate.err" \
        || tail -3 "$res/$1.tiller.generate.err"
}
plan() {
    say "== tiller run bench/gpu/grid-2b.yaml --plan --device $device"
    guard "plan" "$plan_cap" "$tiller" run bench/gpu/grid-2b.yaml --plan --device "$device" 2>&1 | tee "$res/plan.txt"
}
for shape in $shapes; do
    [ -f "$work/$shape/model.safetensors" ] || { say "== $shape: no checkpoint, skipped"; continue; }
    say "== $shape"
    tb "$shape"
    tf "$shape" float32
    tf "$shape" bfloat16
    [ "$shape" = gemma-2-2b ] && plan
done

# --- Table -------------------------------------------------------------------------------------
python3 - "$res" "$shapes" "$(($(date +%s) - t_start))" "$device" <<'PY'
import json, os, sys
res, shapes, seconds, device = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4]
def load(name):
    try:
        with open(os.path.join(res, name)) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return {}
rows = [("capture (tok/s)", "capture", "capture_tokens_per_second"),
        ("steered generate (new tok/s)", "generate", "generate_new_tokens_per_second"),
        ("batch-1 decode (tok/s)", "generate", "decode_tokens_per_second")]
def fmt(x): return f"{x:10.1f}" if x is not None else f"{'–':>10}"
def ratio(a, b): return f"{a / b:8.2f}×" if a is not None and b else f"{'–':>9}"
print(f"\n{'shape':13} {'workload':29} {'tiller':>10} {'tf fp32':>10} {'tf bf16':>10} {'T/fp32':>9} {'T/bf16':>9}")
for s in shapes:
    for label, file, key in rows:
        t = load(f"{s}.tiller.{file}.json").get(key)
        f32 = load(f"{s}.tf-float32.{file}.json").get(key)
        b16 = load(f"{s}.tf-bfloat16.{file}.json").get(key)
        print(f"{s:13} {label:29} {fmt(t)} {fmt(f32)} {fmt(b16)} {ratio(t, f32)} {ratio(t, b16)}")
for s in shapes:
    info = load(f"{s}.tf-float32.capture.json") or load(f"{s}.tf-bfloat16.capture.json")
    if info:
        print(f"{s}: transformers {info.get('transformers')} on torch {info.get('torch')}, {info.get('device')}, attention {info.get('attn_implementation')}")
print(f"tiller on {device}; '–' = not run, failed or timed out (see the step lines above and bench/gpu/work/results/*.err)")
print(f"whole script: {seconds} s")
PY
