#!/usr/bin/python3
"""Golden vectors for the library's additive attention, exported from PyTorch.

Usage (Debian's python3-torch and python3-numpy; not the pyenv python3):
    /usr/bin/python3 tools/gen_golden_additive.py [OUTDIR]   # default tests/golden_additive

Two modules, written here as PyTorch code (the format: tests/golden_additive/README.md):
- concat: the decoder attention of PyTorch's seq2seq tutorial,
      weights = softmax(attn(cat(q, k)), -1); applied = bmm(weights, V);
      out = attn_combine(cat(q, applied))
  with attn = nn.Linear(Dq + Dk, max_len), attn_combine = nn.Linear(Dq + Dv, O).
- additive: d2l.ai's AdditiveAttention (W_q, W_k, w_v = nn.Linear without bias; one
  case with W_q/W_k biases), d2l's masked_softmax for valid_lens ([B] or [B, Lq]),
  plus the library's boolean mask ([B, Lq, Lk], nonzero = may attend) and causal
  mask (--causal, bottom-right aligned: row i sees keys j <= i + Lk - Lq), both
  applied as -inf before the softmax.
Every case has its own torch.manual_seed; modules in eval mode (dropout off). The
float32 outputs are the expected values; each case also runs in float64 and the
script prints |f32 - f64| / max |f64|. Only the case additive_empty_rows has query
rows that see no key: d2l would give them uniform weights (-1e6 fill), PyTorch NaN
(-inf masks); its expected values are the library's documented zeros instead.
"""
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import ROOT, write_case  # noqa: E402 (the folder writer of tools/gen_golden.py)


class ConcatAttention(nn.Module):
    """The seq2seq tutorial's AttnDecoderRNN attention, on its own."""

    def __init__(self, Dq, Dk, max_len, Dv, O):
        super().__init__()
        self.attn = nn.Linear(Dq + Dk, max_len)
        self.attn_combine = nn.Linear(Dq + Dv, O)

    def forward(self, q, k, V):
        weights = torch.softmax(self.attn(torch.cat((q, k), 1)), dim=-1)
        applied = torch.bmm(weights.unsqueeze(1), V).squeeze(1)
        return self.attn_combine(torch.cat((q, applied), 1)), weights


def sequence_mask(X, valid_len, value=0.0):
    """d2l's _sequence_mask."""
    maxlen = X.size(1)
    mask = torch.arange(maxlen, dtype=torch.float32)[None, :] < valid_len[:, None]
    X[~mask] = value
    return X


def masked_softmax(X, valid_lens):
    """d2l's masked_softmax (1-D valid_lens repeated per query, 2-D per row)."""
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    shape = X.shape
    if valid_lens.dim() == 1:
        valid_lens = torch.repeat_interleave(valid_lens, shape[1])
    else:
        valid_lens = valid_lens.reshape(-1)
    X = sequence_mask(X.reshape(-1, shape[-1]), valid_lens, value=-1e6)
    return torch.softmax(X.reshape(shape), dim=-1)


class AdditiveAttention(nn.Module):
    """d2l's AdditiveAttention, plus optional W_q/W_k biases and an optional
    boolean `allowed` [B, Lq, Lk] (the library's bool and causal masks) applied as
    -inf to the scores before d2l's masked softmax."""

    def __init__(self, key_size, query_size, num_hiddens, bias=False):
        super().__init__()
        self.W_k = nn.Linear(key_size, num_hiddens, bias=bias)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=bias)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)

    def forward(self, queries, keys, values, valid_lens, allowed=None):
        queries, keys = self.W_q(queries), self.W_k(keys)
        features = torch.tanh(queries.unsqueeze(2) + keys.unsqueeze(1))
        scores = self.w_v(features).squeeze(-1)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float('-inf'))
        weights = masked_softmax(scores, valid_lens)
        return torch.bmm(weights, values), weights


def npf(t):
    return t.detach().numpy().astype(np.float32)


def concat_case(seed, B, Dq, Dk, max_len, Dv, O):
    torch.manual_seed(seed)
    m = ConcatAttention(Dq, Dk, max_len, Dv, O).eval()
    q, k, V = torch.randn(B, Dq), torch.randn(B, Dk), torch.randn(B, max_len, Dv)
    files = {'query': npf(q), 'key': npf(k), 'value': npf(V)}
    files.update({name.replace('.', '_'): npf(p) for name, p in m.state_dict().items()})
    with torch.no_grad():
        out, w = m(q, k, V)
        out64, _ = m.double()(q.double(), k.double(), V.double())
    files['expected'], files['expected_weights'] = npf(out), npf(w)
    return files, '--module concat', deviation(out, out64)


