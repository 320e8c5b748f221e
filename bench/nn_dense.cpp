// SPDX-License-Identifier: MIT
/// \file
/// Benchmarks of the dense nn ops (linear, embedding, tied output projection, masked
/// cross-entropy, accuracy) at the joint-recall shapes: B = 64, L = 1057 (M = 67 648 rows),
/// D = 64/128/256, d_inner = 128/256, vocabulary 100, ~10% of positions scored.
///
/// Every benchmark reports, per iteration: FLOP (multiply-adds count 2), the minimum bytes the op
/// must move (each input read once, each output written once; the sum of the per-kernel minima
/// when an op is several kernels), and their rates (GFLOP/s and GB/s through Google Benchmark's
/// rate counters), plus tokens/s. `copy` is a plain Kokkos copy kernel of the same size class, as
/// the machine's achievable bandwidth for the ratio bytes/s ÷ copy bytes/s.
/// Usage: hax_bench_nn_dense [--benchmark_filter=...] [--kokkos-num-threads=N]
#include <hax/core/random.hpp>
#include <hax/nn/cross_entropy.hpp>
#include <hax/nn/embedding.hpp>
#include <hax/nn/linear.hpp>

#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>
#include <benchmark/benchmark.h>

#include <cstdint>

#include "support/run.hpp"

