#!/usr/bin/python3
"""Charts from mha_bench JSON output.

Usage:
    # one run per ISA (attention/forward run on the active ISA, MHA_ISA picks it)
    for isa in scalar avx2 avx512; do
        MHA_ISA=$isa build/bench/mha_bench --benchmark_filter='^(attention|forward)' \\
            --benchmark_format=json --benchmark_out=bench-$isa.json --benchmark_out_format=json
    done
    /usr/bin/python3 tools/plot_bench.py bench-*.json -o charts/ [--metric GFLOPS_cpu]

    (Debian's /usr/bin/python3 has matplotlib; a pyenv python3 earlier in PATH may not.)

Writes into the output directory (default: the current one):
    attention_seq.png   GFLOP/s of `attention` vs sequence length (B=1, H=16, d=64,
                        non-causal), one panel per thread count, one line per ISA,
                        the OpenBLAS baseline dashed, the measured FMA peak of each
                        ISA as a dotted horizontal line.
    attention_headdim.png  the same vs head dim at L=1024 (if measured).
    speedup.png         speed-up of mha over the OpenBLAS baseline (same args:
                        ratio of GFLOP/s = ratio of times) for every attention and
                        forward shape, per ISA and thread count.

With --benchmark_repetitions, the median aggregate is used when present; otherwise
repeated runs of one benchmark are averaged. Several files may hold the same
(family, args, ISA): the later file wins.
"""
import argparse
import json
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SKIP_KEYS = {"min_time", "real_time", "iterations", "repeats", "manual_time", "process_time"}


def parse_name(run_name):
    """'attention/B:1/H:16/.../threads:1/min_time:0.250/real_time' -> ('attention', {...})."""
    family, args = [], {}
    for part in run_name.split("/"):
        if ":" in part:
            k, v = part.split(":", 1)
            if k not in SKIP_KEYS:
                try:
                    args[k] = int(v)
                except ValueError:
                    args[k] = v
        elif part not in SKIP_KEYS and not args:
            family.append(part)
    return "/".join(family), args


def label_isa(label, default):
    for tok in (label or "").split():
        if tok.startswith("isa="):
            return tok[4:]
    return default


def parse_peaks(ctx):
    """{'avx512': {1: 238.1, 2: 480.3}, ...} from the mha_peak_gflops_<isa> context keys."""
    peaks = {}
    for key, val in ctx.items():
        if key.startswith("mha_peak_gflops_"):
            isa = key[len("mha_peak_gflops_"):]
            d = {}
            for tok in str(val).split():
                if ":" in tok:
                    t, g = tok.split(":", 1)
                    try:
                        d[int(t)] = float(g)
                    except ValueError:
                        pass
            peaks[isa] = d
    return peaks


