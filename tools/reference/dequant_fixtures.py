#!/usr/bin/env python3
"""Reference dequantization fixtures for Tests/TillerTensorTests (Dequantize.swift).

Regenerate (needs numpy and gguf-py; the real-row cases also need the two models that
scripts/setup.sh installs under $TILLER_HOME/models, default ~/.cache/tiller/models):

    python3 tools/reference/dequant_fixtures.py

Writes Tests/TillerTensorTests/Fixtures/dequant/:
    manifest.json       [{"name", "type", "count", "source"}]
    <name>.bin          raw stored bytes (blocks) of `count` elements
    <name>.f32          expected values, little-endian float32, from gguf.quants.dequantize —
                        the same code transformers runs when it loads a GGUF checkpoint.

Cases: random blocks of every supported type, with their f16 scale fields replaced by sane
values (random bytes there would give inf/nan scales), and a few real rows of the quantized
tensors found in the installed models.
"""
import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "TillerTensorTests", "Fixtures", "dequant")
MODELS = os.path.join(os.environ.get("TILLER_HOME", os.path.expanduser("~/.cache/tiller")), "models")

# Byte offsets of the f16 scale fields inside one block.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
# Fields that are a minimum/offset (may be negative); the others are positive scales in ggml.
SIGNED_FIELDS = {(T.Q4_1, 2), (T.Q5_1, 2)}

rng = np.random.default_rng(20240611)
cases = []


def write_case(name, qtype, raw, source):
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    values = dequantize(raw.copy(), qtype).astype("<f4").reshape(-1)
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(raw.tobytes())
    with open(os.path.join(OUT, name + ".f32"), "wb") as f:
        f.write(values.tobytes())
    cases.append({"name": name, "type": qtype.name, "count": int(values.size), "source": source})


def random_blocks(qtype, n_blocks):
    block, size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        mag = np.exp(rng.uniform(np.log(1e-4), np.log(0.5), size=n_blocks))
        if (qtype, off) in SIGNED_FIELDS:
            mag *= rng.choice([-1.0, 1.0], size=n_blocks)
        raw[:, off:off + 2] = mag.astype("<f2").view(np.uint8).reshape(n_blocks, 2)
    return raw


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))

    # Plain types: normal values plus zeros, subnormals and infinities.
    f32 = rng.standard_normal(64).astype("<f4")
    f32[:4] = [0.0, -0.0, 1e-40, -3.3e38]
    write_case("random_F32", T.F32, f32.view(np.uint8), "random")

    f16 = (rng.standard_normal(72) * 4).astype("<f2")
    f16[:6] = np.array([0.0, -0.0, 6e-8, -3e-5, np.inf, -np.inf], dtype="<f2")
    write_case("random_F16", T.F16, f16.view(np.uint8), "random")

    bf16 = rng.integers(0, 1 << 16, size=72, dtype=np.uint16)
    bf16 = np.where((bf16 & 0x7F80) == 0x7F80, bf16 & 0xBFFF, bf16)  # no inf/nan exponents
    write_case("random_BF16", T.BF16, bf16.astype("<u2").view(np.uint8), "random")

    for qtype in F16_FIELDS:
        n_blocks = 8 if GGML_QUANT_SIZES[qtype][0] == 32 else 3
        write_case("random_" + qtype.name, qtype, random_blocks(qtype, n_blocks), "random")

    # Real rows: the first tensor of each quantized type in each model, two rows of it.
    for model in ("SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"):
        path = os.path.join(MODELS, model)
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run scripts/setup.sh first")
        reader = GGUFReader(path)
        seen = set()
        tag = model.split("-")[0].lower()
        for t in reader.tensors:
            qtype = t.tensor_type
            if qtype in seen or qtype not in F16_FIELDS and qtype != T.F32:
                continue
            seen.add(qtype)
            data = np.asarray(t.data)
            rows = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
            picks = sorted({0, rows.shape[0] // 2}) if rows.shape[0] > 1 else [0]
            for r in picks:
                raw = rows[r].view(np.uint8)
                write_case(f"{tag}_{qtype.name}_{t.name}_row{r}", qtype, raw, f"{model}:{t.name}[{r}]")

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(cases)} cases, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
