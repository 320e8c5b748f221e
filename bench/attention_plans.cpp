// SPDX-License-Identifier: MIT
/// \file
/// Benchmarks of the data-dependent plan steps of sparse attention: LSH hashing (pre-hash
/// transform + sign-bit hash of Q and K), LSH bucketing by sort vs by counting, the causal top-k'
/// selection of key selection, the union's plan-time deduplication of its two lists, the scoring
/// MLP forward, and one ranking-loss step (candidate sampling, targets, loss, MLP backward). Shapes: the joint-recall batch B = 64, L = 1057, and
/// longer sequences with B·L fixed at 67 648 tokens (B = 67 648 / L rounded down, at least 1).
///
/// Counters per iteration: tokens (B·L) as a rate (tokens/s), FLOP (multiply-adds count 2) and
/// the minimum bytes each op must move, as rates. Usage:
///   hax_bench_attention_plans [--benchmark_filter=...] [--kokkos-num-threads=N]
#include <hax/attention/hash/random_projection.hpp>
#include <hax/attention/hash/sign_bit_hash.hpp>
#include <hax/attention/key_selection/features.hpp>
#include <hax/attention/key_selection/ranking_loss.hpp>
#include <hax/attention/key_selection/score_mlp.hpp>
#include <hax/attention/key_selection/topk.hpp>
#include <hax/attention/lsh/bucketing.hpp>
#include <hax/attention/pattern/names.hpp>

#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>
#include <benchmark/benchmark.h>

#include <cstdint>
#include <tuple>

#include "support/padding.hpp"
#include "support/run.hpp"

namespace {

constexpr int kTokens = 64 * 1057;  // B·L of the joint-recall batch
constexpr int kHashBits = 8;

template <class Space, class T>
using view1 = Kokkos::View<T*, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Space, class T>
using view2 = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Space, class T>
using view3 = Kokkos::View<T***, Kokkos::LayoutRight, typename Space::memory_space>;

int batch_for(int L) { return L == 1057 ? 64 : (kTokens / L > 0 ? kTokens / L : 1); }

template <class Space, class V>
void randomize(Space const& space, V const& v, std::uint64_t seed) {
  Kokkos::Random_XorShift64_Pool<Space> pool(seed);
  Kokkos::fill_random(space, v, pool, -1.0, 1.0);
}

void set_counters(benchmark::State& state, double tokens, double flop, double bytes) {
  using benchmark::Counter;
  state.counters["tokens/s"] = Counter(tokens, Counter::kIsIterationInvariantRate);
  state.counters["FLOP/s"] = Counter(flop, Counter::kIsIterationInvariantRate);
  state.counters["bytes/s"] = Counter(bytes, Counter::kIsIterationInvariantRate);
  state.counters["B"] = tokens / state.range(0);
}

/// Pre-hash transform (causal) + sign-bit hash of Q and K: args (L, N).
template <class Space>
void BM_lsh_hash(benchmark::State& state) {
  int const L = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1));
  int const B = batch_for(L);
  Space space;
  view3<Space, float> q("q", B, L, N), k("k", B, L, N);
  randomize(space, q, 1);
  randomize(space, k, 2);
  view2<Space, float> w("w", N, kHashBits);
  hax::attn::draw_random_projection(space, w, 1, 0, 0);
  auto const hash = hax::attn::make_sign_bit_hash(w);
  view2<Space, int> bq("bq", B, L), bk("bk", B, L);
  for (auto _ : state) {
    hax::attn::lsh_buckets(space, hax::attn::PlanSemantics::causal, hash, q, bq);
    hax::attn::lsh_buckets(space, hax::attn::PlanSemantics::causal, hash, k, bk);
    space.fence();
  }
  double const rows = 2.0 * B * L;
  set_counters(state, double(B) * L, rows * (2.0 * N * kHashBits + 6.0 * N),
               rows * (3.0 * N * 4 + 4));  // read x, write + read transformed rows, write bucket
}

