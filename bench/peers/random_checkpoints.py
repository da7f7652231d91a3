#!/usr/bin/env python3
"""Random-weight checkpoints in the shapes of Llama-3.2-1B and Gemma-2-2B for the speed benches
(random weights cost the same compute as real ones): a GGUF (Q8_0 matrices via gguf-py's
quantizer, F32 norms) and a bf16 safetensors directory (config.json + model.safetensors) each,
under $TILLER_HOME/bench/random/, never in the repository. Existing files are kept (a safetensors
directory only while its config.json is the one this script would write).

    pip install gguf numpy               (torch, when present, draws the bf16 weights faster, on CUDA if it can)
    python3 bench/peers/random_checkpoints.py [llama-3.2-1b] [gemma-2-2b]
    python3 bench/peers/random_checkpoints.py --out DIR --no-gguf [--tiny] [names]   (bench/gpu/run.sh)

--tiny writes the same architectures at toy sizes (bench/gpu/run.sh's SMOKE mode); the tiny
Gemma-2 keeps 20 layers so that full-grid's layers 6-18 exist in it.
"""
import argparse, json, os, pathlib, struct, sys

import numpy as np

HOME = pathlib.Path(os.environ.get("TILLER_HOME", pathlib.Path.home() / ".cache" / "tiller")) / "bench" / "random"
SHAPES = {
    "llama-3.2-1b": dict(arch="llama", model_type="llama", hidden=2048, ffn=8192, layers=16, heads=32, kv=8, head_dim=64,
                         vocab=128256, theta=500000.0, tied=True),
    "gemma-2-2b": dict(arch="gemma2", model_type="gemma2", hidden=2304, ffn=9216, layers=26, heads=8, kv=4, head_dim=256,
                       vocab=256000, theta=10000.0, tied=True),
}
TINY = {
    "llama-3.2-1b": dict(SHAPES["llama-3.2-1b"], hidden=256, ffn=512, layers=2, heads=4, kv=2, head_dim=64, vocab=1024),
    "gemma-2-2b": dict(SHAPES["gemma-2-2b"], hidden=128, ffn=256, layers=20, heads=2, kv=1, head_dim=64, vocab=1024),
}


def tensors(s, rng):
    """(gguf name, hf name, shape, is_matrix) in file order."""
    H, I, q, kv = s["hidden"], s["ffn"], s["heads"] * s["head_dim"], s["kv"] * s["head_dim"]
    yield "token_embd.weight", "model.embed_tokens.weight", (s["vocab"], H), True
    yield "output_norm.weight", "model.norm.weight", (H,), False
    for l in range(s["layers"]):
        p, g = f"model.layers.{l}.", f"blk.{l}."
        yield g + "attn_norm.weight", p + "input_layernorm.weight", (H,), False
        yield g + "attn_q.weight", p + "self_attn.q_proj.weight", (q, H), True
        yield g + "attn_k.weight", p + "self_attn.k_proj.weight", (kv, H), True
        yield g + "attn_v.weight", p + "self_attn.v_proj.weight", (kv, H), True
        yield g + "attn_output.weight", p + "self_attn.o_proj.weight", (H, q), True
        yield g + "ffn_gate.weight", p + "mlp.gate_proj.weight", (I, H), True
        yield g + "ffn_up.weight", p + "mlp.up_proj.weight", (I, H), True
        yield g + "ffn_down.weight", p + "mlp.down_proj.weight", (H, I), True
        if s["arch"] == "gemma2":
            yield g + "ffn_norm.weight", p + "pre_feedforward_layernorm.weight", (H,), False
            yield g + "post_attention_norm.weight", p + "post_attention_layernorm.weight", (H,), False
            yield g + "post_ffw_norm.weight", p + "post_feedforward_layernorm.weight", (H,), False
        else:
            yield g + "ffn_norm.weight", p + "post_attention_layernorm.weight", (H,), False


def values(shape, matrix, rng):
    if matrix:
        return (rng.standard_normal(shape, dtype=np.float32) * (1.0 / np.sqrt(shape[-1]))).astype(np.float32)
    return (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)