namespace {

constexpr int kBatch = 64;
constexpr int kLength = 1057;
constexpr int kRows = kBatch * kLength;  // M = 67 648 token positions
constexpr int kVocab = 100;

template <class Space, class T>
using view1 = Kokkos::View<T*, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Space, class T>
using view2 = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Space, class T>
using view3 = Kokkos::View<T***, Kokkos::LayoutRight, typename Space::memory_space>;

/// Uniform values in [-1, 1): never benchmark on all-zero data.
template <class Space, class V>
void randomize(Space const& space, V const& v, std::uint64_t seed) {
  Kokkos::Random_XorShift64_Pool<Space> pool(seed);
  Kokkos::fill_random(space, v, pool, -1.0, 1.0);
}

/// Tokens/labels in [0, kVocab) and a mask with ~10% ones (joint recall: 7 056 of 67 648).
template <class Space, class I>
void random_targets(Space const& space, view2<Space, I> const& ids, std::uint64_t seed,
                    bool as_mask) {
  int const B = ids.extent_int(0);
  int const L = ids.extent_int(1);
  Kokkos::parallel_for(
      "bench::random_targets",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<2>>(space, {0, 0}, {B, L}),
      KOKKOS_LAMBDA(int b, int t) {
        hax::core::RngStream rng(hax::core::stream_key(seed, b, t));
        ids(b, t) = as_mask ? static_cast<I>(rng.uniform_int(10) == 0)
                            : static_cast<I>(rng.uniform_int(kVocab));
      });
}

void set_counters(benchmark::State& state, double flop, double bytes) {
  using benchmark::Counter;
  state.counters["FLOP"] = Counter(flop, Counter::kDefaults, Counter::kIs1000);
  state.counters["bytes"] = Counter(bytes, Counter::kDefaults, Counter::kIs1000);
  state.counters["FLOP/s"] = Counter(flop, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["bytes/s"] = Counter(bytes, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["tokens/s"] = Counter(kRows, Counter::kIsIterationInvariantRate, Counter::kIs1000);
}

// ---------------------------------------------------------------------------------------------
// Baseline: dst = src over 67 648 x 256 floats (69 MB each), the achievable copy bandwidth.
template <class Space>
void copy(benchmark::State& state) {
  Space space;
  int const n = kRows * static_cast<int>(state.range(0));
  view1<Space, float> src("src", n), dst("dst", n);
  randomize(space, src, 1);
  for (auto _ : state) {
    Kokkos::parallel_for(
        "bench::copy", Kokkos::RangePolicy<Space>(space, 0, n),
        KOKKOS_LAMBDA(int i) { dst(i) = src(i); });
    space.fence();
  }
  set_counters(state, 0.0, 2.0 * sizeof(float) * n);
}

// ---------------------------------------------------------------------------------------------
// Linear: x (M, K), W (N, K), b (N) -> y (M, N).
template <class Space>
void linear_forward(benchmark::State& state) {
  Space space;
  int const K = static_cast<int>(state.range(0));
  int const N = static_cast<int>(state.range(1));
  bool const bias = state.range(2) != 0;
  view2<Space, float> x("x", kRows, K), w("w", N, K), y("y", kRows, N);
  view1<Space, float> b;
  randomize(space, x, 1);
  randomize(space, w, 2);
  if (bias) {
    b = view1<Space, float>("b", N);
    randomize(space, b, 3);
  }
  for (auto _ : state) {
    hax::nn::linear_forward(space, x, w, b, y);
    space.fence();
  }
  double const M = kRows;
  set_counters(state, 2.0 * M * K * N,
               sizeof(float) * (M * K + double(N) * K + M * N + (bias ? N : 0)));
}

template <class Space>
void linear_backward(benchmark::State& state) {
  Space space;
  int const K = static_cast<int>(state.range(0));
  int const N = static_cast<int>(state.range(1));
  bool const bias = state.range(2) != 0;
  view2<Space, float> x("x", kRows, K), w("w", N, K), dy("dy", kRows, N);
  view2<Space, float> dx("dx", kRows, K), dw("dw", N, K);
  view1<Space, float> db;
  randomize(space, x, 1);
  randomize(space, w, 2);
  randomize(space, dy, 3);
  if (bias) {
    db = view1<Space, float>("db", N);
  }
  for (auto _ : state) {
    hax::nn::linear_backward(space, dy, x, w, dx, dw, db);
    space.fence();
  }
  double const M = kRows;
  // dx = dy·W: read dy, W, write dx.  dW += dyᵀ·x: read dy, x, read+write dW.  db: read dy.
  double const bytes = sizeof(float) * ((M * N + double(N) * K + M * K) +
                                        (M * N + M * K + 2.0 * N * K) + (bias ? M * N + N : 0));
  set_counters(state, 4.0 * M * K * N + (bias ? M * N : 0), bytes);
}

// ---------------------------------------------------------------------------------------------
// Embedding: tokens (B, L) uint8, E (V, D) -> y (B, L, D).
template <class Space>
void embedding_forward(benchmark::State& state) {
  Space space;
  int const D = static_cast<int>(state.range(0));
  view2<Space, std::uint8_t> tokens("tokens", kBatch, kLength);
  view2<Space, float> table("table", kVocab, D);
  view3<Space, float> y("y", kBatch, kLength, D);
  random_targets(space, tokens, 1, false);
  randomize(space, table, 2);
  for (auto _ : state) {
    hax::nn::embedding_forward(space, tokens, table, y);
    space.fence();
  }
  double const M = kRows;
  set_counters(state, 0.0, M * sizeof(std::uint8_t) + sizeof(float) * (M * D + kVocab * D));
}

template <class Space>
void embedding_backward(benchmark::State& state) {
  Space space;
  int const D = static_cast<int>(state.range(0));
  view2<Space, std::uint8_t> tokens("tokens", kBatch, kLength);
  view3<Space, float> dy("dy", kBatch, kLength, D);
  view2<Space, float> dtable("dtable", kVocab, D);
  random_targets(space, tokens, 1, false);
  randomize(space, dy, 2);
  for (auto _ : state) {
    hax::nn::embedding_backward(space, tokens, dy, dtable);
    space.fence();
  }
  double const M = kRows;
  set_counters(state, M * D, M * sizeof(std::uint8_t) + sizeof(float) * (M * D + 2.0 * kVocab * D));
}

// ---------------------------------------------------------------------------------------------
// Tied output: h (M, D), E (V, D) -> logits (M, V).
template <class Space>
void tied_output_forward(benchmark::State& state) {
  Space space;
  int const D = static_cast<int>(state.range(0));
  view2<Space, float> h("h", kRows, D), table("table", kVocab, D), logits("logits", kRows, kVocab);
  randomize(space, h, 1);
  randomize(space, table, 2);
  for (auto _ : state) {
    hax::nn::tied_output_forward(space, h, table, logits);
    space.fence();
  }
  double const M = kRows;
  set_counters(state, 2.0 * M * D * kVocab,
               sizeof(float) * (M * D + double(kVocab) * D + M * kVocab));
}

template <class Space>
void tied_output_backward(benchmark::State& state) {
  Space space;
  int const D = static_cast<int>(state.range(0));
  view2<Space, float> h("h", kRows, D), table("table", kVocab, D);
  view2<Space, float> dlogits("dlogits", kRows, kVocab), dh("dh", kRows, D);
  view2<Space, float> dtable("dtable", kVocab, D);
  randomize(space, h, 1);
  randomize(space, table, 2);
  randomize(space, dlogits, 3);
  for (auto _ : state) {
    hax::nn::tied_output_backward(space, dlogits, h, table, dh, dtable);
    space.fence();
  }
  double const M = kRows;
  double const V = kVocab;
  set_counters(state, 4.0 * M * D * V,
               sizeof(float) * ((M * V + V * D + M * D) + (M * V + M * D + 2.0 * V * D)));
}

// ---------------------------------------------------------------------------------------------
// Masked cross-entropy over logits (B, L, 100). mode 0: loss only (evaluation); 1: loss and
// dlogits in one pass (training); 2: backward alone.
template <class Space>
void cross_entropy(benchmark::State& state) {
  Space space;
  int const mode = static_cast<int>(state.range(0));
  view3<Space, float> logits("logits", kBatch, kLength, kVocab);
  view3<Space, float> dlogits("dlogits", kBatch, kLength, kVocab);
  view2<Space, std::int32_t> labels("labels", kBatch, kLength);
  view2<Space, std::int8_t> mask("mask", kBatch, kLength);
  Kokkos::View<float, typename Space::memory_space> loss("loss");
  Kokkos::View<int, typename Space::memory_space> count("count");
  randomize(space, logits, 1);
  random_targets(space, labels, 2, false);
  random_targets(space, mask, 3, true);
  hax::nn::cross_entropy_forward(space, logits, labels, mask, loss, count, dlogits);
  for (auto _ : state) {
    if (mode == 0) {
      hax::nn::cross_entropy_forward(space, logits, labels, mask, loss, count,
                                     view3<Space, float>());
    } else if (mode == 1) {
      hax::nn::cross_entropy_forward(space, logits, labels, mask, loss, count, dlogits);
    } else {
      hax::nn::cross_entropy_backward(space, logits, labels, mask, count, dlogits);
    }
    space.fence();
  }
  double const M = kRows;
  double const V = kVocab;
  // Minimum: read mask and labels; read the logits of scored rows (~10%) when only the loss is
  // wanted, all of dlogits written when the gradient is (unscored rows are written as zeros).
  double const scored = 0.1 * M;
  double const ids = M * (sizeof(std::int8_t) + sizeof(std::int32_t));
  double bytes = ids + sizeof(float) * scored * V;
  if (mode != 0) {
    bytes += sizeof(float) * M * V;
  }
  // ~ max, exp and sum per logit of a scored row, plus the softmax/gradient per logit.
  set_counters(state, scored * V * (mode == 0 ? 3.0 : mode == 1 ? 6.0 : 6.0), bytes);
}

template <class Space>
void accuracy(benchmark::State& state) {
  Space space;
  view3<Space, float> logits("logits", kBatch, kLength, kVocab);
  view2<Space, std::int32_t> labels("labels", kBatch, kLength);
  view2<Space, std::int8_t> mask("mask", kBatch, kLength);
  view1<Space, float> acc_item("acc_item", kBatch);
  Kokkos::View<float, typename Space::memory_space> acc_mean("acc_mean");
  randomize(space, logits, 1);
  random_targets(space, labels, 2, false);
  random_targets(space, mask, 3, true);
  for (auto _ : state) {
    hax::nn::masked_accuracy(space, logits, labels, mask, acc_item, acc_mean);
    space.fence();
  }
  double const M = kRows;
  set_counters(state, 0.1 * M * kVocab,
               M * (sizeof(std::int8_t) + sizeof(std::int32_t)) + sizeof(float) * 0.1 * M * kVocab);
}

using space_t = Kokkos::DefaultExecutionSpace;

}  // namespace

BENCHMARK(copy<space_t>)->ArgNames({"D"})->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(linear_forward<space_t>)
    ->ArgNames({"K", "N", "bias"})
    ->Args({64, 128, 0})
    ->Args({64, 256, 0})
    ->Args({128, 256, 0})
    ->Args({128, 64, 0})
    ->Args({256, 128, 0})
    ->Args({256, 256, 0})
    ->Args({128, 256, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(linear_backward<space_t>)
    ->ArgNames({"K", "N", "bias"})
    ->Args({64, 128, 0})
    ->Args({64, 256, 0})
    ->Args({128, 256, 0})
    ->Args({128, 64, 0})
    ->Args({256, 128, 0})
    ->Args({256, 256, 0})
    ->Args({128, 256, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(embedding_forward<space_t>)->ArgNames({"D"})->Arg(64)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(embedding_backward<space_t>)->ArgNames({"D"})->Arg(64)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(tied_output_forward<space_t>)->ArgNames({"D"})->Arg(64)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(tied_output_backward<space_t>)->ArgNames({"D"})->Arg(64)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(cross_entropy<space_t>)->ArgNames({"mode"})->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(accuracy<space_t>)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) { return hax::bench::run_benchmarks(argc, argv); }
