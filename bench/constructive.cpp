// SPDX-License-Identifier: MIT
/// \file
/// Cost of the constructive joint-recall model (hax::constructive::JointRecallSolver) against the
/// table size n = m^w of generated recall items with w levels of m symbols (item length
/// L = 2 + 2 (Σ_l m^l + m^w) ≈ 4n): the whole forward pass, and its first layer (the overwrite
/// scan) alone, and each step of the forward pass alone. Batches hold about 2^17 tokens (B = max(1, 2^17 / L) items), so small tables are
/// not launch-bound; counters give tokens/s, ns per token, ns per token / log2(n)² (flat when the
/// cost grows as n log² n), the state width and L. docs/constructive.md has figures.
#include <hax/constructive/joint_recall_solver.hpp>
#include <hax/constructive/overwrite_scan.hpp>
#include <hax/data/joint_recall.hpp>

#include <Kokkos_Core.hpp>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "support/run.hpp"

namespace {

using hax::data::recall_spec;

/// Items with `levels` levels of m symbols each (the validation split of that spec).
recall_spec fixed_spec(int levels, int m, std::int64_t items) {
  recall_spec s = hax::data::make_spec(levels, m, m);
  s.vocab_size = std::max(100, s.value_bias + s.n_values + levels * m);
  s.items_per_combination[0] = 0;
  s.items_per_combination[1] = items;
  s.items_per_combination[2] = 0;
  return hax::data::resolve(s);
}

template <class Space>
struct workload {
  recall_spec spec;
  std::int64_t batch = 0;
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, typename Space::memory_space> tokens;  // (B, L)
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, typename Space::memory_space> mask;     // (B, L)
  double n = 0;  // table entries m^w
};

template <class Space>
workload<Space> make_workload(Space const& space, int levels, int m) {
  int sizes[hax::data::kMaxLevels] = {m, m, m, m};
  std::int64_t const L = hax::data::item_length(levels, sizes);
  std::int64_t const B = std::max<std::int64_t>(1, (std::int64_t{1} << 17) / L);
  workload<Space> w;
  w.spec = fixed_spec(levels, m, B);
  w.batch = B;
  w.tokens = decltype(w.tokens)("tokens", B, w.spec.padded_length);
  w.mask = decltype(w.mask)("mask", B, w.spec.padded_length);
  w.n = std::pow(static_cast<double>(m), levels);
  Kokkos::View<int, typename Space::memory_space> failures("failures");
  hax::data::split_exclusions<typename Space::memory_space> none;
  hax::data::generate_batch(space, w.spec, none, hax::data::split::valid, 0, w.tokens, w.mask, failures);
  space.fence();
  return w;
}

template <class Space>
void set_counters(benchmark::State& state, workload<Space> const& w, int state_width) {
  double const tokens = static_cast<double>(w.batch) * static_cast<double>(w.spec.padded_length);
  double const iters = static_cast<double>(state.iterations());
  double const log_n = std::log2(std::max(2.0, w.n));
  state.counters["n"] = w.n;
  state.counters["L"] = static_cast<double>(w.spec.padded_length);
  state.counters["B"] = static_cast<double>(w.batch);
  state.counters["state_width"] = state_width;
  state.counters["tokens/s"] = benchmark::Counter(tokens * iters, benchmark::Counter::kIsRate);
  // ns per token and its ratio to log2(n)^2: both are per iteration, so divide the real time.
  state.counters["ns/token"] =
      benchmark::Counter(tokens * iters, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["ns/token/log2(n)^2"] = benchmark::Counter(
      tokens * iters * log_n * log_n, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

/// The whole 2-layer forward pass (scan, projections, hashing, bucketing, attention, read-out).
template <class Space, class Bucketing>
void BM_solver_forward(benchmark::State& state) {
  Space space;
  int const levels = static_cast<int>(state.range(0)), m = static_cast<int>(state.range(1));
  auto const w = make_workload(space, levels, m);
  hax::constructive::JointRecallSolver<Space, float, Bucketing> const solver(w.spec);
  int const B = static_cast<int>(w.batch), L = w.spec.padded_length;
  auto const act = solver.allocate(space, B, L);
  Kokkos::View<int**, Kokkos::LayoutRight, typename Space::memory_space> pred("pred", B, L);  // (B, L)
  solver.forward(space, w.tokens, act, pred);  // warm-up
  space.fence();
  for (auto _ : state) {
    solver.forward(space, w.tokens, act, pred);
    space.fence();
  }
  set_counters(state, w, solver.state_width());
}

/// The first layer alone: the overwrite scan over the state slots.
template <class Space>
void BM_overwrite_scan(benchmark::State& state) {
  Space space;
  int const levels = static_cast<int>(state.range(0)), m = static_cast<int>(state.range(1));
  auto const w = make_workload(space, levels, m);
  hax::constructive::JointRecallSolver<Space> const solver(w.spec);
  int const B = static_cast<int>(w.batch), L = w.spec.padded_length;
  auto const act = solver.allocate(space, B, L);
  auto const& wt = solver.weights();
  hax::constructive::overwrite_scan(space, w.tokens, wt.write_value, wt.write_mask, wt.initial, act.state);
  space.fence();
  for (auto _ : state) {
    hax::constructive::overwrite_scan(space, w.tokens, wt.write_value, wt.write_mask, wt.initial, act.state);
    space.fence();
  }
  set_counters(state, w, solver.state_width());
}

/// One step of the forward pass on its own (range(2)): 0 scan, 1 QKV projection, 2 hashing q and
/// k, 3 bucketing by sort, 4 bucketing by counting, 5 attention, 6 read-out. The inputs of each
/// step come from one full forward pass before the timed loop.
template <class Space>
void BM_solver_step(benchmark::State& state) {
  Space space;
  int const levels = static_cast<int>(state.range(0)), m = static_cast<int>(state.range(1));
  int const step = static_cast<int>(state.range(2));
  auto const w = make_workload(space, levels, m);
  hax::constructive::JointRecallSolver<Space> const solver(w.spec);
  int const B = static_cast<int>(w.batch), L = w.spec.padded_length;
  auto const act = solver.allocate(space, B, L);
  Kokkos::View<int**, Kokkos::LayoutRight, typename Space::memory_space> pred("pred", B, L);  // (B, L)
  solver.forward(space, w.tokens, act, pred);
  auto const& wt = solver.weights();
  int const N = solver.layout().key_width, Dv = solver.layout().value_width;
  using cols = Kokkos::pair<int, int>;
  auto const q = Kokkos::subview(act.qkv, Kokkos::ALL, Kokkos::ALL, cols(0, N));               // (B, L, N)
  auto const k = Kokkos::subview(act.qkv, Kokkos::ALL, Kokkos::ALL, cols(N, 2 * N));           // (B, L, N)
  auto const v = Kokkos::subview(act.qkv, Kokkos::ALL, Kokkos::ALL, cols(2 * N, 2 * N + Dv));  // (B, L, Dv)
  auto const hash = hax::attn::make_sign_bit_hash(wt.hash_projection);
  auto run = [&]() {
    switch (step) {
      case 0: hax::constructive::overwrite_scan(space, w.tokens, wt.write_value, wt.write_mask, wt.initial, act.state); break;
      case 1: hax::nn::linear_forward(space, hax::nn::as_rows(act.state), wt.qkv_weight, wt.qkv_bias, hax::nn::as_rows(act.qkv)); break;
      case 2:
        hax::attn::lsh_hash_rows(space, hash, q, act.bucket_q);
        hax::attn::lsh_hash_rows(space, hash, k, act.bucket_k);
        break;
      case 3: hax::attn::lsh_bucketing(space, hax::attn::BucketSort{}, act.bucket_q, act.bucket_k, hash.num_buckets(), act.idx); break;
      case 4: hax::attn::lsh_bucketing(space, hax::attn::BucketCount{}, act.bucket_q, act.bucket_k, hash.num_buckets(), act.idx); break;
      case 5: hax::attn::sparse_attention_forward(space, hax::attn::CandidateList(act.idx), q, k, v, act.o, act.lse); break;
      default: hax::constructive::impl::decode_values(space, act.o, w.spec.value_bias, pred); break;
    }
  };
  run();
  space.fence();
  for (auto _ : state) {
    run();
    space.fence();
  }
  set_counters(state, w, solver.state_width());
}

void table_sizes(benchmark::internal::Benchmark* b) {
  for (int m : {4, 16, 64, 256}) b->Args({1, m});                // n = m
  for (int m : {4, 8, 16, 32, 64, 128, 256}) b->Args({2, m});    // n = m^2, up to 65 536
  for (int m : {4, 8, 16, 32}) b->Args({3, m});                  // n = m^3, up to 32 768
  b->ArgNames({"w", "m"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

void step_sizes(benchmark::internal::Benchmark* b) {
  for (int m : {16, 256}) {
    for (int step = 0; step <= 6; ++step) b->Args({2, m, step});
  }
  b->ArgNames({"w", "m", "step"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

using Space = Kokkos::DefaultExecutionSpace;
BENCHMARK_TEMPLATE(BM_solver_forward, Space, hax::attn::BucketSort)->Apply(table_sizes);
BENCHMARK_TEMPLATE(BM_solver_forward, Space, hax::attn::BucketCount)->Apply(table_sizes);
BENCHMARK_TEMPLATE(BM_overwrite_scan, Space)->Apply(table_sizes);
BENCHMARK_TEMPLATE(BM_solver_step, Space)->Apply(step_sizes);

}  // namespace

int main(int argc, char** argv) { return hax::bench::run_benchmarks(argc, argv); }