/// LSH bucketing from random buckets in [0, 2^8): args (L, k').
template <class Space, class Algo>
void BM_lsh_bucketing(benchmark::State& state) {
  int const L = static_cast<int>(state.range(0)), kprime = static_cast<int>(state.range(1));
  int const B = batch_for(L);
  int const nb = 1 << kHashBits;
  Space space;
  view2<Space, int> bq("bq", B, L), bk("bk", B, L);
  Kokkos::Random_XorShift64_Pool<Space> pool(3);
  Kokkos::fill_random(space, bq, pool, 0, nb);
  Kokkos::fill_random(space, bk, pool, 0, nb);
  view3<Space, int> idx("idx", B, L, kprime);
  for (auto _ : state) {
    hax::attn::lsh_bucketing(space, Algo{}, bq, bk, nb, idx);
    space.fence();
  }
  set_counters(state, double(B) * L, 0.0, double(B) * L * (8.0 + 4.0 * kprime));
}

/// Causal top-k' of random scores: args (L, k'), by each algorithm (hax::attn::TopkMethod).
template <class Space, hax::attn::TopkMethod kMethod>
void BM_causal_topk(benchmark::State& state) {
  int const L = static_cast<int>(state.range(0)), kprime = static_cast<int>(state.range(1));
  int const B = batch_for(L);
  Space space;
  view2<Space, float> scores("scores", B, L);
  randomize(space, scores, 4);
  view3<Space, int> idx("idx", B, L, kprime);
  for (auto _ : state) {
    hax::attn::causal_topk(space, scores, idx, kMethod);
    space.fence();
  }
  // Minimum traffic: each score read once, k' slots written per query.
  set_counters(state, double(B) * L, 0.0, double(B) * L * (4.0 + 4.0 * kprime));
}

/// The union's plan-time deduplication (RuntimePattern::set_candidates on an execution space) of
/// sign_bin_lsh+key_selection: the key-selection list loses the keys the LSH list already holds,
/// once per forward, instead of an O(k') check per key in every attention kernel. Two top-k'
/// lists of independent random scores stand in for the plan steps' outputs: args (L, k').
/// Iterations after the first see the list already deduplicated (the same scan, a few more -1).
template <class Space>
void BM_union_dedup(benchmark::State& state) {
  int const L = static_cast<int>(state.range(0)), kprime = static_cast<int>(state.range(1));
  int const B = batch_for(L);
  Space space;
  view2<Space, float> scores("scores", B, L);
  view3<Space, int> first("first", B, L, kprime), second("second", B, L, kprime);
  randomize(space, scores, 5);
  hax::attn::causal_topk(space, scores, first);
  randomize(space, scores, 6);
  hax::attn::causal_topk(space, scores, second);
  auto pattern = hax::attn::make_pattern<typename Space::memory_space>("sign_bin_lsh+key_selection", 2 * kprime, L);
  pattern.set_candidates(hax::attn::PatternKind::sign_bin_lsh, first);
  for (auto _ : state) {
    pattern.set_candidates(space, hax::attn::PatternKind::key_selection, second);
    space.fence();
  }
  // Reads both rows, writes the second: 12 bytes per slot; no arithmetic beyond comparisons.
  set_counters(state, double(B) * L, 0.0, double(B) * L * kprime * 12.0);
}

/// Features + scoring MLP forward: args (L, N). With `padded` the rows are cut at the
/// joint-recall lengths (row extents, as the sparse branch passes them under causal semantics);
/// the counters stay those of all B·L rows, so the ratio of the two is the time the skip saves.
template <class Space>
void score_mlp_forward(benchmark::State& state, bool padded) {
  int const L = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1));
  int const B = batch_for(L), D = 2 * N, H = 2 * N;
  Space space;
  view3<Space, float> q("q", B, L, N), k("k", B, L, N), feat("feat", B, L, D);
  randomize(space, q, 5);
  randomize(space, k, 6);
  hax::attn::ScoreMlp<Space, float> mlp;
  auto p = mlp.allocate(space, D, H);
  randomize(space, p.w1, 7);
  randomize(space, p.w2, 8);
  randomize(space, p.w3, 9);
  view2<Space, float> scores("scores", B, L);
  Kokkos::View<int const*, typename Space::memory_space> extents;  // empty: every row
  double present = 1.0;
  if (padded) { std::tie(extents, present) = hax::bench::padded_lengths<Space>(B, L); }
  for (auto _ : state) {
    hax::attn::key_selection_features(space, hax::attn::PlanSemantics::causal, q, k, feat, extents);
    mlp.score(space, p, feat, scores, extents);
    space.fence();
  }
  // Features: read q and k, write feat; the fused MLP reads feat and writes one score per row.
  double const rows = double(B) * L;
  set_counters(state, rows, rows * 2.0 * (H * D + H * H + H), rows * 4.0 * (2 * N + 2 * D + 1));
  if (padded) { state.counters["present"] = present; }
}

