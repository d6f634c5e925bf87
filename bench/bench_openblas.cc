// Baselines on OpenBLAS: textbook unfused attention (scores = Q K^T into an
// Lq x Lk matrix, scale, mask, row softmax, times V) and the full forward pass
// (projections and output projection as sgemm around it). The mask + softmax
// pass is plain C++ vectorized for the best ISA of the CPU (target_clones).
//
// Threads: OpenBLAS (pthreads build) and OpenMP keep separate spinning thread
// pools; alternating between them on a 2-core machine made 2 threads slower
// than 1 (each pool's idle spinners steal the core the other needs). So no
// benchmark mixes them: with threads > 1, attention_openblas / forward_openblas
// run everything in one OpenMP team calling 1-thread sgemm (heads shared out;
// projections split into row blocks), and kernel_gemm/openblas/proj uses
// OpenBLAS's own threads (openblas_set_num_threads) with no OpenMP at all.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "bench_common.h"
#include "peak.h"

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

namespace {
// Set when this process is the re-exec of openblas_force_best_core.
const char *const kForcedMarker = "MHAB_OPENBLAS_CORETYPE_FORCED";

// OpenBLAS's core type for the widest ISA this CPU runs, or nullptr.
const char *best_core()
{
    if (mhab_cpu_has("avx512"))
        return "SkylakeX";
    if (mhab_cpu_has("avx2"))
        return "Haswell";
    return nullptr;
}
} // namespace

void openblas_force_best_core(char **argv)
{
    const char *core = best_core();
    if (!core || std::getenv("OPENBLAS_CORETYPE"))
        return;
    // Too late to setenv for this process: OpenBLAS chose its core when it loaded.
    setenv("OPENBLAS_CORETYPE", core, 1);
    setenv(kForcedMarker, "1", 1);
    execv("/proc/self/exe", argv);
    // exec failed: carry on with OpenBLAS's own choice, which the context prints.
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(kForcedMarker);
}

std::string openblas_info()
{
    const char *env = std::getenv("OPENBLAS_CORETYPE");
    std::string how = !env ? " (OpenBLAS's own choice)"
                           : std::getenv(kForcedMarker) ? std::string(" (OPENBLAS_CORETYPE=") + env +
                                                              " set by the bench: best core for this CPU)"
                                                        : std::string(" (OPENBLAS_CORETYPE=") + env +
                                                              " set by the user)";
    return std::string(openblas_get_config()) + "; core " + openblas_get_corename() + how +
           "; attention_openblas/forward_openblas: per (b,h) full Lq x Lk scores, mask, softmax, times V;"
           " threads > 1: one OpenMP team calling 1-thread sgemm (heads shared out, projections in row"
           " blocks), never mixed with OpenBLAS's pool; kernel_gemm/openblas/proj: OpenBLAS's own threads";
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

// C rows [r0, r1) = bias, then C += A W^T with beta = 1 (PyTorch's addmm).
void linear_rows(const float *a, const float *w, const float *bias, float *c, int64_t r0, int64_t r1, int64_t n,
                 int64_t k)
{
    if (r1 <= r0)
        return;
    for (int64_t r = r0; r < r1; r++)
        std::memcpy(c + r * n, bias, (size_t)n * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), (int)n, (int)k, 1.0f, a + r0 * k, (int)k, w,
                (int)k, 1.0f, c + r0 * n, (int)n);
}

// C[m, n] = A[m, k] W[n, k]^T + bias. threads > 1: row blocks over an OpenMP team,
// 1-thread sgemm each (OpenBLAS must be at 1 thread); else one call.
void linear(const float *a, const float *w, const float *bias, float *c, int64_t m, int64_t n, int64_t k,
            int threads)
{
    if (threads <= 1 || m < 2) {
        linear_rows(a, w, bias, c, 0, m, n, k);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t per = (m + nt - 1) / nt;
        int64_t r0 = std::min<int64_t>(m, t * per), r1 = std::min<int64_t>(m, r0 + per);
        linear_rows(a, w, bias, c, r0, r1, n, k);
    }
}

struct View {
    const float *p;
    int64_t s[3]; // batch, head, row strides (elements)
};

