#!/usr/bin/env python3
"""Exercises every route of `tiller serve` with the real `openai` Python client.

Starts two servers on loopback — SmolLM2-135M-Instruct (chat) and Gemma 3 270M (a base model,
text completions) — each with an API key, and checks with the client: the models list, chat
completions (plain, n > 1, streamed, logprobs, several steering entries), text completions
(plain, several prompts, n > 1, streamed, logprobs), the vector list and run-time loading (by
path and by upload), and the errors the client raises (wrong key, unknown vector, bad field).
Greedy streamed text must equal the non-streamed text, and steering must change the answer.

    pip install openai numpy
    swift build                      # or pass --tiller PATH
    python3 tools/openai_client_check.py [--tiller .build/debug/tiller]

Exits non-zero on the first failed check; prints one line per check.
"""
import argparse
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import openai

KEY = "sk-tiller-check-" + os.urandom(6).hex()
checks = 0


def check(cond, what):
    global checks
    checks += 1
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        sys.exit(1)


def write_vector(path, layers, hidden, seed, metadata=None):
    """A Tiller steering vector file: safetensors with F32 tensors layer.L [hidden]."""
    rng = np.random.default_rng(seed)
    header, blobs, offset = {}, [], 0
    for layer in layers:
        v = (rng.uniform(-1, 1, hidden)).astype("<f4").tobytes()
        header[f"layer.{layer}"] = {"dtype": "F32", "shape": [hidden], "data_offsets": [offset, offset + len(v)]}
        blobs.append(v)
        offset += len(v)
    header["__metadata__"] = metadata or {}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(tiller, model, extra, log):
    port = free_port()
    env = dict(os.environ, TILLER_API_KEY=KEY)
    proc = subprocess.Popen([tiller, "serve", "--model", model, "--port", str(port)] + extra,
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"tiller serve --model {model} exited with {proc.returncode}; see {log.name}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.5)
    proc.kill()
    sys.exit(f"tiller serve --model {model} did not start within 300 s")


def chat_checks(base, vec_dir):
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=300)
    models = client.models.list()
    check([m.id for m in models.data] == ["smollm2-135m-instruct"], f"models.list: {[m.id for m in models.data]}")

    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, max_tokens=16, temperature=0)
    plain = r.choices[0].message.content
    check(r.object == "chat.completion" and bool(plain) and r.usage.completion_tokens > 0,
          f"chat.completions: {plain!r} ({r.usage.completion_tokens} tokens)")

    parts = []
    finish = None
    for ev in client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, max_tokens=16, temperature=0, stream=True):
        for c in ev.choices:
            parts.append(c.delta.content or "")
            finish = c.finish_reason or finish
    check("".join(parts) == plain and finish in ("stop", "length"), f"chat stream: {len(parts)} chunks, same text, finish {finish}")

    r = client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, max_tokens=10, temperature=0.9, seed=5, n=3)
    texts = [c.message.content for c in r.choices]
    check([c.index for c in r.choices] == [0, 1, 2] and len(set(texts)) > 1, f"chat n=3: {texts}")
    one = client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, max_tokens=10, temperature=0.9, seed=5)
    check(one.choices[0].message.content == texts[0], "chat n=3: choice 0 = the n=1 answer with the same seed")

    streamed = {}
    for ev in client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, max_tokens=10, temperature=0.9,
                                             seed=5, n=3, stream=True, stream_options={"include_usage": True}):
        for c in ev.choices:
            streamed[c.index] = streamed.get(c.index, "") + (c.delta.content or "")
        if ev.usage:
            usage = ev.usage
    check([streamed[i] for i in range(3)] == texts and usage.completion_tokens == r.usage.completion_tokens,
          f"chat stream n=3: per-choice text equal, usage {usage.completion_tokens} tokens")

    r = client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, max_tokens=4, temperature=0,
                                       logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs.content
    check(len(lp) == r.usage.completion_tokens and all(len(t.top_logprobs) == 3 for t in lp),
          f"chat logprobs: {[(t.token, round(t.logprob, 3)) for t in lp]}")

    vectors = client.get("/vectors", cast_to=object)
    check([v["id"] for v in vectors["data"]] == ["rand"] and vectors["data"][0]["layers"] == [10],
          f"GET /vectors: {[(v['id'], v['layers'], round(v['norms']['10'], 3)) for v in vectors['data']]}")
    path = os.path.join(vec_dir, "multi.safetensors")
    write_vector(path, [5, 12], 576, seed=2, metadata={"trait": "check", "method": "mean_diff"})
    e = client.post("/vectors", body={"name": "multi", "path": path}, cast_to=object)
    check(e["layers"] == [5, 12] and e["extraction"]["trait"] == "check", f"POST /vectors (path): {e['id']} layers {e['layers']}")
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    e = client.post("/vectors", body={"name": "uploaded", "data": data}, cast_to=object)
    check(e["file"] == "upload:uploaded", f"POST /vectors (upload): {e['id']} layers {e['layers']}")
    bad = os.path.join(vec_dir, "small.safetensors")
    write_vector(bad, [3], 64, seed=3)
    try:
        client.post("/vectors", body={"name": "small", "path": bad}, cast_to=object)
        check(False, "POST /vectors with the wrong hidden size must fail")
    except openai.BadRequestError as err:
        check("hidden size is 576" in str(err), f"POST /vectors, wrong hidden size: 400 {err.body['message'][:90]!r}")

    steer = [{"vector": "rand", "layer": 10, "coef": 12}]
    s1 = client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, max_tokens=16, temperature=0,
                                        extra_body={"steering": steer}).choices[0].message.content
    check(s1 != plain, f"steered (1 entry): {s1!r}")
    multi = steer + [{"vector": "multi", "layer": 5, "coef": 6}, {"vector": "uploaded", "layer": 12, "coef": -4, "positions": "response"}]
    s3 = client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, max_tokens=16, temperature=0,
                                        extra_body={"steering": multi}).choices[0].message.content
    parts = []
    for ev in client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, max_tokens=16, temperature=0,
                                             stream=True, extra_body={"steering": multi}):
        parts.extend(c.delta.content or "" for c in ev.choices)
    check(s3 != s1 and "".join(parts) == s3, f"steered (3 entries, layers 5/10/12), streamed alike: {s3!r}")

    try:
        client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, extra_body={"steering": [{"vector": "nope", "layer": 3}]})
        check(False, "an unknown vector must fail")
    except openai.BadRequestError as err:
        check(err.status_code == 400 and "unknown steering vector" in str(err), "unknown vector: BadRequestError 400")
    wrong = openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0)
    for what, call in [("models.list", lambda: wrong.models.list()),
                       ("chat", lambda: wrong.chat.completions.create(model="x", messages=msgs)),
                       ("GET /vectors", lambda: wrong.get("/vectors", cast_to=object))]:
        try:
            call()
            check(False, f"{what} with a wrong key must fail")
        except openai.AuthenticationError as err:
            check(err.status_code == 401, f"{what} with a wrong key: AuthenticationError 401")


