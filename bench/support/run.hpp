// SPDX-License-Identifier: MIT
/// \file
/// The main of every hax_bench_<area>: Kokkos is initialised (its --kokkos-* flags are consumed),
/// Google Benchmark reads its flags and rejects any other (a typo in --benchmark_filter must not
/// silently run the whole grid), an optional setup step registers the benchmarks that need Kokkos
/// (runtime shapes, measured baselines), and the benchmarks run.
#pragma once

#include <Kokkos_Core.hpp>
#include <benchmark/benchmark.h>

namespace hax::bench {

/// Runs the benchmarks; `setup()` is called once Kokkos is up, and whatever it returns lives until
/// they have run (and is destroyed before Kokkos is finalised), e.g. a random pool they share.
template <class Setup>
int run_benchmarks(int argc, char** argv, Setup&& setup) {
  Kokkos::ScopeGuard guard(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  [[maybe_unused]] auto const kept = setup();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

/// Runs the benchmarks registered statically (BENCHMARK macros).
inline int run_benchmarks(int argc, char** argv) {
  return run_benchmarks(argc, argv, [] { return 0; });
}

}  // namespace hax::bench