// One (b, h): S = scale Q K^T (full, masked afterwards), softmax, O = S V.
void one_head(int64_t lq, int64_t lk, int64_t d, bool causal, const float *qp, int64_t ldq, const float *kp,
              int64_t ldk, const float *vp, int64_t ldv, float *op, int64_t ldo, float *S, int softmax_threads)
{
    const float scale = 1.0f / std::sqrt((float)d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)lq, (int)lk, (int)d, scale, qp, (int)ldq, kp,
                (int)ldk, 0.0f, S, (int)lk);
    softmax_rows(S, lq, lk, causal, lk - lq, softmax_threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)lq, (int)d, (int)lk, 1.0f, S, (int)lk, vp, (int)ldv,
                0.0f, op, (int)ldo);
}

// Textbook unfused attention over every (b, h). With threads > 1 and at least as
// many heads as threads, heads are shared out over an OpenMP team, each thread
// calling 1-thread sgemm with its own score matrix (OpenBLAS must be at 1 thread).
// Otherwise heads run one after another on whatever OpenBLAS threads are set,
// softmax on the calling thread. S holds threads * lq * lk floats.
void unfused_attention(int64_t B, int64_t H, int64_t lq, int64_t lk, int64_t d, bool causal, const View &q,
                       const View &k, const View &v, float *out, const int64_t os[3], float *S, int threads)
{
    const int64_t pairs = B * H;
    auto head = [&](int64_t p, float *s, int softmax_threads) {
        int64_t b = p / H, h = p % H;
        one_head(lq, lk, d, causal, q.p + b * q.s[0] + h * q.s[1], q.s[2], k.p + b * k.s[0] + h * k.s[1], k.s[2],
                 v.p + b * v.s[0] + h * v.s[1], v.s[2], out + b * os[0] + h * os[1], os[2], s, softmax_threads);
    };
    if (threads > 1 && pairs >= threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t p = 0; p < pairs; p++)
            head(p, S + (size_t)omp_get_thread_num() * (size_t)(lq * lk), 1);
    } else {
        for (int64_t p = 0; p < pairs; p++)
            head(p, S, 1);
    }
}

// OpenBLAS worker threads spin for a while after a call; let them go to sleep
// so they do not steal cycles from the next (library) benchmark.
void settle()
{
    if (!smoke())
        std::this_thread::sleep_for(std::chrono::milliseconds(120));
}

float max_diff(const Buf &a, const Buf &b)
{
    float m = 0.0f;
    for (size_t i = 0; i < a.size(); i++)
        m = std::max(m, std::fabs(a.data()[i] - b.data()[i]));
    return m;
}

const char *best_name() { return mha_isa_name(best_measured_isa()); }

void BM_attention_openblas(benchmark::State &st)
{
    int64_t B = st.range(0), H = st.range(1), lq = st.range(2), lk = st.range(3), d = st.range(4);
    bool causal = st.range(5) != 0;
    int threads = (int)st.range(6);
    // One pool: heads over OpenMP with 1-thread sgemm, or (fewer heads than
    // threads) heads in turn on OpenBLAS's threads.
    openblas_set_num_threads(B * H >= threads ? 1 : threads);
    Buf q((size_t)(B * H * lq * d), 11), k((size_t)(B * H * lk * d), 12), v((size_t)(B * H * lk * d), 13),
        o((size_t)(B * H * lq * d)), S((size_t)(threads * lq * lk));
    View qv{q.data(), {H * lq * d, lq * d, d}}, kv{k.data(), {H * lk * d, lk * d, d}},
        vv{v.data(), {H * lk * d, lk * d, d}};
    const int64_t os[3] = {H * lq * d, lq * d, d};
    const LoopTimer timer(threads);
    for (auto _ : st) {
        unfused_attention(B, H, lq, lk, d, causal, qv, kv, vv, o.data(), os, S.data(), threads);
        benchmark::ClobberMemory();
    }
    if (smoke()) { // the baseline must compute what the library computes
        mha_attention_args a;
        std::memset(&a, 0, sizeof a);
        a.batch = B;
        a.num_heads = a.num_kv_heads = H;
        a.len_q = lq;
        a.len_k = lk;
        a.head_dim_qk = a.head_dim_v = d;
        a.q = q.data();
        a.k = k.data();
        a.v = v.data();
        Buf ref(o.size());
        a.out = ref.data();
        for (int i = 0; i < 3; i++) {
            a.q_stride[i] = a.out_stride[i] = os[i];
            a.k_stride[i] = a.v_stride[i] = kv.s[i];
        }
        a.mask.causal = causal ? MHA_CAUSAL_BOTTOM_RIGHT : MHA_CAUSAL_NONE;
        if (mha_reference_attention(&a) != MHA_OK || max_diff(o, ref) > 1e-4f)
            st.SkipWithError("attention_openblas disagrees with mha_reference_attention");
    }
    st.SetLabel(label("openblas", best_name(), threads));
    set_counters(st, timer, attention_flops(B, H, lq, lk, d, causal), attention_bytes(B, H, lq, lk, d),
                 peak_of(best_measured_isa(), threads));
    settle();
}

