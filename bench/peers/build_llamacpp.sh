#!/usr/bin/env bash
# Builds llama.cpp's llama-bench and llama-batched-bench from the source vendored in the
# llama-cpp-python 0.3.36 sdist (fetched from PyPI's index as the file itself: `pip download
# --no-binary` stalls preparing its metadata), into $TILLER_HOME/bench (never into the
# repository). Prints the directory of the binaries. Rerunning reuses the build.
set -euo pipefail
version=0.3.36
home=${TILLER_HOME:-$HOME/.cache/tiller}
root=$home/bench/llama_cpp_python-$version
bin=$root/build/bin
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-batched-bench" ] && [ "${REBUILD:-0}" != 1 ]; then echo "$bin"; exit 0; fi
mkdir -p "$home/bench"
sdist=$home/bench/llama_cpp_python-$version.tar.gz
if [ ! -f "$sdist" ]; then
    index=${PIP_INDEX_URL:-https://pypi.org/simple}
    url=$(curl -fsSL "$index/llama-cpp-python/" | grep -o "href=\"[^\"]*llama_cpp_python-$version.tar.gz[^\"]*\"" | head -n 1 | sed -E 's/^href="//; s/"$//')
    [ -n "$url" ] || { echo "error: no llama_cpp_python-$version.tar.gz on $index" >&2; exit 1; }
    case "$url" in http*) ;; *) url="$index/llama-cpp-python/$url" ;; esac
    want=${url##*#sha256=}
    curl -fsSL -o "$sdist.partial" "${url%%#*}"
    got=$(sha256sum "$sdist.partial" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "error: sha256 of the sdist is $got, the index says $want" >&2; rm -f "$sdist.partial"; exit 1; }
    mv "$sdist.partial" "$sdist"
fi
if [ ! -d "$root/vendor/llama.cpp" ]; then
    tar -xzf "$sdist" -C "$home/bench"
fi
command -v cmake >/dev/null || { echo "error: cmake is needed (apt-get install cmake)" >&2; exit 1; }
# AMX tiles are left out: some VMs report AMX in cpuid and grant the tile permission, yet ggml's
# AMX kernels die there on SIGILL (ldtilecfg); Tiller uses AVX-512 but not AMX, so both sides of
# the comparison run the same instruction sets.
extra=""
if grep -q amx_tile /proc/cpuinfo 2>/dev/null; then extra="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; fi
cmake -S "$root/vendor/llama.cpp" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DCMAKE_C_FLAGS="$extra" -DCMAKE_CXX_FLAGS="$extra" >&2
cmake --build "$root/build" --target llama-bench llama-batched-bench -j "$(nproc)" >&2
echo "$bin"
