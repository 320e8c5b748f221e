// SPDX-License-Identifier: MIT
/// \file
/// The input of the key-scoring MLP: T_j = [K_j, normalise(Σ_{t<=j} Q_t)] (B, L, 2N), in both
/// semantics (semantics.md sections 3 and 9). The inputs are detached: nothing here has a backward.
///  - causal:    the prefix sum P_j is scaled to unit L2 norm per row (depends on rows <= j only).
///  - reference: each feature column of P is divided by its L2 norm over all L positions
///               (F.normalize(dim=1) in the released code; pads and later rows change it).
/// Norms are floored at 1e-12 as F.normalize does.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/attention/hash/concepts.hpp>
#include <hax/attention/lsh/transform.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/views.hpp>

namespace hax::attn {

namespace impl {

/// Causal features: feat(b, j, :) = [k(b, j, :), P_j / max(|P_j|, eps)] with P_j = Σ_{t<=j} q(b, t, :).
/// The prefix sums are segmented so that every kernel is wide and reads rows coalesced (the N
/// features of a row on neighbouring threads): (1) a thread per (b, segment, n) sums its segment;
/// (2) a thread per (b, segment, n) adds the sums of the earlier segments of its column and walks
/// its segment again, writing the running sums and the copy of k; (3) a row kernel normalises.
/// At most kMaxSegments segments per row, so step (2)'s offset loop stays short at any L. On an
/// H100 at B = 64, L = 1057, N = 32 the three kernels take 6.3 + 32.4 + 13.3 µs per call, where a
/// team per (sequence, feature) scanning L took 131 µs plus 18 µs for the normalisation
/// (docs/perf_training_step.md); a thread per (sequence, feature) walking L serially 0.9 ms.
/// Extra memory: (B, segments, N). With extents (B) allocated, row b stops at extents(b): the rows
/// after it are not written.
inline constexpr int kPrefixSegmentRows = 32;
inline constexpr int kMaxSegments = 64;

template <class Space, class Q, class K, class F, class E>
void causal_prefix_features(Space const& space, Q const& q, K const& k, F const& feat, E const& extents) {
  using T = typename F::non_const_value_type;
  int const B = q.extent_int(0), L = q.extent_int(1), N = q.extent_int(2);
  int const seg_rows = Kokkos::max(kPrefixSegmentRows, (L + kMaxSegments - 1) / kMaxSegments);
  int const S = (L + seg_rows - 1) / seg_rows;
  bool const has_extents = extents.is_allocated();
  auto const sums = uninitialized_view<T***>(space, "hax::attn::key_selection_features::segment_sums", B, S, N);
  int const items = B * S * N;
  Kokkos::parallel_for(
      "hax::attn::key_selection_features::segment_sums", Kokkos::RangePolicy<Space>(space, 0, items),
      KOKKOS_LAMBDA(int e) {
        int const n = e % N, s = (e / N) % S, b = e / (N * S);
        int const end = has_extents ? Kokkos::min(L, extents(b)) : L;
        int const j1 = Kokkos::min(end, (s + 1) * seg_rows);
        T acc = 0;
        for (int j = s * seg_rows; j < j1; ++j) { acc += q(b, j, n); }
        sums(b, s, n) = acc;
      });
  Kokkos::parallel_for(
      "hax::attn::key_selection_features::segment_prefix", Kokkos::RangePolicy<Space>(space, 0, items),
      KOKKOS_LAMBDA(int e) {
        int const n = e % N, s = (e / N) % S, b = e / (N * S);
        T run = 0;
        for (int p = 0; p < s; ++p) { run += sums(b, p, n); }
        int const end = has_extents ? Kokkos::min(L, extents(b)) : L;
        int const j1 = Kokkos::min(end, (s + 1) * seg_rows);
        for (int j = s * seg_rows; j < j1; ++j) {
          run += q(b, j, n);
          feat(b, j, N + n) = run;
          feat(b, j, n) = k(b, j, n);
        }
      });
  // A row per thread of core::row_teams, its N prefix features on the vector lanes.
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  int const rows = B * L;
  int const league = (rows + core::kRowsPerTeam - 1) / core::kRowsPerTeam;
  Kokkos::parallel_for(
      "hax::attn::key_selection_features::row_normalise", core::row_teams(space, league),
      KOKKOS_LAMBDA(member const& team) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, core::kRowsPerTeam), [&](int r) {
          int const row = team.league_rank() * core::kRowsPerTeam + r;
          if (row >= rows) { return; }
          int const b = row / L, j = row % L;
          if (has_extents && j >= extents(b)) { return; }
          T sq = 0;
          Kokkos::parallel_reduce(
              Kokkos::ThreadVectorRange(team, N), [&](int n, T& acc) { acc += feat(b, j, N + n) * feat(b, j, N + n); },
              sq);
          T const inv = T(1) / Kokkos::max(Kokkos::sqrt(sq), T(kNormalizeEps));
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) { feat(b, j, N + n) *= inv; });
        });
      });
}

}  // namespace impl

