// Serving rows: mha_serve_attention on a ragged batch against caches the bench
// fills, contiguous ([S, L_max, G, d], token-major) or paged (blocks of 16 in a
// shuffled order), for a Llama-style layer (H32 G8 d128) and the 1024/16-head
// one (H16 d64): one decode at 8K, 16 decodes at ragged 2K-8K, one 1024-token
// prefill alone (over its own 1024 keys), the 15 decodes of the mixed batch
// alone, and the mixed batch of that prefill and those 15 decodes. GBps counts
// the K/V bytes of every sequence once (the bytes any decoder must read);
// read_pct compares it with the measured read bandwidth.
// serve_ratio/ rows time two calls alternately in every iteration, so their
// ratio comes from the same moments of a noisy machine:
//   split: the mixed batch against its prefill alone + its 15 decodes alone
//     (mixed_vs_split_pct; best_mixed_vs_split_pct from each call's fastest
//     iteration, the "best isolated calls");
//   lse: the same call without and with the LSE output (lse_cost_pct);
//   paged: contiguous against paged caches (paged_vs_contig_pct).
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../tests/rng.h"
#include "bench_common.h"

namespace mhab {

namespace {

enum Scenario { DECODE1 = 0, DECODE16 = 1, PREFILL = 2, MIXED = 3, DECODE15 = 4 };
const char *scenario_name(int s)
{
    static const char *n[] = {"decode_1x8k", "decode_16x2k-8k", "prefill_1024", "mixed_prefill+15_decodes",
                              "decode_15_of_mixed"};
    return n[s];
}

// q_len and kv_len of each sequence of a scenario (smoke: 1/32 of the lengths).
void lengths(int scenario, bool small, std::vector<int32_t> &ql, std::vector<int32_t> &kl)
{
    const int32_t div = small ? 32 : 1;
    ql.clear();
    kl.clear();
    if (scenario == DECODE1) {
        ql.push_back(1);
        kl.push_back(8192 / div);
        return;
    }
    if (scenario == PREFILL || scenario == MIXED) {
        ql.push_back(1024 / div);
        kl.push_back(1024 / div);
        if (scenario == PREFILL)
            return;
    }
    const int n = scenario == DECODE16 ? 16 : 15;
    for (int s = 0; s < n; s++) { // ragged 2K..8K, fixed pattern
        ql.push_back(1);
        kl.push_back((2048 + (int32_t)((s * 2654435761u) % 6145)) / div);
    }
}

struct ServeData {
    std::vector<int32_t> q_start, kv_len, table;
    mha_batch batch;
    mha_kv_cache cache;
    Buf *k = nullptr, *v = nullptr, *q = nullptr, *out = nullptr, *lse = nullptr;
    std::vector<char> storage, ws;
    mha_serve_plan *plan = nullptr;
    double kv_bytes = 0, flops = 0;
    mha_status st = MHA_OK;

