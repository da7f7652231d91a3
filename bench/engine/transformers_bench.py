#!/usr/bin/env python3
"""The transformers side of bench/engine/run.sh and bench/gpu/run.sh: the same workloads as
`tiller bench` (Sources/tiller/BenchCommand.swift), same synthetic token ids, prints JSON.
fp32 on the CPU by default; --device cuda --dtype bfloat16 for the GPU bench.
Needs: pip install torch==2.13.0+cpu transformers gguf accelerate (gguf only for --gguf)."""
import argparse, json, math, os, time
import torch
import transformers
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
src = p.add_mutually_exclusive_group(required=True)
src.add_argument("--gguf", help="a GGUF file (dequantised to --dtype)")
src.add_argument("--model-dir", help="a Hugging Face directory (config.json + safetensors)")
p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
p.add_argument("--capture-without-head", action="store_true",
               help="capture runs the decoder alone, no LM head, as `tiller bench`'s capture (logits: none) does")
p.add_argument("--prompts", type=int, default=32)
p.add_argument("--tokens", type=int, default=64)
p.add_argument("--new-tokens", type=int, default=64)
p.add_argument("--repeats", type=int, default=2)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--workload", action="append")
a = p.parse_args()
torch.set_num_threads(a.threads)
workloads = a.workload or ["capture", "generate", "decode"]
dtype = getattr(torch, a.dtype)
device = torch.device(a.device)

def sync():
    """Waits for the GPU's queued work, so that a wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

t0 = time.time()
if a.gguf:
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(a.gguf), gguf_file=os.path.basename(a.gguf), dtype=dtype)
else:
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=dtype)
model.to(device).eval()
sync()
load = time.time() - t0
cfg = model.config
vocab = cfg.vocab_size

def token(p_, i):  # same formula as BenchCommand.syntheticToken
    return 100 + (p_ * 7919 + i * 104729 + (p_ * i) % 13) % (min(vocab, 32000) - 200)

def batch(n, length):
    return torch.tensor([[token(p_, i) for i in range(length)] for p_ in range(n)], device=device)

def best(fn):
    t = math.inf
    for _ in range(max(a.repeats, 1)):
        sync(); s = time.time(); fn(); sync(); t = min(t, time.time() - s)
    return t

out = {"load_seconds": load, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
       "dtype": a.dtype, "attn_implementation": getattr(model.config, "_attn_implementation", None),
       "torch": torch.__version__, "transformers": transformers.__version__}
with torch.no_grad():
    if "capture" in workloads:
        b = batch(a.prompts, a.tokens)
        body = model.model if a.capture_without_head else model
        t = best(lambda: body(b, output_hidden_states=True))
        out["capture_seconds"] = t
        out["capture_tokens_per_second"] = a.prompts * a.tokens / t
    # Eager, never torch.compile: some transformers versions compile generate on CUDA by
    # themselves for static caches (Gemma-2's hybrid one), which costs minutes per shape and
    # recompiles around the steering hook.
    no_eos = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    if hasattr(transformers.GenerationConfig(), "disable_compile"):  # older versions neither have nor need it
        no_eos["disable_compile"] = True

    class FirstToken(transformers.StoppingCriteria):
        """Notes when the first new token exists (after the prefill), stopping nothing."""
        def __init__(self, prompt_len):
            self.prompt_len, self.at = prompt_len, None
        def __call__(self, input_ids, scores, **kw):
            if self.at is None and input_ids.shape[1] > self.prompt_len:
                sync()
                self.at = time.time()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def step_seconds(b):
        """Seconds of new_tokens new tokens, and of their decode steps alone (from the first new
        token, which the prefill's logits give, to the end), as `tiller bench` counts them."""
        full, steps = 1e9, 1e9
        for _ in range(max(a.repeats, 1)):
            first = FirstToken(b.shape[1])
            sync()
            s = time.time()
            model.generate(b, attention_mask=torch.ones_like(b), max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens,
                           stopping_criteria=transformers.StoppingCriteriaList([first]), **no_eos)
            sync()
            e = time.time()
            full, steps = min(full, e - s), min(steps, e - (first.at or s))
        return full, max(steps, 1e-9)

    if "generate" in workloads:
        b = batch(a.prompts, 16)
        mid = cfg.num_hidden_layers // 2
        h = cfg.hidden_size
        # In the model's dtype and on its device: an fp32 vector would promote a bf16 residual stream.
        v = torch.tensor([math.sin(d * 0.37) / math.sqrt(h) for d in range(h)], dtype=torch.float32).to(device=device, dtype=dtype)
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
