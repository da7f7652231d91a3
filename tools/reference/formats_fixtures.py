#!/usr/bin/env python3
"""Reference fixtures for Tests/TillerFormatsTests.

1. gguf_reference.json: the two cached GGUF models loaded with transformers' own GGUF loader
   (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`, which dequantizes, undoes llama.cpp's
   Q/K permutation and the Gemma norm +1): a few rows and norms, and the config transformers derives.
2. reference.safetensors + safetensors_reference.json: a file written by the safetensors library with
   every float/int dtype we read, metadata, and an empty tensor; the JSON holds the values.
3. tiny-llama-sharded/: a random LlamaForCausalLM saved in 3 shards with model.safetensors.index.json,
   its config.json rewritten in the transformers v4 layout (rope_theta + rope_scaling llama3).
   tiny-gemma3-mm/: a random Gemma3ForConditionalGeneration (text_config, language_model.* weights,
   vision tower). hf_reference.json: the configs transformers parses from both, and a few weights.

Regenerate (needs torch, transformers 5.x, gguf, safetensors, and the models from scripts/setup.sh):
    python3 tools/reference/formats_fixtures.py
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM

HOME = os.environ.get("TILLER_HOME", os.path.expanduser("~/.cache/tiller"))
MODELS = os.path.join(HOME, "models")
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "TillerFormatsTests", "Fixtures")
OUT = os.path.join(FIXTURES, "gguf_reference.json")


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


def write_safetensors_reference():
    import numpy as np
    from safetensors.numpy import save_file
    tensors = {
        "a_f32": np.arange(6, dtype=np.float32).reshape(2, 3) * np.float32(0.25) - np.float32(0.5),
        "b_f16": np.array([0.5, -1.25, 65504.0, 1e-4, -0.0], dtype=np.float16),
        "d_i32": np.array([[1, -2], [2147483647, -2147483648]], dtype=np.int32),
        "e_i64": np.array([7, -8, 1 << 40], dtype=np.int64),
        "f_u8": np.array([0, 1, 255], dtype=np.uint8),
        "g_empty": np.zeros((0, 4), dtype=np.float32),
        "h_f64": np.array([3.141592653589793], dtype=np.float64),
    }
    path = os.path.join(FIXTURES, "reference.safetensors")
    save_file(tensors, path, metadata={"format": "pt", "note": "h\u00e9llo \"quoted\""})
    # BF16 through torch (numpy has no bfloat16).
    from safetensors.torch import load_file, save_file as save_torch
    t = {k: torch.from_numpy(v) for k, v in tensors.items()}
    t["c_bf16"] = torch.tensor([1.0, -2.5, 3.140625, 1e30], dtype=torch.bfloat16)
    save_torch(t, path, metadata={"format": "pt", "note": "h\u00e9llo \"quoted\""})
    ref = {}
    for k, v in load_file(path).items():
        ref[k] = {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
                  "values": [float(x) if v.is_floating_point() else int(x) for x in v.flatten().tolist()]}
    with open(os.path.join(FIXTURES, "safetensors_reference.json"), "w") as f:
        json.dump({"metadata": {"format": "pt", "note": "h\u00e9llo \"quoted\""}, "tensors": ref}, f, indent=1)


def write_hf_directories():
    import shutil
    from transformers import (AutoConfig, Gemma3Config, Gemma3ForConditionalGeneration, LlamaConfig,
                              LlamaForCausalLM)
    torch.manual_seed(0)
    ref = {}

    d = os.path.join(FIXTURES, "tiny-llama-sharded")
    shutil.rmtree(d, ignore_errors=True)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=[2, 3],
                      rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 64})
    LlamaForCausalLM(cfg).save_pretrained(d, max_shard_size="12KB")
    v4 = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128, "hidden_size": 32,
          "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 512, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": [2, 3],
          "rms_norm_eps": 1e-5, "hidden_act": "silu", "rope_theta": 500000.0,
          "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 64},
          "torch_dtype": "float32", "transformers_version": "4.46.0"}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(v4, f, indent=2)
    gen = os.path.join(d, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    ref["tiny-llama-sharded"] = load_reference(d, LlamaForCausalLM, ["model.layers.1.self_attn.k_proj.weight",
                                                                    "lm_head.weight"])

    d = os.path.join(FIXTURES, "tiny-gemma3-mm")
    shutil.rmtree(d, ignore_errors=True)
    cfg = Gemma3Config(
        text_config=dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
                         max_position_embeddings=256, query_pre_attn_scalar=16),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14),
        mm_tokens_per_image=4, image_token_index=299, boi_token_index=297, eoi_token_index=298)
    Gemma3ForConditionalGeneration(cfg).save_pretrained(d)
    ref["tiny-gemma3-mm"] = load_reference(d, Gemma3ForConditionalGeneration,
                                           ["model.norm.weight", "model.layers.1.self_attn.q_norm.weight"])
    with open(os.path.join(FIXTURES, "hf_reference.json"), "w") as f:
        json.dump(ref, f, indent=1)


def load_reference(d, cls, names):
    model = cls.from_pretrained(d, dtype=torch.float32)
    cfg = model.config
    text = cfg.get_text_config()
    sd = model.state_dict()
    def lm(name):  # causal-LM name → this model's state-dict name
        for k in (name, "model.language_model." + name[len("model."):], "language_model." + name):
            if k in sd:
                return k
        raise KeyError(name)
    return {"config": config_subset(text), "files": sorted(os.listdir(d)),
            "weights": {n: floats(sd[lm(n)]) for n in names}}


def main():
    write_safetensors_reference()
    write_hf_directories()
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
