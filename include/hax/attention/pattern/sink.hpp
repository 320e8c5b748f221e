// SPDX-License-Identifier: MIT
/// \file
/// Sink{n}: the first n positions are visible to every query at or after them, as the reference's
/// `sink` part of `sliding_window+sink` (allowed iff k < k' and k <= q).
#pragma once

#include <hax/attention/pattern/concepts.hpp>

namespace hax::attn {

/// Keys 0 .. min(n, q+1)-1 (candidate j is j).
struct Sink {
  int count = 1;  // number of sink positions

  KOKKOS_FUNCTION bool allows(int /*b*/, int q, int k) const { return k >= 0 && k < count && k <= q; }
  KOKKOS_FUNCTION int max_keys_per_query() const { return count; }
  KOKKOS_FUNCTION int key(int /*b*/, int q, int j) const { return j <= q ? j : -1; }
};

static_assert(sparse_pattern<Sink>);

}  // namespace hax::attn