def write_gguf(name, s):
    import gguf
    path = HOME / f"{name}.Q8_0.gguf"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path) + ".partial", s["arch"])
    w.add_name(f"random {name}")
    w.add_context_length(8192)
    w.add_embedding_length(s["hidden"])
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv"])
    w.add_key_length(s["head_dim"])
    w.add_value_length(s["head_dim"])
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(s["theta"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    if s["arch"] == "gemma2":
        w.add_attn_logit_softcapping(50.0)
        w.add_final_logit_softcapping(30.0)
        w.add_sliding_window(4096)
    # A byte-level vocabulary padded to the model's size: the bench feeds token ids directly.
    byte_tokens = [bytes([b]).decode("latin-1") for b in range(256)]
    tokens = ["<unk>", "<s>", "</s>"] + byte_tokens + ["ab"] + [f"tok{i}" for i in range(s["vocab"] - 260)]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (s["vocab"] - 3))
    w.add_token_merges(["a b"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for gname, _, shape, matrix in tensors(s, rng):
        a = values(shape, matrix, rng)
        if matrix:
            w.add_tensor(gname, gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gname, a)
        print(f"{name}: {gname} {shape}", end="\r", flush=True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.rename(str(path) + ".partial", path)
    print(f"\nwrote {path} ({path.stat().st_size / 2**30:.2f} GiB)")
    return path


def hf_config(s):
    cfg = {"model_type": s["model_type"], "architectures": ["LlamaForCausalLM"],
           "hidden_size": s["hidden"], "intermediate_size": s["ffn"], "num_hidden_layers": s["layers"],
           "num_attention_heads": s["heads"], "num_key_value_heads": s["kv"], "head_dim": s["head_dim"],
           "vocab_size": s["vocab"], "rms_norm_eps": 1e-6, "rope_theta": s["theta"], "max_position_embeddings": 8192,
           "tie_word_embeddings": s["tied"], "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2}
    if s["arch"] == "gemma2":
        cfg.update({"architectures": ["Gemma2ForCausalLM"], "hidden_activation": "gelu_pytorch_tanh",
                    "query_pre_attn_scalar": s["head_dim"], "attn_logit_softcapping": 50.0,
                    "final_logit_softcapping": 30.0, "sliding_window": 4096})
    else:
        cfg["hidden_act"] = "silu"
    return cfg


def bf16_tensors(s):
    """(hf name, shape, bf16 bits as a uint16 array), the values as values() draws them: torch
    when present (on CUDA when available: seconds for the 2B shape), else numpy."""
    try:
        import torch
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        g = torch.Generator(device=dev).manual_seed(0)
        for _, hname, shape, matrix in tensors(s, None):
            if matrix:
                t = torch.randn(shape, generator=g, device=dev) * (1.0 / shape[-1] ** 0.5)
            else:
                t = 1.0 + 0.1 * torch.randn(shape, generator=g, device=dev)
            yield hname, shape, t.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
    except ImportError:
        rng = np.random.default_rng(0)
        for _, hname, shape, matrix in tensors(s, rng):
            bits = values(shape, matrix, rng).view(np.uint32)
            # Round to nearest even, as a bf16 cast does.
            yield hname, shape, ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(name, s, directory=None):
    """A bf16 safetensors directory (model.safetensors + config.json), written with numpy alone
    (the format is an 8-byte header length, a JSON header and the raw tensors)."""
    d = pathlib.Path(directory) if directory else HOME / f"{name}-bf16"
    cfg = hf_config(s)
    cfg_text = json.dumps(cfg, indent=1) + "\n"
    if (d / "model.safetensors").exists() and (d / "config.json").exists() and (d / "config.json").read_text() == cfg_text:
        return d
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").unlink(missing_ok=True)
    arrays = list(bf16_tensors(s))
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for hname, shape, a in arrays:
        header[hname] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    partial = d / "model.safetensors.partial"
    with open(partial, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, a in arrays:
            f.write(a.tobytes())
    os.replace(partial, d / "model.safetensors")
    (d / "config.json").write_text(cfg_text)
    print(f"wrote {d} ({offset / 2**30:.2f} GiB)")
    return d


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=", ".join(SHAPES) + " (default both)")
    ap.add_argument("--out", help="folder for the safetensors directories (DIR/NAME); default $TILLER_HOME/bench/random/NAME-bf16")
    ap.add_argument("--no-gguf", action="store_true", help="safetensors directories only (no gguf package needed)")
    ap.add_argument("--tiny", action="store_true", help="toy sizes of the same architectures")
    a = ap.parse_args()
    shapes = TINY if a.tiny else SHAPES
    for name in a.names:
        if name not in SHAPES:
            ap.error(f"unknown shape {name} (known: {', '.join(SHAPES)})")
    for name in a.names or list(SHAPES):
        if not a.no_gguf:
            HOME.mkdir(parents=True, exist_ok=True)
            write_gguf(name, shapes[name])
        if os.environ.get("NO_SAFETENSORS") != "1":
            write_safetensors(name, shapes[name], pathlib.Path(a.out) / name if a.out else None)
