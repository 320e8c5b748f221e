// SPDX-License-Identifier: MIT
/// \file
/// Full{L}: dense causal attention expressed as a pattern (key(q, j) = j for j <= q). It costs
/// O(L) per query, so O(L²) per sequence: for tests, comparisons and small L only.
#pragma once

#include <hax/attention/pattern/concepts.hpp>

namespace hax::attn {

/// Every key k <= q of a sequence of length `length`.
struct Full {
  int length = 1;  // L: the number of candidate slots of every query

  KOKKOS_FUNCTION bool allows(int /*b*/, int q, int k) const { return k >= 0 && k <= q; }
  KOKKOS_FUNCTION int max_keys_per_query() const { return length; }
  KOKKOS_FUNCTION int key(int /*b*/, int q, int j) const { return j <= q ? j : -1; }
};

static_assert(sparse_pattern<Full>);

}  // namespace hax::attn
