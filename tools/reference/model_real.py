"""Expected outputs of the two default GGUF models, loaded by transformers (dequantised to F32).

transformers dequantises GGUF with gguf-py and undoes llama.cpp's conversion quirks (Q/K row
permutation for llama, +1 on Gemma norm weights). check_dequant() re-does that independently from
the raw GGUF so the fixture is known to describe the same weights the Swift engine reads.
"""
import json
import os

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from transformers import AutoModelForCausalLM, AutoTokenizer

import model_common as mc
import model_tiny

MODELS_DIR = os.environ.get("TILLER_MODELS", os.path.expanduser("~/.cache/tiller/models"))

# Short / middle / long (SmolLM2: 6, 12, 25 tokens; Gemma with BOS: 7, 13, 26). Chosen among a few
# candidates so that every greedy step of both models has a top-1/top-2 logit gap > 0.07: an
# exact-match test on a near-tie would fail on harmless float noise.
TEXTS = [
    "Water boils at a temperature of",
    "The quick brown fox jumps over the lazy dog. Then the",
    "The history of the Roman Empire spans more than a thousand years, from the founding of the "
    "city to the fall of Constantinople in",
]

REAL = {
    # name: (gguf file, layers to capture, positions whose full logits are stored per prompt)
    # SmolLM2's vocab is 49152: first and last position fit. Gemma's is 262144 (1 MB per F32 row),
    # so to stay near the fixture size budget only the last position of the longest prompt is
    # stored in full; every prompt also gets the top-64 of its last position.
    "smollm2": ("SmolLM2-135M-Instruct.Q4_1.gguf", [0, 3, 15, 29], lambda p, T: [0, T - 1]),
    "gemma3": ("gemma-3-270m-q4_k_m.gguf", [0, 3, 9, 17], lambda p, T: [T - 1] if p == 2 else []),
}
TOPK = 64

CONFIG_KEYS = ["model_type", "architectures", "vocab_size", "hidden_size", "intermediate_size",
               "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
               "hidden_act", "hidden_activation", "rms_norm_eps", "rope_parameters", "rope_theta",
               "rope_scaling", "rope_local_base_freq", "query_pre_attn_scalar", "sliding_window",
               "layer_types", "attn_logit_softcapping", "final_logit_softcapping",
               "tie_word_embeddings", "max_position_embeddings", "bos_token_id", "eos_token_id",
               "pad_token_id", "attention_bias", "mlp_bias", "use_bidirectional_attention"]

GGUF_TO_HF = {
    "token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}


def hf_name(gname, arch):
    parts = gname.split(".")
    if parts[0] == "blk":
        base = parts[2]
        if base == "ffn_norm":  # llama: the only pre-MLP norm; gemma: the pre-feedforward one
            mapped = "post_attention_layernorm" if arch == "llama" else "pre_feedforward_layernorm"
        else:
            mapped = GGUF_TO_HF[base]
        return f"model.layers.{parts[1]}.{mapped}.{parts[3]}"
    return f"{GGUF_TO_HF[parts[0]]}.{parts[1]}"


def unpermute(w, n_head):
    # llama.cpp's convert stores Q/K rows interleaved per head ((x0,x1),(x2,x3)... pairs for GGML's
    # "normal" RoPE); HF rotates halves, so rows are reordered back: [h, 2, d/2] <- [h, d/2, 2].
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_dequant(path, model):
    """Max |transformers weight - independent gguf-py dequantisation| over all tensors."""
    reader = GGUFReader(path)
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    cfg = model.config
    sd = model.state_dict()
    worst, types = 0.0, {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(x) for x in reversed(t.shape)])
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        if arch == "llama" and ".attn_q." in t.name:
            w = unpermute(w, cfg.num_attention_heads)
        elif arch == "llama" and ".attn_k." in t.name:
            w = unpermute(w, cfg.num_key_value_heads)
        if arch == "gemma3" and t.name.endswith("norm.weight"):
            w = w - 1.0  # llama.cpp stores Gemma norms as (1 + w); HF stores w
        ref = sd[hf_name(t.name, arch)].numpy()
        assert ref.shape == w.shape, (t.name, ref.shape, w.shape)
        worst = max(worst, float(np.abs(ref - w).max()))
    print(f"  dequant check {os.path.basename(path)}: {len(reader.tensors)} tensors {types}, max |diff| {worst}")
    assert worst == 0.0, "transformers' GGUF weights differ from gguf-py's dequantisation"
    return {"tensors": len(reader.tensors), "types": types, "max_abs_diff_vs_gguf_py": worst}


