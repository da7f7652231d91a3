#!/usr/bin/env python3
"""Reference for the massive-activation scan, computed with HF transformers in fp32.

For each default model, runs every text of the shipped calibration set
(Sources/TillerSteering/Resources/calibration.jsonl) through the model, one text at a time,
tokenized as `tokenizer(text).input_ids` (BOS as the tokenizer adds it, no chat template), and
records at resid_post.L (output of decoder block L, before the final norm; a forward hook on the
block) the per-dim max |a| over all tokens. Writes the per-layer top-3 dims and their max values
plus the per-layer median of per-dim maxima to Tests/TillerSteeringTests/Fixtures/scan_<model>.json.

Regenerate (needs `pip install torch==2.13.0+cpu transformers gguf accelerate` and the models in
$TILLER_HOME/models, see scripts/setup.sh):
    python3 tools/reference/scan_fixtures.py
"""
import json, os, sys, pathlib
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(int(os.environ.get("REF_THREADS", "2")))
root = pathlib.Path(__file__).resolve().parents[2]
home = pathlib.Path(os.environ.get("TILLER_HOME", pathlib.Path.home() / ".cache" / "tiller")) / "models"
texts = [json.loads(l)["text"] for l in open(root / "Sources/TillerSteering/Resources/calibration.jsonl") if l.strip()]
models = {"smollm2-135m-instruct": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m": "gemma-3-270m-q4_k_m.gguf"}
only = sys.argv[1:]
out_dir = root / "Tests/TillerSteeringTests/Fixtures"
out_dir.mkdir(parents=True, exist_ok=True)

for name, file in models.items():
    if only and name not in only:
        continue
    tok = AutoTokenizer.from_pretrained(str(home), gguf_file=file)
    model = AutoModelForCausalLM.from_pretrained(str(home), gguf_file=file, dtype=torch.float32)
    model.eval()
    layers = model.model.layers
    maxima = [None] * len(layers)
    sums = [None] * len(layers)
    count = 0

    def make_hook(i):
        def hook(_module, _inputs, output):
            h = output[0] if isinstance(output, tuple) else output
            a = h[0].abs().to(torch.float64)
            m = a.max(dim=0).values
            maxima[i] = m if maxima[i] is None else torch.maximum(maxima[i], m)
            s = a.sum(dim=0)
            sums[i] = s if sums[i] is None else sums[i] + s
        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
    with torch.no_grad():
        for t in texts:
            ids = tok(t, return_tensors="pt").input_ids
            count += ids.shape[1]
            model(ids)
    for h in handles:
        h.remove()
    result = {"model": name, "tokens": count, "layers": []}
    for i in range(len(layers)):
        m = maxima[i]
        top = torch.argsort(m, descending=True)[:3].tolist()
        result["layers"].append({
            "layer": i,
            "top3": top,
            "max": [float(m[d]) for d in top],
            "mean": [float(sums[i][d] / count) for d in top],
            "median_max": float(m.median()),  # torch median: lower of the two middle values
            "sorted_max_mid": [float(x) for x in torch.sort(m).values[len(m) // 2 - 1: len(m) // 2 + 1]],
        })
    path = out_dir / f"scan_{name}.json"
    path.write_text(json.dumps(result, indent=1))
    print("wrote", path, "tokens", count, "L0 top3", result["layers"][0]["top3"], "mid", result["layers"][len(layers) // 2]["top3"])
