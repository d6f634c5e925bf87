// mha benchmark suite: machine limits, kernels, attention, forward, baselines.
//
// Usage:
//   mha_bench [--smoke] [Google Benchmark flags]
//   MHA_ISA=avx2 mha_bench --benchmark_filter='^(attention|forward)'
//
// attention/forward run on the process's active ISA, chosen once by the library
// (MHA_ISA=scalar|avx2|avx512|neon lowers it): to sweep ISAs run the binary once
// per MHA_ISA value (tools/plot_bench.py merges the JSON files). The kernel_*
// families run every ISA's table in one process.
// --smoke (or MHA_BENCH_SMOKE=1): every family once on tiny shapes, quick peaks.
#include <omp.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "bench_common.h"
#include "peak.h"

namespace mhab {

namespace {
bool g_smoke = false;
std::vector<int> g_threads;
int g_nproc = 1;
std::map<std::pair<int, int>, double> g_peak; // (isa, threads) -> GFLOP/s
std::map<int, double> g_read;                 // threads -> GB/s
mha_isa g_best = MHA_ISA_SCALAR;

struct PeakLoop {
    mha_isa isa;
    const char *name;
    mhab_fma_fn fma;
    mhab_read_fn read;
};

std::vector<PeakLoop> peak_loops()
{
    std::vector<PeakLoop> v;
    v.push_back({MHA_ISA_SCALAR, "scalar", mhab_fma_scalar, mhab_read_scalar});
#if defined(MHAB_HAVE_AVX2)
    if (mhab_cpu_has("avx2"))
        v.push_back({MHA_ISA_AVX2, "avx2", mhab_fma_avx2, mhab_read_avx2});
#endif
#if defined(MHAB_HAVE_AVX512)
    if (mhab_cpu_has("avx512"))
        v.push_back({MHA_ISA_AVX512, "avx512", mhab_fma_avx512, mhab_read_avx512});
#endif
#if defined(MHAB_HAVE_NEON)
    v.push_back({MHA_ISA_NEON, "neon", mhab_fma_neon, mhab_read_neon});
#endif
    return v;
}

std::string fmt(const char *f, double x)
{
    char buf[64];
    std::snprintf(buf, sizeof buf, f, x);
    return buf;
}

void measure_machine()
{
    const double secs = g_smoke ? 0.01 : 0.05;
    const int reps = g_smoke ? 2 : 5;
    for (const PeakLoop &p : peak_loops()) {
        std::string line, wline;
        for (int t : g_threads) {
            double wall = 0.0, g = mhab_measure_fma(p.fma, t, secs, reps, &wall);
            g_peak[{(int)p.isa, t}] = g;
            line += (line.empty() ? "" : " ") + std::to_string(t) + ":" + fmt("%.1f", g);
            wline += (wline.empty() ? "" : " ") + std::to_string(t) + ":" + fmt("%.1f", wall);
        }
        g_best = p.isa; // loops are ordered worst to best
        benchmark::AddCustomContext(std::string("mha_peak_gflops_") + p.name, line);
        benchmark::AddCustomContext(std::string("mha_wallclock_peak_gflops_") + p.name,
                                    wline + " (wall clock; lower than mha_peak_gflops_ means other work shared the cores)");
    }

    // Read bandwidth: one vectorized streaming sum over a buffer far larger than L3.
    const PeakLoop &rl = peak_loops().back();
    size_t bytes = g_smoke ? (size_t)64 << 20 : (size_t)1 << 30;
    size_t n = bytes / sizeof(float);
    n -= n % (128 * (size_t)g_nproc);
    float *buf = mhab_alloc_read_buffer(n, g_nproc);
    std::string line, wline;
    if (buf) {
        std::vector<int> ts{1};
        if (g_nproc > 1)
            ts.push_back(g_nproc);
        for (int t : ts) {
            double wall = 0.0;
            mhab_measure_read(rl.read, buf, n, t, 1, &wall); // warm the TLB / pages
            double g = mhab_measure_read(rl.read, buf, n, t, reps, &wall);
            g_read[t] = g;
            line += (line.empty() ? "" : " ") + std::to_string(t) + ":" + fmt("%.1f", g);
            wline += (wline.empty() ? "" : " ") + std::to_string(t) + ":" + fmt("%.1f", wall);
        }
        std::free(buf);
    }
    benchmark::AddCustomContext("mha_read_gbps",
                                line + " (" + std::to_string(bytes >> 20) + " MiB buffer, " +
                                    rl.name + " loads; per-thread CPU time; wall clock " + wline + ")");
}

void add_context()
{
    mha_runtime_info info;
    std::memset(&info, 0, sizeof info);
    mha_get_runtime_info(&info);
    benchmark::AddCustomContext("mha_active_isa", std::string(mha_isa_name(info.active_isa)) +
                                                      (info.forced ? " (forced by MHA_ISA)" : "") +
                                                      "; " + info.choice);
    benchmark::AddCustomContext("mha_cpu", std::string(info.cpu_name) + " [" + info.features + "]");
    // Cache sizes: Google Benchmark prints them ("CPU Caches", JSON "caches").
    benchmark::AddCustomContext("mha_llc_bytes", std::to_string(last_level_cache_bytes()) +
                                                     " (sizes the DRAM-bound decode row: K/V = 2x this)");
    std::string ts;
    for (int t : g_threads)
        ts += (ts.empty() ? "" : ",") + std::to_string(t);
    benchmark::AddCustomContext("mha_threads", "nproc=" + std::to_string(g_nproc) + ", swept " + ts +
                                                   "; arg `threads` = num_threads given to the API"
                                                   " (openblas_set_num_threads for baselines)");
    benchmark::AddCustomContext(
        "mha_flop_model",
        "projections 2*B*L*E*3E + out projection 2*B*L*E*E; attention 4*B*H*Lq*Lk*d counting only "
        "attended pairs: causal = about HALF of dense (not dense-equivalent; double it to compare "
        "with dense-equivalent figures); exp/softmax kernels count 1 op per element per pass");
    benchmark::AddCustomContext(
        "mha_peak_pct",
        "100*GFLOPS/peak of (ISA, threads) of the run; openblas rows use the best ISA's peak, "
        "reference (float64) rows the scalar peak; kernel_pack: % of the read bandwidth; peak_pct_now: "
        "100*GFLOPS/the wall-clock peak of the same loop probed for 20 ms right after the row (a shared "
        "host's speed at the moment the row ran)");
    benchmark::AddCustomContext(
        "mha_isa_sweep",
        "attention/forward use the active ISA only: run once per MHA_ISA=scalar|avx2|avx512 (neon "
        "on AArch64); kernel_* families cover every ISA in one run");
    benchmark::AddCustomContext("mha_mode", g_smoke ? "smoke (tiny shapes, few iterations)" : "full");
#if defined(MHAB_HAVE_OPENBLAS)
    benchmark::AddCustomContext("mha_openblas", openblas_info());
#endif
}

Plan full_plan()
{
    Plan p;
    // Sequence sweep at H=16, d=64; decode-like rows; causal at 2048.
    for (int64_t l = 64; l <= 4096; l *= 2)
        p.attention.push_back({1, 16, l, l, 64, 0});
    p.attention.push_back({1, 16, 2048, 2048, 64, 1});
    // Head-dim sweep at L=1024 (d=64 is in the sequence sweep), and d=128 at 2048.
    for (int64_t d : {32, 80, 96, 128})
        p.attention.push_back({1, 16, 1024, 1024, d, 0});
    p.attention.push_back({1, 16, 2048, 2048, 128, 0});
    p.attention.push_back({1, 16, 2048, 2048, 128, 1});
    // The canonical forward shapes' attention cores (d = E/H = 64 in all).
    p.attention.push_back({1, 12, 197, 197, 64, 0}); // ViT-B
    p.attention.push_back({1, 12, 512, 512, 64, 0}); // BERT-base
    p.attention.push_back({8, 8, 128, 128, 64, 0});  // batch
    p.attention.push_back({1, 4, 32, 32, 64, 0});    // small latency
    // long (1x2048, 16 heads, with/without causal) is in the sequence sweep.

    p.attention_reference = {{1, 16, 64, 64, 64, 0}, {1, 16, 128, 128, 64, 0}, {1, 4, 32, 32, 64, 0}};
    p.attention_masked = {{1, 16, 2048, 2048, 64, 0}};

    // Decoding {B, H, G, Lq, Lk, d}: one query row per head against a cache, MHA
    // and GQA (H32 G8), K/V in cache, batched, and K/V twice the last-level cache
    // (DRAM-bound: compare read_pct with the read bandwidth).
    const int64_t kv_row_bytes = 2 * 8 * 128 * (int64_t)sizeof(float); // K + V of one key, G8 d128
    int64_t big = (int64_t)(2 * last_level_cache_bytes()) / kv_row_bytes;
    big = (big + 4095) / 4096 * 4096;
    p.decode = {{1, 16, 16, 1, 1024, 64}, {1, 16, 16, 1, 4096, 64}, {1, 32, 8, 1, 8192, 128},
                {8, 32, 8, 1, 2048, 128}, {1, 32, 8, 1, big, 128}};

    p.forward = {{1, 197, 768, 12, 0}, {1, 512, 768, 12, 0},  {8, 128, 512, 8, 0},
                 {1, 2048, 1024, 16, 0}, {1, 2048, 1024, 16, 1}, {1, 32, 256, 4, 0}};
    p.forward_reference = {{1, 32, 256, 4, 0}};
    // Projection GEMMs {M, N, K}: ViT-B QKV and output (K = 768), BERT-base, the
    // 2048-token 1024-wide QKV and output (K = 1024, rows 4 KiB apart) and an MLP
    // down-projection (K = 4096).
    p.proj = {{197, 2304, 768}, {197, 768, 768}, {512, 768, 768}, {2048, 3072, 1024},
              {2048, 1024, 1024}, {2048, 1024, 4096}};
    return p;
}

Plan smoke_plan()
{
    Plan p;
    p.attention = {{1, 2, 16, 16, 16, 0}, {1, 2, 16, 16, 16, 1}, {1, 2, 1, 32, 16, 0}};
    p.attention_reference = p.attention;
    p.attention_masked = {{1, 2, 16, 16, 16, 0}};
    p.decode = {{1, 4, 2, 1, 64, 16}, {2, 4, 1, 2, 40, 8}};
    p.forward = {{1, 16, 32, 4, 0}, {2, 8, 32, 2, 1}};
    p.forward_reference = p.forward;
    p.proj = {{16, 40, 24}};
    return p;
}

} // namespace

bool smoke() { return g_smoke; }
const std::vector<int> &thread_counts() { return g_threads; }
int nproc() { return g_nproc; }
mha_isa best_measured_isa() { return g_best; }

const std::vector<mha_isa> &arch_isas()
{
#if defined(__aarch64__)
    static const std::vector<mha_isa> v{MHA_ISA_SCALAR, MHA_ISA_NEON};
#elif defined(__x86_64__)
    static const std::vector<mha_isa> v{MHA_ISA_SCALAR, MHA_ISA_AVX2, MHA_ISA_AVX512};
#else
    static const std::vector<mha_isa> v{MHA_ISA_SCALAR};
#endif
    return v;
}

// The run's opening probe of (isa, threads); 0 if not measured.
static double peak_gflops(mha_isa isa, int threads)
{
    auto it = g_peak.find({(int)isa, threads});
    return it == g_peak.end() ? 0.0 : it->second;
}

double read_gbps(int threads)
{
    if (g_read.empty())
        return 0.0;
    auto it = g_read.lower_bound(threads);
    return it == g_read.end() ? g_read.rbegin()->second : it->second;
}

size_t last_level_cache_bytes()
{
    size_t best = 0;
    int level = 0;
    for (const auto &c : benchmark::CPUInfo::Get().caches)
        if (c.type != "Instruction" && c.level >= level && c.size > 0) {
            level = c.level;
            best = (size_t)c.size;
        }
    return best ? best : (size_t)32 << 20; // unknown: assume 32 MiB
}

double process_cpu_seconds()
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The wall-clock rate of `isa`'s FMA loop on `threads` threads over ~20 ms, now.
static double peak_now(PeakRef ref)
{
    for (const PeakLoop &p : peak_loops())
        if (p.isa == ref.isa) {
            double wall = 0.0;
            mhab_measure_fma(p.fma, ref.threads, 0.02, 1, &wall);
            return wall;
        }
    return 0.0;
}

void set_counters(benchmark::State &st, const LoopTimer &timer, double flops, double bytes, PeakRef ref)
{
    const double seconds = timer.seconds(), cpu = timer.cpu_seconds();
    if (seconds <= 0 || st.iterations() == 0)
        return;
    const double per_s = (double)st.iterations() / seconds * 1e-9;
    const double gflops = flops * per_s, peak = peak_gflops(ref.isa, ref.threads);
    st.counters["GFLOPS"] = gflops;
    if (cpu > 0)
        st.counters["GFLOPS_cpu"] = flops * (double)st.iterations() / (cpu / timer.threads()) * 1e-9;
    if (peak > 0)
        st.counters["peak_pct"] = 100.0 * gflops / peak;
    if (peak > 0 && !g_smoke) {
        const double now = peak_now(ref);
        if (now > 0)
            st.counters["peak_pct_now"] = 100.0 * gflops / now;
    }
    if (bytes > 0)
        st.counters["GBps"] = bytes * per_s;
}

std::string label(const char *what, const char *isa, int threads)
{
    return std::string(what) + " isa=" + isa + " threads=" + std::to_string(threads);
}

Buf::Buf(size_t n, uint32_t seed, float scale) : p_(nullptr), n_(n)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    p_ = static_cast<float *>(std::aligned_alloc(64, bytes ? bytes : 64));
    if (!p_)
        throw std::bad_alloc();
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p_[i] = seed ? scale * ((float)(x >> 8) * (1.0f / 8388608.0f) - 1.0f) : 0.0f;
    }
}

