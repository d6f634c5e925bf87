#!/usr/bin/python3
"""Golden vectors for the mha tests, exported from torch.nn.MultiheadAttention.

Usage (Debian's python3-torch and python3-numpy; not the pyenv python3):
    /usr/bin/python3 tools/gen_golden.py [OUTDIR]     # default OUTDIR: tests/golden

Each case (28 of them, E 8..32, L 3..12, 1..4 heads, GQA emulated by repeating
K/V weights per group) is written to OUTDIR/<case>/ in the folder format of `mha run`
(see README.md): query.npy [B,Lq,E]; key.npy/value.npy for cross-attention;
the weights under their state-dict names (in_proj_weight.npy + in_proj_bias.npy
when kdim == vdim == E, else q/k/v_proj_weight.npy + q/k/v_proj_bias.npy, the
latter split from PyTorch's in_proj_bias); out_proj_weight.npy (+ bias);
optional mask.npy (bool: True = MAY attend, the inverse of PyTorch's bool
attn_mask; or float32 additive) shaped [Lq,Lk], [B,Lq,Lk] or [B,H,Lq,Lk];
optional key_lengths.npy int32 [B] (int64 in key_padding_int64); flags.txt (the
`mha run` flags on one line);
expected.npy, the float32 output of the module (eval mode, batch_first=True,
need_weights=False). Deterministic: every case has its own torch.manual_seed.
Only the fully_masked_* cases have query rows that may attend to no key: PyTorch's
output row is NaN there (mha gives that head a zero row before the output
projection), which `mha run --expect` accepts in exactly those rows.
"""
import math
import os
import shutil
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_module(E, H, bias=True, kdim=None, vdim=None, dtype=torch.float32):
    m = torch.nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim,
                                    batch_first=True, dtype=dtype)
    m.eval()
    # PyTorch initialises the biases to zero: randomise everything so that the
    # biases are really exercised.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                a = 1.0 / math.sqrt(p.shape[1])
                p.uniform_(-a, a)
            else:
                p.uniform_(-0.5, 0.5)
    return m


def state(m, E):
    """The state dict as mha's folder names (separate biases split)."""
    sd = {k.replace('.', '_'): v.detach().numpy().astype(np.float32)
          for k, v in m.state_dict().items()}
    if 'q_proj_weight' in sd and 'in_proj_bias' in sd:
        b = sd.pop('in_proj_bias')
        nq = sd['q_proj_weight'].shape[0]
        nk = sd['k_proj_weight'].shape[0]
        sd['q_proj_bias'] = b[:nq]
        sd['k_proj_bias'] = b[nq:nq + nk]
        sd['v_proj_bias'] = b[nq + nk:]
    return sd


def run(m, q, k, v, attn_mask, kpm):
    # Gradients enabled on the parameters: PyTorch takes the plain (slow,
    # reference) path of F.multi_head_attention_forward, not the fused fast path.
    out, _ = m(q, k, v, attn_mask=attn_mask, key_padding_mask=kpm, need_weights=False)
    return out.detach()


def make_gqa(m, E, H, G):
    """Grouped-query attention through nn.MultiheadAttention: random K/V weights
    for G heads, repeated so that query head h uses key/value head h // (H/G).
    Sets the expanded weights into m; returns the compact ones (folder names)."""
    dk = E // H
    kw, vw = (m.in_proj_weight[E:2 * E], m.in_proj_weight[2 * E:]) if m._qkv_same_embed_dim \
        else (m.k_proj_weight, m.v_proj_weight)
    ck, cv = kw[:G * dk].detach().clone(), vw[:G * dk].detach().clone()
    cb = m.in_proj_bias[E:].detach().clone().view(2, E)[:, :G * dk] if m.in_proj_bias is not None else None
    # expanded row h*dk + r comes from compact row g*dk + r, g = h // (H/G)
    g = torch.arange(H).view(H, 1) // (H // G)
    rows = (g * dk + torch.arange(dk).view(1, dk)).reshape(-1)
    with torch.no_grad():
        kw.copy_(ck[rows])
        vw.copy_(cv[rows])
        if cb is not None:
            m.in_proj_bias[E:2 * E] = cb[0][rows]
            m.in_proj_bias[2 * E:] = cb[1][rows]
    out = {}
    q = (m.in_proj_weight[:E] if m._qkv_same_embed_dim else m.q_proj_weight).detach().numpy()
    qb = m.in_proj_bias[:E].detach().numpy() if cb is not None else None
    if m._qkv_same_embed_dim:
        out['in_proj_weight'] = np.concatenate([q, ck.numpy(), cv.numpy()])
        if cb is not None:
            out['in_proj_bias'] = np.concatenate([qb, cb[0].numpy(), cb[1].numpy()])
    else:
        out['q_proj_weight'], out['k_proj_weight'], out['v_proj_weight'] = q, ck.numpy(), cv.numpy()
        if cb is not None:
            out['q_proj_bias'], out['k_proj_bias'], out['v_proj_bias'] = \
                qb, cb[0].numpy(), cb[1].numpy()
    return {k: v.astype(np.float32).copy() for k, v in out.items()}