/// feat (B, L, 2N) = [k, normalised prefix sum of q] from q, k (B, L, N).
/// k enters as given (the blocks pass K already scaled by 1/√N). Asynchronous on `space`;
/// O(B·L·N) time; causal semantics takes a (B, ≤ 64, N) temporary (impl::causal_prefix_features).
/// \param extents (B), optional, causal semantics only: row b is computed up to extents(b)
///        (core::real_extent of the pad mask) and its rows after it are left unwritten; rows
///        before it are exactly those of the call without extents.
template <execution_space Space, class Q, class K, class F>
  requires(view_accessible_from<Q, Space> && view_accessible_from<K, Space> &&
           view_accessible_from<F, Space>)
void key_selection_features(Space const& space, PlanSemantics semantics, Q const& q, K const& k,
                            F const& feat,
                            Kokkos::View<int const*, typename Space::memory_space> const& extents = {}) {
  static_assert(Q::rank() == 3 && K::rank() == 3 && F::rank() == 3,
                "hax::attn::key_selection_features: q, k must be (B, L, N) and feat (B, L, 2N)");
  int const B = q.extent_int(0), L = q.extent_int(1), N = q.extent_int(2);
  core::require(k.extent_int(0) == B && k.extent_int(1) == L && k.extent_int(2) == N,
                "hax::attn::key_selection_features", "k (", k.extent(0), ", ", k.extent(1), ", ",
                k.extent(2), ") must have the shape of q (", B, ", ", L, ", ", N, ")");
  core::require(feat.extent_int(0) == B && feat.extent_int(1) == L && feat.extent_int(2) == 2 * N,
                "hax::attn::key_selection_features", "feat (", feat.extent(0), ", ",
                feat.extent(1), ", ", feat.extent(2), ") must be (B, L, 2N) = (", B, ", ", L, ", ",
                2 * N, ")");
  using T = typename F::non_const_value_type;
  bool const per_column = semantics == PlanSemantics::reference;
  core::require(!extents.is_allocated() || extents.extent_int(0) == B, "hax::attn::key_selection_features",
                "extents (", extents.extent(0), ") must be empty or (B) = (", B, ")");
  core::require(!per_column || !extents.is_allocated(), "hax::attn::key_selection_features",
                "extents are for causal semantics only: reference semantics normalises over all L rows");
  if (!per_column) {
    impl::causal_prefix_features(space, q, k, feat, extents);
    return;
  }
  // Reference semantics normalises each column over all L positions: one team per (sequence,
  // feature) scans its column in parallel, then reduces and scales it.
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  auto const teams = core::long_loop_teams(space, B * N);
  Kokkos::parallel_for(
      "hax::attn::key_selection_features::prefix_sum", teams, KOKKOS_LAMBDA(member const& team) {
        int const b = team.league_rank() / N, n = team.league_rank() % N;
        Kokkos::parallel_scan(Kokkos::TeamThreadRange(team, L), [&](int j, T& run, bool final) {
          run += q(b, j, n);
          if (final) {
            feat(b, j, N + n) = run;
            feat(b, j, n) = k(b, j, n);
          }
        });
        team.team_barrier();  // every prefix of this column is written
        T sq = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, L),
            [&](int j, T& acc) { acc += feat(b, j, N + n) * feat(b, j, N + n); }, sq);
        T const inv = T(1) / Kokkos::max(Kokkos::sqrt(sq), T(kNormalizeEps));
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, L), [&](int j) { feat(b, j, N + n) *= inv; });
      });
}

/// Overload on the default instance of feat's execution space.
template <class Q, class K, class F>
void key_selection_features(PlanSemantics semantics, Q const& q, K const& k, F const& feat) {
  key_selection_features(typename F::execution_space{}, semantics, q, k, feat);
}

}  // namespace hax::attn
