"""Tiny random-weight checkpoints (Llama 3.1, Qwen2, Gemma 2, Gemma 3 text, Qwen3, Mistral, Phi-3,
OLMo-2) and their expected outputs; the last four also as GGUF files (model_gguf.py).

Each architecture's interesting features are switched on *and made to matter*: build_all() checks
that turning each one off (llama3 rope scaling, softcaps, sliding window, linear rope on global
layers) changes the outputs, so a Swift engine that ignores a feature fails the test.
"""
import json
import os
import shutil

import torch
from transformers import (AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig, LlamaConfig, MistralConfig,
                          Olmo2Config, Phi3Config, Qwen2Config, Qwen3Config)

import model_common as mc
import model_gguf

# hidden 64, 3 blocks (0, middle, last), 4 heads, 2 KV heads (GQA), intermediate 128, vocab 256.
COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
PROMPT_LENS = [5, 11, 23]
LAYERS = [0, 1, 2]


def configs():
    return {
        # original_max_position_embeddings 64 with head_dim 16, theta 5e5: wavelengths 6.3, 32, 167,
        # 861, ... so one frequency is smoothed and six are divided by 8 -- scaling is really active.
        "llama31": LlamaConfig(**COMMON, head_dim=16, rms_norm_eps=1e-5, tie_word_embeddings=False,
                               rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                "original_max_position_embeddings": 64}),
        "qwen2": Qwen2Config(**COMMON, rms_norm_eps=1e-6, tie_word_embeddings=True,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        # query_pre_attn_scalar 24 != head_dim 16, so scaling by head_dim**-0.5 is caught.
        "gemma2": Gemma2Config(**COMMON, head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
                               layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                               attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                               rms_norm_eps=1e-6, tie_word_embeddings=True),
        # head_dim 32: heads*head_dim = 128 != hidden 64, as in the real Gemma 3 (4*256 vs 640).
        "gemma3": Gemma3TextConfig(**COMMON, head_dim=32, query_pre_attn_scalar=24, sliding_window=4,
                                   layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                                   rope_parameters={
                                       "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                       "full_attention": {"rope_type": "linear", "factor": 8.0,
                                                          "rope_theta": 1000000.0}},
                                   rms_norm_eps=1e-6, tie_word_embeddings=True),
        # head_dim 32 != hidden/heads 16 (as Qwen3-0.6B: 128 vs 1024/16), q/k RMSNorm per head, untied
        # (as Qwen3-8B).
        "qwen3": Qwen3Config(**COMMON, head_dim=32, rms_norm_eps=1e-6, tie_word_embeddings=False,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        # sliding_window 8 on every layer: prompt 0 (5 tokens) fits in it, prompts 1 and 2 do not.
        "mistral": MistralConfig(**COMMON, sliding_window=8, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        # fused qkv_proj / gate_up_proj; sliding_window 8 as for Mistral.
        "phi3": Phi3Config(**COMMON, sliding_window=8, rms_norm_eps=1e-5, tie_word_embeddings=False,
                           original_max_position_embeddings=1024,
                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        # post-norm blocks, q/k RMSNorm over the whole projection (64 and 32 wide).
        "olmo2": Olmo2Config(**COMMON, rms_norm_eps=1e-6, tie_word_embeddings=False,
                             rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
    }


# Per-architecture init scales. Large q/k (gemma2) push raw attention scores past ~50 so the tanh
# softcap bites; a large final norm weight pushes final logits past 30 for the same reason.
# Embeddings are kept small next to what the blocks add: with tied embeddings a residual
# dominated by the token's own embedding just predicts that token again and greedy text degenerates
# into one repeated id, which would test decoding poorly.
INIT = {
    "llama31": dict(std=0.08, embed=0.5, head=0.2, qk=0.15),
    "qwen2": dict(std=0.1, embed=0.1, head=None, qk=0.15),
    "gemma2": dict(std=0.08, embed=0.15, head=None, qk=0.6, final_norm=8.0),
    "gemma3": dict(std=0.08, embed=0.15, head=None, qk=0.15),
    "qwen3": dict(std=0.08, embed=0.5, head=0.2, qk=0.15),
    "mistral": dict(std=0.08, embed=0.5, head=0.2, qk=0.15),
    "phi3": dict(std=0.08, embed=0.5, head=0.2, qk=0.15),
    "olmo2": dict(std=0.08, embed=0.5, head=0.2, qk=0.15),
}


def init_weights(model, name, seed):
    g = torch.Generator().manual_seed(seed)
    s = INIT[name]
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                # ~1 ± 0.3: with Gemma's (1 + w) this is ~2, so w vs (1 + w) is a visible bug.
                center = s.get("final_norm", 1.0) if pname == "model.norm.weight" else 1.0
                val = center + 0.3 * torch.randn(p.shape, generator=g)
            elif pname.endswith(".bias"):
                val = 0.1 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in pname:
                val = s["embed"] * torch.randn(p.shape, generator=g)
            elif pname == "lm_head.weight":
                val = s["head"] * torch.randn(p.shape, generator=g)
            elif "q_proj" in pname or "k_proj" in pname or "qkv_proj" in pname:
                val = s["qk"] * torch.randn(p.shape, generator=g)
            else:
                val = s["std"] * torch.randn(p.shape, generator=g)
            p.copy_(val)


def make_model(cfg):
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager").eval()


def load(dirpath):
    return AutoModelForCausalLM.from_pretrained(dirpath, dtype=torch.float32, attn_implementation="eager").eval()


def variant_logits(model, prompt, **changes):
    """Logits of the same weights under a modified config (for 'does this feature matter' checks)."""
    cfg = model.config.__class__.from_dict(model.config.to_dict())
    for k, v in changes.items():
        setattr(cfg, k, v)
    m = make_model(cfg)
    m.load_state_dict(model.state_dict())
    m.tie_weights()
    with torch.no_grad():
        x = torch.tensor([prompt])
        return m(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits[0]


def weight_variant_logits(model, prompt, edit):
    """Logits of the same config with some weights changed by `edit(name, tensor) -> tensor`."""
    m = make_model(model.config.__class__.from_dict(model.config.to_dict()))
    m.load_state_dict({k: edit(k, v) for k, v in model.state_dict().items()})
    m.tie_weights()
    with torch.no_grad():
        x = torch.tensor([prompt])
        return m(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits[0]


def rel(a, b):
    return float((a - b).norm() / b.norm())


def feature_checks(name, model, prompt):
    base = mc.forward_capture(model, prompt, [])[0]
    checks = {}
    cfg = model.config
    if name == "llama31":
        rp = dict(cfg.rope_parameters)
        checks["without_llama3_rope_scaling"] = rel(variant_logits(
            model, prompt, rope_parameters={"rope_type": "default", "rope_theta": rp["rope_theta"]}), base)
    if name == "gemma2":
        checks["without_attn_softcap"] = rel(variant_logits(model, prompt, attn_logit_softcapping=None), base)
        checks["without_final_softcap"] = rel(variant_logits(model, prompt, final_logit_softcapping=None), base)
    if name in ("gemma2", "gemma3"):
        checks["without_sliding_window"] = rel(variant_logits(model, prompt, sliding_window=4096), base)
        checks["all_layers_full"] = rel(variant_logits(
            model, prompt, layer_types=["full_attention"] * cfg.num_hidden_layers), base)
    if name == "gemma3":
        rp = json.loads(json.dumps(cfg.rope_parameters))
        rp["full_attention"] = {"rope_type": "default", "rope_theta": rp["full_attention"]["rope_theta"]}
        checks["without_linear_rope_on_global"] = rel(variant_logits(model, prompt, rope_parameters=rp), base)
        rp2 = json.loads(json.dumps(cfg.rope_parameters))
        rp2["sliding_attention"]["rope_theta"] = rp2["full_attention"]["rope_theta"]
        checks["local_theta_equal_global"] = rel(variant_logits(model, prompt, rope_parameters=rp2), base)
    if name in ("qwen3", "olmo2"):
        checks["qk_norm_weights_one"] = rel(weight_variant_logits(
            model, prompt, lambda k, v: torch.ones_like(v) if k.endswith(("q_norm.weight", "k_norm.weight")) else v), base)
    if name in ("mistral", "phi3"):
        checks["without_sliding_window"] = rel(variant_logits(model, prompt, sliding_window=None), base)
    if name == "olmo2":
        # Post-norm: dropping the norm on the block outputs (weights -> 1 is not "off"; scale them).
        checks["post_norm_weights_halved"] = rel(weight_variant_logits(
            model, prompt, lambda k, v: 0.5 * v if k.endswith(("post_attention_layernorm.weight",
                                                                 "post_feedforward_layernorm.weight")) else v), base)
    for k, v in checks.items():
        print(f"  {name}: relative logit change {k}: {v:.3f}")
        assert v > 1e-2, f"{name}: feature {k} does not matter (rel change {v})"
    return checks


def build_one(name, cfg, out, seed):
    d = os.path.join(out, f"tiny-{name}")
    model = make_model(cfg)
    init_weights(model, name, seed)
    model.tie_weights()
    if os.path.isdir(d):
        shutil.rmtree(d)
    model.save_pretrained(d, safe_serialization=True)
    gc = os.path.join(d, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)  # the Swift loader needs only config.json + model.safetensors
    # Expected values come from the *reloaded* checkpoint, so they describe exactly the bytes on disk.
    saved = model.state_dict()
    model = load(d)
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), f"{name}: {k} changed in save/load"

    g = torch.Generator().manual_seed(seed + 1000)
    # ids from 3 up: avoid pad/bos/eos so nothing special-cases them.
    prompts = [torch.randint(3, cfg.vocab_size, (n,), generator=g).tolist() for n in PROMPT_LENS]
    checks = feature_checks(name, model, prompts[-1])
    tensors, meta_prompts = {}, []
    for i, ids in enumerate(prompts):
        logits, resid = mc.forward_capture(model, ids, LAYERS)
        new, margin, eos_pos = mc.greedy(model, ids)
        tensors[f"tokens.{i}"] = mc.i32(ids)
        for L in LAYERS:
            tensors[f"resid_post.{i}.{L}"] = resid[L]
        tensors[f"logits.{i}"] = logits
        tensors[f"greedy.{i}"] = mc.i32(new)
        meta_prompts.append({"index": i, "length": len(ids), "logit_positions": list(range(len(ids))),
                             "greedy_min_top2_margin": margin, "greedy_eos_positions": eos_pos})
        print(f"  {name} prompt {i}: T={len(ids)} greedy={new} min margin={margin:.4f}")
    meta = {"model": f"tiny-{name}", "checkpoint": f"tiny-{name}/", "layers": LAYERS,
            "num_layers": cfg.num_hidden_layers, "prompts": meta_prompts, "new_tokens": mc.NEW_TOKENS,
            "feature_checks_relative_logit_change": checks, "dtype": "float32", "attn_implementation": "eager"}
    mc.save(os.path.join(out, f"tiny-{name}.expected.safetensors"), tensors, meta)
    return model, prompts


def build_steering(name, model, prompts, out, layer=1, coef=4.0, seed=7):
    """Steering fixture: coef·v added at resid_post.layer (all positions / response positions only).

    coef 4.0 (~0.8x the median resid_post.1 norm here) was picked by trying a few values: it changes
    the greedy ids in both variants without collapsing them into one repeated id (what ~4x the norm
    does), so decoding under steering is still exercised token by token."""
    ids = prompts[1]
    hidden = model.config.hidden_size
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(hidden, generator=g)
    v = v / v.norm()
    _, resid = mc.forward_capture(model, ids, [layer])
    typical = mc.resid_norm_median(resid[layer])
    return steering_fixture(f"tiny-{name}", model, ids, layer, v, coef, typical, out, extra_meta={"seed": seed})


def steering_fixture(label, model, ids, layer, v, coef, typical, out, extra_meta):
    T = len(ids)
    base_logits = mc.forward_capture(model, ids, [])[0][-1]
    base_greedy, base_margin, base_eos = mc.greedy(model, ids)

    st = mc.Steering(model, layer, v, coef)
    try:
        all_logits = mc.forward_capture(model, ids, [])[0][-1]
        all_greedy, all_margin, all_eos = mc.greedy(model, ids)
    finally:
        st.remove()

    st = mc.Steering(model, layer, v, coef, from_position=T)
    try:
        resp_greedy, resp_margin, resp_eos = mc.greedy(model, ids)
        # Cache-free forward over prompt + first 11 response tokens: its last row produced greedy[-1].
        full = ids + resp_greedy[:-1]
        resp_logits = mc.forward_capture(model, full, [])[0][-1]
        assert int(resp_logits.argmax()) == resp_greedy[-1]
        # With response-only steering the prompt's last position is unsteered.
        assert torch.allclose(mc.forward_capture(model, ids, [])[0][-1], base_logits, atol=0, rtol=0)
    finally:
        st.remove()

    print(f"  {label} steering L={layer} coef={coef} (typical norm {typical:.2f}): "
          f"base={base_greedy} all={all_greedy} response={resp_greedy}")
    assert all_greedy != base_greedy, "steering does not change the greedy text"
    assert all_greedy != resp_greedy, "response-only steering is indistinguishable from steering everywhere"
    assert resp_greedy != base_greedy, "response-only steering does not change the greedy text"
    tensors = {
        "tokens": mc.i32(ids), "vector": v.float(), "coef": torch.tensor([coef], dtype=torch.float32),
        "base.logits_last": base_logits, "base.greedy": mc.i32(base_greedy),
        "steer_all.logits_last": all_logits, "steer_all.greedy": mc.i32(all_greedy),
        "steer_response.greedy": mc.i32(resp_greedy), "steer_response.logits_last": resp_logits,
    }
    meta = {"model": label, "layer": layer, "hook": f"resid_post.{layer}", "coef": coef,
            "prompt_length": T, "typical_resid_norm_median": typical, "new_tokens": mc.NEW_TOKENS,
            "relative_logit_change_steer_all": rel(all_logits, base_logits),
            "greedy_min_top2_margin": {"base": base_margin, "steer_all": all_margin, "steer_response": resp_margin},
            "greedy_eos_positions": {"base": base_eos, "steer_all": all_eos, "steer_response": resp_eos},
            "steer_response_logits_last_input_length": T + mc.NEW_TOKENS - 1, **extra_meta}
    mc.save(os.path.join(out, f"{label}.steering.safetensors"), tensors, meta)


def build_all(out, only=None):
    """Every tiny checkpoint, or those named in `only`; seeds depend on the position in configs()."""
    for i, (name, cfg) in enumerate(configs().items()):
        if only and name not in only:
            continue
        print(f"tiny-{name}")
        model, prompts = build_one(name, cfg, out, seed=100 + i)
        if name == "llama31":
            build_steering(name, model, prompts, out)
        if name in model_gguf.WRITERS:
            # coef 0.8x the median resid_post.1 norm, as llama31's 4.0 is for it.
            _, resid = mc.forward_capture(model, prompts[1], [1])
            build_steering(name, model, prompts, out, coef=round(0.8 * mc.resid_norm_median(resid[1]), 1))
        if name in model_gguf.WRITERS:
            model_gguf.write_tiny(name, model, os.path.join(out, f"tiny-{name}"), os.path.join(out, f"tiny-{name}.gguf-bin"))
