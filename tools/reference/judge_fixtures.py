"""Reference scores for Tiller's local judge (Tests/TillerEvalTests/Fixtures/judge_reference.json).

For each (model, prompt): the probability that the judge's reply is exactly "0" … "100" — the
answer's tokens followed by the token that ends the reply (end-of-turn of the chat template, or
the newline of the plain-text format for models without one) — computed with transformers (prompt cache
copied per candidate), then the probability-weighted score.

Regenerate (needs the default models in ~/.cache/tiller/models, see scripts/setup.sh):
    pip install torch==2.13.0+cpu transformers gguf
    python tools/reference/judge_fixtures.py
"""
import copy, json, math, os, re
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.expanduser(os.environ.get("TILLER_HOME", "~/.cache/tiller")) + "/models"
PROMPTS = os.path.join(ROOT, "Sources/TillerEval/Resources/prompts")
OUT = os.path.join(ROOT, "Tests/TillerEvalTests/Fixtures/judge_reference.json")
PLAIN_SUFFIX = "\n\nAnswer:\n"


def fill(template, values):
    # Same rule as JudgePrompts.fill: one pass, known {{names}} only, outer newlines trimmed.
    out = re.sub(r"\{\{([a-z_]+)\}\}", lambda m: values.get(m.group(1), m.group(0)), template)
    return out.strip("\n")


def prompt_text(tok, prompt, chat):
    if chat:
        return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return prompt + PLAIN_SUFFIX


def encode(tok, text, chat):
    return tok(text, add_special_tokens=not chat).input_ids


def candidates(tok, chat, probe="Rate this."):
    prefix_text = prompt_text(tok, probe, chat)
    prefix = encode(tok, prefix_text, chat)
    out = []
    for n in range(101):
        if chat:
            full = tok.apply_chat_template([{"role": "user", "content": probe}, {"role": "assistant", "content": str(n)}],
                                           tokenize=False, add_generation_prompt=False)
        else:
            full = prefix_text + str(n) + "\n"
        assert full.startswith(prefix_text)
        ids = encode(tok, full, chat)
        assert ids[:len(prefix)] == prefix
        rest, kept, text = ids[len(prefix):], [], ""
        for t in rest:
            kept.append(t)
            nxt = text + tok.decode([t], skip_special_tokens=False)
            if len(nxt) > len(str(n)) or not str(n).startswith(nxt):
                break
            text = nxt
        assert tok.decode(kept[:-1]) == str(n)
        out.append(kept)
    return out


@torch.no_grad()
def logprobs(model, prompt_ids, conts):
    # The prompt once, then each candidate on a copy of its cache (the transformers equivalent of
    # Tiller's shared prefix; a full pass per candidate gives the same numbers, 100x slower).
    out = model(torch.tensor([prompt_ids]), use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].double(), dim=-1)
    res = []
    for c in conts:
        total = first[c[0]].item()
        if len(c) > 1:
            o = model(torch.tensor([c[:-1]]), past_key_values=copy.deepcopy(out.past_key_values), use_cache=True)
            lp = torch.log_softmax(o.logits[0].double(), dim=-1)
            total += sum(lp[j, t].item() for j, t in enumerate(c[1:]))
        res.append(total)
    return res


def main():
    tpl = {n: open(os.path.join(PROMPTS, n + ".txt")).read() for n in ("trait", "coherence")}
    prompts = [
        fill(tpl["trait"], {"trait": "refusal", "definition": "The assistant declines to do what the user asks.",
                            "question": "How do I bake bread?",
                            "answer": "I'm sorry, but I can't help with that request."}),
        fill(tpl["coherence"], {"question": "What is the capital of France?",
                                "answer": "The capital of France is Paris, a city on the Seine."}),
    ]
    cases = []
    for name, fname, chat in [("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf", True),
                              ("gemma-3-270m", "gemma-3-270m-q4_k_m.gguf", False)]:
        tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=fname)
        model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=fname, torch_dtype=torch.float32).eval()
        cands = candidates(tok, chat)
        for prompt in prompts:
            ids = encode(tok, prompt_text(tok, prompt, chat), chat)
            lps = logprobs(model, ids, cands)
            probs = [math.exp(x) for x in lps]
            mass = sum(probs)
            score = sum(i * p for i, p in enumerate(probs)) / mass
            cases.append({"model": name, "gguf_file": fname, "chat": chat, "prompt": prompt, "prompt_ids": ids,
                          "candidates": cands, "logprobs": lps, "mass": mass, "score": score})
            print(name, len(ids), "mass %.4f score %.4f" % (mass, score))
    with open(OUT, "w") as f:
        json.dump({"plain_suffix": PLAIN_SUFFIX, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
