// SPDX-License-Identifier: MIT
/// \file
/// The end-to-end training step per model (forward, backward, AdamW) at the reference's shapes:
/// batch 64 of joint-recall items padded to 1058 tokens (the reference protocol's data, generated
/// on the device), through hax::train::Trainer::train_step on the default execution space.
///
/// Each case warms up three steps (the scratch arena grows, then merges), then times train_step
/// with a fence after each call. Counters: tokens/s (B · 1057 positions per step), params, the
/// scratch arena's high water (bytes), and vs_floor = the step time divided by 1 ms, the upper end
/// of the physical floor of a mamba2 + HAX step on an H100 (about 0.3–1 ms: docs/performance.md),
/// and device_peak_bytes: the peak, over the timed steps, of every byte the case holds through
/// Kokkos in the default memory space (parameters, AdamW moments, batch, workspaces and the arena;
/// on CUDA the GPU memory of the step without the CUDA context and cuBLAS's own workspace);
/// warmup_peak_bytes is the same over construction and the warm-up steps.
/// Usage: hax_bench_train_step [--benchmark_filter=mamba2] (on 2 OpenMP cores a step takes seconds).
#include <hax/ssm/mamba2_mixer.hpp>
#include <hax/ssm/mamba_mixer.hpp>
#include <hax/train/trainer.hpp>

#include <Kokkos_Core.hpp>
#include <benchmark/benchmark.h>

#include <string>

#include "support/device_memory.hpp"
#include "support/run.hpp"

namespace {

using Space = Kokkos::DefaultExecutionSpace;

struct Case {
  hax::models::Base base;
  bool double_size;
  char const* sparse;  // "" = none
};

hax::data::recall_spec reference_spec() {
  auto spec = hax::data::make_spec(2, 5, 16);  // the reference's grid: n_c, n_k in 5..16
  spec.items_per_combination[0] = 10000;
  spec.items_per_combination[1] = 100;
  spec.items_per_combination[2] = 100;
  return spec;
}

template <class Mixer>
void run(benchmark::State& state, Case const& c) {
  auto mc = hax::models::reference_config(c.base, c.double_size);
  mc.sparse_arch = c.sparse;
  mc.validate();
  auto memory = hax::bench::DeviceMemoryTracker::track<Space::memory_space>();
  hax::train::TrainConfig tc;
  tc.batch = 64;
  tc.steps = 1 << 30;
  tc.eval_every = 1 << 30;
  tc.progress = false;
  hax::train::Trainer<Space, float, Mixer> trainer(mc, reference_spec(), tc);
  for (int i = 0; i < 3; ++i) { trainer.train_step(); }
  Kokkos::fence();
  // The first step grows the arena in doubling chunks before it merges them, a one-off peak.
  auto const warmup_peak = memory.peak();
  memory.reset_peak();
  for (auto _ : state) {
    trainer.train_step();
    Kokkos::fence();
  }
  double const tokens = 64.0 * (trainer.spec().padded_length - 1);
  using benchmark::Counter;
  state.counters["tokens/s"] = Counter(tokens, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["params"] = static_cast<double>(trainer.model().parameter_count());
  state.counters["arena_bytes"] =
      Counter(static_cast<double>(trainer.scratch_arena().high_water()), Counter::kDefaults,
              Counter::kIs1024);
  state.counters["device_peak_bytes"] =
      Counter(static_cast<double>(memory.peak()), Counter::kDefaults, Counter::kIs1024);
  state.counters["warmup_peak_bytes"] =
      Counter(static_cast<double>(warmup_peak), Counter::kDefaults, Counter::kIs1024);
  state.counters["vs_floor"] = Counter(1e-3, Counter::kIsIterationInvariantRate | Counter::kInvert);
}

/// Registers one case per configuration of the joint-recall table (docs/table.md), for both
/// bases: the base and double size without the branch, then each sparse cell. Names are
/// `<base>_step/<cell>` with '+' written as '_' (e.g. mamba2_step/sign_bin_lsh_key_selection).
void register_all() {
  using hax::models::Base;
  struct Cell {
    char const* name;
    bool double_size;
    char const* sparse;  // "" = none
  };
  static constexpr Cell cells[] = {
      {"base", false, ""},
      {"double_size", true, ""},
      {"sign_bin_lsh_key_selection", false, "sign_bin_lsh+key_selection"},
      {"sliding_window_dilated", false, "sliding_window+dilated"},
      {"dilated", false, "dilated"},
      {"sliding_window", false, "sliding_window"},
      {"sliding_window_sink", false, "sliding_window+sink"},
      {"sign_bin_lsh", false, "sign_bin_lsh"},
      {"key_selection", false, "key_selection"},
  };
  for (Base base : {Base::mamba2, Base::mamba}) {
    std::string const prefix = base == Base::mamba2 ? "mamba2_step/" : "mamba_step/";
    for (Cell const& cell : cells) {
      Case const c{base, cell.double_size, cell.sparse};
      std::string const name = prefix + cell.name;
      benchmark::internal::Benchmark* const b =
          base == Base::mamba2
              ? benchmark::RegisterBenchmark(name.c_str(),
                                             [c](benchmark::State& s) {
                                               run<hax::ssm::Mamba2Mixer<Space, float>>(s, c);
                                             })
              : benchmark::RegisterBenchmark(name.c_str(), [c](benchmark::State& s) {
                  run<hax::ssm::MambaMixer<Space, float>>(s, c);
                });
      b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return hax::bench::run_benchmarks(argc, argv, [] {
    register_all();
    return 0;
  });
}
