"""Reference values for Tiller's statistics (Tests/TillerEvalTests/Fixtures/statistics.json).

Mirrors Sources/TillerEval/Statistics.swift independently of it:
  - StatsRNG (SplitMix64) reimplemented with Python integers masked to 64 bits, and
    nextInt(below: n) as next() % n, so every draw matches the Swift code exactly;
  - ROC AUC cases (shifted normal scores, heavily tied rounded scores, judge-like 0-100 scores,
    all-equal, perfectly separated both ways, very unequal sizes), expected values from
    sklearn.metrics.roc_auc_score with label 1 for the positives;
  - percentile-bootstrap intervals of the mean (resample means by numpy, interval ends by
    numpy.quantile with its default "linear" method), and paired intervals of mean(a - b);
  - selection/held-out splits (Fisher-Yates from the end, first ceil(count/2) indices selected).

Rerun after changing any of the above (needs numpy and scikit-learn):
    pip install numpy scikit-learn
    python3 tools/reference/statistics_fixture.py
"""
import json, os
import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests/TillerEvalTests/Fixtures/statistics.json")
MASK = (1 << 64) - 1


class StatsRNG:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def next_int(self, n):
        assert n > 0
        return self.next() % n


# The published SplitMix64 output for seed 0 (Vigna's reference implementation).
assert StatsRNG(0).next() == 0xE220A8397B1DCDAF


def bootstrap(values, seed, resamples, level):
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    estimate = float(np.mean(values))
    if n == 1:
        return estimate, float(values[0]), float(values[0])
    rng = StatsRNG(seed)
    means = np.empty(resamples)
    for b in range(resamples):
        idx = [rng.next_int(n) for _ in range(n)]
        means[b] = np.mean(values[idx])
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return estimate, float(low), float(high)


def split(count, seed):
    order = list(range(count))
    rng = StatsRNG(seed)
    for i in range(count - 1, 0, -1):
        j = rng.next_int(i + 1)
        order[i], order[j] = order[j], order[i]
    half = (count + 1) // 2
    return sorted(order[:half]), sorted(order[half:])


def floats(x):
    return [float(v) for v in x]


def main():
    gen = np.random.default_rng(20240611)
    r6 = lambda a: np.round(a, 6)

    rng_cases = []
    for seed in [0, 1, 1234567, MASK]:
        r = StatsRNG(seed)
        rng_cases.append({"seed": seed, "next_hex": ["%016x" % r.next() for _ in range(5)]})
    bounds = [1, 2, 3, 10, 100, 1000003, (1 << 40) + 7, (1 << 63) - 1]
    r = StatsRNG(99)
    next_int = {"seed": 99, "bounds": bounds, "values": [r.next_int(n) for n in bounds]}

    auc_inputs = [
        ("normal_shift", r6(gen.normal(0.8, 1, 40)), r6(gen.normal(0, 1, 50))),
        ("rounded_ties", np.round(gen.normal(0.5, 1, 60)), np.round(gen.normal(0, 1, 60))),
        ("judge_scores_ties", 25.0 * gen.integers(1, 5, 45), 25.0 * gen.integers(0, 4, 35)),
        ("all_equal", np.full(10, 7.0), np.full(12, 7.0)),
        ("perfectly_separated", np.arange(5, 10, dtype=float), np.arange(0, 5, dtype=float)),
        ("perfectly_reversed", np.arange(0, 5, dtype=float), np.arange(5, 10, dtype=float)),
        ("unequal_sizes", r6(gen.normal(1, 1, 3)), r6(gen.normal(0, 1, 80))),
        ("one_each_tied", np.array([1.0]), np.array([1.0])),
        ("negative_and_zero", np.array([-0.0, 0.0, -2.5, 3.0]), np.array([0.0, -1.0, -2.5])),
    ]
    auc = []
    for name, pos, neg in auc_inputs:
        y = [1] * len(pos) + [0] * len(neg)
        expected = float(roc_auc_score(y, np.concatenate([pos, neg])))
        auc.append({"name": name, "positive": floats(pos), "negative": floats(neg), "expected": expected})

    boot_inputs = [
        ("normal_30", r6(gen.normal(0.2, 1, 30)), 1, 2000, 0.95),
        ("judge_scores_50", np.round(gen.uniform(0, 100, 50)), 42, 1000, 0.9),
        ("small_7_big_seed", r6(gen.normal(-1, 2, 7)), MASK, 500, 0.99),
        ("two_values_one_resample", np.array([1.0, 3.0]), 5, 1, 0.95),
        ("constant_20", np.full(20, 0.1), 8, 300, 0.95),
        ("single_value", np.array([4.25]), 3, 100, 0.95),
    ]
    boot = []
    for name, values, seed, resamples, level in boot_inputs:
        est, low, high = bootstrap(values, seed, resamples, level)
        boot.append({"name": name, "values": floats(values), "seed": seed, "resamples": resamples,
                     "level": level, "estimate": est, "low": low, "high": high})

    base = r6(gen.normal(50, 15, 40))
    paired_inputs = [
        ("shifted_40", r6(base + 3 + gen.normal(0, 2, 40)), base, 7, 2000, 0.95),
        ("independent_25", np.round(gen.uniform(0, 100, 25)), np.round(gen.uniform(0, 100, 25)), 11, 800, 0.8),
    ]
    paired = []
    for name, a, b, seed, resamples, level in paired_inputs:
        est, low, high = bootstrap(a - b, seed, resamples, level)
        paired.append({"name": name, "a": floats(a), "b": floats(b), "seed": seed, "resamples": resamples,
                       "level": level, "estimate": est, "low": low, "high": high})

    splits = []
    for count, seed in [(0, 1), (1, 1), (2, 3), (3, 0), (10, 42), (11, 42), (57, 2024), (100, MASK)]:
        sel, held = split(count, seed)
        splits.append({"count": count, "seed": seed, "selection": sel, "heldout": held})

    fixture = {"generator": "tools/reference/statistics_fixture.py", "rng": rng_cases, "next_int": next_int,
               "auc": auc, "bootstrap": boot, "paired": paired, "split": splits}
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
