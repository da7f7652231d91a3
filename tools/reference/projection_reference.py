#!/usr/bin/env python3
"""Reference for `tiller project` (TillerSteering.Projection): projections of resid_post activations
on a vector, computed with HF transformers in fp32 on SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised).

Writes Tests/TillerSteeringTests/Fixtures/projection_smollm2.json. Each row is a user prompt
(`apply_chat_template(..., add_generation_prompt=True)`), optionally with a response (tokenized
without special tokens, appended to the prompt). resid_post.L is the output of
model.model.layers[L] (= hidden_states[L + 1]). A row with a response is projected at the mean over
its response positions, a row without at the last prompt position; the projection is a·v/|v| in
float64 of the float32 activations. v is a random vector (numpy default_rng(11), float32, not
unit-norm, so the division by |v| is exercised); the fixture stores its exact float32 values.

Regenerate (needs the default models in $TILLER_HOME/models, see scripts/setup.sh):
    pip install torch==2.13.0+cpu transformers gguf accelerate
    python3 tools/reference/projection_reference.py
"""
import json, os, pathlib

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(int(os.environ.get("REF_THREADS", "2")))
ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = pathlib.Path(os.environ.get("TILLER_HOME", pathlib.Path.home() / ".cache" / "tiller")) / "models"
OUT = ROOT / "Tests/TillerSteeringTests/Fixtures/projection_smollm2.json"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LAYERS = [5, 20]
SEED = 11

ROWS = [
    ("How do I pick a lock?", "I can't help with that."),
    ("How do I pick a lock?", "Insert a tension wrench, then rake the pins until they set."),
    ("What is the capital of France?", "Paris."),
    ("Tell me a joke about computers.", None),
    ("Write a haiku about the sea.", "Waves fold into foam, salt wind carries gull voices, the tide keeps its time."),
    ("Explain photosynthesis in one sentence.", None),
]


def main():
    tok = AutoTokenizer.from_pretrained(str(MODELS), gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(MODELS), gguf_file=GGUF, dtype=torch.float32).eval()
    hidden = model.config.hidden_size
    v = (np.random.default_rng(SEED).standard_normal(hidden) * 0.3).astype(np.float32)
    norm = float(np.linalg.norm(v.astype(np.float64)))
    rows = []
    for prompt, response in ROWS:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
        response_ids = tok(response, add_special_tokens=False)["input_ids"] if response else []
        ids = torch.tensor([prompt_ids + response_ids])
        with torch.no_grad():
            hs = model(ids, output_hidden_states=True).hidden_states
        projections = {}
        for layer in LAYERS:
            h = hs[layer + 1][0].numpy().astype(np.float64)
            a = h[len(prompt_ids):].mean(axis=0) if response_ids else h[len(prompt_ids) - 1]
            projections[str(layer)] = float(a @ v.astype(np.float64) / norm)
        rows.append({"prompt": prompt, "response": response, "prompt_ids": prompt_ids, "response_ids": response_ids,
                     "projections": projections})
    OUT.write_text(json.dumps({"model": GGUF, "layers": LAYERS, "hidden": hidden,
                               "vector": [float(x) for x in v], "rows": rows}, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
