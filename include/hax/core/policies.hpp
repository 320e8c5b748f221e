// SPDX-License-Identifier: MIT
/// \file
/// Execution-policy shapes shared by hax's kernels.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>

/// `HAX_UNROLL` before a loop with a compile-time trip count asks the compiler to unroll it, so
/// that per-thread arrays indexed by the loop variable stay in registers on GPUs. Empty where
/// Kokkos knows no unroll pragma for the compiler (GCC host builds).
#if defined(KOKKOS_ENABLE_PRAGMA_UNROLL)
#define HAX_UNROLL _Pragma("unroll")
#else
#define HAX_UNROLL
#endif

namespace hax::core {

/// The iteration order of multidimensional ranges over LayoutRight data: the last index varies
/// fastest. On host backends Right is already the default. On CUDA an MDRangePolicy puts its
/// first index on threadIdx.x whatever the order, and the order decides the default tile: Left
/// (CUDA's default) gives 16 × 2 tiles, so a warp touches 16 rows of hax's row-major Views; Right
/// gives 2 × 16, two rows of 16 consecutive elements. Either way a block is 32 threads. For plain
/// sweeps over row-major data prefer for_each_row_major below.
/// Example: Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {rows, cols}).
template <unsigned N>
using rank_right = Kokkos::Rank<N, Kokkos::Iterate::Right, Kokkos::Iterate::Right>;

/// f(i, j) for every (i, j) of a (rows, cols) index space, j fastest. On GPUs one flat range, so a
/// warp covers 32 consecutive j and blocks have the backend's default size (an MDRangePolicy on
/// CUDA runs 32-thread blocks of 2 × 16, see rank_right); on host backends an MDRangePolicy
/// (Right), which needs no division per element.
template <class Space, class F>
void for_each_row_major(char const* label, Space const& space, int rows, int cols, F const& f) {
  if constexpr (Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible) {
    Kokkos::parallel_for(label, Kokkos::MDRangePolicy<Space, rank_right<2>>(space, {0, 0}, {rows, cols}), f);
  } else {
    std::int64_t const n = std::int64_t(rows) * cols;
    Kokkos::parallel_for(
        label, Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(space, 0, n),
        KOKKOS_LAMBDA(std::int64_t idx) { f(int(idx / cols), int(idx % cols)); });
  }
}

/// f(i, j, k) for every (i, j, k) of an (n0, n1, n2) index space, k fastest (as above).
template <class Space, class F>
void for_each_row_major(char const* label, Space const& space, int n0, int n1, int n2, F const& f) {
  if constexpr (Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible) {
    Kokkos::parallel_for(label, Kokkos::MDRangePolicy<Space, rank_right<3>>(space, {0, 0, 0}, {n0, n1, n2}),
                         f);
  } else {
    std::int64_t const inner = std::int64_t(n1) * n2;
    Kokkos::parallel_for(
        label, Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(space, 0, inner * n0),
        KOKKOS_LAMBDA(std::int64_t idx) {
          std::int64_t const rest = idx % inner;
          f(int(idx / inner), int(rest / n2), int(rest % n2));
        });
  }
}

/// Rows per team of the row kernels (one row per thread of the team; see row_teams).
inline constexpr int kRowsPerTeam = 8;
/// Vector lanes per row on GPUs: a warp, so a row's D-wide reductions and writes run on 32 lanes,
/// coalesced, and a team of kRowsPerTeam rows is 256 threads.
inline constexpr int kGpuLanesPerRow = 32;

/// The team shape of kernels that give each thread of a team one row of a row-major matrix and
/// its vector lanes the row's columns (TeamThreadRange over the team's kRowsPerTeam rows,
/// ThreadVectorRange over the columns): kRowsPerTeam threads of kGpuLanesPerRow lanes on GPUs; on
/// host backends team size AUTO with one lane, so a row is a plain loop. With Kokkos::AUTO for
/// both on CUDA, Kokkos picks one lane and a large team of which only kRowsPerTeam threads have a
/// row (docs/perf_attention.md measured 3 % occupancy for that shape).
template <class Space>
Kokkos::TeamPolicy<Space> row_teams(Space const& space, int league) {
  if constexpr (Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible) {
    return Kokkos::TeamPolicy<Space>(space, league, Kokkos::AUTO);
  } else {
    return Kokkos::TeamPolicy<Space>(space, league, kRowsPerTeam, kGpuLanesPerRow);
  }
}

/// `league` teams of `gpu_threads` threads on GPUs; on host backends one thread per team, so a
/// team's TeamThreadRange loops run in order (the shape of kernels whose team splits independent
/// entries or a long loop over them).
template <class Space>
Kokkos::TeamPolicy<Space> gpu_wide_teams(Space const& space, int league, int gpu_threads) {
  if constexpr (Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible) {
    return Kokkos::TeamPolicy<Space>(space, league, 1);
  } else {
    return Kokkos::TeamPolicy<Space>(space, league, gpu_threads);
  }
}

/// One team per work item whose threads split a long loop (a reduction or scan over L or over
/// rows): 128 threads on GPUs; on host backends one thread per team, so the loop runs in order.
template <class Space>
Kokkos::TeamPolicy<Space> long_loop_teams(Space const& space, int league) {
  return gpu_wide_teams(space, league, 128);
}

/// Largest per-team scratch request that scratch_level serves from level 0 (shared memory on
/// GPUs, where Kokkos' CUDA default allows 48 KiB per block); larger ones go to level 1 (global).
inline constexpr std::size_t kScratchLevel0Bytes = 40 * 1024;

/// The team-scratch level for a request of `bytes` per team (see kScratchLevel0Bytes).
inline int scratch_level(std::size_t bytes) { return bytes <= kScratchLevel0Bytes ? 0 : 1; }

}  // namespace hax::core
