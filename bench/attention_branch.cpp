// SPDX-License-Identifier: MIT
/// \file
/// Benchmark of the HAX sparse-attention branch (hax::attn::SparseBranch): forward + backward of
/// the whole branch (xx projection, plan steps, sparse attention, ranking loss and the MLP's
/// backward in training) for each architecture name at the joint-recall training shape
/// B = 64, L = 1057, N = 32, d_inner = 128, k = 64, h = 8, `causal` semantics, float.
///
/// Counters per iteration: FLOP (multiply-adds count 2; projection forward/backward 3·2·BL·d·2N,
/// attention with k keys per query as an upper bound: forward 2k(N + d), backward k(6N + 4d) per
/// query; the MLP and the plan steps are left out), bytes (x, attn, dattn, dx once, plus the k
/// gathered K/V rows per query forward and three times backward), their rates, tokens/s.
/// `full` is dense causal attention (O(L²)) through the same component, for comparison.
/// Usage: hax_bench_attention_branch [--benchmark_filter=...] [--kokkos-num-threads=N]
#include <hax/attention/sparse_branch.hpp>

#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>
#include <benchmark/benchmark.h>

#include <string>

#include "support/run.hpp"

namespace {

constexpr int kB = 64;
constexpr int kL = 1057;
constexpr int kN = 32;
constexpr int kD = 128;
constexpr int kK = 64;

template <class Space>
void branch(benchmark::State& state, std::string const& arch) {
  using T = float;
  Space space;
  hax::attn::SparseBranchConfig cfg;
  cfg.arch = arch;
  cfg.keys = kK;
  cfg.num_hash = 8;
  cfg.state_size = kN;
  cfg.d_inner = kD;
  hax::attn::SparseBranch<Space, T> const br(cfg);
  hax::nn::ParameterStore<Space, T> store;
  std::string const prefix = "layers.0.mixer.";
  br.register_parameters(store, prefix);
  store.finalize(space);
  store.initialize(space, 1);
  using view3 = Kokkos::View<T***, Kokkos::LayoutRight, typename Space::memory_space>;
  view3 x("x", kB, kL, kD), attn("attn", kB, kL, kD), dattn("dattn", kB, kL, kD), dx("dx", kB, kL, kD);  // (B, L, d)
  Kokkos::View<int**, Kokkos::LayoutRight, typename Space::memory_space> no_mask;                          // none
  Kokkos::View<T, typename Space::memory_space> gate("gate");                                              // ()
  Kokkos::Random_XorShift64_Pool<Space> pool(1);
  Kokkos::fill_random(space, x, pool, -1.0, 1.0);
  Kokkos::fill_random(space, dattn, pool, -1.0, 1.0);
  hax::attn::StepContext ctx;
  for (auto _ : state) {
    auto const saved = br.forward(space, store, prefix, x, no_mask, attn, gate, ctx);
    br.backward(space, store, prefix, saved, dattn, dx, ctx);
    space.fence();
    ++ctx.step;  // a training loop redraws the projection every step
  }
  double const rows = static_cast<double>(kB) * kL;
  double const keys = arch == "full" ? (kL + 1) / 2.0 : kK;
  double const flop = rows * (3.0 * 2.0 * kD * 2 * kN + keys * (2.0 * (kN + kD) + 6.0 * kN + 4.0 * kD));
  double const bytes = 4.0 * rows * (4.0 * kD + keys * (kN + kD) * 4.0);
  using benchmark::Counter;
  state.counters["FLOP"] = Counter(flop, Counter::kDefaults, Counter::kIs1000);
  state.counters["bytes"] = Counter(bytes, Counter::kDefaults, Counter::kIs1000);
  state.counters["FLOP/s"] = Counter(flop, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["bytes/s"] = Counter(bytes, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["tokens/s"] = Counter(rows, Counter::kIsIterationInvariantRate, Counter::kIs1000);
}

// The default execution space: OpenMP in the openmp preset, CUDA in the cuda preset.
using Space = Kokkos::DefaultExecutionSpace;
// BENCHMARK_CAPTURE pastes the function name into identifiers, so it needs a non-template name.
void sparse_branch(benchmark::State& state, std::string arch) { branch<Space>(state, arch); }
#define HAX_BRANCH_BENCH(name, arch) \
  BENCHMARK_CAPTURE(sparse_branch, name, std::string(arch))->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3)
HAX_BRANCH_BENCH(sliding_window, "sliding_window");
HAX_BRANCH_BENCH(dilated, "dilated");
HAX_BRANCH_BENCH(sliding_window_dilated, "sliding_window+dilated");
HAX_BRANCH_BENCH(sliding_window_sink, "sliding_window+sink");
HAX_BRANCH_BENCH(sign_bin_lsh, "sign_bin_lsh");
HAX_BRANCH_BENCH(argmax_lsh, "argmax_lsh");
HAX_BRANCH_BENCH(key_selection, "key_selection");
HAX_BRANCH_BENCH(sign_bin_lsh_key_selection, "sign_bin_lsh+key_selection");
// Dense causal attention costs O(L²): one iteration is enough to see the gap.
BENCHMARK_CAPTURE(sparse_branch, full, std::string("full"))->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

}  // namespace

int main(int argc, char** argv) { return hax::bench::run_benchmarks(argc, argv); }
