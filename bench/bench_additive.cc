// Additive (Bahdanau) and concat attention: the library's fused path, the textbook
// unfused baseline (additive_textbook: materialised [B, Lq, Lk, h], libm tanhf,
// OpenBLAS) and the float64 reference, registered side by side per shape and
// thread count. tanh_per_s = B*Lq*Lk*h / wall second: compare it with
// kernel_tanh/<isa>'s in-cache rate.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "bench_common.h"

#if defined(MHAB_HAVE_OPENBLAS)
#include "additive_baseline.h"
#endif

namespace mhab {

namespace {

// {B, Lq, Lk, Dq, Dk, h, Dv}
using AddShape = std::vector<int64_t>;

// d2l's AdditiveAttention without biases; features W_q q + W_k k about unit
// variance, so the tanh arguments span both branches as in kernel_tanh's input.
struct AddData {
    int64_t B, Lq, Lk, Dq, Dk, h, Dv;
    Buf q, k, v, wq, wk, wv, out, weights;
    mha_additive_config cfg;
    mha_additive_weights w;
    mha_additive_args args;
    AddData(const AddShape &s, int threads)
        : B(s[0]), Lq(s[1]), Lk(s[2]), Dq(s[3]), Dk(s[4]), h(s[5]), Dv(s[6]),
          q((size_t)(B * Lq * Dq), 31), k((size_t)(B * Lk * Dk), 32), v((size_t)(B * Lk * Dv), 33),
          wq((size_t)(h * Dq), 34, 3.0f / std::sqrt((float)Dq)),
          wk((size_t)(h * Dk), 35, 3.0f / std::sqrt((float)Dk)),
          wv((size_t)h, 36, 1.0f / std::sqrt((float)h)), out((size_t)(B * Lq * Dv)),
          weights((size_t)(B * Lq * Lk))
    {
        cfg = mha_additive_config{Dq, Dk, h};
        w = mha_additive_weights{wq.data(), wk.data(), wv.data(), nullptr, nullptr};
        std::memset(&args, 0, sizeof args);
        args.batch = B;
        args.len_q = Lq;
        args.len_k = Lk;
        args.value_dim = Dv;
        args.query = q.data();
        args.key = k.data();
        args.value = v.data();
        args.out = out.data();
        args.weights = weights.data();
        args.num_threads = threads;
    }
    double tanh_count() const { return (double)B * (double)Lq * (double)Lk * (double)h; }
    // Projections 2*h*(B*Lq*Dq + B*Lk*Dk); per (i, j) pair h adds, h tanh, 2h for
    // the w_v dot, 2*Dv for weights . V.
    double flops() const
    {
        return 2.0 * (double)h * ((double)(B * Lq * Dq) + (double)(B * Lk * Dk)) +
               (double)B * (double)Lq * (double)Lk * (4.0 * (double)h + 2.0 * (double)Dv);
    }
};

void set_additive_counters(benchmark::State &st, const LoopTimer &timer, const AddData &d, mha_isa isa)
{
    set_counters(st, timer, d.flops(), 0.0, peak_of(isa, timer.threads()));
    const double sec = timer.seconds();
    if (sec > 0)
        st.counters["tanh_per_s"] = d.tanh_count() * (double)st.iterations() / sec;
}

void BM_additive(benchmark::State &st, AddShape s, int threads)
{
    AddData d(s, threads);
    mha_additive_model *m = nullptr;
    mha_status rc = mha_additive_model_create(&d.cfg, &d.w, &m);
    size_t bytes = 0;
    if (rc == MHA_OK)
        rc = mha_additive_workspace_size(m, d.B, d.Lq, d.Lk, threads, &bytes);
    Buf ws(bytes / sizeof(float) + 1);
    if (rc == MHA_OK)
        rc = mha_additive_forward(m, &d.args, ws.data(), bytes);
    if (rc != MHA_OK) {
        mha_additive_model_destroy(m);
        st.SkipWithError(mha_status_message(rc));
        return;
    }
    const LoopTimer timer(threads);
    for (auto _ : st) {
        mha_additive_forward(m, &d.args, ws.data(), bytes);
        benchmark::ClobberMemory();
    }
    mha_additive_model_destroy(m);
    st.SetLabel(label("mha fused", mha_isa_name(mha_active_isa()), threads));
    set_additive_counters(st, timer, d, mha_active_isa());
}

#if defined(MHAB_HAVE_OPENBLAS)
void BM_additive_textbook(benchmark::State &st, AddShape s, int threads)
{
    AddData d(s, threads);
    set_openblas_threads(threads);
    std::vector<float> scratch(additive_textbook_scratch_floats((int)d.B, (int)d.Lq, (int)d.Lk, (int)d.h));
    const LoopTimer timer(threads);
    for (auto _ : st) {
        additive_textbook((int)d.B, (int)d.Lq, (int)d.Lk, (int)d.Dq, (int)d.Dk, (int)d.h, (int)d.Dv,
                          d.q.data(), d.k.data(), d.v.data(), d.wq.data(), d.wk.data(), d.wv.data(),
                          nullptr, d.out.data(), d.weights.data(), scratch.data());
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("textbook (materialised features, tanhf, OpenBLAS)", "openblas", threads));
    set_additive_counters(st, timer, d, best_measured_isa());
}
#endif

void BM_additive_reference(benchmark::State &st, AddShape s)
{
    AddData d(s, 1);
    const LoopTimer timer(1);
    for (auto _ : st) {
        mha_status rc = mha_reference_additive(&d.cfg, &d.w, &d.args);
        if (rc != MHA_OK) {
            st.SkipWithError(mha_status_message(rc));
            break;
        }
        benchmark::ClobberMemory();
    }
    st.SetLabel(label("reference(float64)", "scalar", 1));
    set_additive_counters(st, timer, d, MHA_ISA_SCALAR);
}

// The seq2seq tutorial's decoder attention: {B, Dq, Dk, Dv, L, O}.
void BM_concat(benchmark::State &st, std::vector<int64_t> s, int threads)
{
    const int64_t B = s[0], Dq = s[1], Dk = s[2], Dv = s[3], L = s[4], O = s[5];
    Buf q((size_t)(B * Dq), 41), k((size_t)(B * Dk), 42), v((size_t)(B * L * Dv), 43);
    Buf wa((size_t)(L * (Dq + Dk)), 44, 0.2f), ba((size_t)L, 45, 0.1f);
    Buf wc((size_t)(O * (Dq + Dv)), 46, 0.1f), bc((size_t)O, 47, 0.1f), out((size_t)(B * O)), w((size_t)(B * L));
    const mha_concat_config cfg{Dq, Dk, Dv, L, O};
    const mha_concat_weights wts{wa.data(), ba.data(), wc.data(), bc.data()};
    mha_concat_args a;
    std::memset(&a, 0, sizeof a);
    a.batch = B;
    a.query = q.data();
    a.key = k.data();
    a.value = v.data();
    a.out = out.data();
    a.weights = w.data();
    a.num_threads = threads;
    mha_concat_model *m = nullptr;
    mha_status rc = mha_concat_model_create(&cfg, &wts, &m);
    size_t bytes = 0;
    if (rc == MHA_OK)
        rc = mha_concat_workspace_size(m, B, threads, &bytes);
    Buf ws(bytes / sizeof(float) + 1);
    if (rc == MHA_OK)
        rc = mha_concat_forward(m, &a, ws.data(), bytes);
    if (rc != MHA_OK) {
        mha_concat_model_destroy(m);
        st.SkipWithError(mha_status_message(rc));
        return;
    }
    const LoopTimer timer(threads);
    for (auto _ : st) {
        mha_concat_forward(m, &a, ws.data(), bytes);
        benchmark::ClobberMemory();
    }
    mha_concat_model_destroy(m);
    st.SetLabel(label("mha", mha_isa_name(mha_active_isa()), threads));
    const double flops = 2.0 * (double)B * ((double)L * (double)(Dq + Dk) + (double)L * (double)Dv +
                                            (double)O * (double)(Dq + Dv));
    set_counters(st, timer, flops, 0.0, peak_of(mha_active_isa(), threads));
}

void timing(benchmark::internal::Benchmark *b, double flops)
{
    b->Unit(benchmark::kMillisecond);
    apply_timing(b, flops);
}

} // namespace

void register_additive()
{
    // The shapes: a batch of decoder queries, and one decoder step.
    const std::vector<AddShape> shapes =
        smoke() ? std::vector<AddShape>{{2, 3, 17, 8, 8, 20, 5}, {1, 1, 40, 16, 16, 16, 16}}
                : std::vector<AddShape>{{8, 64, 256, 256, 256, 256, 256}, {1, 1, 1024, 512, 512, 512, 512}};
    const std::vector<std::string> names{"B", "Lq", "Lk", "Dq", "Dk", "h", "Dv"};
    auto args_name = [&](const AddShape &s, int t) {
        std::string n;
        for (size_t i = 0; i < s.size(); i++)
            n += "/" + names[i] + ":" + std::to_string(s[i]);
        return n + (t > 0 ? "/threads:" + std::to_string(t) : "");
    };
    for (const AddShape &s : shapes) {
        const double flops = AddData(s, 1).flops();
        for (int t : thread_counts()) {
            if (t > 2)
                continue; // the rows: 1 and 2 threads
            timing(benchmark::RegisterBenchmark(("additive" + args_name(s, t)).c_str(), BM_additive, s, t),
                   flops);
#if defined(MHAB_HAVE_OPENBLAS)
            timing(benchmark::RegisterBenchmark(("additive_textbook" + args_name(s, t)).c_str(),
                                                BM_additive_textbook, s, t),
                   flops);
#endif
        }
        timing(benchmark::RegisterBenchmark(("additive_reference" + args_name(s, 1)).c_str(),
                                            BM_additive_reference, s),
               flops);
    }
    const std::vector<int64_t> tutorial{1, 32, 32, 64, 32, 64};
    for (int t : thread_counts())
        if (t <= 2)
            timing(benchmark::RegisterBenchmark(("concat/B:1/Dq:32/Dk:32/Dv:64/L:32/O:64/threads:" +
                                                 std::to_string(t)).c_str(),
                                                BM_concat, tutorial, t),
                   1e5);
}

} // namespace mhab