def case(name, seed, B, Lq, E, H, Lk=None, cross=False, bias=True, kdim=None, vdim=None,
         mask=None, key_lengths=None, causal=False, scale=None, kv_heads=None,
         causal_offset=None, key_lengths_dtype=np.int32, empty_rows=(), empty_ok=False):
    """mask: None, 'bool2d', 'float2d', 'bool3d' ([B,Lq,Lk]), 'bool4d', 'float4d'.
    kv_heads: G < H for grouped-query attention (PyTorch's module with K/V
    weights repeated per group; the folder holds the G-head weights).
    causal: True (bottom-right, --causal) or 'top_left' (--causal-top-left, as
    scaled_dot_product_attention(is_causal=True)); causal_offset: --causal-offset N.
    empty_rows: (b, h, i) rows a 'bool4d' mask forbids entirely; empty_ok: query
    rows that see no key are allowed (their output rows must then be NaN)."""
    torch.manual_seed(seed)
    Lk = Lk if Lk is not None else Lq
    if not cross:
        assert Lk == Lq and kdim is None and vdim is None
    m = make_module(E, H, bias=bias, kdim=kdim, vdim=vdim)
    compact = make_gqa(m, E, H, kv_heads) if kv_heads else None
    q = torch.randn(B, Lq, E)
    if cross:
        k = torch.randn(B, Lk, kdim or E)
        v = torch.randn(B, Lk, vdim or E)
    else:
        k = v = q

    files = {}
    flags = ['--heads', str(H)]
    if kv_heads:
        flags += ['--kv-heads', str(kv_heads)]
    allowed = torch.ones(B, H, Lq, Lk, dtype=torch.bool)  # for the no-empty-row check
    attn_mask = None
    if causal or causal_offset is not None:
        i = torch.arange(Lq).view(Lq, 1)
        j = torch.arange(Lk).view(1, Lk)
        if causal_offset is not None:
            flags += ['--causal-offset', str(causal_offset)]
            masked = j > i + causal_offset
        elif causal == 'top_left':
            flags.append('--causal-top-left')
            masked = j > i  # scaled_dot_product_attention(is_causal=True)
        else:
            flags.append('--causal')
            masked = j > i + (Lk - Lq)  # bottom-right aligned, as mha's --causal
        attn_mask = masked
        allowed &= ~masked
    if mask is not None:
        assert attn_mask is None
        if mask == 'bool2d':
            may = torch.rand(Lq, Lk) < 0.6
            may[torch.arange(Lq), torch.randint(0, Lk, (Lq,))] = True
            attn_mask = ~may
            files['mask'] = may.numpy()
            allowed &= may
        elif mask == 'float2d':
            f = torch.randn(Lq, Lk)
            f[torch.rand(Lq, Lk) < 0.3] = float('-inf')
            f[torch.arange(Lq), torch.randint(0, Lk, (Lq,))] = 0.25
            attn_mask = f
            files['mask'] = f.numpy().astype(np.float32)
            allowed &= torch.isfinite(f)
        elif mask in ('bool3d', 'bool4d'):
            shape = (B, 1, Lq, Lk) if mask == 'bool3d' else (B, H, Lq, Lk)
            may = torch.rand(*shape) < 0.5
            idx = torch.randint(0, Lk, shape[:3])
            may.scatter_(3, idx.unsqueeze(3), True)
            for b, h, i in empty_rows:
                may[b, h, i] = False
            may = may.expand(B, H, Lq, Lk)
            attn_mask = (~may).reshape(B * H, Lq, Lk)
            files['mask'] = (may[:, 0] if mask == 'bool3d' else may).numpy().copy()
            allowed &= may
        elif mask == 'float4d':
            f = torch.randn(B, H, Lq, Lk) * 2.0
            f[torch.rand(B, H, Lq, Lk) < 0.3] = float('-inf')
            idx = torch.randint(0, Lk, (B, H, Lq, 1))
            f.scatter_(3, idx, 0.5)
            attn_mask = f.reshape(B * H, Lq, Lk)
            files['mask'] = f.numpy().astype(np.float32)
            allowed &= torch.isfinite(f)
        else:
            raise ValueError(mask)
    kpm = None
    if key_lengths is not None:
        kl = torch.tensor(key_lengths, dtype=torch.int32)
        assert kl.shape == (B,)
        kpm = torch.arange(Lk).view(1, Lk) >= kl.view(B, 1).long()  # True = padding
        files['key_lengths'] = kl.numpy().astype(key_lengths_dtype)
        allowed &= ~kpm.view(B, 1, 1, Lk)
    # A query row whose attention sees no key in some head: NaN in PyTorch's output.
    empty = ~allowed.any(dim=3).all(dim=1)  # [B, Lq]
    assert empty_ok or not bool(empty.any()), name + ': a query row sees no key'

    if scale is not None:
        # nn.MultiheadAttention has no scale argument: scaling W_q and b_q by
        # scale*sqrt(d_k) is exactly softmax scale `scale` on the original weights.
        flags += ['--scale', repr(float(scale))]
    sd = state(m, E)
    if compact:
        sd.update(compact)
    if scale is not None:
        c = float(scale) * math.sqrt(E // H)
        with torch.no_grad():
            if m._qkv_same_embed_dim:
                m.in_proj_weight[:E] *= c
            else:
                m.q_proj_weight *= c
            if m.in_proj_bias is not None:
                m.in_proj_bias[:E] *= c
    out = run(m, q, k, v, attn_mask, kpm)
    assert bool((torch.isnan(out).all(dim=2) == empty).all()), name + ': NaN rows'
    assert bool(torch.isfinite(out[~empty]).all()), name

    # Sanity: the same module in float64 (the float32 expected values are that close).
    m64 = make_module(E, H, bias=bias, kdim=kdim, vdim=vdim, dtype=torch.float64)
    m64.load_state_dict(m.state_dict())
    am64 = attn_mask.double() if attn_mask is not None and attn_mask.dtype != torch.bool else attn_mask
    out64 = run(m64, q.double(), k.double(), v.double(), am64, kpm)
    seen = ~empty
    dev = (out.double() - out64)[seen].abs().max().item() / out64[seen].abs().max().item()

    files['query'] = q.numpy()
    if cross:
        files['key'] = k.numpy()
        files['value'] = v.numpy()
    files.update(sd)
    files['expected'] = out.numpy().astype(np.float32)
    return name, files, ' '.join(flags), dev


CASES = [
    # name, seed, B, Lq, E, H, extra
    dict(name='self_fused_bias', seed=1, B=2, Lq=7, E=16, H=4),
    dict(name='self_fused_nobias', seed=2, B=1, Lq=5, E=12, H=3, bias=False),
    dict(name='self_one_head', seed=3, B=1, Lq=3, E=8, H=1),
    dict(name='batch4', seed=4, B=4, Lq=6, E=8, H=2),
    dict(name='cross_fused', seed=5, B=2, Lq=5, Lk=9, E=16, H=2, cross=True),
    dict(name='cross_kvdim', seed=6, B=2, Lq=6, Lk=9, E=16, H=2, cross=True, kdim=10, vdim=12),
    dict(name='cross_kvdim_nobias', seed=7, B=1, Lq=4, Lk=11, E=24, H=3, cross=True, kdim=8,
         vdim=32, bias=False),
    dict(name='bool_mask_2d', seed=8, B=2, Lq=8, E=16, H=2, mask='bool2d'),
    dict(name='float_mask_2d', seed=9, B=2, Lq=5, Lk=7, E=8, H=1, cross=True, mask='float2d'),
    dict(name='bool_mask_batch', seed=10, B=3, Lq=6, E=12, H=2, mask='bool3d'),
    dict(name='bool_mask_4d', seed=11, B=2, Lq=6, E=32, H=4, mask='bool4d'),
    dict(name='float_mask_4d', seed=12, B=3, Lq=4, Lk=6, E=16, H=2, cross=True, kdim=20,
         vdim=6, mask='float4d'),
    dict(name='key_padding', seed=13, B=3, Lq=4, Lk=10, E=16, H=4, cross=True,
         key_lengths=[10, 6, 1]),
    dict(name='key_padding_self', seed=14, B=2, Lq=8, E=16, H=2, key_lengths=[8, 3]),
    dict(name='causal_self', seed=15, B=2, Lq=12, E=24, H=3, causal=True),
    dict(name='causal_cross', seed=16, B=1, Lq=4, Lk=9, E=16, H=2, cross=True, causal=True),
    dict(name='causal_key_padding', seed=17, B=2, Lq=9, E=16, H=4, causal=True,
         key_lengths=[9, 5]),
    dict(name='key_padding_float_mask', seed=18, B=2, Lq=5, Lk=8, E=16, H=2, cross=True,
         mask='float2d', key_lengths=[8, 6]),
    dict(name='scale', seed=19, B=1, Lq=6, E=16, H=2, scale=0.5),
    dict(name='gqa_fused', seed=21, B=2, Lq=7, E=16, H=4, kv_heads=2, causal=True),
    dict(name='mqa_cross_kvdim', seed=22, B=2, Lq=5, Lk=8, E=24, H=4, cross=True, kdim=10,
         vdim=14, kv_heads=1, key_lengths=[8, 3]),
    dict(name='scale_causal_cross', seed=20, B=2, Lq=3, Lk=5, E=12, H=3, cross=True,
         kdim=7, vdim=9, causal=True, scale=0.125),
    dict(name='key_padding_int64', seed=23, B=3, Lq=5, Lk=7, E=16, H=2, cross=True,
         key_lengths=[7, 4, 2], key_lengths_dtype=np.int64),
    dict(name='causal_top_left_cross', seed=24, B=2, Lq=4, Lk=9, E=16, H=2, cross=True,
         causal='top_left'),
    dict(name='causal_top_left_long_query', seed=25, B=1, Lq=8, Lk=5, E=12, H=3, cross=True,
         causal='top_left'),
    dict(name='causal_offset', seed=26, B=2, Lq=6, Lk=7, E=16, H=4, cross=True,
         causal_offset=2),
    dict(name='fully_masked_rows', seed=27, B=2, Lq=6, E=16, H=2, causal_offset=-2,
         key_lengths=[6, 0], empty_ok=True),
    dict(name='fully_masked_head', seed=28, B=2, Lq=5, E=16, H=4, mask='bool4d',
         empty_rows=[(0, 1, 2), (1, 3, 0), (1, 0, 4)], empty_ok=True),
]


def write_case(outdir, name, files, flags, dev):
    """Writes OUTDIR/<name>/ (replacing it): <key>.npy per entry of files and
    flags.txt; prints a summary line; returns the bytes of .npy written."""
    d = os.path.join(outdir, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    parts = []
    total = 0
    for key in sorted(files):
        arr = np.ascontiguousarray(files[key])
        np.save(os.path.join(d, key + '.npy'), arr, allow_pickle=False)
        total += os.path.getsize(os.path.join(d, key + '.npy'))
        parts.append('%s%s:%s' % (key, list(arr.shape), arr.dtype))
    with open(os.path.join(d, 'flags.txt'), 'w') as f:
        f.write(flags + '\n')
    print('%-30s flags "%s"  |f32-f64|/max %.2e' % (name, flags, dev))
    print('    ' + ' '.join(parts))
    return total


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'tests', 'golden')
    os.makedirs(outdir, exist_ok=True)
    worst = 0.0
    total = 0
    for spec in CASES:
        spec = dict(spec)
        name, files, flags, dev = case(**spec)
        total += write_case(outdir, name, files, flags, dev)
        worst = max(worst, dev)
    print('wrote %d cases to %s (%d bytes of .npy); worst float32 vs float64 PyTorch: %.2e'
          % (len(CASES), outdir, total, worst))


if __name__ == '__main__':
    main()