    ServeData(int scenario, bool paged, int64_t h, int64_t g, int64_t d, int threads, bool with_lse)
    {
        std::vector<int32_t> ql, kl;
        lengths(scenario, smoke(), ql, kl);
        const int64_t n = (int64_t)ql.size(), bs = 16;
        q_start.assign(1, 0);
        int64_t max_kv = 0, blocks = 0;
        for (int64_t s = 0; s < n; s++) {
            q_start.push_back(q_start.back() + ql[s]);
            kv_len.push_back(kl[s]);
            max_kv = kl[s] > max_kv ? kl[s] : max_kv;
            blocks += (kl[s] + bs - 1) / bs;
            kv_bytes += 4.0 * (double)kl[s] * (double)(g * 2 * d);
            flops += attention_flops(1, h, ql[s], kl[s], d, true);
        }
        const int64_t T = q_start.back();
        std::memset(&batch, 0, sizeof batch);
        std::memset(&cache, 0, sizeof cache);
        batch.num_seqs = n;
        batch.q_start = q_start.data();
        batch.kv_len = kv_len.data();
        cache.num_kv_heads = g;
        cache.head_dim_qk = d;
        cache.head_dim_v = d;
        size_t floats;
        if (paged) {
            const int64_t max_blocks = (max_kv + bs - 1) / bs;
            table.assign((size_t)(n * max_blocks), 0);
            // Each sequence's blocks spread over the pool: a fixed shuffle.
            std::vector<int32_t> perm((size_t)blocks);
            uint64_t seed = 0x9E3779B97F4A7C15ull;
            rng_permutation(perm.data(), blocks, &seed);
            int64_t used = 0;
            for (int64_t s = 0; s < n; s++)
                for (int64_t i = 0; i < (kl[s] + bs - 1) / bs; i++)
                    table[(size_t)(s * max_blocks + i)] = perm[(size_t)used++];
            batch.block_table = table.data();
            batch.max_blocks = max_blocks;
            cache.layout = MHA_KV_PAGED;
            cache.block_size = bs;
            cache.num_blocks = blocks;
            floats = (size_t)(blocks * g * bs * d);
        } else {
            cache.layout = MHA_KV_CONTIGUOUS;
            cache.num_seqs = n;
            cache.max_len = max_kv;
            floats = (size_t)(n * max_kv * g * d);
        }
        k = new Buf(floats, 21);
        v = new Buf(floats, 22);
        q = new Buf((size_t)(T * h * d), 23);
        out = new Buf((size_t)(T * h * d));
        lse = with_lse ? new Buf((size_t)(T * h)) : nullptr;
        cache.k = k->data();
        cache.v = v->data();
        mha_serve_plan_args pa;
        std::memset(&pa, 0, sizeof pa);
        pa.num_heads = h;
        pa.num_kv_heads = g;
        pa.head_dim_qk = d;
        pa.head_dim_v = d;
        pa.batch = &batch;
        pa.cache = &cache;
        pa.num_threads = threads;
        size_t pb, wb;
        st = mha_serve_plan_size(&pa, &pb, &wb);
        if (st != MHA_OK)
            return;
        storage.resize(pb);
        ws.resize(wb);
        st = mha_serve_plan_create(&pa, storage.data(), pb, &plan);
    }
    ~ServeData()
    {
        delete k;
        delete v;
        delete q;
        delete out;
        delete lse;
    }
};

// The call of a ServeData, with or without its LSE output.
mha_status serve_call(ServeData &s, bool with_lse)
{
    mha_serve_attention_args a;
    std::memset(&a, 0, sizeof a);
    a.q = s.q->data();
    a.out = s.out->data();
    a.lse = with_lse ? s.lse->data() : nullptr;
    return mha_serve_attention(s.plan, &s.batch, &s.cache, &a, s.ws.data(), s.ws.size());
}

// Args: scenario, paged, H, G, d, lse, threads.
void BM_serve(benchmark::State &st)
{
    const int scenario = (int)st.range(0), threads = (int)st.range(6);
    const bool with_lse = st.range(5) != 0;
    ServeData s(scenario, st.range(1) != 0, st.range(2), st.range(3), st.range(4), threads, with_lse);
    if (s.st != MHA_OK) {
        st.SkipWithError(mha_status_message(s.st));
        return;
    }
    LoopTimer timer(threads);
    for (auto _ : st) {
        mha_status r = serve_call(s, with_lse);
        if (r != MHA_OK) {
            st.SkipWithError(mha_status_message(r));
            return;
        }
        benchmark::ClobberMemory();
    }
    st.SetLabel(label(scenario_name(scenario), mha_isa_name(mha_active_isa()), threads));
    set_counters(st, timer, s.flops, s.kv_bytes, peak_of(mha_active_isa(), threads));
    if (st.counters.count("GBps") && read_gbps(threads) > 0)
        st.counters["read_pct"] = 100.0 * st.counters["GBps"] / read_gbps(threads);
}

enum Ratio { SPLIT = 0, LSE = 1, PAGED = 2 };
const char *ratio_name(int r)
{
    static const char *n[] = {"split", "lse", "paged"};
    return n[r];
}

// Wall seconds of one call (false: it failed, the row is skipped).
bool timed_call(benchmark::State &st, ServeData &s, bool with_lse, double *sec)
{
    auto t0 = std::chrono::steady_clock::now();
    mha_status r = serve_call(s, with_lse);
    *sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r != MHA_OK)
        st.SkipWithError(mha_status_message(r));
    return r == MHA_OK;
}

// Args: ratio, scenario, paged, H, G, d, threads. Every iteration runs side A
// then side B (split: B is the prefill alone then the 15 decodes alone).
void BM_serve_ratio(benchmark::State &st)
{
    const int ratio = (int)st.range(0), scenario = ratio == SPLIT ? MIXED : (int)st.range(1);
    const bool paged = st.range(2) != 0;
    const int64_t h = st.range(3), g = st.range(4), d = st.range(5);
    const int threads = (int)st.range(6);
    // Side A; side B: the same data (lse), its paged twin, or the prefill and the decodes.
    std::unique_ptr<ServeData> sa(new ServeData(scenario, ratio == PAGED ? false : paged, h, g, d, threads,
                                                ratio == LSE)),
        sb, sc;
    if (ratio != LSE)
        sb.reset(new ServeData(ratio == SPLIT ? PREFILL : scenario, ratio == PAGED || paged, h, g, d, threads, false));
    if (ratio == SPLIT)
        sc.reset(new ServeData(DECODE15, paged, h, g, d, threads, false));
    for (const ServeData *x : {sa.get(), sb.get(), sc.get()})
        if (x && x->st != MHA_OK) {
            st.SkipWithError(mha_status_message(x->st));
            return;
        }
    ServeData &a = *sa, &b = sb ? *sb : *sa;
    double sum_a = 0, sum_b = 0, best_a = 1e30, best_b = 1e30, best_c = 1e30;
    for (auto _ : st) {
        double ta, tb, tc = 0;
        if (!timed_call(st, a, false, &ta) || !timed_call(st, b, ratio == LSE, &tb) ||
            (sc && !timed_call(st, *sc, false, &tc)))
            return;
        benchmark::ClobberMemory();
        sum_a += ta;
        sum_b += tb + tc;
        best_a = ta < best_a ? ta : best_a;
        best_b = tb < best_b ? tb : best_b;
        best_c = tc < best_c ? tc : best_c;
    }
    const double n = (double)st.iterations();
    st.SetLabel(label(scenario_name(scenario), mha_isa_name(mha_active_isa()), threads));
    st.counters["a_ms"] = 1e3 * sum_a / n;
    st.counters["b_ms"] = 1e3 * sum_b / n;
    const char *names[] = {"mixed_vs_split_pct", "lse_cost_pct", "paged_vs_contig_pct"};
    st.counters[names[ratio]] = ratio == SPLIT ? 100.0 * (sum_a / sum_b - 1.0) : 100.0 * (sum_b / sum_a - 1.0);
    if (ratio == SPLIT)
        st.counters["best_mixed_vs_split_pct"] = 100.0 * (best_a / (best_b + best_c) - 1.0);
}

} // namespace

