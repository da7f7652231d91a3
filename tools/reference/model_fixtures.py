#!/usr/bin/env python3
"""Reference fixtures for the Swift engine's parity tests (TillerModelsTests).

Regenerate (CPU only, a few minutes; writes Tests/TillerModelsTests/Fixtures/):

    pip install torch==2.13.0+cpu transformers gguf accelerate \
        --extra-index-url https://download.pytorch.org/whl/cpu
    python3 tools/reference/model_fixtures.py            # everything
    python3 tools/reference/model_fixtures.py --only tiny  # tiny checkpoints only
    python3 tools/reference/model_fixtures.py --only tiny --arch qwen3 phi3  # some of them
    python3 tools/reference/model_fixtures.py --only real  # GGUF models only

Generated with torch 2.13.0+cpu, transformers 5.24.0, gguf 0.19.0. The two real models are read
from $TILLER_MODELS (default ~/.cache/tiller/models). CI runs no Python: the Swift tests only read
the committed outputs. Every schema is documented in Tests/TillerModelsTests/Fixtures/README.md.

Everything runs in float32 with eager attention so that the numbers are the plain math the Swift
engine implements (no SDPA/flash kernels, no bf16 rounding).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_common as mc  # noqa: E402
import model_tiny  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["tiny", "real"], default=None)
    ap.add_argument("--arch", nargs="*", default=None, help="tiny checkpoints to build (default: all)")
    ap.add_argument("--out", default=mc.FIXTURES)
    args = ap.parse_args()
    torch.set_num_threads(1)  # the build machine is shared; determinism does not need more
    os.makedirs(args.out, exist_ok=True)
    if args.only in (None, "tiny"):
        model_tiny.build_all(args.out, args.arch)
    if args.only in (None, "real"):
        import model_real  # imported lazily: needs the GGUF files
        model_real.build_all(args.out)
    total = 0
    for root, _, files in os.walk(args.out):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print(f"fixtures total: {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