Buf::~Buf() { std::free(p_); }

double attended_pairs(int64_t lq, int64_t lk, bool causal)
{
    if (!causal)
        return (double)lq * (double)lk;
    double pairs = 0;
    for (int64_t i = 0; i < lq; i++) {
        int64_t n = i + lk - lq + 1;
        pairs += (double)std::max<int64_t>(0, std::min(lk, n));
    }
    return pairs;
}

double attention_flops(int64_t b, int64_t h, int64_t lq, int64_t lk, int64_t d, bool causal)
{
    return 4.0 * (double)b * (double)h * (double)d * attended_pairs(lq, lk, causal);
}

double attention_bytes(int64_t b, int64_t h, int64_t lq, int64_t lk, int64_t d)
{
    return 4.0 * (double)b * (double)h * (double)d * (2.0 * (double)lq + 2.0 * (double)lk);
}

double forward_flops(int64_t b, int64_t l, int64_t e, int64_t h, bool causal)
{
    double bl = (double)b * (double)l, E = (double)e;
    return 2.0 * bl * E * 3.0 * E + 2.0 * bl * E * E + attention_flops(b, h, l, l, e / h, causal);
}

double forward_bytes(int64_t b, int64_t l, int64_t e)
{
    double E = (double)e;
    return 4.0 * (2.0 * (double)b * (double)l * E + 4.0 * E * E + 4.0 * E);
}

void apply_timing(benchmark::internal::Benchmark *b, double flops)
{
    b->UseRealTime();
    if (g_smoke)
        b->Iterations(2);
    else if (flops > 4e9)
        b->MinTime(0.1); // ~100s of ms per iteration: one or a few iterations
    else
        b->MinTime(0.25);
}

} // namespace mhab

int main(int argc, char **argv)
{
    using namespace mhab;
#if defined(MHAB_HAVE_OPENBLAS)
    openblas_force_best_core(argv);
#endif
    const char *env = std::getenv("MHA_BENCH_SMOKE");
    g_smoke = env && *env && std::strcmp(env, "0") != 0;
    int out = 1;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--smoke") == 0)
            g_smoke = true;
        else
            argv[out++] = argv[i];
    }
    argc = out;
    argv[argc] = nullptr;

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;

    g_nproc = std::max(1, omp_get_num_procs());
    for (int t = 1; t < g_nproc; t *= 2)
        g_threads.push_back(t);
    g_threads.push_back(g_nproc);

    measure_machine();
    add_context();
    Plan plan = g_smoke ? smoke_plan() : full_plan();
    register_kernels(plan);
    register_mha(plan);
    register_serve();
    register_additive();

    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
