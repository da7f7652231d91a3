#!/usr/bin/env python3
"""Writes the fuzz driver's seed inputs (tools/fuzz/seeds/), small valid files of every format the
driver mutates, produced by the reference libraries themselves (gguf-py, safetensors, tokenizers):

  tiny-llama.gguf, tiny-gemma3.gguf   model metadata + tokenizer (gpt2 BPE / llama SPM) + F32/Q8_0 tensors
  tiny.safetensors                    F32, BF16 and I32 tensors with metadata
  tokenizer.json                      a byte-level BPE tokenizer trained by `tokenizers` on a few lines
  trait.json                          a trait in Tiller's format (copied from the shipped refusal trait, cut down)
  experiment.yaml                     experiments/demo.yaml
  chat.json                           an OpenAI chat-completions request body with steering
  completions.json                    a text-completions body: two prompts, n, best_of, echo, logprobs, steering

Regenerate: pip install gguf safetensors tokenizers numpy && python3 tools/fuzz/make_seeds.py
"""
import json, pathlib, shutil

import numpy as np
import gguf
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tools/fuzz/seeds"
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)


def tiny_gguf(path, arch, spm):
    w = gguf.GGUFWriter(str(path), arch)
    hidden, ffn, layers, heads, kv, vocab = 32, 64, 2, 4, 2, 64
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(hidden // heads)
    w.add_value_length(hidden // heads)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    if arch == "gemma3":
        w.add_sliding_window(64)
        w.add_float32("gemma3.rope.local.freq_base", 10000.0)
    space = "▁" if spm else "Ġ"
    pieces = [space, "a", space + "a", "aa"] + [space + chr(98 + i % 25) * (1 + i // 25) for i in range(vocab - 7)]
    tokens = ["<unk>", "<s>", "</s>"] + pieces
    w.add_tokenizer_model("llama" if spm else "gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (vocab - 3))
    if spm:
        w.add_token_scores([0.0] * 3 + [-float(i) for i in range(vocab - 3)])
    else:
        w.add_token_merges(["Ġ a", "a a"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    def t(name, shape, q8=False):
        a = rng.standard_normal(shape).astype(np.float32)
        if q8:
            w.add_tensor(name, gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, a)
    t("token_embd.weight", (vocab, hidden), q8=True)
    t("output_norm.weight", (hidden,))
    for l in range(layers):
        t(f"blk.{l}.attn_norm.weight", (hidden,))
        t(f"blk.{l}.attn_q.weight", (hidden, hidden), q8=True)
        t(f"blk.{l}.attn_k.weight", (kv * hidden // heads, hidden))
        t(f"blk.{l}.attn_v.weight", (kv * hidden // heads, hidden))
        t(f"blk.{l}.attn_output.weight", (hidden, hidden))
        t(f"blk.{l}.ffn_norm.weight", (hidden,))
        t(f"blk.{l}.ffn_gate.weight", (ffn, hidden), q8=True)
        t(f"blk.{l}.ffn_up.weight", (ffn, hidden))
        t(f"blk.{l}.ffn_down.weight", (hidden, ffn))
        if arch == "gemma3":
            t(f"blk.{l}.post_attention_norm.weight", (hidden,))
            t(f"blk.{l}.post_ffw_norm.weight", (hidden,))
            t(f"blk.{l}.attn_q_norm.weight", (hidden // heads,))
            t(f"blk.{l}.attn_k_norm.weight", (hidden // heads,))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


tiny_gguf(OUT / "tiny-llama.gguf-bin", "llama", spm=False)
tiny_gguf(OUT / "tiny-gemma3.gguf-bin", "gemma3", spm=True)

save_file({"a": rng.standard_normal((4, 8)).astype(np.float32),
           "b": rng.standard_normal((3,)).astype(np.float32).astype(np.float16),
           "ids": np.arange(5, dtype=np.int32)}, str(OUT / "tiny.safetensors"), metadata={"format": "pt", "note": "fuzz seed"})

tok = Tokenizer(models.BPE(unk_token=None))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator(["The quick brown fox jumps over the lazy dog.", "Steering vectors move the residual stream.",
                         "Massive activations sit in a few dimensions, 1234 times larger."] * 4, trainer)
tok.save(str(OUT / "tokenizer.json"))

trait = json.loads((ROOT / "Sources/TillerSteering/Resources/traits/refusal.json").read_text())
for k in ("instructions", "scenarios"):
    trait[k] = trait[k][:2]
for k in ("questions", "steering_questions", "reference_answers"):
    trait[k] = trait[k][:3]
(OUT / "trait.json").write_text(json.dumps(trait, indent=1) + "\n")

shutil.copy(ROOT / "experiments/demo.yaml", OUT / "experiment.yaml")

(OUT / "chat.json").write_text(json.dumps({
    "model": "smollm2-135m-instruct", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}],
    "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "seed": 3, "stream": False, "n": 1,
    "steering": [{"vector": "refusal", "layer": 1, "coef": -4.5, "positions": "response"}, {"vector": "refusal", "layer": 0, "coef": 2}],
}, indent=1) + "\n")
(OUT / "completions.json").write_text(json.dumps({
    "model": "smollm2-135m-instruct", "prompt": ["The capital of France is", "Water boils at"], "max_tokens": 4,
    "temperature": 0.8, "top_p": 0.95, "seed": 5, "n": 2, "best_of": 3, "echo": True, "logprobs": 2, "stop": ["\n"],
    "suffix": "", "steering": [{"vector": "refusal", "layer": 1, "coef": 3, "positions": "all"}],
}, indent=1) + "\n")
print("wrote", sorted(p.name for p in OUT.iterdir()))
