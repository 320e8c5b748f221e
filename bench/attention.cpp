// SPDX-License-Identifier: MIT
/// \file
/// Benchmarks of the truly sparse attention kernels (forward; backward with the atomic-free gather
/// and with atomics) for each pattern and the unions sliding_window+dilated and
/// sign_bin_lsh+key_selection, over L from 1K to 64K with B·L fixed at 65 536 tokens, and k ∈ {32, 64, 128}; plus dense
/// causal attention (the Full pattern, O(L²)) at small L for comparison. Shapes: N = 16 (Mamba
/// state size), Dv = 128 (d_inner).
///
/// Counters per iteration: FLOP (multiply-adds count 2; only visited candidates), bytes (inputs
/// read once, outputs written once, plus the candidate reads: k·(N + Dv) values per query, the
/// dominant term), their rates, tokens/s, and alloc_bytes: every byte allocated by the benchmark
/// (inputs, outputs, saved lse, gradients, candidate lists): it grows linearly in L at fixed B·L
/// (it is constant here, since B·L is fixed) and never contains an L×L term.
/// Usage: hax_bench_attention [--benchmark_filter=...] [--kokkos-num-threads=N]
#include <hax/attention/pattern/candidate_list.hpp>
#include <hax/attention/pattern/compose.hpp>
#include <hax/attention/pattern/dilated.hpp>
#include <hax/attention/pattern/full.hpp>
#include <hax/attention/pattern/names.hpp>
#include <hax/attention/pattern/sink.hpp>
#include <hax/attention/pattern/sliding_window.hpp>
#include <hax/attention/sparse_attention.hpp>
#include <hax/core/random.hpp>

#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>

#include "support/run.hpp"

