// attention / forward on the library's active ISA, interleaved with their
// baselines (OpenBLAS unfused, float64 reference) on the same args.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"

namespace mhab {

namespace {

const char *active_name() { return mha_isa_name(mha_active_isa()); }

// The two memory layouts of q/k/v/out: head-major [B, H, L, d] (contiguous per
// head) and token-major [B, L, H, d] (as a projection leaves them, and as a
// [B, L_max, G, d] cache keeps K and V: key rows G*d floats apart, 4 KiB for
// G*d = 1024).
enum Layout { BHLD = 0, BLHD = 1 };
const char *layout_name(int layout) { return layout == BLHD ? "blhd" : "bhld"; }

void set_strides(int64_t st[3], int layout, int64_t heads, int64_t len, int64_t d)
{
    st[0] = heads * len * d;
    st[1] = layout == BLHD ? d : len * d;
    st[2] = layout == BLHD ? heads * d : d;
}

// q/out [B, H, Lq, d], k/v [B, G, Lk, d] in either layout.
struct AttnData {
    Buf q, k, v, out;
    mha_attention_args args;
    AttnData(int64_t b, int64_t h, int64_t g, int64_t lq, int64_t lk, int64_t d, bool causal, int threads,
             int layout)
        : q((size_t)(b * h * lq * d), 11), k((size_t)(b * g * lk * d), 12), v((size_t)(b * g * lk * d), 13),
          out((size_t)(b * h * lq * d))
    {
        std::memset(&args, 0, sizeof args);
        args.batch = b;
        args.num_heads = h;
        args.num_kv_heads = g;
        args.len_q = lq;
        args.len_k = lk;
        args.head_dim_qk = d;
        args.head_dim_v = d;
        args.q = q.data();
        args.k = k.data();
        args.v = v.data();
        args.out = out.data();
        set_strides(args.q_stride, layout, h, lq, d);
        set_strides(args.out_stride, layout, h, lq, d);
        set_strides(args.k_stride, layout, g, lk, d);
        set_strides(args.v_stride, layout, g, lk, d);
        args.scale = 0.0f;
        args.mask.causal = causal ? MHA_CAUSAL_BOTTOM_RIGHT : MHA_CAUSAL_NONE;
        args.num_threads = threads;
    }
};

// Runs mha_attention on `a` in the timed loop; false (row skipped) on error.
bool run_attention(benchmark::State &st, AttnData &a, int threads, LoopTimer *timer)
{
    size_t ws = 0;
    mha_status s = mha_attention_workspace_size(&a.args, &ws);
    if (s != MHA_OK) {
        st.SkipWithError(mha_status_message(s));
        return false;
    }
    Buf w(ws / sizeof(float) + 1);
    s = mha_attention(&a.args, w.data(), ws);
    if (s != MHA_OK) {
        st.SkipWithError(mha_status_message(s));
        return false;
    }
    *timer = LoopTimer(threads);
    for (auto _ : st) {
        mha_attention(&a.args, w.data(), ws);
        benchmark::ClobberMemory();
    }
    return true;
}

// Times the call a describes and gives the row its label and counters; false when
// the call failed (the row then carries the error).
static bool time_attention(benchmark::State &st, AttnData &a, int threads, double flops, double bytes)
{
    LoopTimer timer(threads);
    if (!run_attention(st, a, threads, &timer))
        return false;
    st.SetLabel(label("mha", active_name(), threads));
    set_counters(st, timer, flops, bytes, peak_of(mha_active_isa(), threads));
    return true;
}

void BM_attention(benchmark::State &st, int layout)
{
    int64_t b = st.range(0), h = st.range(1), lq = st.range(2), lk = st.range(3), d = st.range(4);
    bool causal = st.range(5) != 0;
    int threads = (int)st.range(6);
    AttnData a(b, h, h, lq, lk, d, causal, threads, layout);
    time_attention(st, a, threads, attention_flops(b, h, lq, lk, d, causal), attention_bytes(b, h, lq, lk, d));
}

// attention_ratio/causal/layout:X: the causal call (side b) against the unmasked
// one (side a) on the same tensors; attention_ratio/layout: [B, L, H, d] tensors
// (b) against [B, H, L, d] ones (a), unmasked. Alternated (time_ratio): the
// issue's "causal <= 0.53x the unmasked time" and "token-major within 5%" are
// ratios that whole rows, run minutes apart on a shared host, cannot resolve.
enum RatioKind { CAUSAL_VS_UNMASKED = 0, BLHD_VS_BHLD = 1 };

void BM_attention_ratio(benchmark::State &st, int kind, int layout)
{
    int64_t b = st.range(0), h = st.range(1), lq = st.range(2), lk = st.range(3), d = st.range(4);
    int threads = (int)st.range(5);
    AttnData x(b, h, h, lq, lk, d, false, threads, kind == BLHD_VS_BHLD ? BHLD : layout);
    std::unique_ptr<AttnData> y(kind == BLHD_VS_BHLD ? new AttnData(b, h, h, lq, lk, d, false, threads, BLHD)
                                                     : nullptr);
    mha_attention_args side_b = y ? y->args : x.args;
    if (kind == CAUSAL_VS_UNMASKED)
        side_b.mask.causal = MHA_CAUSAL_BOTTOM_RIGHT;
    size_t wa = 0, wb = 0;
    mha_status s = mha_attention_workspace_size(&x.args, &wa);
    if (s == MHA_OK)
        s = mha_attention_workspace_size(&side_b, &wb);
    if (s != MHA_OK) {
        st.SkipWithError(mha_status_message(s));
        return;
    }
    const size_t ws = wa > wb ? wa : wb;
    Buf w(ws / sizeof(float) + 1);
    auto call = [&](const mha_attention_args &args) {
        mha_status r = mha_attention(&args, w.data(), ws);
        if (r != MHA_OK)
            st.SkipWithError(mha_status_message(r));
        return r == MHA_OK;
    };
    time_ratio(
        st, [&] { return call(x.args); }, [&] { return call(side_b); },
        kind == CAUSAL_VS_UNMASKED ? "causal_vs_unmasked" : "blhd_vs_bhld");
    st.SetLabel(label("mha", active_name(), threads));
}

// A boolean mask [Lq, Lk] shared by every head (stride 0), each pair kept with
// probability 1/2, drawn once: half of every row's exps come out 0 and are
// flushed (f32_exp_sub_sum's 2^-126 flush; without it, the masked lanes' tiny
// results cost a microcode assist each on Intel and the row ran ~3x slower).
void BM_attention_masked(benchmark::State &st, int layout)
{
    int64_t b = st.range(0), h = st.range(1), lq = st.range(2), lk = st.range(3), d = st.range(4);
    int threads = (int)st.range(6);
    AttnData a(b, h, h, lq, lk, d, false, threads, layout);
    std::vector<uint8_t> keep((size_t)(lq * lk));
    uint32_t x = 2463534242u;
    for (uint8_t &k : keep) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        k = (uint8_t)(x >> 31);
    }
    a.args.mask.bool_mask.data = keep.data();
    a.args.mask.bool_mask.stride_q = lk;
    // Flops of the dense call: a random mask skips no tile.
    time_attention(st, a, threads, attention_flops(b, h, lq, lk, d, false), attention_bytes(b, h, lq, lk, d));
}

// Decoding: a few query rows against a long K/V cache of G kv heads. Memory-bound
// once K/V leave the cache: GBps counts K and V once (the bytes any decoder must
// read; Q and O are negligible), read_pct is that against the measured read
// bandwidth of the same thread count.
void BM_decode(benchmark::State &st, int layout)
{
    int64_t b = st.range(0), h = st.range(1), g = st.range(2), lq = st.range(3), lk = st.range(4),
            d = st.range(5);
    int threads = (int)st.range(6);
    AttnData a(b, h, g, lq, lk, d, false, threads, layout);
    const double kv_bytes = 2.0 * 4.0 * (double)(b * g * lk * d);
    if (!time_attention(st, a, threads, attention_flops(b, h, lq, lk, d, false), kv_bytes))
        return;
    if (st.counters.count("GBps") && read_gbps(threads) > 0)
        st.counters["read_pct"] = 100.0 * st.counters["GBps"] / read_gbps(threads);
}

void BM_attention_reference(benchmark::State &st)
{
    int64_t b = st.range(0), h = st.range(1), lq = st.range(2), lk = st.range(3), d = st.range(4);
    bool causal = st.range(5) != 0;
    AttnData a(b, h, h, lq, lk, d, causal, 1, BHLD);
    const LoopTimer timer(1);
    for (auto _ : st) {
        mha_status s = mha_reference_attention(&a.args);
        if (s != MHA_OK) {
            st.SkipWithError(mha_status_message(s));
            break;
        }
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("reference(float64)", "scalar", 1));
    set_counters(st, timer, attention_flops(b, h, lq, lk, d, causal), attention_bytes(b, h, lq, lk, d),
                 peak_of(MHA_ISA_SCALAR, 1));
}

// nn.MultiheadAttention(E, H) with biases and output projection, fused in_proj weights.
struct FwdData {
    Buf x, w_in, b_in, w_out, b_out, out;
    mha_config cfg;
    mha_weights wts;
    mha_forward_args args;
    FwdData(int64_t b, int64_t l, int64_t e, int64_t h, bool causal, int threads)
        : x((size_t)(b * l * e), 21), w_in((size_t)(3 * e * e), 22, 1.0f / std::sqrt((float)e)),
          b_in((size_t)(3 * e), 23, 0.1f), w_out((size_t)(e * e), 24, 1.0f / std::sqrt((float)e)),
          b_out((size_t)e, 25, 0.1f), out((size_t)(b * l * e))
    {
        cfg = mha_config_default(e, h);
        cfg.has_bias = 1;
        cfg.has_out_proj = 1;
        std::memset(&wts, 0, sizeof wts);
        wts.in_proj_weight = w_in.data();
        wts.in_proj_bias = b_in.data();
        wts.out_weight = w_out.data();
        wts.out_bias = b_out.data();
        std::memset(&args, 0, sizeof args);
        args.batch = b;
        args.len_q = l;
        args.len_k = l;
        args.query = x.data();
        args.mask.causal = causal ? MHA_CAUSAL_BOTTOM_RIGHT : MHA_CAUSAL_NONE;
        args.out = out.data();
        args.num_threads = threads;
    }
};

void BM_forward(benchmark::State &st)
{
    int64_t b = st.range(0), l = st.range(1), e = st.range(2), h = st.range(3);
    bool causal = st.range(4) != 0;
    int threads = (int)st.range(5);
    FwdData f(b, l, e, h, causal, threads);
    mha_model *model = nullptr;
    mha_status s = mha_model_create(&f.cfg, &f.wts, &model);
    size_t ws = 0;
    if (s == MHA_OK)
        s = mha_forward_workspace_size(model, b, l, l, threads, &ws);
    Buf w(ws / sizeof(float) + 1);
    if (s == MHA_OK)
        s = mha_forward(model, &f.args, w.data(), ws);
    if (s != MHA_OK) {
        mha_model_destroy(model);
        st.SkipWithError(mha_status_message(s));
        return;
    }
    const LoopTimer timer(threads);
    for (auto _ : st) {
        mha_forward(model, &f.args, w.data(), ws);
        benchmark::ClobberMemory();
    }
    mha_model_destroy(model);
    st.SetLabel(label("mha", active_name(), threads));
    set_counters(st, timer, forward_flops(b, l, e, h, causal), forward_bytes(b, l, e),
                 peak_of(mha_active_isa(), threads));
}

void BM_forward_reference(benchmark::State &st)
{
    int64_t b = st.range(0), l = st.range(1), e = st.range(2), h = st.range(3);
    bool causal = st.range(4) != 0;
    FwdData f(b, l, e, h, causal, 1);
    const LoopTimer timer(1);
    for (auto _ : st) {
        mha_status s = mha_reference_forward(&f.cfg, &f.wts, &f.args);
        if (s != MHA_OK) {
            st.SkipWithError(mha_status_message(s));
            break;
        }
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("reference(float64)", "scalar", 1));
    set_counters(st, timer, forward_flops(b, l, e, h, causal), forward_bytes(b, l, e),
                 peak_of(MHA_ISA_SCALAR, 1));
}

bool contains(const std::vector<std::vector<int64_t>> &v, const std::vector<int64_t> &s)
{
    for (const auto &x : v)
        if (x == s)
            return true;
    return false;
}

} // namespace

