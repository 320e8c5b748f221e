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

#include <cstddef>

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
  // Prefix sums run along the sequence. One team per sequence cuts L into kSegments segments and
  // gives each (segment, feature) pair to a thread, features fastest, so every pass reads whole
  // rows (coalesced): segment sums, their exclusive scan per feature (in scratch), then each
  // segment's rescan writing the prefixes. A team per (sequence, feature) scanning one strided
  // column took 126 µs per call on an H100 at B·L = 67 648, N = 32.
  constexpr int kSegments = 32;
  int const seg_len = (L + kSegments - 1) / kSegments;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  using scratch_2d = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::scratch_memory_space,
                                  Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  std::size_t const bytes = scratch_2d::shmem_size(kSegments, N);
  int const level = bytes <= 32 * 1024 ? 0 : 1;
  Kokkos::parallel_for(
      "hax::attn::key_selection_features::prefix_sum",
      core::long_loop_teams(space, B).set_scratch_size(level, Kokkos::PerTeam(bytes)),
      KOKKOS_LAMBDA(member const& team) {
        int const b = team.league_rank();
        scratch_2d part(team.team_scratch(level), kSegments, N);
        auto const segment_begin = [&](int sg) { return sg * seg_len < L ? sg * seg_len : L; };
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kSegments * N), [&](int e) {
          int const sg = e / N, n = e % N;
          T sum = 0;
          for (int j = segment_begin(sg); j < segment_begin(sg + 1); ++j) { sum += q(b, j, n); }
          part(sg, n) = sum;
        });
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, N), [&](int n) {  // exclusive scan
          T run = 0;
          for (int sg = 0; sg < kSegments; ++sg) {
            T const v = part(sg, n);
            part(sg, n) = run;
            run += v;
          }
        });
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kSegments * N), [&](int e) {
          int const sg = e / N, n = e % N;
          T run = part(sg, n);
          for (int j = segment_begin(sg); j < segment_begin(sg + 1); ++j) {
            run += q(b, j, n);
            feat(b, j, N + n) = run;
            feat(b, j, n) = k(b, j, n);
          }
        });
        if (per_column) {
          team.team_barrier();  // every prefix of this sequence is written
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kSegments * N), [&](int e) {
            int const sg = e / N, n = e % N;
            T sq = 0;
            for (int j = segment_begin(sg); j < segment_begin(sg + 1); ++j) { sq += feat(b, j, N + n) * feat(b, j, N + n); }
            part(sg, n) = sq;
          });
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kSegments * N), [&](int e) {
            int const sg = e / N, n = e % N;
            T sq = 0;
            for (int t = 0; t < kSegments; ++t) { sq += part(t, n); }
            T const inv = T(1) / Kokkos::max(Kokkos::sqrt(sq), T(kNormalizeEps));
            for (int j = segment_begin(sg); j < segment_begin(sg + 1); ++j) { feat(b, j, N + n) *= inv; }
          });
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
