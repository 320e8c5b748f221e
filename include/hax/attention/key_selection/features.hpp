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

namespace hax::attn {

/// feat (B, L, 2N) = [k, normalised prefix sum of q] from q, k (B, L, N).
/// k enters as given (the blocks pass K already scaled by 1/√N). Asynchronous on `space`;
/// O(B·L·N) time, no extra memory.
template <execution_space Space, class Q, class K, class F>
  requires(view_accessible_from<Q, Space> && view_accessible_from<K, Space> &&
           view_accessible_from<F, Space>)
void key_selection_features(Space const& space, PlanSemantics semantics, Q const& q, K const& k,
                            F const& feat) {
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
  // Prefix sums run along the sequence: one team per (sequence, feature), the team scanning the
  // L positions in parallel. One thread per (sequence, feature) walking L serially took 0.9 ms
  // per call in the H100/H200 training step (B·N = 2 048 threads; docs/perf_training_step.md).
  // (A team per sequence cutting L into segments, features fastest, took 195 µs per call on the
  // same H100 profile: only B = 64 teams; commit 5c81075, reverted.)
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
        if (per_column) {
          team.team_barrier();  // every prefix of this column is written
          T sq = 0;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(team, L),
              [&](int j, T& acc) { acc += feat(b, j, N + n) * feat(b, j, N + n); }, sq);
          T const inv = T(1) / Kokkos::max(Kokkos::sqrt(sq), T(kNormalizeEps));
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, L),
                               [&](int j) { feat(b, j, N + n) *= inv; });
        }
      });
  if (!per_column) {
    // A row per thread of core::row_teams, its N prefix features on the vector lanes.
    int const rows = B * L;
    int const league = (rows + core::kRowsPerTeam - 1) / core::kRowsPerTeam;
    Kokkos::parallel_for(
        "hax::attn::key_selection_features::row_normalise", core::row_teams(space, league),
        KOKKOS_LAMBDA(member const& team) {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, core::kRowsPerTeam), [&](int r) {
            int const row = team.league_rank() * core::kRowsPerTeam + r;
            if (row >= rows) { return; }
            int const b = row / L, j = row % L;
            T sq = 0;
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, N),
                [&](int n, T& acc) { acc += feat(b, j, N + n) * feat(b, j, N + n); }, sq);
            T const inv = T(1) / Kokkos::max(Kokkos::sqrt(sq), T(kNormalizeEps));
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) { feat(b, j, N + n) *= inv; });
          });
        });
  }
}

/// Overload on the default instance of feat's execution space.
template <class Q, class K, class F>
void key_selection_features(PlanSemantics semantics, Q const& q, K const& k, F const& feat) {
  key_selection_features(typename F::execution_space{}, semantics, q, k, feat);
}

}  // namespace hax::attn
