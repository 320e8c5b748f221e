// SPDX-License-Identifier: MIT
/// \file
/// SlidingWindow{width}: query q attends to keys q-width+1 .. q (itself included), as the
/// reference's `sliding_window` (allowed iff 0 <= q-k < k'). A row is never empty.
#pragma once

#include <hax/attention/pattern/concepts.hpp>

namespace hax::attn {

/// Keys q, q-1, ..., q-width+1 (candidate j is q-j; slots before position 0 are empty).
struct SlidingWindow {
  int width = 1;  // number of keys, the query itself included

  KOKKOS_FUNCTION bool allows(int /*b*/, int q, int k) const { return k <= q && q - k < width; }
  KOKKOS_FUNCTION int max_keys_per_query() const { return width; }
  KOKKOS_FUNCTION int key(int /*b*/, int q, int j) const { return q - j >= 0 ? q - j : -1; }
};

static_assert(sparse_pattern<SlidingWindow>);

}  // namespace hax::attn
