#!/usr/bin/env python3
"""Prints bench/peers/run.sh's table from the JSON files it wrote: OUT/roundN/… for each round.
Every ratio is taken within one round (Tiller and its peer back to back); the table gives the
median over rounds and, with more than one round, the range."""
import json, os, statistics, sys

out, models = sys.argv[1], sys.argv[2:]
rounds = sorted((d for d in os.listdir(out) if d.startswith("round")), key=lambda d: int(d[5:])) or ["."]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None


def flops_per_token(path, head=True):
    """2 × the matrix weights a token passes through: every block's projections, plus the LM head
    when `head` (generation computes logits; capture, with logits off, does not)."""
    try:
        import gguf
        r = gguf.GGUFReader(path)
        n, embd, output = 0, 0, 0
        for t in r.tensors:
            if len(t.shape) < 2:
                continue
            e = int(t.n_elements)
            if t.name == "token_embd.weight":
                embd = e
            elif t.name == "output.weight":
                output = e
            else:
                n += e
        return 2 * (n + ((output or embd) if head else 0))
    except Exception:
        return None


def measure(d, name):
    """One round's figures for one model: {workload: (tiller, llama.cpp, transformers)} and the limits."""
    t = load(os.path.join(out, d, name + ".tiller.json")) or {}
    bench = load(os.path.join(out, d, name + ".bench.json")) or []
    pp = next((r["avg_ts"] for r in bench if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0), None)
    tg = next((r["avg_ts"] for r in bench if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0), None)
    batched = {}
    try:
        for line in open(os.path.join(out, d, name + ".batched.jsonl")):
            r = json.loads(line)
            batched[r["pl"]] = r["speed_tg"]
    except Exception:
        pass
    tr = load(os.path.join(out, d, name + ".transformers.json")) or {}
    return {"capture": (t.get("capture_tokens_per_second"), pp, tr.get("capture_tokens_per_second")),
            "generate": (t.get("generate_new_tokens_per_second"), batched.get(32), tr.get("generate_new_tokens_per_second")),
            "decode": (t.get("decode_tokens_per_second"), tg, tr.get("decode_tokens_per_second"))}


def summary(values, fmt):
    """Median, with [min–max] when there is more than one value; '-' when there is none."""
    v = [x for x in values if x]
    if not v:
        return "-"
    s = fmt(statistics.median(v))
    return s + (f" [{fmt(min(v))}–{fmt(max(v))}]" if len(v) > 1 else "")


limits = [load(os.path.join(out, d, "sgemm.json")) or {} for d in rounds]
th = next((l["threads"] for l in limits if l), "?")
print(f"{len(rounds)} round(s), {th} threads. sgemm limit per round (GFLOP/s): "
      + "; ".join(f"{l.get('square_2048', 0):.0f} square, {l.get('batch32_576x1536', 0):.0f} at 32 rows" for l in limits))

labels = {"capture": "capture 32×64, all layers / pp512", "generate": "generate 32×64 steered / batched 32",
          "decode": "batch-1 decode / tg64"}
num = lambda x: f"{x:.1f}"
rat = lambda x: f"{x:.2f}×"
for m in models:
    name = os.path.basename(m)[:-5]
    per = [measure(d, name) for d in rounds]
    print(f"\n{name}  ({os.path.getsize(m) / 2**20:.0f} MiB); median over rounds [range]")
    print(f"{'workload':38} | {'tiller':>20} | {'llama.cpp':>20} | {'ratio':>20} | {'transformers':>12} | ratio")
    for w, label in labels.items():
        mine = [p[w][0] for p in per]
        lc = [p[w][1] for p in per]
        hf = [p[w][2] for p in per]
        ratios = [a / b for a, b in zip(mine, lc) if a and b]
        hf_ratios = [a / b for a, b in zip(mine, hf) if a and b]
        print(f"{label:38} | {summary(mine, num):>20} | {summary(lc, num):>20} | {summary(ratios, rat):>20} | "
              f"{summary(hf, num):>12} | {summary(hf_ratios, rat)}")
    fl, fl_body = flops_per_token(m), flops_per_token(m, head=False)
    if fl:
        share = lambda key, w, f: [p[w][0] * f / 1e9 / l[key] for p, l in zip(per, limits) if p[w][0] and l.get(key)]
        pct = lambda x: f"{100 * x:.0f}%"
        gen_large = share("batch32_2048x8192", "generate", fl)
        print(f"tiller against the same round's sgemm limit: generate {summary(share('batch32_576x1536', 'generate', fl), pct)} "
              f"of the 32-row limit at 576×1536" + (f", {summary(gen_large, pct)} at 2048×8192" if gen_large else "")
              + f" ({fl / 1e9:.3f} GFLOP/token); capture {summary(share('square_2048', 'capture', fl_body), pct)} of the square "
              f"limit ({fl_body / 1e9:.3f} GFLOP/token, no LM head)")