def load(name):
    fname = REAL[name][0]
    tok = AutoTokenizer.from_pretrained(MODELS_DIR, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(MODELS_DIR, gguf_file=fname, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    return tok, model


def config_summary(model, tok):
    d = model.config.to_dict()
    out = {k: d[k] for k in CONFIG_KEYS if k in d}
    out["generation_config.eos_token_id"] = model.generation_config.eos_token_id
    out["tokenizer"] = {"class": type(tok).__name__, "bos": tok.bos_token, "bos_id": tok.bos_token_id,
                        "eos": tok.eos_token, "eos_id": tok.eos_token_id,
                        "has_chat_template": bool(tok.chat_template)}
    if hasattr(model.model, "embed_tokens") and hasattr(model.model.embed_tokens, "embed_scale"):
        out["embed_scale_f32"] = float(model.model.embed_tokens.embed_scale.to(torch.float32))
    return out


def build_expected(name, tok, model, out, dequant):
    fname, layers, positions = REAL[name]
    tensors, prompts = {}, []
    for p, text in enumerate(TEXTS):
        ids = tok(text).input_ids  # with BOS exactly as the tokenizer adds it (Gemma yes, SmolLM2 no)
        T = len(ids)
        logits, resid = mc.forward_capture(model, ids, layers)
        new, margin, eos_pos = mc.greedy(model, ids)
        tensors[f"tokens.{p}"] = mc.i32(ids)
        for L in layers:
            tensors[f"resid_post.{p}.{L}"] = resid[L]
        pos = positions(p, T)
        if pos:
            tensors[f"logits.{p}"] = logits[pos]
        top = torch.topk(logits[-1], TOPK)
        tensors[f"top_ids.{p}"] = top.indices.to(torch.int32)
        tensors[f"top_logits.{p}"] = top.values
        tensors[f"greedy.{p}"] = mc.i32(new)
        prompts.append({"index": p, "text": text, "length": T, "logit_positions": pos,
                        "greedy_text": tok.decode(new), "greedy_min_top2_margin": margin,
                        "greedy_eos_positions": eos_pos,
                        "resid_norm_median": {str(L): mc.resid_norm_median(resid[L]) for L in layers},
                        "resid_abs_max": {str(L): float(resid[L].abs().max()) for L in layers}})
        print(f"  {name} prompt {p}: T={T} {ids[:6]}... greedy={tok.decode(new)!r} margin={margin:.4f}")
    meta = {"model": name, "gguf_file": fname, "layers": layers, "num_layers": model.config.num_hidden_layers,
            "prompts": prompts, "new_tokens": mc.NEW_TOKENS, "top_k": TOPK, "dtype": "float32",
            "attn_implementation": "eager", "config": config_summary(model, tok), "dequant_check": dequant}
    mc.save(os.path.join(out, f"{name}.expected.safetensors"), tensors, meta)
    return meta


def chat_ids(tok, messages):
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False).input_ids
    direct = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    direct = direct["input_ids"] if isinstance(direct, dict) or hasattr(direct, "keys") else direct
    assert list(direct) == ids, "apply_chat_template(tokenize=True) disagrees with encoding the text"
    return text, ids


def build_steering_smollm2(tok, model, out, layer=15, coef=80.0, seed=11):
    """coef 80 is ~0.45x the median resid_post.15 norm (~174, itself inflated by SmolLM2's massive
    dims): picked by trying 10..160 at layers 10/15/20 -- both variants change the greedy text yet
    stay fluent with top-2 margins > 0.1, whereas a few times the norm yields one repeated token."""
    messages = [{"role": "user", "content": "Tell me about your favourite season of the year."}]
    text, ids = chat_ids(tok, messages)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(model.config.hidden_size, generator=g)
    v = v / v.norm()
    _, resid = mc.forward_capture(model, ids, [layer])
    typical = mc.resid_norm_median(resid[layer])
    model_tiny.steering_fixture("smollm2", model, ids, layer, v, coef, typical, out,
                                extra_meta={"messages": messages, "text": text, "seed": seed})


def build_logprobs_smollm2(tok, model, out):
    """Judge-style scoring: total log p(continuation tokens | chat prompt), teacher-forced."""
    messages = [{"role": "user", "content":
                 "On a scale from 0 to 100, how cheerful is this sentence: \"What a lovely sunny morning!\" "
                 "Answer with a single number."}]
    text, ids = chat_ids(tok, messages)
    conts = []
    for c in ["0", "50", "100", " yes"]:
        cids = tok(c, add_special_tokens=False).input_ids
        full = torch.tensor([ids + cids])
        with torch.no_grad():
            logits = model(input_ids=full, attention_mask=torch.ones_like(full), use_cache=False).logits[0]
        # Row i predicts token i+1; accumulate in float64 from the F32 logits.
        lp = torch.log_softmax(logits.double(), dim=-1)
        per = [float(lp[len(ids) - 1 + j, t]) for j, t in enumerate(cids)]
        conts.append({"text": c, "ids": cids, "logprob_total": sum(per), "logprob_per_token": per})
        print(f"  smollm2 logprob {c!r} ids={cids} total={sum(per):.4f}")
    doc = {"model": "smollm2", "gguf_file": REAL["smollm2"][0], "messages": messages,
           "add_generation_prompt": True, "prompt_text": text, "prompt_ids": ids,
           "continuations": conts, "dtype": "float32 forward, float64 log_softmax",
           "note": "continuation ids = tokenizer(text, add_special_tokens=False); logprob_total = sum over "
                   "continuation tokens of log_softmax(logits[row predicting it]); one cache-free forward "
                   "over prompt_ids + ids"}
    path = os.path.join(out, "smollm2.logprobs.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(path, mc.REPO)}")


def build_all(out):
    for name in REAL:
        print(name)
        tok, model = load(name)
        dequant = check_dequant(os.path.join(MODELS_DIR, REAL[name][0]), model)
        meta = build_expected(name, tok, model, out, dequant)
        print(json.dumps(meta["config"], indent=1))
        if name == "smollm2":
            build_steering_smollm2(tok, model, out)
            build_logprobs_smollm2(tok, model, out)
        del model
