// Baselines on OpenBLAS: textbook unfused attention (scores = Q K^T into an
// Lq x Lk matrix, scale, mask, row softmax, times V) and the full forward pass
// (projections and output projection as sgemm around it). OpenBLAS runs on
// `threads` threads (openblas_set_num_threads); the mask + softmax pass is an
// OpenMP loop over rows, vectorized for the best ISA of the CPU.
#include <cblas.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"

extern "C" {
// Declared again in case the cblas.h found is not OpenBLAS's own.
void openblas_set_num_threads(int num_threads);
char *openblas_get_config(void);
char *openblas_get_corename(void);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define MHAB_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MHAB_CLONES
#endif

namespace mhab {

void set_openblas_threads(int threads) { openblas_set_num_threads(threads); }

std::string openblas_info()
{
    return std::string(openblas_get_config()) + "; core " + openblas_get_corename();
}

namespace {

// exp(x) for x <= 0 (softmax after subtracting the row max), branch-free so the
// compiler vectorizes it; exactly 0 below -87.3 (and for -inf).
inline float exp_neg(float x)
{
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    float xc = x < -87.3f ? -87.3f : x;
    float n = std::floor(xc * log2e + 0.5f);
    float r = xc - n * ln2_hi - n * ln2_lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return x < -87.3f ? 0.0f : p * scale;
}

// Rows of S [rows, cols]: mask (causal: row i keeps j <= i + shift), softmax.
MHAB_CLONES void softmax_rows(float *s, int64_t rows, int64_t cols, bool causal, int64_t shift, int threads)
{
    const float ninf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows > 1)
    for (int64_t i = 0; i < rows; i++) {
        float *row = s + i * cols;
        if (causal) {
            int64_t keep = i + shift + 1;
            for (int64_t j = keep < 0 ? 0 : keep; j < cols; j++)
                row[j] = ninf;
        }
        float m = ninf;
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < cols; j++)
            m = row[j] > m ? row[j] : m;
        if (m == ninf) { // fully masked row: zeros (as the library defines it)
            std::memset(row, 0, (size_t)cols * sizeof(float));
            continue;
        }
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < cols; j++) {
            float e = exp_neg(row[j] - m);
            row[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
#pragma omp simd
        for (int64_t j = 0; j < cols; j++)
            row[j] *= inv;
    }
}

MHAB_CLONES void add_bias(float *c, const float *bias, int64_t rows, int64_t cols, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && rows > 1)
    for (int64_t i = 0; i < rows; i++) {
        float *row = c + i * cols;
#pragma omp simd
        for (int64_t j = 0; j < cols; j++)
            row[j] += bias[j];
    }
}

struct View {
    const float *p;
    int64_t s[3]; // batch, head, row strides (elements)
};

// Per (b, h): S = scale Q K^T (full, masked afterwards), softmax, O = S V.
void unfused_attention(int64_t B, int64_t H, int64_t lq, int64_t lk, int64_t d, bool causal, const View &q,
                       const View &k, const View &v, float *out, const int64_t os[3], float *S, int threads)
{
    const float scale = 1.0f / std::sqrt((float)d);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            const float *qp = q.p + b * q.s[0] + h * q.s[1];
            const float *kp = k.p + b * k.s[0] + h * k.s[1];
            const float *vp = v.p + b * v.s[0] + h * v.s[1];
            float *op = out + b * os[0] + h * os[1];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)lq, (int)lk, (int)d, scale, qp,
                        (int)q.s[2], kp, (int)k.s[2], 0.0f, S, (int)lk);
            softmax_rows(S, lq, lk, causal, lk - lq, threads);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)lq, (int)d, (int)lk, 1.0f, S, (int)lk, vp,
                        (int)v.s[2], 0.0f, op, (int)os[2]);
        }
}

// OpenBLAS worker threads spin for a while after a call; let them go to sleep
// so they do not steal cycles from the next (library) benchmark.
void settle()
{
    if (!smoke())
        std::this_thread::sleep_for(std::chrono::milliseconds(120));
}

const char *best_name() { return mha_isa_name(best_measured_isa()); }

void BM_attention_openblas(benchmark::State &st)
{
    int64_t B = st.range(0), H = st.range(1), lq = st.range(2), lk = st.range(3), d = st.range(4);
    bool causal = st.range(5) != 0;
    int threads = (int)st.range(6);
    openblas_set_num_threads(threads);
    Buf q((size_t)(B * H * lq * d), 11), k((size_t)(B * H * lk * d), 12), v((size_t)(B * H * lk * d), 13),
        o((size_t)(B * H * lq * d)), S((size_t)(lq * lk));
    View qv{q.data(), {H * lq * d, lq * d, d}}, kv{k.data(), {H * lk * d, lk * d, d}},
        vv{v.data(), {H * lk * d, lk * d, d}};
    const int64_t os[3] = {H * lq * d, lq * d, d};
    const LoopTimer timer;
    for (auto _ : st) {
        unfused_attention(B, H, lq, lk, d, causal, qv, kv, vv, o.data(), os, S.data(), threads);
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("openblas", best_name(), threads));
    set_counters(st, timer.seconds(), attention_flops(B, H, lq, lk, d, causal), attention_bytes(B, H, lq, lk, d),
                 peak_gflops(best_measured_isa(), threads));
    settle();
}

