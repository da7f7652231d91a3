#!/usr/bin/env python3
"""The transformers side of bench/engine/run.sh: the same workloads as `tiller bench`
(Sources/tiller/BenchCommand.swift), same synthetic token ids, fp32 on the CPU, prints JSON.
Needs: pip install torch==2.13.0+cpu transformers gguf accelerate."""
import argparse, json, math, os, time
import torch
import transformers
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--gguf", required=True)
p.add_argument("--prompts", type=int, default=32)
p.add_argument("--tokens", type=int, default=64)
p.add_argument("--new-tokens", type=int, default=64)
p.add_argument("--repeats", type=int, default=2)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--workload", action="append")
a = p.parse_args()
torch.set_num_threads(a.threads)
workloads = a.workload or ["capture", "generate", "decode"]

t0 = time.time()
model = AutoModelForCausalLM.from_pretrained(os.path.dirname(a.gguf), gguf_file=os.path.basename(a.gguf), dtype=torch.float32)
model.eval()
load = time.time() - t0
cfg = model.config
vocab = cfg.vocab_size

def token(p_, i):  # same formula as BenchCommand.syntheticToken
    return 100 + (p_ * 7919 + i * 104729 + (p_ * i) % 13) % (min(vocab, 32000) - 200)

def batch(n, length):
    return torch.tensor([[token(p_, i) for i in range(length)] for p_ in range(n)])

def best(fn):
    t = math.inf
    for _ in range(max(a.repeats, 1)):
        s = time.time(); fn(); t = min(t, time.time() - s)
    return t

out = {"load_seconds": load}
with torch.no_grad():
    if "capture" in workloads:
        b = batch(a.prompts, a.tokens)
        t = best(lambda: model(b, output_hidden_states=True))
        out["capture_seconds"] = t
        out["capture_tokens_per_second"] = a.prompts * a.tokens / t
    no_eos = dict(do_sample=False, eos_token_id=None, pad_token_id=0)

    class FirstToken(transformers.StoppingCriteria):
        """Notes when the first new token exists (after the prefill), stopping nothing."""
        def __init__(self, prompt_len):
            self.prompt_len, self.at = prompt_len, None
        def __call__(self, input_ids, scores, **kw):
            if self.at is None and input_ids.shape[1] > self.prompt_len:
                self.at = time.time()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    def step_seconds(b):
        """Seconds of new_tokens new tokens, and of their decode steps alone (from the first new
        token, which the prefill's logits give, to the end), as `tiller bench` counts them."""
        full, steps = 1e9, 1e9
        for _ in range(max(a.repeats, 1)):
            first = FirstToken(b.shape[1])
            s = time.time()
            model.generate(b, attention_mask=torch.ones_like(b), max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens,
                           stopping_criteria=transformers.StoppingCriteriaList([first]), **no_eos)
            e = time.time()
            full, steps = min(full, e - s), min(steps, e - (first.at or s))
        return full, max(steps, 1e-9)

    if "generate" in workloads:
        b = batch(a.prompts, 16)
        mid = cfg.num_hidden_layers // 2
        h = cfg.hidden_size
        v = torch.tensor([math.sin(d * 0.37) / math.sqrt(h) for d in range(h)], dtype=torch.float32)
        def hook(_m, _i, o):
            if isinstance(o, tuple):
                return (o[0] + 4.0 * v,) + tuple(o[1:])
            return o + 4.0 * v
        handle = model.model.layers[mid].register_forward_hook(hook)
        t, steps = step_seconds(b)
        handle.remove()
        out["generate_seconds"] = t
        out["generate_new_tokens_per_second"] = a.prompts * (a.new_tokens - 1) / steps
        out["generate_with_prefill_tokens_per_second"] = a.prompts * a.new_tokens / t
    if "decode" in workloads:
        b = batch(1, 16)
        t, steps = step_seconds(b)
        out["decode_seconds"] = t
        out["decode_tokens_per_second"] = (a.new_tokens - 1) / steps
        out["decode_with_prefill_tokens_per_second"] = a.new_tokens / t
print(json.dumps(out, sort_keys=True))