void register_serve()
{
    const int64_t shapes[2][3] = {{32, 8, 128}, {16, 16, 64}};
    const int scenarios[] = {DECODE1, DECODE16, PREFILL, DECODE15, MIXED};
    for (const auto &sh : shapes)
        for (int scenario : scenarios)
            for (int t : thread_counts())
                for (int lse = 0; lse < 2; lse++)
                    for (int paged = 0; paged < 2; paged++) { // interleaved: the ratio from one run
                        auto *b = benchmark::RegisterBenchmark(
                            (std::string("serve/") + scenario_name(scenario) + (paged ? "/paged" : "/contiguous"))
                                .c_str(),
                            BM_serve);
                        b->ArgNames({"scenario", "paged", "H", "G", "d", "lse", "threads"})
                            ->Args({scenario, paged, sh[0], sh[1], sh[2], lse, t})
                            ->Unit(benchmark::kMillisecond);
                        apply_timing(b, 1e9);
                    }
    for (const auto &sh : shapes)
        for (int ratio = 0; ratio < 3; ratio++)
            for (int scenario : scenarios) {
                if (ratio == SPLIT && scenario != MIXED)
                    continue;
                for (int t : thread_counts())
                    for (int paged = 0; paged < (ratio == PAGED ? 1 : 2); paged++) {
                        auto *b = benchmark::RegisterBenchmark(
                            (std::string("serve_ratio/") + ratio_name(ratio) + "/" + scenario_name(scenario) +
                             (ratio == PAGED ? "" : paged ? "/paged" : "/contiguous"))
                                .c_str(),
                            BM_serve_ratio);
                        b->ArgNames({"ratio", "scenario", "paged", "H", "G", "d", "threads"})
                            ->Args({ratio, scenario, paged, sh[0], sh[1], sh[2], t})
                            ->Unit(benchmark::kMillisecond);
                        apply_timing(b, 1e9);
                    }
            }
}

} // namespace mhab
