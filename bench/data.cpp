// SPDX-License-Identifier: MIT
/// \file
/// Generator throughput of hax::data (items/s, tokens/s): streaming batches of the reference's
/// training split into (B, 1058) Views, and the whole 1 440 000-item training split generated in
/// memory batch by batch (the target: under 10 s on a 2-core machine).
#include <hax/data/joint_recall.hpp>

#include <Kokkos_Core.hpp>
#include <benchmark/benchmark.h>

#include <cstdint>

#include "support/run.hpp"

namespace {

using hax::data::recall_spec;
using hax::data::split;

/// Real (unpadded) tokens of items [first, first + count) of a split, for the tokens/s counter.
std::int64_t real_tokens(recall_spec const& s, std::int64_t first, std::int64_t count) {
  std::int64_t total = 0;
  for (std::int64_t i = first; i < first + count; ++i) {
    int n[hax::data::kMaxLevels];
    hax::data::item_sizes(s, i, n);
    total += hax::data::item_length(s.levels, n);
  }
  return total;
}

/// One batch of B training items (uint8 tokens), starting at a position that moves each iteration.
template <class Space>
void BM_generate_batch(benchmark::State& state) {
  Space space;
  using mem = typename Space::memory_space;
  recall_spec const s = hax::data::resolve(recall_spec{});
  auto const ex = hax::data::make_exclusions(space, s);
  std::int64_t const B = state.range(0);
  Kokkos::View<std::uint8_t**, Kokkos::LayoutRight, mem> tokens("tokens", B, s.padded_length);  // (B, Lpad)
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem> mask("mask", B, s.padded_length);       // (B, Lpad)
  Kokkos::View<int, mem> failures("failures");
  std::int64_t first = 0;
  std::int64_t items = 0;
  std::int64_t toks = 0;
  for (auto _ : state) {
    hax::data::generate_batch(space, s, ex, split::train, first, tokens, mask, failures);
    space.fence();
    items += B;
    toks += real_tokens(s, first, B);
    first = (first + B) % (hax::data::split_size(s, split::train) - B);
  }
  state.counters["items/s"] = benchmark::Counter(static_cast<double>(items), benchmark::Counter::kIsRate);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(toks), benchmark::Counter::kIsRate);
  state.counters["padded_tokens/s"] = benchmark::Counter(
      static_cast<double>(items * s.padded_length), benchmark::Counter::kIsRate);
  // bytes written: one token byte and one mask byte per padded position
  state.counters["bytes/s"] = benchmark::Counter(
      static_cast<double>(items * s.padded_length * 2), benchmark::Counter::kIsRate);
}

/// The whole training split (1 440 000 items) in memory, in batches of 8192 rows reused as the
/// training loop would; one iteration = the full split. Includes building the exclusion sets.
template <class Space>
void BM_train_split_full(benchmark::State& state) {
  Space space;
  using mem = typename Space::memory_space;
  recall_spec const s = hax::data::resolve(recall_spec{});
  std::int64_t const B = 8192;
  std::int64_t const total = hax::data::split_size(s, split::train);
  Kokkos::View<std::uint8_t**, Kokkos::LayoutRight, mem> tokens("tokens", B, s.padded_length);  // (B, Lpad)
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem> mask("mask", B, s.padded_length);       // (B, Lpad)
  Kokkos::View<int, mem> failures("failures");
  for (auto _ : state) {
    auto const ex = hax::data::make_exclusions(space, s);
    for (std::int64_t first = 0; first < total; first += B) {
      std::int64_t const b = (total - first) < B ? (total - first) : B;
      auto t = Kokkos::subview(tokens, Kokkos::pair<std::int64_t, std::int64_t>(0, b), Kokkos::ALL);
      auto m = Kokkos::subview(mask, Kokkos::pair<std::int64_t, std::int64_t>(0, b), Kokkos::ALL);
      hax::data::generate_batch(space, s, ex, split::train, first, t, m, failures);
    }
    space.fence();
  }
  int failed = 0;
  Kokkos::deep_copy(failed, failures);
  state.counters["failures"] = failed;
  state.counters["items/s"] = benchmark::Counter(
      static_cast<double>(total * state.iterations()), benchmark::Counter::kIsRate);
  state.counters["tokens/s"] = benchmark::Counter(
      static_cast<double>(real_tokens(s, 0, total) * state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
  return hax::bench::run_benchmarks(argc, argv, [] {
    using Space = Kokkos::DefaultHostExecutionSpace;
    benchmark::RegisterBenchmark("data/generate_batch", BM_generate_batch<Space>)
        ->Arg(1024)->Arg(8192)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark("data/train_split_full", BM_train_split_full<Space>)
        ->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
    return 0;
  });
}
