// SPDX-License-Identifier: MIT
/// \file
/// The pre-hash transform of LSH attention in both semantics (semantics.md sections 3 and 9):
///  - causal:    each row x_i (N) is centred on its own feature mean and scaled to unit L2 norm;
///               position i depends on row i only, so padding never changes a non-pad bucket.
///  - reference: each feature column is centred on its mean over all L positions (pads included)
///               and divided by its L2 norm over all L positions (F.normalize(dim=1)).
/// Both divide by max(norm, 1e-12) as F.normalize does, so a zero (or constant, for `causal`)
/// row stays exactly zero, and then hashes to bucket 0 under either binning rule.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/attention/hash/concepts.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>

namespace hax::attn {

/// F.normalize's floor on the norm.
inline constexpr double kNormalizeEps = 1e-12;

/// out (B, L, N) = the pre-hash transform of x (B, L, N) under `semantics` (see the file comment).
/// out may alias x. Asynchronous on `space`; O(B·L·N) time, no extra memory.
template <execution_space Space, class X, class Out>
  requires(view_accessible_from<X, Space> && view_accessible_from<Out, Space>)
void lsh_prehash_transform(Space const& space, PlanSemantics semantics, X const& x,
                           Out const& out) {
  static_assert(X::rank() == 3 && Out::rank() == 3,
                "hax::attn::lsh_prehash_transform: x and out must be rank 3 (B, L, N)");
  int const B = x.extent_int(0), L = x.extent_int(1), N = x.extent_int(2);
  core::require(out.extent_int(0) == B && out.extent_int(1) == L && out.extent_int(2) == N,
                "hax::attn::lsh_prehash_transform", "out (", out.extent(0), ", ", out.extent(1),
                ", ", out.extent(2), ") must have the shape of x (", B, ", ", L, ", ", N, ")");
  using T = typename Out::non_const_value_type;
  if (semantics == PlanSemantics::causal) {
    Kokkos::parallel_for(
        "hax::attn::lsh_prehash_transform[causal]",
        Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {B, L}),
        KOKKOS_LAMBDA(int b, int i) {
          T mean = 0;
          for (int n = 0; n < N; ++n) { mean += x(b, i, n); }
          mean /= T(N);
          T sq = 0;
          for (int n = 0; n < N; ++n) {
            T const c = x(b, i, n) - mean;
            sq += c * c;
          }
          T const inv = T(1) / Kokkos::max(Kokkos::sqrt(sq), T(kNormalizeEps));
          for (int n = 0; n < N; ++n) { out(b, i, n) = (x(b, i, n) - mean) * inv; }
        });
  } else {
    // One work item per (sequence, feature) column: the statistics run over the sequence axis.
    Kokkos::parallel_for(
        "hax::attn::lsh_prehash_transform[reference]",
        Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {B, N}),
        KOKKOS_LAMBDA(int b, int n) {
          T mean = 0;
          for (int i = 0; i < L; ++i) { mean += x(b, i, n); }
          mean /= T(L);
          T sq = 0;
          for (int i = 0; i < L; ++i) {
            T const c = x(b, i, n) - mean;
            sq += c * c;
          }
          T const inv = T(1) / Kokkos::max(Kokkos::sqrt(sq), T(kNormalizeEps));
          for (int i = 0; i < L; ++i) { out(b, i, n) = (x(b, i, n) - mean) * inv; }
        });
  }
}

/// Overload on the default instance of out's execution space.
template <class X, class Out>
void lsh_prehash_transform(PlanSemantics semantics, X const& x, Out const& out) {
  lsh_prehash_transform(typename Out::execution_space{}, semantics, x, out);
}

}  // namespace hax::attn
