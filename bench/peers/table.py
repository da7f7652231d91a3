#!/usr/bin/env python3
"""Prints bench/peers/run.sh's table from the JSON files it wrote."""
import json, os, sys

out, models = sys.argv[1], sys.argv[2:]
sg = json.load(open(os.path.join(out, "sgemm.json")))
print(f"sgemm limit ({sg['threads']} threads): {sg['square_2048']:.0f} GFLOP/s square, {sg['batch32_576x1536']:.0f} at 32 rows, "
      f"{sg['prefill2048_576x1536']:.0f} at 2048 rows")

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


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None

for m in models:
    name = os.path.basename(m)[:-5]
    t = load(os.path.join(out, name + ".tiller.json")) or {}
    bench = load(os.path.join(out, name + ".bench.json")) or []
    pp = next((r["avg_ts"] for r in bench if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0), None)
    tg = next((r["avg_ts"] for r in bench if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0), None)
    batched = {}
    try:
        for line in open(os.path.join(out, name + ".batched.jsonl")):
            r = json.loads(line)
            batched[r["pl"]] = r["speed_tg"]
    except Exception:
        pass
    tr = load(os.path.join(out, name + ".transformers.json")) or {}
    print(f"\n{name}  ({os.path.getsize(m) / 2**20:.0f} MiB)")
    print(f"{'workload':40} {'tiller':>9} {'llama.cpp':>10} {'ratio':>7} {'transformers':>13} {'ratio':>7}")
    rows = [("capture 32×64, all layers / pp512", t.get("capture_tokens_per_second"), pp, tr.get("capture_tokens_per_second")),
            ("generate 32×64 steered / batched 32", t.get("generate_new_tokens_per_second"), batched.get(32), tr.get("generate_new_tokens_per_second")),
            ("batch-1 decode / tg64", t.get("decode_tokens_per_second"), tg, tr.get("decode_tokens_per_second"))]
    fl, fl_body = flops_per_token(m), flops_per_token(m, head=False)
    if fl and t.get("generate_new_tokens_per_second"):
        g = t["generate_new_tokens_per_second"] * fl / 1e9
        c = (t.get("capture_tokens_per_second") or 0) * fl_body / 1e9
        print(f"tiller: generate {g:.0f} GFLOP/s at {fl / 1e9:.3f} GFLOP/token ({100 * g / sg['batch32_576x1536']:.0f}% of the 32-row sgemm limit), "
              f"capture {c:.0f} GFLOP/s at {fl_body / 1e9:.3f} GFLOP/token, no LM head ({100 * c / sg['square_2048']:.0f}% of the square limit)")
    for label, mine, lc, hf in rows:
        f = lambda v: f"{v:9.1f}" if v else "        -"
        r = lambda a, b: f"{a / b:6.2f}×" if a and b else "      -"
        print(f"{label:40} {f(mine)} {f(lc):>10} {r(mine, lc)} {f(hf):>13} {r(mine, hf)}")
