#!/usr/bin/env python3
"""Reference values for Tests/TillerFormatsTests (GGUF → transformers mapping).

Loads the two cached GGUF models with transformers' own GGUF loader
(`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`, which dequantizes, undoes llama.cpp's
Q/K permutation and the Gemma norm +1) and writes a few rows and norms, plus the config values
transformers derives, to Tests/TillerFormatsTests/Fixtures/gguf_reference.json.

Regenerate (needs torch, transformers 5.x, gguf, and the models from scripts/setup.sh):
    python3 tools/reference/formats_fixtures.py
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM

HOME = os.environ.get("TILLER_HOME", os.path.expanduser("~/.cache/tiller"))
MODELS = os.path.join(HOME, "models")
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "TillerFormatsTests", "Fixtures",
                   "gguf_reference.json")


def floats(t):
    return [float(x) for x in t.detach().to(torch.float32).flatten().tolist()]


def load(file):
    model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=file, dtype=torch.float32)
    return model, model.state_dict()


def config_subset(cfg):
    d = cfg.to_dict()
    keys = ["model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "vocab_size", "rms_norm_eps", "max_position_embeddings",
            "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "sliding_window",
            "layer_types", "query_pre_attn_scalar", "hidden_activation", "hidden_act",
            "final_logit_softcapping", "attn_logit_softcapping", "rope_parameters", "rope_theta"]
    return {k: d[k] for k in keys if k in d}


def main():
    out = {}

    model, sd = load("SmolLM2-135M-Instruct.Q4_1.gguf")
    rows = {}
    picks = {
        "model.layers.0.self_attn.q_proj.weight": [0, 1, 31, 32, 33, 63, 64, 575],
        "model.layers.0.self_attn.k_proj.weight": [0, 1, 32, 33, 191],
        "model.layers.29.self_attn.q_proj.weight": [5, 40],
        "model.layers.0.self_attn.v_proj.weight": [0, 1],
    }
    for name, idx in picks.items():
        rows[name] = {str(i): floats(sd[name][i]) for i in idx}
    out["smollm2"] = {
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "config": config_subset(model.config),
        "rows": rows,
        "vectors": {n: floats(sd[n]) for n in ["model.layers.0.input_layernorm.weight", "model.norm.weight"]},
    }
    del model, sd

    model, sd = load("gemma-3-270m-q4_k_m.gguf")
    names = ["model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
             "model.layers.0.pre_feedforward_layernorm.weight", "model.layers.0.post_feedforward_layernorm.weight",
             "model.layers.0.self_attn.q_norm.weight", "model.layers.17.self_attn.k_norm.weight", "model.norm.weight"]
    out["gemma3"] = {
        "file": "gemma-3-270m-q4_k_m.gguf",
        "config": config_subset(model.config),
        "vectors": {n: floats(sd[n]) for n in names},
    }
    with open(OUT, "w") as f:
        json.dump(out, f)
    print("wrote", os.path.abspath(OUT), os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    sys.exit(main())
