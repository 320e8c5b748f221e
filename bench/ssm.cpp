// SPDX-License-Identifier: MIT
/// \file
/// Benchmarks of the state-space kernels: the Mamba-1 selective scan and the Mamba-2 SSD, forward
/// and forward+backward, at the joint-recall shape (B = 64, L = 1057; Mamba D = 128, N = 16;
/// Mamba2 H = 8, P = 16, N = 32), for L from 1K to 64K with B·L = 65 536 fixed, and SSD at several
/// chunk sizes Q (separate cases).
///
/// Counters per iteration: tokens/s (B·L / time), FLOP (multiply-adds count 2, each exp counts 1;
/// the work of the algorithm as implemented, formulas below), the minimum bytes the op must move
/// (each input read once, each output and the saved chunk states written once, fp32), and their
/// rates, and `of_copy_bw`: bytes/s as a fraction of a Kokkos deep_copy's bytes/s on the same
/// device (measured at start-up; the `copy` case reports it too), how close the op is to the
/// memory-bound ideal.
/// Usage: hax_bench_ssm [--benchmark_filter=...] [--kokkos-num-threads=N]
#include <benchmark/benchmark.h>

#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>
#include <algorithm>
#include <cstdint>
#include <hax/ssm/selective_scan.hpp>
#include <hax/ssm/ssd.hpp>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "support/padding.hpp"
#include "support/run.hpp"

