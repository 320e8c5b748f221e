// SPDX-License-Identifier: MIT
/// \file
/// Benchmarks of the optimiser-side passes over flat fp32 parameter buffers: the AdamW update
/// (host-driven and device-driven), zero_grad, and the gradient norm + non-finite check, at
/// n = 100 594 (Mamba2+HAX, fits in cache) and n = 10 000 000 (memory-bound), plus a copy
/// kernel of the same n as the achievable-bandwidth baseline.
///
/// Minimum bytes per pass (fp32): AdamW reads p, g, m, v and writes p, m, v: 28 B/parameter;
/// zero_grad writes g: 4 B; grad norm reads g: 4 B; copy 8 B. FLOP counts are rough (AdamW ≈ 13
/// per element, norm 2) and reported only to show these passes are bandwidth-bound.
/// Usage: hax_bench_optim [--benchmark_filter=...] [--kokkos-num-threads=N]
#include <hax/core/finite.hpp>
#include <hax/optim/adamw.hpp>
#include <hax/optim/schedule.hpp>

#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>
#include <benchmark/benchmark.h>

#include <cstdint>

#include "support/run.hpp"

namespace {

template <class Space, class T>
using view1 = Kokkos::View<T*, Kokkos::LayoutRight, typename Space::memory_space>;  // (n)

/// Uniform values in [lo, hi): never benchmark on all-zero data.
template <class Space, class V>
void randomize(Space const& space, V const& v, std::uint64_t seed, double lo = -1.0,
               double hi = 1.0) {
  Kokkos::Random_XorShift64_Pool<Space> pool(seed);
  Kokkos::fill_random(space, v, pool, lo, hi);
}

void set_counters(benchmark::State& state, double n, double flop_per, double bytes_per) {
  using benchmark::Counter;
  state.counters["params"] = Counter(n, Counter::kDefaults, Counter::kIs1000);
  state.counters["bytes"] = Counter(n * bytes_per, Counter::kDefaults, Counter::kIs1000);
  state.counters["bytes/s"] =
      Counter(n * bytes_per, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["FLOP/s"] =
      Counter(n * flop_per, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["params/s"] = Counter(n, Counter::kIsIterationInvariantRate, Counter::kIs1000);
}

template <class Space>
void copy(benchmark::State& state) {
  Space space;
  auto const n = static_cast<std::int64_t>(state.range(0));
  view1<Space, float> src("src", n), dst("dst", n);
  randomize(space, src, 1);
  for (auto _ : state) {
    Kokkos::parallel_for(
        "bench::copy", Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(space, 0, n),
        KOKKOS_LAMBDA(std::int64_t i) { dst(i) = src(i); });
    space.fence();
  }
  set_counters(state, static_cast<double>(n), 0.0, 8.0);
}

/// AdamW, lr and t from the host (one kernel).
template <class Space>
void adamw_host_driven(benchmark::State& state) {
  Space space;
  auto const n = static_cast<std::size_t>(state.range(0));
  view1<Space, float> p("p", n), g("g", n), m("m", n), v("v", n);
  randomize(space, p, 1);
  randomize(space, g, 2);
  randomize(space, m, 3, -1e-2, 1e-2);
  randomize(space, v, 4, 0.0, 1e-4);
  hax::optim::AdamWConfig const cfg;
  hax::optim::WarmupCosine const sched{2e-3, 5000};
  std::int64_t t = 1000;
  for (auto _ : state) {
    hax::optim::adamw_update(space, cfg, sched(t), t, p, g, m, v, n);
    ++t;
    space.fence();
  }
  set_counters(state, static_cast<double>(n), 13.0, 28.0);
}

/// AdamW driven from device memory (a one-thread prepare kernel + the fused kernel).
template <class Space>
void adamw_device_driven(benchmark::State& state) {
  Space space;
  auto const n = static_cast<std::size_t>(state.range(0));
  view1<Space, float> p("p", n), g("g", n), m("m", n), v("v", n);
  randomize(space, p, 1);
  randomize(space, g, 2);
  randomize(space, m, 3, -1e-2, 1e-2);
  randomize(space, v, 4, 0.0, 1e-4);
  hax::optim::AdamW<Space> adamw(hax::optim::AdamWConfig{}, space);
  hax::optim::WarmupCosine const sched{2e-3, 5000};
  for (auto _ : state) {
    adamw.update(space, sched, p, g, m, v, n);
    space.fence();
  }
  set_counters(state, static_cast<double>(n), 13.0, 28.0);
}

template <class Space>
void zero_grad(benchmark::State& state) {
  Space space;
  auto const n = static_cast<std::size_t>(state.range(0));
  view1<Space, float> g("g", n);
  randomize(space, g, 2);
  for (auto _ : state) {
    Kokkos::deep_copy(space, g, 0.0f);  // what ParameterStore::zero_grad does
    space.fence();
  }
  set_counters(state, static_cast<double>(n), 0.0, 4.0);
}

/// Σ g² and the non-finite count in one reduction into a device View.
template <class Space>
void grad_norm(benchmark::State& state) {
  Space space;
  auto const n = static_cast<std::size_t>(state.range(0));
  view1<Space, float> g("g", n);
  randomize(space, g, 2);
  Kokkos::View<hax::core::FiniteStats, typename Space::memory_space> stats("stats");
  for (auto _ : state) {
    hax::core::sum_squares_and_count_nonfinite(space, g, stats);
    space.fence();
  }
  set_counters(state, static_cast<double>(n), 2.0, 4.0);
}

using space_t = Kokkos::DefaultExecutionSpace;
constexpr std::int64_t kMamba2Hax = 100594;
constexpr std::int64_t kTenMillion = 10000000;

}  // namespace

BENCHMARK(copy<space_t>)->ArgName("n")->Arg(kMamba2Hax)->Arg(kTenMillion)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(adamw_host_driven<space_t>)->ArgName("n")->Arg(kMamba2Hax)->Arg(kTenMillion)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(adamw_device_driven<space_t>)->ArgName("n")->Arg(kMamba2Hax)->Arg(kTenMillion)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(zero_grad<space_t>)->ArgName("n")->Arg(kMamba2Hax)->Arg(kTenMillion)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(grad_norm<space_t>)->ArgName("n")->Arg(kMamba2Hax)->Arg(kTenMillion)->UseRealTime()->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) { return hax::bench::run_benchmarks(argc, argv); }