def additive_case(seed, B, Lq, Lk, Dq, Dk, h, Dv, valid_lens=None, bool_mask=False,
                  causal=False, bias=False, empty_rows_ok=False, d2l_example=False):
    torch.manual_seed(seed)
    m = AdditiveAttention(Dk, Dq, h, bias=bias).eval()
    if d2l_example:  # the inputs of d2l's section 11.3 example
        q = torch.normal(0, 1, (B, Lq, Dq))
        k = torch.ones((B, Lk, Dk))
        v = torch.arange(Lk * Dv, dtype=torch.float32).reshape(1, Lk, Dv).repeat(B, 1, 1)
    else:
        q, k, v = torch.randn(B, Lq, Dq), torch.randn(B, Lk, Dk), torch.randn(B, Lk, Dv)
    vl = torch.tensor(valid_lens, dtype=torch.int32) if valid_lens is not None else None
    allowed = torch.ones(B, Lq, Lk, dtype=torch.bool)
    flags = ['--module', 'additive']
    files = {}
    if bool_mask:
        # Random, with one allowed key per row so only empty_rows_ok cases have empty rows.
        bm = torch.rand(B, Lq, Lk) < 0.6
        bm[torch.arange(B)[:, None], torch.arange(Lq)[None, :],
           torch.randint(0, Lk, (B, Lq))] = True
        allowed &= bm
        files['bool_mask'] = bm.numpy().astype(np.uint8)
    if causal:
        i, j = torch.arange(Lq).view(Lq, 1), torch.arange(Lk).view(1, Lk)
        allowed &= ~(j > i + (Lk - Lq))
        flags.append('--causal')
    # Rows that see no key: the union of the valid length and the masks.
    sees = allowed.clone()
    if vl is not None:
        lens = vl.view(B, 1) if vl.dim() == 1 else vl
        sees &= torch.arange(Lk).view(1, 1, Lk) < lens.view(B, -1, 1)
    empty = ~sees.any(-1)  # [B, Lq]
    assert empty_rows_ok or not empty.any(), 'a query row sees no key'
    masks = None if bool(allowed.all()) else allowed
    files.update({name.replace('.', '_'): npf(p) for name, p in m.state_dict().items()})
    with torch.no_grad():
        out, w = m(q, k, v, vl, masks)
        out64, _ = m.double()(q.double(), k.double(), v.double(), vl, masks)
    # The library's semantics for a row that sees no key: zeros (weights and output).
    out, w, out64 = (t.masked_fill(empty.unsqueeze(-1), 0.0) for t in (out, w, out64))
    files.update({'query': npf(q), 'key': npf(k), 'value': npf(v)})
    if vl is not None:
        files['valid_lens'] = vl.numpy().astype(np.int32)
    files['expected'], files['expected_weights'] = npf(out), npf(w)
    return files, ' '.join(flags), deviation(out, out64)


def deviation(out32, out64):
    ref = out64.detach().numpy()
    scale = max(float(np.abs(ref).max()), 1e-30)
    return float(np.abs(out32.detach().double().numpy() - ref).max()) / scale


CASES = [
    # The tutorial's sizes, batch 1; then batch 3 and odd sizes.
    ('concat_tutorial', concat_case, dict(seed=1, B=1, Dq=32, Dk=32, max_len=32, Dv=64, O=64)),
    ('concat_batch3', concat_case, dict(seed=2, B=3, Dq=16, Dk=24, max_len=12, Dv=20, O=10)),
    ('concat_odd', concat_case, dict(seed=3, B=2, Dq=7, Dk=5, max_len=9, Dv=3, O=13)),
    # d2l's example: queries (2, 1, 20), keys (2, 10, 2), values (2, 10, 4), h = 8.
    ('additive_d2l', additive_case, dict(seed=4, B=2, Lq=1, Lk=10, Dq=20, Dk=2, h=8, Dv=4,
                                         valid_lens=[2, 6], d2l_example=True)),
    ('additive_nomask', additive_case, dict(seed=5, B=2, Lq=3, Lk=5, Dq=6, Dk=4, h=8, Dv=3)),
    ('additive_valid_lens_1d', additive_case, dict(seed=6, B=3, Lq=4, Lk=7, Dq=5, Dk=9, h=16,
                                                   Dv=6, valid_lens=[7, 1, 4])),
    ('additive_valid_lens_2d', additive_case, dict(seed=7, B=2, Lq=3, Lk=6, Dq=8, Dk=8, h=12,
                                                   Dv=5, valid_lens=[[1, 3, 6], [2, 2, 5]])),
    ('additive_bool_mask', additive_case, dict(seed=8, B=2, Lq=4, Lk=6, Dq=6, Dk=5, h=10, Dv=4,
                                               bool_mask=True)),
    ('additive_causal', additive_case, dict(seed=9, B=2, Lq=5, Lk=8, Dq=7, Dk=6, h=9, Dv=4,
                                            causal=True)),
    ('additive_causal_valid_lens', additive_case, dict(seed=10, B=2, Lq=4, Lk=4, Dq=5, Dk=5,
                                                       h=8, Dv=3, causal=True,
                                                       valid_lens=[4, 2])),
    ('additive_bool_mask_valid_lens', additive_case, dict(seed=11, B=3, Lq=3, Lk=5, Dq=4, Dk=6,
                                                          h=8, Dv=3, bool_mask=True,
                                                          valid_lens=[5, 3, 4])),
    ('additive_biases', additive_case, dict(seed=12, B=2, Lq=3, Lk=4, Dq=6, Dk=5, h=8, Dv=3,
                                            bias=True, valid_lens=[4, 3])),
    ('additive_odd', additive_case, dict(seed=13, B=3, Lq=7, Lk=13, Dq=11, Dk=3, h=17, Dv=5,
                                         valid_lens=[13, 5, 9])),
    ('additive_decode', additive_case, dict(seed=14, B=1, Lq=1, Lk=37, Dq=24, Dk=24, h=32,
                                            Dv=16)),
    ('additive_empty_rows', additive_case, dict(seed=15, B=2, Lq=3, Lk=5, Dq=4, Dk=4, h=8,
                                                Dv=3, valid_lens=[0, 3], causal=True,
                                                empty_rows_ok=True)),
]


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'tests', 'golden_additive')
    os.makedirs(outdir, exist_ok=True)
    worst, total = 0.0, 0
    for name, make, spec in CASES:
        files, flags, dev = make(**spec)
        total += write_case(outdir, name, files, flags, dev)
        worst = max(worst, dev)
    print('wrote %d cases to %s (%d bytes of .npy); worst float32 vs float64 PyTorch: %.2e'
          % (len(CASES), outdir, total, worst))


if __name__ == '__main__':
    main()