def completion_checks(base):
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=300)
    prompts = ["The capital of France is", "Water boils at a temperature of"]
    r = client.completions.create(model="gemma-3-270m", prompt=prompts, max_tokens=12, temperature=0)
    texts = [c.text for c in r.choices]
    check(r.object == "text_completion" and [c.index for c in r.choices] == [0, 1] and all(texts),
          f"completions (2 prompts, Gemma 3 270M base): {texts}")
    streamed = {}
    for ev in client.completions.create(model="gemma-3-270m", prompt=prompts, max_tokens=12, temperature=0, stream=True):
        for c in ev.choices:
            streamed[c.index] = streamed.get(c.index, "") + c.text
    check([streamed[0], streamed[1]] == texts, "completions stream: per-prompt text equal")
    r = client.completions.create(model="gemma-3-270m", prompt=prompts[0], max_tokens=8, temperature=0.9, seed=3, n=3, logprobs=2)
    check(len(r.choices) == 3 and all(len(c.logprobs.tokens) == len(c.logprobs.token_logprobs) for c in r.choices)
          and r.choices[0].logprobs.text_offset[0] == len(prompts[0]),
          f"completions n=3 logprobs=2: {[c.text for c in r.choices]}")
    # echo + logprobs + max_tokens 0: the prompt scored, as lm-evaluation-harness asks for it.
    r = client.completions.create(model="gemma-3-270m", prompt=prompts[0], max_tokens=0, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    check(r.choices[0].text == prompts[0] and lp.token_logprobs[0] is None and len(lp.tokens) == r.usage.prompt_tokens
          and all(v is not None and v <= 0 for v in lp.token_logprobs[1:]) and lp.text_offset[0] == 0,
          f"completions echo + logprobs, max_tokens 0: {len(lp.tokens)} prompt tokens scored, "
          f"sum {sum(lp.token_logprobs[1:]):.3f}")
    r2 = client.completions.create(model="gemma-3-270m", prompt=prompts[0], max_tokens=6, temperature=0, echo=True)
    check(r2.choices[0].text == prompts[0] + texts[0][:len(r2.choices[0].text) - len(prompts[0])]
          and r2.choices[0].text.startswith(prompts[0]), f"completions echo: {r2.choices[0].text!r}")
    # best_of: the best of 4 by mean token log-probability is one of the 4 that n=4 gives.
    four = client.completions.create(model="gemma-3-270m", prompt=prompts[0], max_tokens=6, temperature=1, seed=9, n=4, logprobs=0)
    means = [sum(c.logprobs.token_logprobs) / len(c.logprobs.token_logprobs) for c in four.choices]
    best = client.completions.create(model="gemma-3-270m", prompt=prompts[0], max_tokens=6, temperature=1, seed=9, best_of=4)
    check(best.choices[0].text == four.choices[means.index(max(means))].text and best.usage.completion_tokens == four.usage.completion_tokens,
          f"completions best_of=4: {best.choices[0].text!r} (mean log-prob {max(means):.3f})")
    try:
        client.completions.create(model="gemma-3-270m", prompt="x", suffix="y")
        check(False, "suffix must be refused on a vocabulary without FIM tokens")
    except openai.BadRequestError as err:
        check("fill-in-the-middle" in str(err), "completions suffix without FIM tokens: BadRequestError says so")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiller", default=os.path.join(os.path.dirname(__file__), "..", ".build", "debug", "tiller"))
    ap.add_argument("--chat-model", default="smollm2-135m-instruct")
    ap.add_argument("--base-model", default="gemma-3-270m")
    a = ap.parse_args()
    print(f"openai {openai.__version__}; tiller {a.tiller}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        write_vector(os.path.join(d, "rand.safetensors"), [10], 576, seed=1)
        log_path = os.path.join(d, "serve.log")
        with open(log_path, "w") as log:
            chat, chat_base = start(a.tiller, a.chat_model, ["--vector", f"rand={d}/rand.safetensors"], log)
            base, base_base = start(a.tiller, a.base_model, [], log)
            try:
                chat_checks(chat_base, d)
                completion_checks(base_base)
            finally:
                chat.terminate()
                base.terminate()
                chat.wait(30)
                base.wait(30)
        with open(log_path) as f:
            served = f.read()
        check(KEY not in served, f"the API key appears nowhere in the servers' output ({len(served)} bytes)")
    print(f"all {checks} checks passed")


if __name__ == "__main__":
    main()
