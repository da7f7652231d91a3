#!/usr/bin/env python3
"""Reference for contrastive extraction and cleaned variants, in numpy + scikit-learn.

Builds synthetic "stored activations" shaped like a real extraction (3 layers, hidden 64, 60
positive and 60 negative samples) with what makes the real problem interesting: a massive dim
(7, ~300 in every row, slightly larger for positive samples, so it dominates mean_diff as a real
model's massive dim does), a second layer-dependent outlier dim, and a weak trait direction in the rest.
Then computes, independently of Tiller:

- mean_diff: mean(pos) - mean(neg) in float64, unit-normalised;
- probe: sklearn LogisticRegression(C=1, fit_intercept=True, lbfgs, tol=1e-12, max_iter=100000) on
  row-L2-normalised activations (label 1 = positive), coef unit-normalised; train accuracy of that
  fit, and held-out accuracy of a fit on the split (sample i of each polarity is held out when
  i % 5 == 4);
- variants la1-la3 (the layer's top-N dims listed in `la_dims`) and u1-u2 (the first N of
  `global_dims`): preclean (zero the dims in the activations, then the method) and postclean (zero
  them in the finished vector, renormalise);
- per vector: cosine with its method's baseline, share of |v|^2 in the layer's massive dims, and
  Cohen's d of the pos/neg projections of the raw activations onto v (pooled population std).

Writes Tests/TillerSteeringTests/Fixtures/extraction_activations.safetensors (pos.L / neg.L, F32
[n, hidden]) and extraction_expected.safetensors (`<variant>.layer.L`, F64) plus
extraction_expected.json (dims, accuracies, cosines, diagnostics).

Regenerate (numpy, scikit-learn, safetensors; no model needed):
    python3 tools/reference/extraction_fixtures.py
"""
import json, pathlib
import numpy as np
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression

root = pathlib.Path(__file__).resolve().parents[2]
out = root / "Tests/TillerSteeringTests/Fixtures"
rng = np.random.default_rng(20260204)
L, H, N = 3, 64, 60
MASSIVE = 7
second = {0: 13, 1: 13, 2: 21}            # layer-dependent second outlier
third = {0: 40, 1: 5, 2: 40}
la_dims = {l: [MASSIVE, second[l], third[l]] for l in range(L)}
global_dims = [MASSIVE, 13, 40]
massive_dims = {l: [MASSIVE, second[l]] for l in range(L)}   # dims the "scan" flags massive

acts = {}
for l in range(L):
    u = rng.standard_normal(H)
    u[[MASSIVE, second[l], third[l]]] = 0
    u /= np.linalg.norm(u)
    def block(sign):
        x = rng.standard_normal((N, H))
        x += sign * 2.5 * u                                   # the trait direction
        x[:, MASSIVE] = 120 + 10 * rng.standard_normal(N) + sign * 4   # massive, trait-correlated
        x[:, second[l]] = 30 + 5 * rng.standard_normal(N) + sign * 2
        x[:, third[l]] = 15 + 5 * rng.standard_normal(N)
        return x.astype(np.float32)
    acts[l] = (block(+1), block(-1))

save_file({f"{k}.{l}": (acts[l][0] if k == "pos" else acts[l][1]) for l in range(L) for k in ("pos", "neg")},
          str(out / "extraction_activations.safetensors"),
          metadata={"purpose": "synthetic activations for the extraction reference (tools/reference/extraction_fixtures.py)"})

def unit(v):
    return v / np.linalg.norm(v)

def mean_diff(pos, neg, zero=()):
    pos = pos.astype(np.float64).copy(); neg = neg.astype(np.float64).copy()
    pos[:, list(zero)] = 0; neg[:, list(zero)] = 0
    return unit(pos.mean(0) - neg.mean(0))

def fit(pos, neg, zero=()):
    x = np.concatenate([pos, neg]).astype(np.float64)
    x[:, list(zero)] = 0
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    clf = LogisticRegression(C=1.0, fit_intercept=True, solver="lbfgs", tol=1e-12, max_iter=100000)
    clf.fit(x, y)
    return clf, x, y

def probe(pos, neg, zero=()):
    clf, x, y = fit(pos, neg, zero)
    return unit(clf.coef_[0]), float(clf.score(x, y))

def heldout(pos, neg):
    held = np.arange(N) % 5 == 4
    clf, _, _ = fit(pos[~held], neg[~held])
    x = np.concatenate([pos[held], neg[held]]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.concatenate([np.ones(held.sum()), np.zeros(held.sum())])
    return float(clf.score(x, y))

def cohens_d(pos, neg, v):
    p = pos.astype(np.float64) @ v; n = neg.astype(np.float64) @ v
    return float((p.mean() - n.mean()) / np.sqrt((p.var() + n.var()) / 2))

tensors, info = {}, {"layers": L, "hidden": H, "n_pos": N, "n_neg": N,
                     "la_dims": {str(l): la_dims[l] for l in range(L)}, "global_dims": global_dims,
                     "massive_dims": {str(l): massive_dims[l] for l in range(L)},
                     "probe_train_accuracy": {}, "probe_heldout_accuracy": {}, "cosine": {}, "massive_share": {}, "cohens_d": {}}
for l in range(L):
    pos, neg = acts[l]
    base = {"mean_diff": mean_diff(pos, neg)}
    base["probe"], info["probe_train_accuracy"][str(l)] = probe(pos, neg)
    info["probe_heldout_accuracy"][str(l)] = heldout(pos, neg)
    vecs = dict(base)
    for method in ("probe", "mean_diff"):
        for kind, dims_of in (("la", lambda n: la_dims[l][:n]), ("u", lambda n: global_dims[:n])):
            for n in ((1, 2, 3) if kind == "la" else (1, 2)):
                dims = dims_of(n)
                vecs[f"{method}_preclean_{kind}{n}"] = (mean_diff(pos, neg, dims) if method == "mean_diff"
                                                        else probe(pos, neg, dims)[0])
                post = base[method].copy(); post[dims] = 0
                vecs[f"{method}_postclean_{kind}{n}"] = unit(post)
    for name, v in vecs.items():
        tensors[f"{name}.layer.{l}"] = v
        method = "probe" if name.startswith("probe") else "mean_diff"
        info["cosine"].setdefault(name, {})[str(l)] = float(v @ base[method])
        info["massive_share"].setdefault(name, {})[str(l)] = float((v[massive_dims[l]] ** 2).sum() / (v @ v))
        info["cohens_d"].setdefault(name, {})[str(l)] = cohens_d(pos, neg, v)

save_file(tensors, str(out / "extraction_expected.safetensors"))
(out / "extraction_expected.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
for l in range(L):
    print(f"L{l}: probe acc train {info['probe_train_accuracy'][str(l)]:.3f} held-out {info['probe_heldout_accuracy'][str(l)]:.3f}; "
          f"cos mean_diff_postclean_la1 {info['cosine']['mean_diff_postclean_la1'][str(l)]:.3f}, "
          f"probe_preclean_la2 {info['cosine']['probe_preclean_la2'][str(l)]:.3f}, probe_postclean_la2 {info['cosine']['probe_postclean_la2'][str(l)]:.3f}")
