#!/usr/bin/env bash
# Packs a built `tiller` for a machine without a Swift toolchain (bench/gpu/run.sh unpacks it):
# the binary stripped, its SwiftPM resource bundles (shipped traits, prompts, calibration texts),
# and every shared library it links outside glibc (the Swift runtime and Foundation from the
# toolchain, libsqlite3, libcurl and their dependencies, libstdc++), xz-compressed into one archive.
# The Vulkan loader is not linked (Tiller opens libvulkan.so.1 at run time) and is not packed: the
# GPU machine's driver provides it (see bench/gpu/README.md when it does not).
#   bench/gpu/package.sh [BINARY] [ARCHIVE]
#     BINARY   default .build/release/tiller (swift build -c release --product tiller)
#     ARCHIVE  default bench/gpu/dist/tiller-linux-x86_64.tar.xz
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-.build/release/tiller}
archive=${2:-bench/gpu/dist/tiller-linux-x86_64.tar.xz}
[ -x "$bin" ] || { echo "error: $bin is not an executable: build it with swift build -c release --product tiller, or pass its path" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/tiller/bin" "$stage/tiller/lib" "$(dirname "$archive")"
cp "$bin" "$stage/tiller/bin/tiller"
strip "$stage/tiller/bin/tiller"
# Bundle.module looks for the resource bundles next to the executable.
for r in "$(dirname "$bin")"/*.resources; do
    case "$(basename "$r")" in *Tests.resources) continue ;; esac
    [ -d "$r" ] && cp -r "$r" "$stage/tiller/bin/"
done
# Everything ldd resolves except glibc itself (libc, libm, libdl, libpthread, librt, libresolv,
# the dynamic loader), which every Linux machine has and which must match its kernel.
ldd "$bin" | awk '/=> \// { print $3 }' | while read -r lib; do
    case "$(basename "$lib")" in
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|ld-linux*) continue ;;
    esac
    cp -L "$lib" "$stage/tiller/lib/"
done
strip --strip-unneeded "$stage/tiller/lib/"*.so* 2>/dev/null || true
LD_LIBRARY_PATH="$stage/tiller/lib" "$stage/tiller/bin/tiller" --help >/dev/null || { echo "error: the packed tiller does not start" >&2; exit 1; }
XZ_OPT=-9 tar -C "$stage" -cJf "$archive" tiller
echo "$archive: $(du -h "$archive" | cut -f1) ($(ls "$stage/tiller/lib" | wc -l) libraries, $(ls -d "$stage"/tiller/bin/*.resources 2>/dev/null | wc -l) resource bundles)"
