// SPDX-License-Identifier: MIT
/// \file
/// The causal top-k' plan of key selection: for each query i, the k' highest-scoring key
/// positions among j <= i (all of 0..i when i + 1 <= k').
///
/// Order and ties: candidate a ranks above b when s_a > s_b, or s_a == s_b and a > b (the more
/// recent key wins a tie, as the LSH window prefers recent keys). Slots hold the selected
/// positions best first, then -1. Rows are never empty.
///
/// Algorithm: one sequential sweep per sequence keeps the current top-k' as a sorted list; going
/// from query i-1 to i only inserts key i (the prefix grows by one), which costs O(k') together
/// with copying the list into row i. O(B·L·k') time, no memory beyond idx; parallel over B.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>

namespace hax::attn {

/// idx (B, L, k') = causal top-k' of scores (B, L) (see the file comment).
/// Asynchronous on `space`. Throws hax::invalid_argument on mismatched shapes or k' > L.
template <execution_space Space, class S, class Idx>
  requires(view_accessible_from<S, Space> && view_accessible_from<Idx, Space>)
void causal_topk(Space const& space, S const& scores, Idx const& idx) {
  static_assert(S::rank() == 2 && Idx::rank() == 3,
                "hax::attn::causal_topk: scores must be (B, L) and idx (B, L, k')");
  int const B = scores.extent_int(0), L = scores.extent_int(1), kprime = idx.extent_int(2);
  core::require(idx.extent_int(0) == B && idx.extent_int(1) == L, "hax::attn::causal_topk", "idx (",
                idx.extent(0), ", ", idx.extent(1), ", ", kprime, ") must be (B, L, k') with (B, L) = (",
                B, ", ", L, ") of scores");
  core::require(kprime >= 1 && kprime <= L, "hax::attn::causal_topk", "k' = ", kprime,
                " (idx extent 2) must be in [1, L] with L = ", L);
  Kokkos::parallel_for(
      "hax::attn::causal_topk", Kokkos::RangePolicy<Space>(space, 0, B), KOKKOS_LAMBDA(int b) {
        int count = 0;  // size of the current list
        for (int i = 0; i < L; ++i) {
          for (int t = 0; t < count; ++t) { idx(b, i, t) = idx(b, i - 1, t); }
          // Key i ties with equal scores in its favour (it is the most recent), so it goes before
          // the first entry whose score is <= its own.
          auto const si = scores(b, i);
          int pos = 0;
          while (pos < count && scores(b, idx(b, i, pos)) > si) { ++pos; }
          if (pos < kprime) {
            int const last = count < kprime ? count : kprime - 1;
            for (int t = last; t > pos; --t) { idx(b, i, t) = idx(b, i, t - 1); }
            idx(b, i, pos) = i;
            if (count < kprime) { ++count; }
          }
          for (int t = count; t < kprime; ++t) { idx(b, i, t) = -1; }
        }
      });
}

/// Overload on the default instance of idx's execution space.
template <class S, class Idx>
void causal_topk(S const& scores, Idx const& idx) {
  causal_topk(typename Idx::execution_space{}, scores, idx);
}

}  // namespace hax::attn
