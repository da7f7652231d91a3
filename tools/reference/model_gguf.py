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

Checked against llama.cpp's converter itself (the source vendored in the llama-cpp-python 0.3.36
sdist): `python3 tools/reference/model_gguf.py --llama-cpp DIR` converts each tiny checkpoint with
DIR/convert_hf_to_gguf.py --outtype f32 (its set_vocab replaced by the same stand-in vocabulary) and
compares. Last run: every hyperparameter key and every tensor (name, type, shape, bytes) identical;
only the descriptive general.name / size_label / type / quantization_version keys and the special
token ids (which the converter reads from tokenizer files) differ.

Where transformers can read the architecture back from GGUF (Mistral, Phi-3; not OLMo-2, and not a
Qwen3 whose head_dim differs from hidden/heads, as transformers' GGUF loader ignores key_length),
the script loads the file with transformers and checks that every weight equals the original.
"""
import argparse
import os
import subprocess
import sys
import tempfile

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


# Run inside a subprocess: llama.cpp's converter with the stand-in vocabulary.
_CONVERT = """
import sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/gguf-py")
import convert_hf_to_gguf as c
def stand_in_vocab(self):
    n = self.hparams["vocab_size"]
    self.gguf_writer.add_tokenizer_model("llama")
    self.gguf_writer.add_token_list([f"<t{i}>" for i in range(n)])
    self.gguf_writer.add_token_scores([0.0] * n)
    self.gguf_writer.add_token_types([1] * n)
get = c.get_model_class
def patched(*a, **k):
    cls = get(*a, **k)
    cls.set_vocab = stand_in_vocab
    return cls
c.get_model_class = patched
sys.argv = ["convert_hf_to_gguf.py", sys.argv[2], "--outtype", "f32", "--outfile", sys.argv[3]]
c.main()
"""


def _read(path):
    r = gguf.GGUFReader(path)
    # Descriptive general.* keys and the vocabulary (stand-ins on both sides) are left out.
    skip = ("GGUF.", "general.", "tokenizer.ggml.")
    keep = ("general.architecture", "general.file_type")
    keys = {k: f.contents() for k, f in r.fields.items() if k in keep or not k.startswith(skip)}
    tensors = {t.name: (t.tensor_type.name, tuple(int(d) for d in t.shape), np.array(t.data)) for t in r.tensors}
    return keys, tensors


def compare_with_converter(llama_cpp, fixtures):
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in WRITERS:
            ours = os.path.join(fixtures, f"tiny-{name}.gguf-bin")
            theirs = os.path.join(tmp, f"tiny-{name}.gguf")
            subprocess.run([sys.executable, "-c", _CONVERT, llama_cpp, os.path.join(fixtures, f"tiny-{name}"), theirs],
                           check=True, capture_output=True)
            (ka, ta), (kb, tb) = _read(ours), _read(theirs)
            keys = sorted(k for k in set(ka) | set(kb) if ka.get(k) != kb.get(k))
            tensors = sorted(n for n in set(ta) | set(tb)
                             if n not in ta or n not in tb or ta[n][:2] != tb[n][:2] or not np.array_equal(ta[n][2], tb[n][2]))
            print(f"tiny-{name}.gguf vs convert_hf_to_gguf.py: {len(ka)} keys, {len(ta)} tensors; "
                  f"differing keys {keys or 'none'}, differing tensors {tensors or 'none'}")
            ok = ok and not keys and not tensors
    return ok


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Compare the tiny GGUF fixtures with llama.cpp's converter.")
    ap.add_argument("--llama-cpp", required=True, help="a llama.cpp source tree (with convert_hf_to_gguf.py and gguf-py/)")
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                        "Tests", "TillerModelsTests", "Fixtures"))
    args = ap.parse_args()
    sys.exit(0 if compare_with_converter(args.llama_cpp, args.fixtures) else 1)