void register_mha(const Plan &plan)
{
    for (const AttnShape &s : plan.attention) {
        double flops = attention_flops(s[0], s[1], s[2], s[3], s[4], s[5] != 0);
        for (int t : thread_counts()) {
            std::vector<int64_t> args = s;
            args.push_back(t);
            for (int layout : {BHLD, BLHD}) {
                auto *b = benchmark::RegisterBenchmark(
                    (std::string("attention/layout:") + layout_name(layout)).c_str(), BM_attention, layout);
                b->ArgNames({"B", "H", "Lq", "Lk", "d", "causal", "threads"})->Args(args)->Unit(benchmark::kMillisecond);
                apply_timing(b, flops);
            }
#if defined(MHAB_HAVE_OPENBLAS)
            register_openblas_attention(s, t);
#endif
        }
        if (contains(plan.attention_reference, s)) {
            std::vector<int64_t> args = s;
            args.push_back(1);
            auto *b = benchmark::RegisterBenchmark("attention_reference", BM_attention_reference);
            b->ArgNames({"B", "H", "Lq", "Lk", "d", "causal", "threads"})->Args(args)->Unit(benchmark::kMillisecond);
            apply_timing(b, flops);
        }
    }
    // Ratio rows at every causal shape: causal against unmasked in each layout, and
    // the two layouts unmasked.
    for (const AttnShape &s : plan.attention) {
        if (s[5] == 0)
            continue;
        for (int t : thread_counts()) {
            std::vector<int64_t> args{s[0], s[1], s[2], s[3], s[4], t};
            for (int layout : {BHLD, BLHD}) {
                auto *b = benchmark::RegisterBenchmark(
                    (std::string("attention_ratio/causal/layout:") + layout_name(layout)).c_str(),
                    BM_attention_ratio, (int)CAUSAL_VS_UNMASKED, layout);
                b->ArgNames({"B", "H", "Lq", "Lk", "d", "threads"})->Args(args)->Unit(benchmark::kMillisecond);
                apply_ratio_timing(b);
            }
            auto *b = benchmark::RegisterBenchmark("attention_ratio/layout", BM_attention_ratio,
                                                   (int)BLHD_VS_BHLD, (int)BHLD);
            b->ArgNames({"B", "H", "Lq", "Lk", "d", "threads"})->Args(args)->Unit(benchmark::kMillisecond);
            apply_ratio_timing(b);
        }
    }
    for (const AttnShape &s : plan.attention_masked)
        for (int t : thread_counts()) {
            std::vector<int64_t> args = s;
            args.push_back(t);
            auto *b = benchmark::RegisterBenchmark("attention_masked/mask:bool50/layout:bhld",
                                                   BM_attention_masked, (int)BHLD);
            b->ArgNames({"B", "H", "Lq", "Lk", "d", "causal", "threads"})->Args(args)->Unit(benchmark::kMillisecond);
            apply_timing(b, attention_flops(s[0], s[1], s[2], s[3], s[4], false));
        }
    for (const DecodeShape &s : plan.decode) {
        double flops = attention_flops(s[0], s[1], s[3], s[4], s[5], false);
        for (int t : thread_counts())
            for (int layout : {BHLD, BLHD}) {
                std::vector<int64_t> args = s;
                args.push_back(t);
                auto *b = benchmark::RegisterBenchmark(
                    (std::string("decode/layout:") + layout_name(layout)).c_str(), BM_decode, layout);
                b->ArgNames({"B", "H", "G", "Lq", "Lk", "d", "threads"})->Args(args)->Unit(benchmark::kMillisecond);
                apply_timing(b, flops);
            }
    }
    for (const FwdShape &s : plan.forward) {
        double flops = forward_flops(s[0], s[1], s[2], s[3], s[4] != 0);
        for (int t : thread_counts()) {
            std::vector<int64_t> args = s;
            args.push_back(t);
            auto *b = benchmark::RegisterBenchmark("forward", BM_forward);
            b->ArgNames({"B", "L", "E", "H", "causal", "threads"})->Args(args)->Unit(benchmark::kMillisecond);
            apply_timing(b, flops);
#if defined(MHAB_HAVE_OPENBLAS)
            register_openblas_forward(s, t);
#endif
        }
        if (contains(plan.forward_reference, s)) {
            std::vector<int64_t> args = s;
            args.push_back(1);
            auto *b = benchmark::RegisterBenchmark("forward_reference", BM_forward_reference);
            b->ArgNames({"B", "L", "E", "H", "causal", "threads"})->Args(args)->Unit(benchmark::kMillisecond);
            apply_timing(b, flops);
        }
    }
}

} // namespace mhab