namespace {

/// B·L: 2^16 by default (the sweep fits a few minutes on 2 cores); HAX_BENCH_ATTN_TOKENS=1048576
/// gives the paper-scale sweep (B·L = 2^20, L up to 1M) on a GPU. Read once, before registration.
int const kTokens = [] {
  char const* env = std::getenv("HAX_BENCH_ATTN_TOKENS");
  int const t = env != nullptr ? std::atoi(env) : 0;
  return t >= 1024 ? t : 65536;
}();
constexpr int kN = 16;
constexpr int kDv = 128;

template <class Space, class T>
using view2 = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Space, class T>
using view3 = Kokkos::View<T***, Kokkos::LayoutRight, typename Space::memory_space>;

enum class Kind {
  sliding_window,
  dilated,
  sink,
  sign_bin_lsh,        // stand-in candidate lists (scattered, causal), as the LSH plan gives
  key_selection,       // stand-in candidate lists (scattered, causal), as the top-k plan gives
  lsh_key_selection,   // the named union sign_bin_lsh+key_selection with both stand-in lists
  sliding_window_dilated,
  full
};

/// Scattered causal candidates, as a key-selection top-k would give: row i holds
/// i-o, i-o-s, i-o-2s, ... with a random offset o and step s >= 1 (distinct), -1 below 0.
template <class Space>
view3<Space, int> scattered_candidates(Space const& space, int B, int L, int kp, std::uint64_t seed = 7) {
  view3<Space, int> idx("bench::idx", B, L, kp);  // (B, L, k')
  Kokkos::parallel_for(
      "bench::scattered_candidates", Kokkos::MDRangePolicy<Space, Kokkos::Rank<2>>(space, {0, 0}, {B, L}),
      KOKKOS_LAMBDA(int b, int i) {
        hax::core::RngStream rng(hax::core::stream_key(seed, b, i));
        int const spread = i / kp > 1 ? i / kp : 1;
        int const step = 1 + static_cast<int>(rng.uniform_int(static_cast<std::uint32_t>(spread)));
        int const offset = static_cast<int>(rng.uniform_int(static_cast<std::uint32_t>(step)));
        for (int j = 0; j < kp; ++j) {
          int const k = i - offset - j * step;
          idx(b, i, j) = k >= 0 ? k : -1;
        }
      });
  return idx;
}

/// Average visited candidates per query (once per benchmark, outside the timed loop; on the
/// benchmark's own space, so the pattern's Views are accessible where they live).
template <class Space, class P>
double mean_keys(Space const& space, P const& pattern, int B, int L) {
  long total = 0;
  int const kmax = pattern.max_keys_per_query();
  Kokkos::parallel_reduce(
      "bench::count_keys", Kokkos::RangePolicy<Space>(space, 0, B * L),
      KOKKOS_LAMBDA(int r, long& acc) {
        for (int j = 0; j < kmax; ++j) { acc += pattern.key(r / L, r % L, j) >= 0 ? 1 : 0; }
      },
      total);
  return static_cast<double>(total) / (static_cast<double>(B) * L);
}

/// Uniform random values in [lo, hi) through a rank-1 alias of the (contiguous) View: Kokkos'
/// fill_random parallelises over the first extent only, which at B = 1, L = 2^20 is one thread.
template <class Space, class V, class Pool>
void fill_uniform(Space const& space, V const& v, Pool const& pool, double lo, double hi) {
  Kokkos::View<typename V::value_type*, typename V::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>
      flat(v.data(), v.size());
  Kokkos::fill_random(space, flat, pool, lo, hi);
}

/// mode: 0 forward, 1 backward with the atomic-free gather (the default), 2 backward with atomics.
template <class Space, class P>
void run(benchmark::State& state, P const& pattern, int B, int L, int mode, double extra_alloc) {
  bool const backward = mode != 0;
  hax::attn::AttentionOptions opts;
  opts.backward = mode == 2 ? hax::attn::BackwardAlgorithm::atomic_scatter : hax::attn::BackwardAlgorithm::gather;
  Space space;
  view3<Space, float> q("q", B, L, kN), k("k", B, L, kN), v("v", B, L, kDv), o("o", B, L, kDv);
  view3<Space, float> dout("do", B, L, kDv), dq("dq", B, L, kN), dk("dk", B, L, kN), dv("dv", B, L, kDv);
  view2<Space, float> lse("lse", B, L);  // (B, L)
  Kokkos::Random_XorShift64_Pool<Space> pool(1);
  fill_uniform(space, q, pool, -1.0, 1.0);
  fill_uniform(space, k, pool, -0.25, 0.25);
  fill_uniform(space, v, pool, -1.0, 1.0);
  fill_uniform(space, dout, pool, -1.0, 1.0);
  hax::attn::sparse_attention_forward(space, pattern, q, k, v, o, lse);
  space.fence();
  double const keys = mean_keys(space, pattern, B, L);
  for (auto _ : state) {
    if (backward) {
      hax::attn::sparse_attention_backward(space, pattern, q, k, v, o, lse, dout, dq, dk, dv, opts);
    } else {
      hax::attn::sparse_attention_forward(space, pattern, q, k, v, o, lse);
    }
    space.fence();
  }
  double const rows = static_cast<double>(B) * L;
  double const flop = rows * keys * (backward ? (6.0 * kN + 4.0 * kDv) : (2.0 * kN + 2.0 * kDv));
  double const io = rows * (backward ? (2 * kN + 3 * kDv + 1 + 2 * kN + kDv) : (2 * kN + 2 * kDv + 1)) * 4.0;
  double const gathered = rows * keys * (kN + kDv) * 4.0 * (backward ? 3.0 : 1.0);  // k, v reads; dk, dv atomics
  // The gather backward also allocates, on every call, its transposed lists (k' ints per query
  // row: an upper bound on the visited pairs), their 64-bit offsets and fill cursors (B·L each)
  // and D (B·L floats).
  double const scratch =
      mode == 1 ? rows * (4.0 * static_cast<double>(pattern.max_keys_per_query()) + 8.0 + 8.0 + 4.0) : 0.0;
  double const alloc = (4.0 * rows * (kN * 4 + kDv * 4 + 1)) + extra_alloc + scratch;
  using benchmark::Counter;
  state.counters["FLOP"] = Counter(flop, Counter::kDefaults, Counter::kIs1000);
  state.counters["bytes"] = Counter(io + gathered, Counter::kDefaults, Counter::kIs1000);
  state.counters["FLOP/s"] = Counter(flop, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["bytes/s"] = Counter(io + gathered, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["tokens/s"] = Counter(rows, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["keys/query"] = keys;
  state.counters["alloc_bytes"] = Counter(alloc, Counter::kDefaults, Counter::kIs1024);
}

/// Args: L, k, mode (0 fwd, 1 bwd gather, 2 bwd atomic). B = kTokens / L.
template <class Space>
void attention(benchmark::State& state, Kind kind) {
  int const L = static_cast<int>(state.range(0));
  int const kk = static_cast<int>(state.range(1));
  int const mode = static_cast<int>(state.range(2));
  int const B = kTokens / L;
  Space space;
  switch (kind) {
    case Kind::sliding_window: run<Space>(state, hax::attn::SlidingWindow{kk}, B, L, mode, 0); break;
    case Kind::dilated: run<Space>(state, hax::attn::Dilated::from_budget(kk), B, L, mode, 0); break;
    case Kind::sink: run<Space>(state, hax::attn::Sink{kk}, B, L, mode, 0); break;
    case Kind::sliding_window_dilated:
      run<Space>(state, hax::attn::SlidingWindow{kk / 2} | hax::attn::Dilated::from_budget(kk / 2), B, L, mode, 0);
      break;
    case Kind::sign_bin_lsh:
    case Kind::key_selection: {
      auto const idx = scattered_candidates(space, B, L, kk);
      run<Space>(state, hax::attn::CandidateList(idx), B, L, mode, 4.0 * idx.size());
      break;
    }
    case Kind::lsh_key_selection: {
      auto p = hax::attn::make_pattern<typename Space::memory_space>("sign_bin_lsh+key_selection", kk, L);
      auto const a = scattered_candidates(space, B, L, kk / 2);
      auto const b = scattered_candidates(space, B, L, kk / 2, 8);
      // As SparseBranch does: the second list deduplicated once against the first (plan time).
      p.set_candidates(space, hax::attn::PatternKind::sign_bin_lsh, a);
      p.set_candidates(space, hax::attn::PatternKind::key_selection, b);
      run<Space>(state, p, B, L, mode, 4.0 * (a.size() + b.size()));
      break;
    }
    case Kind::full: run<Space>(state, hax::attn::Full{L}, B, L, mode, 0); break;
  }
}

void sparse_args(benchmark::internal::Benchmark* b) {
  for (int mode : {0, 1, 2}) {
    for (int L : {1024, 4096, 16384, 65536, 262144, 1048576}) {
      if (L > kTokens) { continue; }  // B = kTokens / L >= 1
      for (int k : {32, 64, 128}) { b->Args({L, k, mode}); }
    }
  }
  b->ArgNames({"L", "k", "mode"})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.05);
}

/// Dense causal attention (k = L) only up to L = 1024 at the default B·L = 65 536: it is O(B·L²)
/// work and the gather backward's transposed lists are B·L²/2 ints (256 MiB at L = 1024); L = 4096
/// would take minutes per case on 2 cores. The paper-scale sweep (B·L ≥ 2^20, meant for a GPU)
/// adds L = 4096 (8 GiB of transposed lists at B·L = 2^20).
void dense_args(benchmark::internal::Benchmark* b) {
  for (int mode : {0, 1, 2}) {
    for (int L : {256, 1024, 4096}) {
      if (L == 4096 && kTokens < (1 << 20)) { continue; }
      b->Args({L, L, mode});
    }
  }
  b->ArgNames({"L", "k", "mode"})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.05);
}

// The default execution space: OpenMP in the openmp preset, CUDA in the cuda preset.
using Space = Kokkos::DefaultExecutionSpace;
// BENCHMARK_CAPTURE pastes the function name into identifiers, so it needs a non-template name.
void sparse_attention(benchmark::State& state, Kind kind) { attention<Space>(state, kind); }
BENCHMARK_CAPTURE(sparse_attention, sliding_window, Kind::sliding_window)->Apply(sparse_args);
BENCHMARK_CAPTURE(sparse_attention, dilated, Kind::dilated)->Apply(sparse_args);
BENCHMARK_CAPTURE(sparse_attention, sink, Kind::sink)->Apply(sparse_args);
BENCHMARK_CAPTURE(sparse_attention, sign_bin_lsh, Kind::sign_bin_lsh)->Apply(sparse_args);
BENCHMARK_CAPTURE(sparse_attention, key_selection, Kind::key_selection)->Apply(sparse_args);
BENCHMARK_CAPTURE(sparse_attention, sign_bin_lsh_key_selection, Kind::lsh_key_selection)->Apply(sparse_args);
BENCHMARK_CAPTURE(sparse_attention, sliding_window_dilated, Kind::sliding_window_dilated)->Apply(sparse_args);
BENCHMARK_CAPTURE(sparse_attention, dense_causal, Kind::full)->Apply(dense_args);

}  // namespace

int main(int argc, char** argv) { return hax::bench::run_benchmarks(argc, argv); }
