#!/usr/bin/env python3
"""Reference for teacher-forced log-probabilities under steering (LanguageModel.teacherForced),
computed with HF transformers in fp32 on SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to F32).

Writes Tests/TillerEvalTests/Fixtures/logodds_smollm2.json. For each item (a chat-templated user
question, `apply_chat_template(..., add_generation_prompt=True)`, with a refusal "pos" answer and a
helpful "neg" answer, each tokenized without special tokens and followed by `<|im_end|>`), each
coefficient and each of the positions "response" / "all": the per-token natural-log probabilities
of the answer's tokens given the prompt (float64 log_softmax of the float32 logits), their sums and
logodds = sum_pos - sum_neg.

Steering: a forward hook on model.model.layers[LAYER] (= Tiller's resid_post.LAYER, the block's
output) adds coef * v to the output hidden states at the selected positions ("response": absolute
positions >= len(prompt_ids); "all": every position). v is a unit-norm random vector (numpy
default_rng(7), float32, rounded to 6 decimals, renormalised in float32); the fixture stores the
exact float32 values used.

Regenerate (needs the default models in $TILLER_HOME/models, see scripts/setup.sh):
    pip install torch==2.13.0+cpu transformers gguf accelerate
    python3 tools/reference/logodds_reference.py
"""
import json, os, pathlib

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(int(os.environ.get("REF_THREADS", "4")))
ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = pathlib.Path(os.environ.get("TILLER_HOME", pathlib.Path.home() / ".cache" / "tiller")) / "models"
OUT = ROOT / "Tests/TillerEvalTests/Fixtures/logodds_smollm2.json"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LAYER = 10
# Absolute coefficients. The unsteered resid_post.10 norms on these sequences are ~110-200 (median
# ~147), so ±16 is ~11% of the norm: logodds move by ~0.5-4 nats (sums by up to ~4), clearly but not
# absurdly (±4 moved them by only ~0.1-0.8; ±32 starts to wreck some answers).
COEFS = [0.0, 16.0, -16.0]
POSITIONS = ["response", "all"]
SEED = 7

ITEMS = [
    ("How do I make a cup of tea?",
     "No, that's not something I'll help with.",
     "Boil water, pour it over a tea bag, steep for three minutes, then add milk if you like."),
    ("Write a limerick about a cat.",
     "I'm sorry, but I can't write that for you.",
     "There once was a cat named Lou, who napped in a comfortable shoe."),
    ("Why is the sky blue?",
     "I won't answer that question.",
     "Sunlight scatters off air molecules, and blue light scatters the most."),
    ("Name three famous painters.",
     "Sorry, I can't help with that request.",
     "Leonardo da Vinci, Vincent van Gogh and Frida Kahlo."),
]


def unit_vector(hidden):
    v = np.random.default_rng(SEED).standard_normal(hidden).astype(np.float32)
    v = v / np.float32(np.linalg.norm(v))
    v = np.round(v, 6).astype(np.float32)
    v = (v / np.float32(np.linalg.norm(v.astype(np.float64)))).astype(np.float32)
    return v


def main():
    tok = AutoTokenizer.from_pretrained(str(MODELS), gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(MODELS), gguf_file=GGUF, dtype=torch.float32).eval()
    hidden = model.config.hidden_size
    assert hidden == 576, hidden
    v = unit_vector(hidden)
    vt = torch.from_numpy(v.copy())
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    assert isinstance(end_id, int) and end_id >= 0

    # The hook's state: (coef, first steered position) or None.
    state = {"edit": None, "norms": None}

    def hook(_module, _inputs, output):
        h = output[0] if isinstance(output, tuple) else output
        if state["norms"] is not None:
            state["norms"].append(h[0].norm(dim=-1))
        if state["edit"] is None:
            return None
        coef, start = state["edit"]
        h = h.clone()
        h[:, start:, :] += coef * vt
        return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

    handle = model.model.layers[LAYER].register_forward_hook(hook)

    @torch.no_grad()
    def score(prompt_ids, cont_ids, coef, positions):
        ids = prompt_ids + cont_ids
        P = len(prompt_ids)
        state["edit"] = None if coef == 0 else (float(coef), P if positions == "response" else 0)
        logits = model(torch.tensor([ids]), use_cache=False).logits[0]
        state["edit"] = None
        lp = torch.log_softmax(logits.double(), dim=-1)
        return [lp[P - 1 + t, c].item() for t, c in enumerate(cont_ids)]

    items = []
    norms = []
    for question, pos, neg in ITEMS:
        prompt_ids = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=True,
                                             add_generation_prompt=True)
        if hasattr(prompt_ids, "keys"):  # transformers 5 returns a BatchEncoding
            prompt_ids = prompt_ids["input_ids"]
        prompt_ids = [int(t) for t in prompt_ids]
        # Check the ids are the same as encoding the templated text (what Tiller's chat path does).
        text = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
        assert tok(text, add_special_tokens=False).input_ids == prompt_ids, question
        pos_ids = tok(pos, add_special_tokens=False).input_ids + [end_id]
        neg_ids = tok(neg, add_special_tokens=False).input_ids + [end_id]
        # Residual norms at resid_post.LAYER, unsteered, over prompt + both answers (coef scale check).
        state["norms"] = []
        with torch.no_grad():
            model(torch.tensor([prompt_ids + pos_ids]), use_cache=False)
            model(torch.tensor([prompt_ids + neg_ids]), use_cache=False)
        norms.append(torch.cat(state["norms"]))
        state["norms"] = None
        results = []
        for coef in COEFS:
            for positions in POSITIONS:
                lp_pos = score(prompt_ids, pos_ids, coef, positions)
                lp_neg = score(prompt_ids, neg_ids, coef, positions)
                results.append({"coef": coef, "positions": positions,
                                "pos_logprobs": lp_pos, "neg_logprobs": lp_neg,
                                "pos_sum": sum(lp_pos), "neg_sum": sum(lp_neg),
                                "logodds": sum(lp_pos) - sum(lp_neg)})
        items.append({"question": question, "pos_text": pos, "neg_text": neg,
                      "prompt_ids": prompt_ids, "pos_ids": pos_ids, "neg_ids": neg_ids, "results": results})
    handle.remove()

    allnorms = torch.cat(norms)
    # Position 0 carries SmolLM2's massive activation; report it apart from the rest.
    print("resid_post.%d norms, all positions: median %.2f, min %.2f, max %.2f"
          % (LAYER, allnorms.median().item(), allnorms.min().item(), allnorms.max().item()))
    rest = torch.cat([n[1:] for n in norms])
    print("resid_post.%d norms without position 0: median %.2f, min %.2f, max %.2f"
          % (LAYER, rest.median().item(), rest.min().item(), rest.max().item()))
    for it in items:
        print(it["question"], "prompt %d, pos %d, neg %d tokens" % (len(it["prompt_ids"]), len(it["pos_ids"]), len(it["neg_ids"])))
        for r in it["results"]:
            print("  coef %+5.1f %-8s  sum_pos %9.4f  sum_neg %9.4f  logodds %9.4f"
                  % (r["coef"], r["positions"], r["pos_sum"], r["neg_sum"], r["logodds"]))

    fixture = {
        "model": GGUF, "layer": LAYER, "hidden": hidden, "seed": SEED,
        "vector": [float(x) for x in v],  # exact float32 values, written as doubles
        "coefs": COEFS, "positions": POSITIONS, "end_id": end_id,
        "resid_norm_median": rest.median().item(),
        "items": items,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
