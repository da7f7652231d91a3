"""GGUF forms of the tiny checkpoints (Qwen3, Mistral, Phi-3, OLMo-2), as llama.cpp writes them.

Called by model_tiny.build_all (regenerate with `python3 tools/reference/model_fixtures.py --only tiny`).
Each file follows llama.cpp's convert_hf_to_gguf.py for that architecture with `--outtype f32`:

* general.architecture: qwen3 / llama (convert_hf_to_gguf converts MistralForCausalLM with LlamaModel) /
  phi3 / olmo2;
* TextModel.set_gguf_parameters' keys (context_length, embedding_length, block_count,
  feed_forward_length, head_count, head_count_kv, rope.freq_base, layer_norm_rms_epsilon, and
  key_length / value_length when config.json has head_dim), plus LlamaModel's vocab_size and
  rope.dimension_count for Mistral, and Phi3MiniModel's own set (rope.dimension_count,
  rope.scaling.original_context_length, attention.sliding_window);
* tensor names from gguf-py's TensorNameMap for the architecture (so Phi-3's fused qkv_proj is
  attn_qkv and its fused gate_up_proj is ffn_up);
* Mistral's q/k rows permuted per head as LlamaModel.permute does; the others unpermuted (NEOX RoPE);
* a stand-in vocabulary (256 tokens "<t0>"…) with the checkpoint's bos/eos/pad ids: the tests feed ids.

Where transformers can read the architecture back from GGUF (Mistral, Phi-3; not OLMo-2, and not a
Qwen3 whose head_dim differs from hidden/heads, as transformers' GGUF loader ignores key_length),
the script loads the file with transformers and checks that every weight equals the original.
"""
import os

import numpy as np
import torch
import gguf
from gguf.constants import MODEL_ARCH

# tiny name -> (GGUF architecture, gguf-py arch enum)
WRITERS = {
    "qwen3": ("qwen3", MODEL_ARCH.QWEN3),
    "mistral": ("llama", MODEL_ARCH.LLAMA),
    "phi3": ("phi3", MODEL_ARCH.PHI3),
    "olmo2": ("olmo2", MODEL_ARCH.OLMO2),
}


def llama_permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_tiny(name, model, checkpoint_dir, path):
    arch_name, arch = WRITERS[name]
    cfg = model.config
    hp = cfg.to_dict()
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    w = gguf.GGUFWriter(path, arch_name)
    w.add_name(f"tiny-{name}")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    rope = cfg.rope_parameters
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    if hp.get("head_dim") is not None and name != "phi3":
        w.add_key_length(hp["head_dim"])
        w.add_value_length(hp["head_dim"])
    if name == "mistral":
        w.add_vocab_size(cfg.vocab_size)
        w.add_rope_dimension_count(head_dim)
    if name == "phi3":
        w.add_rope_scaling_orig_ctx_len(cfg.original_max_position_embeddings)
        w.add_rope_dimension_count(int(rope.get("partial_rotary_factor", 1.0) * cfg.hidden_size) // n_head)
        w.add_sliding_window(cfg.sliding_window or 0)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    # Stand-in vocabulary: the tests feed ids, but a GGUF model file carries its tokens.
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>" for i in range(cfg.vocab_size)])
    w.add_token_scores([0.0] * cfg.vocab_size)
    w.add_token_types([1] * cfg.vocab_size)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_pad_token_id(cfg.pad_token_id)

    names = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    state = model.state_dict()
    for hf_name, t in state.items():
        if cfg.tie_word_embeddings and hf_name == "lm_head.weight":
            continue
        t = t.detach().float()
        if name == "mistral" and hf_name.endswith("q_proj.weight"):
            t = llama_permute(t, n_head, n_head)
        elif name == "mistral" and hf_name.endswith("k_proj.weight"):
            t = llama_permute(t, n_head, n_kv)
        g = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert g is not None, f"{name}: no GGUF name for {hf_name}"
        w.add_tensor(g, t.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path) / 1e3:.0f} kB)")
    check_with_transformers(name, model, path)


def check_with_transformers(name, model, path):
    if name not in ("mistral", "phi3"):
        print(f"  {name}: transformers cannot read this GGUF back (see module doc); not cross-checked")
        return
    from transformers import AutoModelForCausalLM
    back = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                dtype=torch.float32)
    want = model.state_dict()
    got = back.state_dict()
    for k, v in want.items():
        assert k in got, f"{name}: transformers' GGUF load has no {k}"
        assert torch.equal(got[k].float(), v.float()), f"{name}: {k} differs after the GGUF round trip"
    print(f"  {name}: transformers reads the GGUF back to the same {len(want)} tensors")
