#!/usr/bin/env python3
"""The machine's fp32 GEMM limit for bench/peers/run.sh: GFLOP/s of numpy's sgemm (OpenBLAS) on
square and decode-shaped products with the given thread count; prints JSON."""
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(a.threads)
os.environ["OMP_NUM_THREADS"] = str(a.threads)
import numpy as np

def gflops(m, k, n, reps=5):
    x = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
    w = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
    x @ w
    best = 1e9
    for _ in range(reps):
        t = time.perf_counter(); x @ w; best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best / 1e9

# 32 rows at SmolLM2's MLP shape and at Llama-3.2-1B's (whose products are larger, so sgemm runs
# closer to its square rate there).
print(json.dumps({"threads": a.threads, "square_2048": gflops(2048, 2048, 2048),
                  "batch32_576x1536": gflops(32, 576, 1536, reps=50), "batch32_2048x8192": gflops(32, 2048, 8192, reps=10),
                  "prefill2048_576x1536": gflops(2048, 576, 1536)}))