def load(paths):
    """Returns rows {(family, isa, frozen args) -> counters} and the peaks seen."""
    rows, peaks = {}, {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        ctx = doc.get("context", {})
        active = str(ctx.get("mha_active_isa", "?")).split(";")[0].split()[0]
        for isa, d in parse_peaks(ctx).items():
            peaks.setdefault(isa, {}).update(d)
        singles = defaultdict(list)
        medians = {}
        for b in doc.get("benchmarks", []):
            if b.get("error_occurred"):
                continue
            run_name = b.get("run_name", b["name"])
            family, args = parse_name(run_name)
            isa = label_isa(b.get("label"), active)
            key = (family, isa, tuple(sorted(args.items())))
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    medians[key] = b
            else:
                singles[key].append(b)
        for key, bs in singles.items():
            if key in medians:
                continue
            avg = {c: sum(b.get(c, 0.0) for b in bs) / len(bs) for c in ("GFLOPS", "GFLOPS_cpu", "real_time", "peak_pct")}
            rows[key] = avg
        for key, b in medians.items():
            rows[key] = {c: b.get(c, 0.0) for c in ("GFLOPS", "GFLOPS_cpu", "real_time", "peak_pct")}
    return rows, peaks


def select(rows, family, **fixed):
    out = []
    for (fam, isa, args), val in rows.items():
        a = dict(args)
        if fam == family and all(a.get(k) == v for k, v in fixed.items()):
            out.append((isa, a, val))
    return out


METRIC = "GFLOPS"
ISA_ORDER = ["scalar", "avx2", "avx512", "neon"]
COLORS = {"scalar": "tab:gray", "avx2": "tab:blue", "avx512": "tab:red", "neon": "tab:green",
          "openblas": "black"}


def sweep_chart(rows, peaks, xkey, fixed, title, xlabel, path, logx):
    def square(rs):  # self-attention shapes only (Lq == Lk), no decode rows
        return [r for r in rs if r[1].get("Lq") == r[1].get("Lk")]
    mha = square(select(rows, "attention", **fixed))
    blas = square(select(rows, "attention_openblas", **fixed))
    threads = sorted({a["threads"] for _, a, _ in mha + blas})
    if not threads:
        return False
    fig, axes = plt.subplots(1, len(threads), figsize=(6.5 * len(threads), 4.8), squeeze=False)
    for ax, t in zip(axes[0], threads):
        isas = sorted({i for i, a, _ in mha if a["threads"] == t},
                      key=lambda s: ISA_ORDER.index(s) if s in ISA_ORDER else 99)
        for isa in isas:
            pts = sorted((a[xkey], v[METRIC]) for i, a, v in mha if i == isa and a["threads"] == t)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=COLORS.get(isa),
                    label=f"mha {isa}")
            peak = peaks.get(isa, {}).get(t)
            if peak:
                ax.axhline(peak, color=COLORS.get(isa), ls=":", lw=1.2, label=f"{isa} FMA peak {peak:.0f}")
        pts = sorted((a[xkey], v[METRIC]) for _, a, v in blas if a["threads"] == t)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "s--", color=COLORS["openblas"],
                    label="OpenBLAS unfused")
        if logx:
            ax.set_xscale("log", base=2)
        xs = sorted({a[xkey] for _, a, _ in mha + blas if a["threads"] == t})
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.set_ylim(bottom=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("GFLOP/s" + (" (per CPU second)" if METRIC == "GFLOPS_cpu" else ""))
        ax.set_title(f"{title}, threads={t}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def shape_name(family, a):
    if family == "attention":
        s = f"attn B{a['B']} H{a['H']} {a['Lq']}x{a['Lk']} d{a['d']}"
    else:
        s = f"fwd {a['B']}x{a['L']}x{a['E']} H{a['H']}"
    return s + (" causal" if a.get("causal") else "")


def speedup_chart(rows, path):
    groups = defaultdict(dict)  # shape -> {(isa, threads): ratio}
    order = []
    for family in ("attention", "forward"):
        for isa, a, v in select(rows, family):
            base = [bv for _, ba, bv in select(rows, family + "_openblas") if ba == a]
            if not base or not base[0][METRIC]:
                continue
            name = shape_name(family, a)
            if name not in groups:
                order.append((family, a.get("Lq", a.get("L")), a.get("d", 0), name))
            groups[name][(isa, a["threads"])] = v[METRIC] / base[0][METRIC]
    if not groups:
        return False
    names = [n for *_, n in sorted(order, key=lambda o: (o[0], o[1], o[2], o[3]))]
    series = sorted({k for g in groups.values() for k in g},
                    key=lambda k: (ISA_ORDER.index(k[0]) if k[0] in ISA_ORDER else 99, k[1]))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(names) * max(1, len(series) / 2)), 5.5))
    for si, (isa, t) in enumerate(series):
        xs = [i + (si - (len(series) - 1) / 2) * width for i in range(len(names))]
        ys = [groups[n].get((isa, t), 0) for n in names]
        ax.bar(xs, ys, width, label=f"{isa}, {t} thr", color=COLORS.get(isa), alpha=0.45 + 0.5 * (t > 1))
    ax.axhline(1.0, color="black", lw=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("speed-up over OpenBLAS unfused (x)")
    ax.set_title("mha vs OpenBLAS baseline (same args; >1 = mha faster)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", help="mha_bench --benchmark_out JSON files")
    ap.add_argument("-o", "--outdir", default=".", help="directory for the PNG files")
    ap.add_argument("--metric", default="GFLOPS", choices=["GFLOPS", "GFLOPS_cpu"],
                    help="GFLOPS (wall clock, default) or GFLOPS_cpu (per CPU second: "
                         "use it when the machine was busy with other work)")
    opts = ap.parse_args()
    global METRIC
    METRIC = opts.metric
    rows, peaks = load(opts.json)
    os.makedirs(opts.outdir, exist_ok=True)
    made = []
    p = os.path.join(opts.outdir, "attention_seq.png")
    if sweep_chart(rows, peaks, "Lq", dict(B=1, H=16, d=64, causal=0), "attention H=16 d=64",
                   "sequence length (Lq = Lk)", p, True):
        made.append(p)
    p = os.path.join(opts.outdir, "attention_headdim.png")
    if sweep_chart(rows, peaks, "d", dict(B=1, H=16, Lq=1024, Lk=1024, causal=0), "attention H=16 L=1024",
                   "head dim d", p, False):
        made.append(p)
    p = os.path.join(opts.outdir, "speedup.png")
    if speedup_chart(rows, p):
        made.append(p)
    if not made:
        print("no attention/forward rows found in the input", file=sys.stderr)
        return 1
    for m in made:
        print(m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
