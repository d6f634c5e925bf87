// The ratio rows' timing: two calls alternated inside every iteration, so that
// their ratio comes from the same moments of a shared host, whose speed moves by
// 10-30% within minutes (whole rows run one after the other differ by as much as
// most changes do).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "bench_common.h"

namespace mhab {

namespace {

// Seconds per call of f, repeated `reps` times; negative if a call failed.
double seconds_per_call(const std::function<bool()> &f, int reps)
{
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; r++)
        if (!f())
            return -1.0;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Calls per side and iteration: enough for MIN_SIDE_SECONDS (one call is a few
// microseconds for the smallest GEMMs, whose timer and cache warm-up would
// otherwise dominate), at least one.
constexpr double MIN_SIDE_SECONDS = 0.02;

int reps_for(double seconds)
{
    return seconds >= MIN_SIDE_SECONDS ? 1 : (int)std::ceil(MIN_SIDE_SECONDS / std::max(seconds, 1e-7));
}

} // namespace

void time_ratio(benchmark::State &st, const std::function<bool()> &a, const std::function<bool()> &b,
                const char *counter)
{
    // One untimed call each (first touch of the buffers), then one timed call
    // each to choose the repetitions.
    double ta0 = -1, tb0 = -1;
    if (seconds_per_call(a, 1) < 0 || seconds_per_call(b, 1) < 0 || (ta0 = seconds_per_call(a, 1)) < 0 ||
        (tb0 = seconds_per_call(b, 1)) < 0)
        return;
    const int ra = reps_for(ta0), rb = reps_for(tb0);
    std::vector<double> ta, tb, ratio;
    for (auto _ : st) {
        // a then b, then b then a: neither side always runs second, after the
        // other has warmed or evicted the caches.
        const bool a_first = ta.size() % 2 == 0;
        double x = seconds_per_call(a_first ? a : b, a_first ? ra : rb);
        double y = x < 0 ? -1 : seconds_per_call(a_first ? b : a, a_first ? rb : ra);
        if (y < 0)
            return;
        if (!a_first)
            std::swap(x, y);
        ta.push_back(x);
        tb.push_back(y);
        ratio.push_back(y / x);
    }
    st.counters["a_ms"] = 1e3 * median(ta);
    st.counters["b_ms"] = 1e3 * median(tb);
    st.counters[counter] = median(ratio);
}

void apply_ratio_timing(benchmark::internal::Benchmark *b)
{
    b->UseRealTime()->Iterations(smoke() ? 2 : 9);
}

} // namespace mhab
