// Per-ISA kernel families: kernel_exp, kernel_tanh, kernel_softmax, kernel_gemm
// (tile and whole projection GEMM through the engine's packed driver), kernel_pack.
#include <cstring>
#include <string>
#include <vector>

#include "bench_common.h"

extern "C" {
#include "internal.h" // mha_gemm_run, mha_packed (engine's projection driver)
#include "kernels.h"
}

namespace mhab {

namespace {

const mha_kernels *table_or_skip(benchmark::State &st, mha_isa isa)
{
    const mha_kernels *k = mha_kernels_for(isa);
    if (!k)
        st.SkipWithError((std::string("no ") + mha_isa_name(isa) + " kernels in this build/CPU").c_str());
    return k;
}

using MapKernel = void (*mha_kernels::*)(const float *, float *, size_t);

// An element-wise kernel over n floats in [-scale, scale) (one op per element);
// returns the elements per wall second.
double run_map(benchmark::State &st, mha_isa isa, MapKernel fn, float scale)
{
    const mha_kernels *k = table_or_skip(st, isa);
    if (!k)
        return 0.0;
    size_t n = (size_t)st.range(0);
    Buf x(n, 1, scale), y(n);
    const LoopTimer timer(1);
    for (auto _ : st) {
        (k->*fn)(x.data(), y.data(), n);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("kernel", k->name, 1));
    set_counters(st, timer, (double)n, 8.0 * (double)n, peak_of(isa, 1));
    const double sec = timer.seconds();
    return sec > 0 ? (double)n * (double)st.iterations() / sec : 0.0;
}

void BM_exp(benchmark::State &st, mha_isa isa) { run_map(st, isa, &mha_kernels::f32_exp, 8.0f); }

// tanh over [-4, 4): both branches of the algorithm, mixed as in additive
// attention's features. tanh_per_s: elements per wall second, the rate the fused
// additive attention is compared with.
void BM_tanh(benchmark::State &st, mha_isa isa)
{
    const double rate = run_map(st, isa, &mha_kernels::f32_tanh, 4.0f);
    if (rate > 0)
        st.counters["tanh_per_s"] = rate;
}

// One softmax row as the attention driver does it: max, exp(x - max) with sum, scale.
void BM_softmax(benchmark::State &st, mha_isa isa)
{
    const mha_kernels *k = table_or_skip(st, isa);
    if (!k)
        return;
    size_t n = (size_t)st.range(0);
    Buf x(n, 2, 8.0f), y(n);
    const LoopTimer timer(1);
    for (auto _ : st) {
        float m = k->f32_rowmax(x.data(), n);
        float s = k->f32_exp_sub_sum(x.data(), m, y.data(), n);
        k->f32_scale(y.data(), 1.0f / s, n);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("kernel", k->name, 1));
    set_counters(st, timer, 4.0 * (double)n, 20.0 * (double)n, peak_of(isa, 1));
}

// The microkernel on one full mr x nr tile, A and packed B in cache: A read in
// place (f32_gemm, row stride k) or as one packed micro-panel (f32_gemm_pa).
void BM_gemm_tile(benchmark::State &st, mha_isa isa, bool packed_a)
{
    const mha_kernels *k = table_or_skip(st, isa);
    if (!k)
        return;
    size_t kk = (size_t)st.range(0), mr = k->gemm_mr, nr = k->gemm_nr;
    Buf a(mr * kk, 3), ap(mr * kk), w(nr * kk, 4), bp(nr * kk), c(mr * nr);
    k->f32_pack_b_nk(nr, kk, w.data(), kk, bp.data());
    k->f32_pack_a(mr, kk, a.data(), kk, ap.data());
    const LoopTimer timer(1);
    for (auto _ : st) {
        if (packed_a)
            k->f32_gemm_pa(mr, nr, kk, ap.data(), bp.data(), c.data(), nr, nullptr, 0);
        else
            k->f32_gemm(mr, nr, kk, a.data(), kk, bp.data(), c.data(), nr, nullptr, 0);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    st.SetLabel(label(("kernel mr=" + std::to_string(mr) + " nr=" + std::to_string(nr)).c_str(),
                      k->name, 1));
    set_counters(st, timer, 2.0 * (double)(mr * nr * kk), 4.0 * (double)((mr + nr) * kk), peak_of(isa, 1));
}

// C[M, N] = A[M, K] W[N, K]^T + bias through the engine's packed projection
// driver: the operands, W packed once as a model does.
struct ProjCase {
    const mha_kernels *k;
    int64_t m, n, kk;
    int threads;
    Buf a, w, bias, packed, c, pack;
    mha_packed pw;
    mha_gemm_job job;
    ProjCase(const mha_kernels *kern, int64_t m_, int64_t n_, int64_t k_, int threads_)
        : k(kern), m(m_), n(n_), kk(k_), threads(threads_), a((size_t)(m * kk), 5), w((size_t)(n * kk), 6, 0.05f),
          bias((size_t)n, 7), packed(((size_t)n + kern->gemm_nr - 1) / kern->gemm_nr * kern->gemm_nr * (size_t)kk),
          c((size_t)(m * n)), pack((size_t)threads * mha_gemm_pack_floats(kern, m, kk))
    {
        k->f32_pack_b_nk((size_t)n, (size_t)kk, w.data(), (size_t)kk, packed.data());
        std::memset(&pw, 0, sizeof pw);
        pw.panels = packed.data();
        pw.bias = bias.data();
        pw.n = n;
        pw.k = kk;
        std::memset(&job, 0, sizeof job);
        job.a = a.data();
        job.lda = kk;
        job.w = &pw;
        job.c = c.data();
        job.ldc = n;
        job.m = m;
    }
    void run() { mha_gemm_run(k, &job, 1, threads, pack.data()); }
};

void BM_gemm_proj(benchmark::State &st, mha_isa isa)
{
    const mha_kernels *k = table_or_skip(st, isa);
    if (!k)
        return;
    ProjCase p(k, st.range(0), st.range(1), st.range(2), (int)st.range(3));
    const LoopTimer timer(p.threads);
    for (auto _ : st) {
        p.run();
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("mha", k->name, p.threads));
    set_counters(st, timer, 2.0 * (double)p.m * (double)p.n * (double)p.kk,
                 4.0 * ((double)p.m * (double)p.kk + (double)p.n * (double)p.kk + (double)p.m * (double)p.n),
                 peak_of(isa, p.threads));
}

#if defined(MHAB_HAVE_OPENBLAS)
// kernel_gemm_ratio/openblas: the best ISA's projection GEMM (side b) against
// cblas_sgemm on the same operands (side a), one thread each, alternated
// (time_ratio): mha_vs_openblas < 1 when mha takes less time.
void BM_gemm_ratio(benchmark::State &st)
{
    const mha_kernels *k = table_or_skip(st, best_measured_isa());
    if (!k)
        return;
    ProjCase p(k, st.range(0), st.range(1), st.range(2), 1);
    Buf c((size_t)(p.m * p.n));
    set_openblas_threads(1);
    time_ratio(
        st,
        [&] {
            openblas_linear(p.a.data(), p.w.data(), p.bias.data(), c.data(), p.m, p.n, p.kk);
            return true;
        },
        [&] {
            p.run();
            return true;
        },
        "mha_vs_openblas");
    st.SetLabel(label("mha vs openblas", k->name, 1));
}
#endif

// Packing: nk = B stored transposed (weights, K blocks), kn = B as is (V blocks).
void BM_pack(benchmark::State &st, mha_isa isa, bool nk)
{
    const mha_kernels *k = table_or_skip(st, isa);
    if (!k)
        return;
    size_t n = (size_t)st.range(0), kk = (size_t)st.range(1), nr = k->gemm_nr;
    size_t out = (n + nr - 1) / nr * nr * kk;
    Buf src(n * kk, 8), dst(out);
    const LoopTimer timer(1);
    for (auto _ : st) {
        if (nk)
            k->f32_pack_b_nk(n, kk, src.data(), kk, dst.data());
        else
            k->f32_pack_b_kn(n, kk, src.data(), n, dst.data());
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("kernel", k->name, 1));
    // No flops: GFLOPS is 0, peak_pct is relative to the measured read bandwidth.
    const double sec = timer.seconds();
    const double gbps = sec > 0 ? 4.0 * (double)(n * kk + out) * (double)st.iterations() / sec * 1e-9 : 0.0;
    st.counters["GFLOPS"] = 0.0;
    st.counters["GBps"] = gbps;
    if (read_gbps(1) > 0)
        st.counters["peak_pct"] = 100.0 * gbps / read_gbps(1);
}

} // namespace

void register_kernels(const Plan &plan)
{
    const bool sm = smoke();
    const std::vector<int64_t> exp_n = sm ? std::vector<int64_t>{64}
                                          : std::vector<int64_t>{256, 4096, 65536, 1 << 20};
    // 4096 floats in and out: 32 KiB, in L1/L2 (the in-cache rate).
    const std::vector<int64_t> tanh_n = sm ? std::vector<int64_t>{64} : std::vector<int64_t>{4096};
    const std::vector<int64_t> soft_n = sm ? std::vector<int64_t>{64} : std::vector<int64_t>{64, 512, 2048};
    const std::vector<int64_t> tile_k = sm ? std::vector<int64_t>{16} : std::vector<int64_t>{64, 128, 256, 512};
    const std::vector<std::vector<int64_t>> pack_nk =
        sm ? std::vector<std::vector<int64_t>>{{16, 16}} : std::vector<std::vector<int64_t>>{{64, 64}, {768, 768}};

    for (mha_isa isa : arch_isas()) {
        const std::string n = mha_isa_name(isa);
        auto *b = benchmark::RegisterBenchmark(("kernel_exp/" + n).c_str(), BM_exp, isa);
        b->ArgNames({"n"});
        for (int64_t v : exp_n)
            b->Args({v});
        apply_timing(b, 0);
        b = benchmark::RegisterBenchmark(("kernel_tanh/" + n).c_str(), BM_tanh, isa);
        b->ArgNames({"n"});
        for (int64_t v : tanh_n)
            b->Args({v});
        apply_timing(b, 0);
        b = benchmark::RegisterBenchmark(("kernel_softmax/" + n).c_str(), BM_softmax, isa);
        b->ArgNames({"n"});
        for (int64_t v : soft_n)
            b->Args({v});
        apply_timing(b, 0);
        for (bool packed : {false, true}) {
            b = benchmark::RegisterBenchmark(("kernel_gemm/" + n + (packed ? "/tile_pa" : "/tile")).c_str(),
                                             BM_gemm_tile, isa, packed);
            b->ArgNames({"k"});
            for (int64_t v : tile_k)
                b->Args({v});
            apply_timing(b, 0);
        }
        for (bool nk : {true, false}) {
            b = benchmark::RegisterBenchmark(("kernel_pack/" + n + (nk ? "/nk" : "/kn")).c_str(), BM_pack,
                                             isa, nk);
            b->ArgNames({"n", "k"});
            for (const auto &s : pack_nk)
                b->Args(s);
            apply_timing(b, 0);
        }
    }
    // Whole projection GEMMs, each ISA and OpenBLAS on the same args, side by side.
    for (const auto &s : plan.proj) {
        for (int t : thread_counts()) {
            std::vector<int64_t> args{s[0], s[1], s[2], t};
            double flops = 2.0 * (double)s[0] * (double)s[1] * (double)s[2];
            for (mha_isa isa : arch_isas()) {
                auto *b = benchmark::RegisterBenchmark(
                    (std::string("kernel_gemm/") + mha_isa_name(isa) + "/proj").c_str(), BM_gemm_proj, isa);
                b->ArgNames({"M", "N", "K", "threads"})->Args(args)->Unit(benchmark::kMicrosecond);
                apply_timing(b, flops);
            }
#if defined(MHAB_HAVE_OPENBLAS)
            register_openblas_proj(args, t);
#endif
        }
#if defined(MHAB_HAVE_OPENBLAS)
        auto *b = benchmark::RegisterBenchmark("kernel_gemm_ratio/openblas", BM_gemm_ratio);
        b->ArgNames({"M", "N", "K", "threads"})->Args({s[0], s[1], s[2], 1})->Unit(benchmark::kMicrosecond);
        apply_ratio_timing(b);
#endif
    }
}

} // namespace mhab
