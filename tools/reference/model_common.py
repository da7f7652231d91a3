"""Shared helpers for model_fixtures.py: capture hooks, greedy decoding, steering hooks, writing.

The hook point names follow TransformerLens: resid_post.L is the output of decoder block L
(0-based). It is captured with a forward hook on model.model.layers[L] rather than read from
output_hidden_states, because transformers puts the *final-normed* state in hidden_states[-1]
while Tiller's last resid_post is the raw block output.
"""
import json
import os

import torch
from safetensors.torch import save_file

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO, "Tests", "TillerModelsTests", "Fixtures")
NEW_TOKENS = 12


def _block_out(output):
    # transformers 5 decoder layers return a tensor; older versions returned a tuple.
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def forward_capture(model, ids, layers):
    """One full (uncached) forward over `ids` (list[int]); returns (logits [T,V], {L: resid [T,H]}, hidden_states)."""
    captured = {}
    handles = []
    for L in layers:
        def hook(mod, args, output, L=L):
            captured[L] = _block_out(output)[0].detach().clone()
        handles.append(model.model.layers[L].register_forward_hook(hook))
    try:
        x = torch.tensor([ids], dtype=torch.long)
        out = model(input_ids=x, attention_mask=torch.ones_like(x), output_hidden_states=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    n = model.config.num_hidden_layers
    hs = out.hidden_states
    # Sanity: hidden_states[L+1] is the block output for L < last; the last entry is final-normed.
    for L in layers:
        if L < n - 1:
            assert torch.equal(hs[L + 1][0], captured[L]), f"hidden_states[{L + 1}] != block {L} output"
    if n - 1 in layers:
        assert not torch.allclose(hs[n][0], captured[n - 1]), "expected hidden_states[-1] to be final-normed"
    return out.logits[0].float(), captured


@torch.no_grad()
def greedy(model, ids, n_new=NEW_TOKENS):
    """Greedy continuation via model.generate (KV cache), with EOS stopping disabled.

    Cross-checked against a cache-free argmax loop so the fixture does not depend on cache details;
    returns (new_ids, min top1-top2 logit margin over the steps, eos positions)."""
    x = torch.tensor([ids], dtype=torch.long)
    gen = model.generate(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        do_sample=False,
        max_new_tokens=n_new,
        min_new_tokens=0,
        eos_token_id=None,  # never stop early: the Swift test compares all n_new tokens
        pad_token_id=model.config.pad_token_id if model.config.pad_token_id is not None else 0,
    )
    new = gen[0, len(ids):].tolist()
    assert len(new) == n_new, f"generate stopped after {len(new)} tokens"
    seq = list(ids)
    margins = []
    for _ in range(n_new):
        t = torch.tensor([seq], dtype=torch.long)
        logits = model(input_ids=t, attention_mask=torch.ones_like(t), use_cache=False).logits[0, -1]
        top = torch.topk(logits, 2)
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(int(top.indices[0]))
    manual = seq[len(ids):]
    if manual != new:
        raise RuntimeError(f"generate {new} != cache-free greedy {manual}")
    eos = model.config.eos_token_id
    eos = set(eos if isinstance(eos, list) else ([eos] if eos is not None else []))
    eos_positions = [i for i, t in enumerate(new) if t in eos]
    return new, min(margins), eos_positions


class Steering:
    """Adds coef·v to the output of decoder block `layer` (resid_post.L).

    from_position=None: every position. from_position=T: only positions with absolute index >= T,
    i.e. the tokens generated after a T-token prompt. The absolute index comes from the layer's
    position_ids kwarg (= cache offset + local index), so it is right both in a cache-free forward
    over prompt+response and in cached decoding where each step sees one token."""

    def __init__(self, model, layer, vector, coef, from_position=None):
        self.delta = (coef * vector).to(torch.float32)
        self.from_position = from_position
        self.handle = model.model.layers[layer].register_forward_hook(self.hook, with_kwargs=True)

    def hook(self, mod, args, kwargs, output):
        h = _block_out(output)
        if self.from_position is None:
            h = h + self.delta
        else:
            pos = kwargs.get("position_ids")
            assert pos is not None, "decoder layer got no position_ids"
            mask = (pos[0] >= self.from_position).to(h.dtype)[None, :, None]  # [1, T, 1]
            h = h + mask * self.delta
        return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

    def remove(self):
        self.handle.remove()


def save(path, tensors, meta):
    """Write a safetensors file with a JSON description in __metadata__["tiller"]."""
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, path, metadata={"tiller": json.dumps(meta, sort_keys=True)})
    print(f"wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path) / 1e3:.0f} kB)")


def i32(xs):
    return torch.tensor(xs, dtype=torch.int32)


def resid_norm_median(resid):
    """Median L2 norm of resid_post rows, skipping position 0 (attention-sink tokens carry huge norms)."""
    r = resid[1:] if resid.shape[0] > 1 else resid
    return float(r.norm(dim=-1).median())