void BM_forward_openblas(benchmark::State &st)
{
    int64_t B = st.range(0), L = st.range(1), E = st.range(2), H = st.range(3);
    bool causal = st.range(4) != 0;
    int threads = (int)st.range(5);
    int64_t d = E / H, BL = B * L;
    openblas_set_num_threads(1); // one pool: OpenMP team calling 1-thread sgemm
    Buf x((size_t)(BL * E), 21), w_in((size_t)(3 * E * E), 22, 1.0f / std::sqrt((float)E)),
        b_in((size_t)(3 * E), 23, 0.1f), w_out((size_t)(E * E), 24, 1.0f / std::sqrt((float)E)),
        b_out((size_t)E, 25, 0.1f), qkv((size_t)(BL * 3 * E)), cat((size_t)(BL * E)), out((size_t)(BL * E)),
        S((size_t)(threads * L * L));
    View qv{qkv.data(), {L * 3 * E, d, 3 * E}}, kv{qkv.data() + E, {L * 3 * E, d, 3 * E}},
        vv{qkv.data() + 2 * E, {L * 3 * E, d, 3 * E}};
    const int64_t os[3] = {L * E, d, E};
    const LoopTimer timer(threads);
    for (auto _ : st) {
        linear(x.data(), w_in.data(), b_in.data(), qkv.data(), BL, 3 * E, E, threads);
        unfused_attention(B, H, L, L, d, causal, qv, kv, vv, cat.data(), os, S.data(), threads);
        linear(cat.data(), w_out.data(), b_out.data(), out.data(), BL, E, E, threads);
        benchmark::ClobberMemory();
    }
    if (smoke()) {
        mha_config cfg = mha_config_default(E, H);
        cfg.has_bias = 1;
        cfg.has_out_proj = 1;
        mha_weights w;
        std::memset(&w, 0, sizeof w);
        w.in_proj_weight = w_in.data();
        w.in_proj_bias = b_in.data();
        w.out_weight = w_out.data();
        w.out_bias = b_out.data();
        Buf ref(out.size());
        mha_forward_args a;
        std::memset(&a, 0, sizeof a);
        a.batch = B;
        a.len_q = a.len_k = L;
        a.query = x.data();
        a.mask.causal = causal ? MHA_CAUSAL_BOTTOM_RIGHT : MHA_CAUSAL_NONE;
        a.out = ref.data();
        if (mha_reference_forward(&cfg, &w, &a) != MHA_OK || max_diff(out, ref) > 1e-3f)
            st.SkipWithError("forward_openblas disagrees with mha_reference_forward");
    }
    st.SetLabel(label("openblas", best_name(), threads));
    set_counters(st, timer, forward_flops(B, L, E, H, causal), forward_bytes(B, L, E),
                 peak_of(best_measured_isa(), threads));
    settle();
}

// C[M, N] = A[M, K] W[N, K]^T + bias, as the projections need it.
void BM_proj_openblas(benchmark::State &st)
{
    int64_t m = st.range(0), n = st.range(1), kk = st.range(2);
    int threads = (int)st.range(3);
    openblas_set_num_threads(threads);
    Buf a((size_t)(m * kk), 5), w((size_t)(n * kk), 6, 0.05f), bias((size_t)n, 7), c((size_t)(m * n));
    const LoopTimer timer(threads);
    for (auto _ : st) {
        linear_rows(a.data(), w.data(), bias.data(), c.data(), 0, m, n, kk); // OpenBLAS's threads
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("openblas", best_name(), threads));
    set_counters(st, timer, 2.0 * (double)m * (double)n * (double)kk,
                 4.0 * ((double)m * (double)kk + (double)n * (double)kk + (double)m * (double)n),
                 peak_of(best_measured_isa(), threads));
    settle();
}

} // namespace

void openblas_linear(const float *a, const float *w, const float *bias, float *c, int64_t m, int64_t n, int64_t k)
{
    linear_rows(a, w, bias, c, 0, m, n, k);
}

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
