// Shared helpers of the mha benchmark suite (C++17, Google Benchmark 1.7).
#ifndef MHA_BENCH_COMMON_H
#define MHA_BENCH_COMMON_H

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mha.h"

namespace mhab {

// ------------------------------------------------------------ run settings
bool smoke();                          // --smoke / MHA_BENCH_SMOKE=1
const std::vector<int> &thread_counts(); // 1, 2, 4, ... and nproc
int nproc();
const std::vector<mha_isa> &arch_isas(); // kernel tables that exist on this architecture

// ---------------------------------------------------------- machine limits
// The peak a row is compared with: the FMA loop of `isa` on `threads` threads.
struct PeakRef {
    mha_isa isa;
    int threads;
};
inline PeakRef peak_of(mha_isa isa, int threads) { return PeakRef{isa, threads}; }
double read_gbps(int threads);                // nearest measured thread count
size_t last_level_cache_bytes();              // from the cache sizes Google Benchmark reads (sysfs)
mha_isa best_measured_isa();

// ---------------------------------------------------------------- counters
double process_cpu_seconds();

// Wall and process CPU time of the timed loop (constructed just before
// `for (auto _ : st)`), for a run on `threads` threads.
class LoopTimer {
  public:
    explicit LoopTimer(int threads)
        : t0_(std::chrono::steady_clock::now()), c0_(process_cpu_seconds()), threads_(threads)
    {
    }
    double seconds() const
    {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    }
    double cpu_seconds() const { return process_cpu_seconds() - c0_; }
    int threads() const { return threads_; }

  private:
    std::chrono::steady_clock::time_point t0_;
    double c0_;
    int threads_;
};
// Sets GFLOPS (GFLOP/s from wall time), GFLOPS_cpu (flops per process CPU second
// times threads: what the run would do on an idle machine, since time other
// processes take is not counted; spin-waiting is), peak_pct (100 * GFLOPS / the
// peak the run's probe measured at start; omitted if not measured), peak_pct_now
// (100 * GFLOPS / the wall-clock peak of a 20 ms probe run just after this row's
// loop: on a shared host, whose speed moves within minutes, the row's efficiency
// at the moment it ran; not in --smoke runs) and GBps (omitted if bytes == 0).
// Plain values (not the library's rate counters) so the printed numbers are
// exactly GFLOP/s, % and GB/s.
void set_counters(benchmark::State &st, const LoopTimer &timer, double flops, double bytes, PeakRef peak);
std::string label(const char *what, const char *isa, int threads);

// ------------------------------------------------------------------ buffers
class Buf {
  public:
    explicit Buf(size_t n, uint32_t seed = 0, float scale = 1.0f);
    ~Buf();
    Buf(const Buf &) = delete;
    Buf &operator=(const Buf &) = delete;
    float *data() { return p_; }
    const float *data() const { return p_; }
    size_t size() const { return n_; }

  private:
    float *p_;
    size_t n_;
};

// ---------------------------------------------------------------- flop model
// Query/key pairs actually attended, causal bottom-right aligned (row i sees j <= i + Lk - Lq).
double attended_pairs(int64_t lq, int64_t lk, bool causal);
double attention_flops(int64_t b, int64_t h, int64_t lq, int64_t lk, int64_t d, bool causal);
double attention_bytes(int64_t b, int64_t h, int64_t lq, int64_t lk, int64_t d);
double forward_flops(int64_t b, int64_t l, int64_t e, int64_t h, bool causal);
double forward_bytes(int64_t b, int64_t l, int64_t e);

// Per-benchmark timing policy: few iterations in smoke mode, else enough time
// for a stable figure without blowing the run's budget on long shapes.
void apply_timing(benchmark::internal::Benchmark *b, double flops_per_iter);

// Ratio rows (bench_ratio.cc): a() and b() alternated in every iteration (a then
// b, then b then a), each side repeated until it has run 20 ms or more, so that
// their ratio comes from the same moments of a noisy machine. Sets a_ms and b_ms
// (medians over the iterations of one call's time) and `counter`, the median of
// the per-iteration time ratios b / a. a and b return false after calling
// st.SkipWithError. apply_ratio_timing: 9 iterations (2 in smoke runs).
void time_ratio(benchmark::State &st, const std::function<bool()> &a, const std::function<bool()> &b,
                const char *counter);
void apply_ratio_timing(benchmark::internal::Benchmark *b);

// Shapes. attention: {B, H, Lq, Lk, d, causal}; decode: {B, H, G, Lq, Lk, d};
// forward: {B, L, E, H, causal}.
using AttnShape = std::vector<int64_t>;
using DecodeShape = std::vector<int64_t>;
using FwdShape = std::vector<int64_t>;
struct Plan {
    std::vector<AttnShape> attention;
    std::vector<AttnShape> attention_reference; // small shapes only (float64 oracle)
    std::vector<AttnShape> attention_masked;    // a 50% random bool mask (causal must be 0)
    std::vector<DecodeShape> decode;
    std::vector<FwdShape> forward;
    std::vector<FwdShape> forward_reference;
    std::vector<std::vector<int64_t>> proj; // {M, N, K} whole GEMMs
};

void register_kernels(const Plan &plan);
void register_mha(const Plan &plan);
void register_serve(); // bench_serve.cc
void register_additive(); // bench_additive.cc: additive and concat attention
#if defined(MHAB_HAVE_OPENBLAS)
void register_openblas_attention(const AttnShape &s, int threads);
void register_openblas_forward(const FwdShape &s, int threads);
void register_openblas_proj(const std::vector<int64_t> &mnk, int threads);
void set_openblas_threads(int threads);
// C[m, n] = A[m, k] W[n, k]^T + bias by one cblas_sgemm on OpenBLAS's threads.
void openblas_linear(const float *a, const float *w, const float *bias, float *c, int64_t m, int64_t n, int64_t k);
// OpenBLAS 0.3.21 falls back to old kernels on CPUs newer than itself (Prescott on
// Sapphire Rapids) and chooses them when the library loads, before main. Unless
// OPENBLAS_CORETYPE is set, this sets it to the best core for the CPU (SkylakeX
// with AVX-512, Haswell with AVX2) and re-executes the program; call it first.
void openblas_force_best_core(char **argv);
std::string openblas_info();
#endif

} // namespace mhab

#endif
