// SPDX-License-Identifier: MIT
/// \file
/// Benchmarks of the normalisation, convolution and elementwise ops of hax::nn (RMSNorm, gated
/// RMSNorm, causal depthwise conv1d + SiLU, SiLU, softplus, silu_gate, add, gated_scale_add),
/// forward and backward, at the joint-recall shapes B = 64, L = 1057, D = 64/128/256.
///
/// Every benchmark reports, per iteration, the minimum bytes the op must move (each (B, L, D)
/// input read once, each output written once, 4 bytes per float; per-channel vectors and
/// rstd (B, L) included, negligible) and the rate bytes/s, plus an estimate of FLOP and tokens/s.
/// `deep_copy` is Kokkos::deep_copy of one (B, L, D) float tensor into another: the machine's
/// achievable bandwidth, against which bytes/s is read as a ratio.
/// Usage: hax_bench_nn_elementwise [--benchmark_filter=...] [--kokkos-num-threads=N]
#include <hax/nn/activation.hpp>
#include <hax/nn/conv1d.hpp>
#include <hax/nn/elementwise.hpp>
#include <hax/nn/rms_norm.hpp>

#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>

#include "support/run.hpp"

namespace {

constexpr int kBatch = 64;
constexpr int kLength = 1057;
constexpr int kRows = kBatch * kLength;  // 67 648 token positions
constexpr int kWidth = 4;                // conv width of the models

template <class Space>
using view1 = Kokkos::View<float*, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Space>
using view2 = Kokkos::View<float**, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Space>
using view3 = Kokkos::View<float***, Kokkos::LayoutRight, typename Space::memory_space>;

/// The run's one random pool. Constructing a pool initialises one state per concurrent thread
/// (hundreds of thousands on a GPU), which costs far more than the fills; Google Benchmark calls
/// each case several times while it sizes the iteration count, so a pool per fill made the CUDA
/// run spend minutes in set-up. main() owns it (it must die before Kokkos::finalize).
template <class Space>
Kokkos::Random_XorShift64_Pool<Space>* random_pool = nullptr;

/// Uniform values in [lo, hi): never benchmark on all-zero data. Successive calls draw fresh
/// numbers from the shared pool, so the operands differ from each other. The fill goes through a
/// rank-1 alias of the (contiguous) View: Kokkos' fill_random parallelises over the first
/// extent only, which for a (64, 1057, D) tensor is 64 GPU threads looping for seconds.
template <class Space, class V>
void randomize(Space const& space, V const& v, float lo = -1.f, float hi = 1.f) {
  Kokkos::View<float*, typename V::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>> flat(
      v.data(), v.span());
  Kokkos::fill_random(space, flat, *random_pool<Space>, lo, hi);
}

/// Counters: `tensors` (B, L, D) float tensors moved and `rows` (B, L) floats, `flop_per_elem`.
void set_counters(benchmark::State& state, int D, double tensors, double rows,
                  double flop_per_elem) {
  using benchmark::Counter;
  double const n = static_cast<double>(kRows) * D;
  double const bytes = 4.0 * (tensors * n + rows * kRows);
  state.counters["bytes"] = Counter(bytes, Counter::kDefaults, Counter::kIs1000);
  state.counters["bytes/s"] = Counter(bytes, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["FLOP/s"] =
      Counter(flop_per_elem * n, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["tokens/s"] = Counter(kRows, Counter::kIsIterationInvariantRate, Counter::kIs1000);
}

/// Five (B, L, D) tensors, two per-channel vectors, a (C, K) conv weight and (B, L) rows: enough
/// operands for every op below, filled with random data once.
template <class Space>
struct Operands {
  view3<Space> t0, t1, t2, t3, t4;  // (B, L, D)
  view1<Space> v0, v1;              // (D)
  view2<Space> w, dw;               // (D, K)
  view2<Space> rows;                // (B, L) rstd, or a pad mask
  explicit Operands(Space const& space, int D)
      : t0("t0", kBatch, kLength, D),
        t1("t1", kBatch, kLength, D),
        t2("t2", kBatch, kLength, D),
        t3("t3", kBatch, kLength, D),
        t4("t4", kBatch, kLength, D),
        v0("v0", D),
        v1("v1", D),
        w("w", D, kWidth),
        dw("dw", D, kWidth),
        rows("rows", kBatch, kLength) {
    randomize(space, t0);
    randomize(space, t1);
    randomize(space, t2);
    randomize(space, t3);
    randomize(space, t4);
    randomize(space, v0, 0.5f, 1.5f);
    randomize(space, w);
    randomize(space, rows, 0.5f, 1.5f);
    space.fence();
  }
};

/// Times `op(space, operands)`, fenced inside the loop.
template <class Space, class Op>
void run(benchmark::State& state, double tensors, double rows, double flop_per_elem, Op op) {
  Space space;
  int const D = static_cast<int>(state.range(0));
  Operands<Space> o(space, D);
  op(space, o);  // warm-up: first touch of the outputs, thread pool spin-up
  space.fence();
  for (auto _ : state) {
    op(space, o);
    space.fence();
  }
  set_counters(state, D, tensors, rows, flop_per_elem);
}

template <class Space>
void deep_copy(benchmark::State& state) {
  run<Space>(state, 2, 0, 0, [](Space const& s, Operands<Space>& o) {
    Kokkos::deep_copy(s, o.t1, o.t0);
  });
}

template <class Space>
void rms_norm_forward(benchmark::State& state) {  // x, w -> y, rstd
  run<Space>(state, 2, 1, 4, [](Space const& s, Operands<Space>& o) {
    hax::nn::rms_norm_forward(s, o.t0, o.v0, o.t1, o.rows);
  });
}

template <class Space>
void rms_norm_backward(benchmark::State& state) {  // dy, x, rstd -> dx (dw negligible)
  run<Space>(state, 3, 1, 10, [](Space const& s, Operands<Space>& o) {
    hax::nn::rms_norm_backward(s, o.t1, o.t0, o.v0, o.rows, o.t2, o.v1);
  });
}

template <class Space>
void gated_rms_norm_forward(benchmark::State& state) {  // x, z, w -> y, rstd
  run<Space>(state, 3, 1, 12, [](Space const& s, Operands<Space>& o) {
    hax::nn::gated_rms_norm_forward(s, o.t0, o.t1, o.v0, o.t2, o.rows);
  });
}

template <class Space>
void gated_rms_norm_backward(benchmark::State& state) {  // dy, x, z, rstd -> dx, dz
  run<Space>(state, 5, 1, 30, [](Space const& s, Operands<Space>& o) {
    hax::nn::gated_rms_norm_backward(s, o.t2, o.t0, o.t1, o.v0, o.rows, o.t3, o.t4, o.v1);
  });
}

template <class Space>
void conv1d_silu_forward(benchmark::State& state) {  // x -> y
  run<Space>(state, 2, 0, 2 * kWidth + 6, [](Space const& s, Operands<Space>& o) {
    hax::nn::conv1d_silu_forward(s, o.t0, o.w, o.v0, view2<Space>{}, o.t1);
  });
}

template <class Space>
void conv1d_silu_forward_masked(benchmark::State& state) {  // x, mask -> y
  run<Space>(state, 2, 1, 2 * kWidth + 6, [](Space const& s, Operands<Space>& o) {
    hax::nn::conv1d_silu_forward(s, o.t0, o.w, o.v0, o.rows, o.t1);
  });
}

template <class Space>
void conv1d_silu_backward(benchmark::State& state) {  // dy, x -> dx (dw, dbias negligible)
  run<Space>(state, 3, 0, 6 * kWidth + 12, [](Space const& s, Operands<Space>& o) {
    hax::nn::conv1d_silu_backward(s, o.t1, o.t0, o.w, o.v0, view2<Space>{}, o.t2, o.dw, o.v1);
  });
}

template <class Space>
void silu_forward(benchmark::State& state) {  // x -> y
  run<Space>(state, 2, 0, 5, [](Space const& s, Operands<Space>& o) {
    hax::nn::silu_forward(s, o.t0, o.t1);
  });
}

template <class Space>
void silu_backward(benchmark::State& state) {  // dy, x -> dx
  run<Space>(state, 3, 0, 9, [](Space const& s, Operands<Space>& o) {
    hax::nn::silu_backward(s, o.t1, o.t0, o.t2);
  });
}

template <class Space>
void softplus_forward(benchmark::State& state) {  // x -> y
  run<Space>(state, 2, 0, 4, [](Space const& s, Operands<Space>& o) {
    hax::nn::softplus_forward(s, o.t0, o.t1);
  });
}

template <class Space>
void softplus_backward(benchmark::State& state) {  // dy, x -> dx
  run<Space>(state, 3, 0, 5, [](Space const& s, Operands<Space>& o) {
    hax::nn::softplus_backward(s, o.t1, o.t0, o.t2);
  });
}

template <class Space>
void silu_gate_forward(benchmark::State& state) {  // a, z -> y
  run<Space>(state, 3, 0, 6, [](Space const& s, Operands<Space>& o) {
    hax::nn::silu_gate_forward(s, o.t0, o.t1, o.t2);
  });
}

template <class Space>
void silu_gate_backward(benchmark::State& state) {  // dy, a, z -> da, dz
  run<Space>(state, 5, 0, 12, [](Space const& s, Operands<Space>& o) {
    hax::nn::silu_gate_backward(s, o.t2, o.t0, o.t1, o.t3, o.t4);
  });
}

template <class Space>
void add_forward(benchmark::State& state) {  // a, b -> y
  run<Space>(state, 3, 0, 1, [](Space const& s, Operands<Space>& o) {
    hax::nn::add_forward(s, o.t0, o.t1, o.t2);
  });
}

template <class Space>
void add_backward(benchmark::State& state) {  // dx += dy: dy, dx read, dx written
  run<Space>(state, 3, 0, 1, [](Space const& s, Operands<Space>& o) {
    hax::nn::add_backward(s, o.t0, o.t1);
  });
}

template <class Space>
void gated_scale_add_forward(benchmark::State& state) {  // a, b, z -> y
  run<Space>(state, 4, 0, 8, [](Space const& s, Operands<Space>& o) {
    hax::nn::gated_scale_add_forward(s, o.t0, o.t1, o.v0, o.t2, o.t3);
  });
}

template <class Space>
void gated_scale_add_backward(benchmark::State& state) {  // dy, b, z -> db, dz (da skipped)
  run<Space>(state, 5, 0, 16, [](Space const& s, Operands<Space>& o) {
    hax::nn::gated_scale_add_backward(s, o.t3, o.t1, o.v0, o.t2, view3<Space>{}, o.t0, o.v1,
                                      o.t4);
  });
}

/// Registers every op at D = 64, 128, 256 (a function rather than BENCHMARK macros, so the list
/// is plain code).
template <class Space>
void register_benchmarks() {
  auto add = [](char const* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)
        ->ArgName("D")
        ->Arg(64)
        ->Arg(128)
        ->Arg(256)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  };
  add("deep_copy", deep_copy<Space>);
  add("rms_norm_forward", rms_norm_forward<Space>);
  add("rms_norm_backward", rms_norm_backward<Space>);
  add("gated_rms_norm_forward", gated_rms_norm_forward<Space>);
  add("gated_rms_norm_backward", gated_rms_norm_backward<Space>);
  add("conv1d_silu_forward", conv1d_silu_forward<Space>);
  add("conv1d_silu_forward_masked", conv1d_silu_forward_masked<Space>);
  add("conv1d_silu_backward", conv1d_silu_backward<Space>);
  add("silu_forward", silu_forward<Space>);
  add("silu_backward", silu_backward<Space>);
  add("softplus_forward", softplus_forward<Space>);
  add("softplus_backward", softplus_backward<Space>);
  add("silu_gate_forward", silu_gate_forward<Space>);
  add("silu_gate_backward", silu_gate_backward<Space>);
  add("add_forward", add_forward<Space>);
  add("add_backward", add_backward<Space>);
  add("gated_scale_add_forward", gated_scale_add_forward<Space>);
  add("gated_scale_add_backward", gated_scale_add_backward<Space>);
}

}  // namespace

int main(int argc, char** argv) {
  return hax::bench::run_benchmarks(argc, argv, [] {
    using space_t = Kokkos::DefaultExecutionSpace;
    auto pool = std::make_unique<Kokkos::Random_XorShift64_Pool<space_t>>(20261122);
    random_pool<space_t> = pool.get();
    register_benchmarks<space_t>();
    return pool;
  });
}