template <class Space>
void BM_score_mlp_forward(benchmark::State& state) {
  score_mlp_forward<Space>(state, false);
}
template <class Space>
void BM_score_mlp_forward_padded(benchmark::State& state) {
  score_mlp_forward<Space>(state, true);
}

/// One ranking-loss step: sample k' candidates, targets (O(B·k'·L·N)), loss and ds, MLP backward.
/// args (L, N, k').
template <class Space>
void BM_ranking_step(benchmark::State& state) {
  int const L = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1));
  int const kprime = static_cast<int>(state.range(2));
  int const B = batch_for(L), D = 2 * N, H = 2 * N;
  Space space;
  view3<Space, float> q("q", B, L, N), k("k", B, L, N), feat("feat", B, L, D);
  randomize(space, q, 10);
  randomize(space, k, 11);
  hax::attn::key_selection_features(space, hax::attn::PlanSemantics::causal, q, k, feat);
  hax::attn::ScoreMlp<Space, float> mlp;
  auto p = mlp.allocate(space, D, H);
  auto g = mlp.allocate(space, D, H, "grads");
  randomize(space, p.w1, 12);
  randomize(space, p.w2, 13);
  randomize(space, p.w3, 14);
  view2<Space, float> scores("scores", B, L);
  auto const saved = mlp.forward(space, p, feat, scores);
  view1<Space, int> len("len", B);
  Kokkos::deep_copy(len, L);
  view2<Space, int> cand("cand", B, kprime);
  view2<Space, float> targets("targets", B, kprime), ds("ds", B, kprime);
  Kokkos::View<float, typename Space::memory_space> loss("loss");
  std::uint64_t step = 0;
  for (auto _ : state) {
    hax::attn::sample_candidates(space, len, 1, 0, step++, cand);
    hax::attn::ranking_targets(space, hax::attn::PlanSemantics::causal, q, k, len, cand, targets);
    hax::attn::ranking_loss(space, scores, cand, targets, loss, ds);
    mlp.backward(space, p, feat, saved, cand, ds, g);
    space.fence();
  }
  // Targets: on average L/2 rows per candidate, N multiply-adds each.
  double const flop = double(B) * kprime * (L / 2.0) * 2.0 * N +
                      double(B) * kprime * 6.0 * H * (D + H);
  set_counters(state, double(B) * L, flop, double(B) * kprime * (L / 2.0) * N * 4.0);
}

void plan_args_lk(benchmark::internal::Benchmark* b) {
  for (int L : {1057, 4096, 16384, 65536}) {
    for (int kprime : {32, 64}) { b->Args({L, kprime}); }
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
void plan_args_ln(benchmark::internal::Benchmark* b) {
  for (int L : {1057, 4096, 16384, 65536}) {
    for (int N : {16, 32}) { b->Args({L, N}); }
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
void plan_args_lnk(benchmark::internal::Benchmark* b) {
  for (int L : {1057, 4096, 16384, 65536}) {
    b->Args({L, 16, 32});
    b->Args({L, 32, 64});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

using Space = Kokkos::DefaultExecutionSpace;
BENCHMARK_TEMPLATE(BM_lsh_hash, Space)->Apply(plan_args_ln);
BENCHMARK_TEMPLATE(BM_lsh_bucketing, Space, hax::attn::BucketSort)->Apply(plan_args_lk);
BENCHMARK_TEMPLATE(BM_lsh_bucketing, Space, hax::attn::BucketCount)->Apply(plan_args_lk);
BENCHMARK_TEMPLATE(BM_causal_topk, Space, hax::attn::TopkMethod::ranking)->Apply(plan_args_lk);
BENCHMARK_TEMPLATE(BM_causal_topk, Space, hax::attn::TopkMethod::insertion)->Apply(plan_args_lk);
BENCHMARK_TEMPLATE(BM_union_dedup, Space)->Apply(plan_args_lk);
BENCHMARK_TEMPLATE(BM_score_mlp_forward, Space)->Apply(plan_args_ln);
BENCHMARK_TEMPLATE(BM_score_mlp_forward_padded, Space)->Apply(plan_args_ln);
BENCHMARK_TEMPLATE(BM_ranking_step, Space)->Apply(plan_args_lnk);

}  // namespace

int main(int argc, char** argv) { return hax::bench::run_benchmarks(argc, argv); }