void BM_forward_openblas(benchmark::State &st)
{
    int64_t B = st.range(0), L = st.range(1), E = st.range(2), H = st.range(3);
    bool causal = st.range(4) != 0;
    int threads = (int)st.range(5);
    int64_t d = E / H, BL = B * L;
    openblas_set_num_threads(threads);
    Buf x((size_t)(BL * E), 21), w_in((size_t)(3 * E * E), 22, 1.0f / std::sqrt((float)E)),
        b_in((size_t)(3 * E), 23, 0.1f), w_out((size_t)(E * E), 24, 1.0f / std::sqrt((float)E)),
        b_out((size_t)E, 25, 0.1f), qkv((size_t)(BL * 3 * E)), cat((size_t)(BL * E)), out((size_t)(BL * E)),
        S((size_t)(L * L));
    View qv{qkv.data(), {L * 3 * E, d, 3 * E}}, kv{qkv.data() + E, {L * 3 * E, d, 3 * E}},
        vv{qkv.data() + 2 * E, {L * 3 * E, d, 3 * E}};
    const int64_t os[3] = {L * E, d, E};
    const LoopTimer timer;
    for (auto _ : st) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)BL, (int)(3 * E), (int)E, 1.0f, x.data(), (int)E,
                    w_in.data(), (int)E, 0.0f, qkv.data(), (int)(3 * E));
        add_bias(qkv.data(), b_in.data(), BL, 3 * E, threads);
        unfused_attention(B, H, L, L, d, causal, qv, kv, vv, cat.data(), os, S.data(), threads);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)BL, (int)E, (int)E, 1.0f, cat.data(), (int)E,
                    w_out.data(), (int)E, 0.0f, out.data(), (int)E);
        add_bias(out.data(), b_out.data(), BL, E, threads);
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("openblas", best_name(), threads));
    set_counters(st, timer.seconds(), forward_flops(B, L, E, H, causal), forward_bytes(B, L, E),
                 peak_gflops(best_measured_isa(), threads));
    settle();
}

// C[M, N] = A[M, K] W[N, K]^T + bias, as the projections need it.
void BM_proj_openblas(benchmark::State &st)
{
    int64_t m = st.range(0), n = st.range(1), kk = st.range(2);
    int threads = (int)st.range(3);
    openblas_set_num_threads(threads);
    Buf a((size_t)(m * kk), 5), w((size_t)(n * kk), 6, 0.05f), bias((size_t)n, 7), c((size_t)(m * n));
    const LoopTimer timer;
    for (auto _ : st) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)kk, 1.0f, a.data(), (int)kk,
                    w.data(), (int)kk, 0.0f, c.data(), (int)n);
        add_bias(c.data(), bias.data(), m, n, threads);
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("openblas", best_name(), threads));
    set_counters(st, timer.seconds(), 2.0 * (double)m * (double)n * (double)kk,
                 4.0 * ((double)m * (double)kk + (double)n * (double)kk + (double)m * (double)n),
                 peak_gflops(best_measured_isa(), threads));
    settle();
}

} // namespace

void register_openblas_attention(const AttnShape &s, int threads)
{
    std::vector<int64_t> args = s;
    args.push_back(threads);
    auto *b = benchmark::RegisterBenchmark("attention_openblas", BM_attention_openblas);
    b->ArgNames({"B", "H", "Lq", "Lk", "d", "causal", "threads"})->Args(args)->Unit(benchmark::kMillisecond);
    apply_timing(b, attention_flops(s[0], s[1], s[2], s[3], s[4], false));
}

void register_openblas_forward(const FwdShape &s, int threads)
{
    std::vector<int64_t> args = s;
    args.push_back(threads);
    auto *b = benchmark::RegisterBenchmark("forward_openblas", BM_forward_openblas);
    b->ArgNames({"B", "L", "E", "H", "causal", "threads"})->Args(args)->Unit(benchmark::kMillisecond);
    apply_timing(b, forward_flops(s[0], s[1], s[2], s[3], false));
}

void register_openblas_proj(const std::vector<int64_t> &mnk, int threads)
{
    (void)threads;
    auto *b = benchmark::RegisterBenchmark("kernel_gemm/openblas/proj", BM_proj_openblas);
    b->ArgNames({"M", "N", "K", "threads"})->Args(mnk)->Unit(benchmark::kMicrosecond);
    apply_timing(b, 2.0 * (double)mnk[0] * (double)mnk[1] * (double)mnk[2]);
}

} // namespace mhab
