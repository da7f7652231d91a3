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


def decode_bytes_per_token(path):
    """Bytes of weights a batch-1 decode step reads: every matrix once (the LM head included),
    the embedding table only when it is also the head (one row of it is looked up otherwise)."""
    try:
        import gguf
        r = gguf.GGUFReader(path)
        total, embd, has_output = 0, 0, False
        for t in r.tensors:
            if len(t.shape) < 2:
                continue
            if t.name == "token_embd.weight":
                embd = int(t.n_bytes)
            else:
                has_output |= t.name == "output.weight"
                total += int(t.n_bytes)
        return total + (0 if has_output else embd)
    except Exception:
        return None


def measure(d, name):
    """One round's figures for one model: {workload: (tiller, llama.cpp, transformers)} and the limits."""
    # One Tiller file per workload (or one for all, from earlier versions of run.sh), and
    # llama-bench's tg and pp runs in one file or two.
    t = load(os.path.join(out, d, name + ".tiller.json")) or {}
    for w in ("decode", "generate", "capture"):
        t.update(load(os.path.join(out, d, f"{name}.tiller.{w}.json")) or {})
    bench = []
    for f in (".bench.json", ".bench.tg.json", ".bench.pp.json"):
        bench += load(os.path.join(out, d, name + f)) or []
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


def each(values, fmt):
    """Every round's value in round order ('-' where one is missing)."""
    return ", ".join(fmt(x) if x else "-" for x in values)


limits = [load(os.path.join(out, d, "sgemm.json")) or {} for d in rounds]
for l, d in zip(limits, rounds):
    l["read_gb_per_second"] = (load(os.path.join(out, d, "bandwidth.json")) or {}).get("read_gb_per_second")
th = next((l["threads"] for l in limits if l), "?")
print(f"{len(rounds)} round(s), {th} threads. sgemm limit per round (GFLOP/s): "
      + "; ".join(f"{l.get('square_2048', 0):.0f} square, {l.get('batch32_576x1536', 0):.0f} at 32 rows" for l in limits))
if any(l.get("read_gb_per_second") for l in limits):
    print("memory read bandwidth per round (GB/s): " + "; ".join(f"{l.get('read_gb_per_second') or 0:.1f}" for l in limits))

labels = {"capture": "capture 32×64, all layers / pp512", "generate": "generate 32×64 steered / batched 32",
          "decode": "batch-1 decode / tg64"}
num = lambda x: f"{x:.1f}"
rat = lambda x: f"{x:.2f}×"
pct = lambda x: f"{100 * x:.0f}%"
per_round = []
for m in models:
    name = os.path.basename(m)[:-5]
    per = [measure(d, name) for d in rounds]
    per_round.append((name, per))
    print(f"\n{name}  ({os.path.getsize(m) / 2**20:.0f} MiB); median over rounds [range]")
    print(f"{'workload':38} | {'tiller':>20} | {'llama.cpp':>20} | {'ratio':>20} | {'transformers':>12} | ratio")
    for w, label in labels.items():
        mine = [p[w][0] for p in per]
        lc = [p[w][1] for p in per]
        hf = [p[w][2] for p in per]
        ratios = [a / b if a and b else None for a, b in zip(mine, lc)]
        hf_ratios = [a / b for a, b in zip(mine, hf) if a and b]
        print(f"{label:38} | {summary(mine, num):>20} | {summary(lc, num):>20} | {summary(ratios, rat):>20} | "
              f"{summary(hf, num):>12} | {summary(hf_ratios, rat)}")
    fl, fl_body = flops_per_token(m), flops_per_token(m, head=False)
    if fl:
        share = lambda key, w, f: [p[w][0] * f / 1e9 / l[key] for p, l in zip(per, limits) if p[w][0] and l.get(key)]
        gen_large = share("batch32_2048x8192", "generate", fl)
        print(f"tiller against the same round's sgemm limit: generate {summary(share('batch32_576x1536', 'generate', fl), pct)} "
              f"of the 32-row limit at 576×1536" + (f", {summary(gen_large, pct)} at 2048×8192" if gen_large else "")
              + f" ({fl / 1e9:.3f} GFLOP/token); capture {summary(share('square_2048', 'capture', fl_body), pct)} of the square "
              f"limit ({fl_body / 1e9:.3f} GFLOP/token, no LM head)")
    bpt = decode_bytes_per_token(m)
    if bpt:
        for who, k in (("tiller", 0), ("llama.cpp", 1)):
            bw = [p["decode"][k] * bpt / 1e9 / l["read_gb_per_second"] for p, l in zip(per, limits)
                  if p["decode"][k] and l.get("read_gb_per_second")]
            if bw:
                print(f"{who} batch-1 decode streams {bpt / 1e6:.0f} MB of weights a token: {summary(bw, pct)} of the same round's read bandwidth")

if len(rounds) > 1:
    print("\nratios round by round (Tiller / llama.cpp):")
    for name, per in per_round:
        for w in labels:
            print(f"  {name:30} {w:9} " + each([p[w][0] / p[w][1] if p[w][0] and p[w][1] else None for p in per], rat))