namespace {

using hax::bench::padded_lengths;

using T = float;

template <class Space, class D>
using view = Kokkos::View<D, Kokkos::LayoutRight, typename Space::memory_space>;

/// Uniform values in [lo, hi): never benchmark on all-zero data.
template <class Space, class V>
void randomize(Space const& space, V const& v, std::uint64_t seed, double lo = -1.0,
               double hi = 1.0) {
  Kokkos::Random_XorShift64_Pool<Space> pool(seed);
  Kokkos::fill_random(space, v, pool, lo, hi);
}

/// Bytes/s of a Kokkos deep_copy of a (64, 1057, 128) fp32 tensor on this device (best of 10),
/// measured once at start-up: the denominator of the `of_copy_bw` counters.
double copy_bandwidth = 0.0;

template <class Space>
double measure_copy_bandwidth() {
  Space space;
  view<Space, T***> a("a", 64, 1057, 128), b("b", 64, 1057, 128);
  randomize(space, a, 1);
  double best = 0.0;
  for (int i = 0; i < 10; ++i) {
    Kokkos::Timer timer;
    Kokkos::deep_copy(space, b, a);
    space.fence();
    best = std::max(best, 2.0 * 4.0 * double(a.size()) / timer.seconds());
  }
  return best;
}

void set_counters(benchmark::State& state, double tokens, double flop, double bytes) {
  using benchmark::Counter;
  if (copy_bandwidth > 0.0) {  // the fraction of the achievable bandwidth the op reaches
    state.counters["of_copy_bw"] =
        Counter(bytes / copy_bandwidth, Counter::kIsIterationInvariantRate);
  }
  state.counters["tokens/s"] = Counter(tokens, Counter::kIsIterationInvariantRate);
  state.counters["FLOP"] = Counter(flop);
  state.counters["FLOP/s"] = Counter(flop, Counter::kIsIterationInvariantRate);
  state.counters["bytes"] = Counter(bytes);
  state.counters["bytes/s"] = Counter(bytes, Counter::kIsIterationInvariantRate);
}

/// Which forward schedule the selective-scan case runs (the register layout: the states of a
/// channel in registers instead of on the lanes).
enum class ScanSchedule {
  automatic,
  one_pass,
  chunk_parallel,
  registers_one_pass,
  registers_chunk_parallel
};

/// Selective scan, B, L, D, N, chunk; backward too when `with_backward`; the schedules the public
/// forward and backward pick (automatic) or a forced forward schedule with the backward in its
/// layout (lanes or registers); with `padded` rows that end as the joint-recall items do
/// (SelectiveScanInputs::lengths; the FLOP and byte counters stay those of the full rows).
template <class Space>
void selective_scan(benchmark::State& state, int B, int L, int D, int N, int chunk,
                    bool with_backward, ScanSchedule schedule, bool padded) {
  Space space;
  using Mem = typename Space::memory_space;
  view<Space, T***> u("u", B, L, D), delta("delta", B, L, D), y("y", B, L, D);  // (B, L, D)
  view<Space, T*> delta_bias("delta_bias", D), Dskip("Dskip", D);               // (D)
  view<Space, T**> A("A", D, N);                                                // (D, N)
  view<Space, T***> Bm("Bm", B, L, N), Cm("Cm", B, L, N);                       // (B, L, N)
  randomize(space, u, 1);
  randomize(space, delta, 2, -3.0, 0.0);
  randomize(space, delta_bias, 3, -1.0, 0.0);
  randomize(space, A, 4, -4.0, -0.5);
  randomize(space, Bm, 5);
  randomize(space, Cm, 6);
  randomize(space, Dskip, 7);
  hax::ssm::SelectiveScanInputs<T, Mem> in{u, delta, delta_bias, A, Bm, Cm, Dskip};
  double present = 1.0;  // share of the B·L steps that are present
  if (padded) {
    std::tie(in.lengths, present) = padded_lengths<Space>(B, L);
  }
  view<Space, T***> dy("dy", B, L, D);
  randomize(space, dy, 8);
  hax::ssm::SelectiveScanGrads<T, Mem> g{
      view<Space, T***>("du", B, L, D),  view<Space, T***>("ddelta", B, L, D),
      view<Space, T*>("ddelta_bias", D), view<Space, T**>("dA", D, N),
      view<Space, T***>("dB", B, L, N),  view<Space, T***>("dC", B, L, N),
      view<Space, T*>("dD", D)};
  bool const registers = schedule == ScanSchedule::registers_one_pass ||
                         schedule == ScanSchedule::registers_chunk_parallel;
  auto forward = [&] {
    if (schedule == ScanSchedule::automatic) {
      return hax::ssm::selective_scan_forward(space, in, y, {chunk});
    }
    hax::ssm::SelectiveScanSaved<T, Mem> saved{
        view<Space, T****>("chunk_states", B, D, (L + chunk - 1) / chunk, N), chunk};
    bool const chunk_parallel = schedule == ScanSchedule::chunk_parallel ||
                                schedule == ScanSchedule::registers_chunk_parallel;
    hax::ssm::impl::selective_scan_forward_run(
        space, in, y, saved, chunk_parallel,
        registers ? hax::ssm::impl::ScanLayout::registers : hax::ssm::impl::ScanLayout::lanes);
    return saved;
  };
  auto run = [&] {
    auto const saved = forward();
    if (with_backward && schedule == ScanSchedule::automatic) {
      hax::ssm::selective_scan_backward(space, in, saved, dy, g);
    } else if (with_backward) {  // the backward in the forced forward's layout
      hax::ssm::impl::selective_scan_backward_run(
          space, in, saved, dy, g,
          registers ? hax::ssm::impl::ScanLayout::registers : hax::ssm::impl::ScanLayout::lanes);
    }
    space.fence();
  };
  run();  // warm-up (first-touch allocations, thread pool)
  for (auto _ : state) {
    run();
  }
  double const bld = double(B) * L * D, bln = double(B) * L * N;
  double const cells = bld * N;  // (b, t, d, n) state updates
  double const saved_bytes = 4.0 * B * D * ((L + chunk - 1) / chunk) * N;
  double flop = 8.0 * cells;  // fwd: exp, dt·A, 2 mul, 2 fma
  double bytes = 4.0 * (3 * bld + 2 * bln + 2.0 * D * N) + saved_bytes;  // u, delta, y, B, C, A
  if (with_backward) {
    flop += 8.0 * cells + 16.0 * cells;                // recompute + adjoint recurrence, dB/dC
    bytes += 4.0 * (5 * bld + 4 * bln) + saved_bytes;  // u, delta, dy, du, ddelta; B, C, dB, dC
  }
  set_counters(state, double(B) * L, flop, bytes);
  state.counters["present"] = present;
}

/// SSD, B, L, H, P, N, chunk Q; backward too when `with_backward`; with `padded` rows that end
/// as the joint-recall items do (SsdInputs::lengths), else every row has L steps. The FLOP and
/// byte counters are those of the full rows either way, so their rates compare with the full run.
template <class Space>
void ssd(benchmark::State& state, int B, int L, int H, int P, int N, int chunk,
         bool with_backward, bool padded) {
  Space space;
  using Mem = typename Space::memory_space;
  view<Space, T****> x("x", B, L, H, P), y("y", B, L, H, P), dy("dy", B, L, H, P);  // (B,L,H,P)
  view<Space, T***> dt("dt", B, L, H);                                              // (B, L, H)
  view<Space, T*> dt_bias("dt_bias", H), A("A", H), Dskip("Dskip", H);              // (H)
  view<Space, T***> Bm("Bm", B, L, N), Cm("Cm", B, L, N);                           // (B, L, N)
  randomize(space, x, 1);
  randomize(space, dt, 2, -3.0, 0.0);
  randomize(space, dt_bias, 3, -1.0, 0.0);
  randomize(space, A, 4, -8.0, -1.0);
  randomize(space, Bm, 5);
  randomize(space, Cm, 6);
  randomize(space, Dskip, 7);
  randomize(space, dy, 8);
  hax::ssm::SsdInputs<T, Mem> in{x, dt, dt_bias, A, Bm, Cm, Dskip};
  double present = 1.0;  // share of the B·L steps that are present
  if (padded) {
    std::tie(in.lengths, present) = padded_lengths<Space>(B, L);
  }
  hax::ssm::SsdGrads<T, Mem> g{view<Space, T****>("dx", B, L, H, P),
                               view<Space, T***>("ddt", B, L, H),
                               view<Space, T*>("ddt_bias", H),
                               view<Space, T*>("dA", H),
                               view<Space, T***>("dB", B, L, N),
                               view<Space, T***>("dC", B, L, N),
                               view<Space, T*>("dD", H)};
  auto run = [&] {
    auto const saved = hax::ssm::ssd_forward(space, in, y, {chunk});
    if (with_backward) {
      hax::ssm::ssd_backward(space, in, saved, dy, g);
    }
    space.fence();
  };
  run();
  for (auto _ : state) {
    run();
  }
  double const bl = double(B) * L;
  // The kernels tile inside the chunk: the mean causal span is over a tile (forward and backward
  // tiles differ: the backward keeps more in team scratch).
  auto const tile_fwd = hax::ssm::impl::ssd_make_tiles("bench", L, chunk, [&](int t) {
    return hax::ssm::impl::ssd_forward_tiles_bytes<Space, T>(t, P, N);
  });
  auto const tile_bwd = hax::ssm::impl::ssd_make_tiles("bench", L, chunk, [&](int t) {
    return hax::ssm::impl::ssd_backward_main_bytes<Space, T>(t, P, N);
  });
  double const q = (double(tile_fwd.tile) + 1.0) / 2.0;   // mean causal span inside a tile
  double const qb = (double(tile_bwd.tile) + 1.0) / 2.0;  // the same in the backward
  double const blhp = bl * H * P, blhpn = blhp * N;
  double const saved_bytes = 4.0 * B * H * ((L + chunk - 1) / chunk) * P * N;
  // fwd: C·Bᵀ (2 q N per token), tile states (2 HPN + H P exp), intra (2 q H P + q H exp),
  // inter (2 H P N)
  double flop = bl * 2 * q * N + 2 * blhpn + 2 * blhp * q + bl * q * H + 2 * blhpn;
  double bytes = 4.0 * (2 * blhp + bl * H + 2 * bl * N) + saved_bytes;  // x, y, dt, B, C
  if (with_backward) {
    // C·Bᵀ again, w (2 q H P), adjoints (2 HPN), dx and d acs (4 q H P + 6 HPN),
    // dB/dC (4 q N + 4 H P N)
    flop += bl * 2 * qb * N + 2 * blhp * qb + 2 * blhpn + 4 * blhp * qb + 6 * blhpn +
            bl * 4 * qb * N + 4 * blhpn;
    bytes += 4.0 * (3 * blhp + 2 * bl * H + 4 * bl * N) + saved_bytes;  // x, dy, dx; dt, ddt; ...
  }
  set_counters(state, bl, flop, bytes);
  state.counters["tile_fwd"] = tile_fwd.tile;
  state.counters["tile_bwd"] = with_backward ? tile_bwd.tile : 0;
  state.counters["present"] = present;
}

template <class Space>
void copy(benchmark::State& state) {
  Space space;
  int const B = 64, L = 1057, D = 128;
  view<Space, T***> a("a", B, L, D), b("b", B, L, D);
  randomize(space, a, 1);
  for (auto _ : state) {
    Kokkos::deep_copy(space, b, a);
    space.fence();
  }
  set_counters(state, double(B) * L, 0.0, 2.0 * 4.0 * B * L * D);
}

template <class Space>
void register_all() {
  std::string const sp = Space::name();
  auto reg = [&](std::string const& name, auto fn, auto... args) {
    return benchmark::RegisterBenchmark((name + "<" + sp + ">").c_str(), fn, args...)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  };
  reg("copy/64x1057x128", copy<Space>)->MinTime(0.2);
  // The joint-recall shape.
  for (bool bwd : {false, true}) {
    std::string const kind = bwd ? "fwd_bwd" : "fwd";
    for (int chunk : {32, 64}) {  // 32: the Mamba mixer's default
      reg("selective_scan_" + kind + "/B64/L1057/D128/N16/chunk" + std::to_string(chunk),
          selective_scan<Space>, 64, 1057, 128, 16, chunk, bwd, ScanSchedule::automatic, false)
          ->Iterations(1);
    }
    // Both forward schedules forced (the public forward picks by the device's size).
    for (auto [name, sched] : {std::pair{"onepass", ScanSchedule::one_pass},
                               std::pair{"chunkpar", ScanSchedule::chunk_parallel},
                               std::pair{"registers_onepass", ScanSchedule::registers_one_pass},
                               std::pair{"registers_chunkpar",
                                         ScanSchedule::registers_chunk_parallel}}) {
      reg("selective_scan_" + kind + "_" + name + "/B64/L1057/D128/N16/chunk32",
          selective_scan<Space>, 64, 1057, 128, 16, 32, bwd, sched, false)
          ->Iterations(1);
    }
    // Rows that end where the joint-recall items end (the mixers' skip_padding).
    reg("selective_scan_" + kind + "_padded/B64/L1057/D128/N16/chunk32", selective_scan<Space>,
        64, 1057, 128, 16, 32, bwd, ScanSchedule::automatic, true)
        ->Iterations(1);
    for (int q : {32, 64, 128, 256}) {
      reg("ssd_" + kind + "/B64/L1057/H8/P16/N32/Q" + std::to_string(q), ssd<Space>, 64, 1057, 8,
          16, 32, q, bwd, false)
          ->Iterations(1);
    }
    // Rows that end where the joint-recall items end (the mixers' skip_padding).
    for (int q : {64, 256}) {
      reg("ssd_" + kind + "_padded/B64/L1057/H8/P16/N32/Q" + std::to_string(q), ssd<Space>, 64,
          1057, 8, 16, 32, q, bwd, true)
          ->Iterations(1);
    }
  }
  // Long sequences, B·L = 65 536 fixed.
  for (int L : {1024, 4096, 16384, 65536}) {
    int const B = 65536 / L;
    std::string const shape = "/B" + std::to_string(B) + "/L" + std::to_string(L);
    reg("selective_scan_fwd_bwd" + shape + "/D128/N16/chunk64", selective_scan<Space>, B, L, 128,
        16, 64, true, ScanSchedule::automatic, false)
        ->Iterations(1);
    reg("ssd_fwd_bwd" + shape + "/H8/P16/N32/Q64", ssd<Space>, B, L, 8, 16, 32, 64, true, false)
        ->Iterations(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return hax::bench::run_benchmarks(argc, argv, [] {
    copy_bandwidth = measure_copy_bandwidth<Kokkos::DefaultExecutionSpace>();
    register_all<Kokkos::DefaultExecutionSpace>();
    return 0;
  });
}
