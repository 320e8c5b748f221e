// SPDX-License-Identifier: MIT
/// \file
/// Dilated: keys on the global grid k ≡ s-1 (mod s), k <= q, with stride s = max_length / k'
/// (semantics.md sections 3 and 9; max_length defaults to the reference's 2048, so with
/// k' = 64 the grid is 31, 63, 95, ... and queries 0..30 have no key).
///
/// hax keeps the `count` most recent grid points <= q, with count = max_length / s (the number of
/// grid points below max_length: k' when s divides max_length, a little more otherwise, e.g.
/// k' = 100 gives s = 20 and 102). For L <= max_length that is the whole grid below q, exactly the
/// reference; for longer sequences it bounds the work per query, making a dilated sliding window.
#pragma once

#include <hax/attention/pattern/concepts.hpp>
#include <hax/core/error.hpp>

namespace hax::attn {

/// Global dilated grid; candidate j is the (j+1)-th most recent grid point <= q.
struct Dilated {
  int stride = 1;  // s: the grid spacing
  int count = 1;   // at most this many grid points per query (max_length / s)

  /// The reference's construction: s = max_length / k' (integer division), count = max_length / s.
  static Dilated from_budget(int kprime, int max_length = 2048) {
    core::require(kprime >= 1 && kprime <= max_length, "hax::attn::Dilated",
                  "k' (", kprime, ") must be in [1, max_length] with max_length = ", max_length);
    int const s = max_length / kprime;
    return Dilated{s, max_length / s};
  }

  /// The last grid point <= q, or -1 when q < s-1.
  KOKKOS_FUNCTION int last_grid_point(int q) const { return ((q + 1) / stride) * stride - 1; }
  KOKKOS_FUNCTION bool allows(int /*b*/, int q, int k) const {
    if (k < 0 || k > q || k % stride != stride - 1) { return false; }
    return (last_grid_point(q) - k) / stride < count;
  }
  KOKKOS_FUNCTION int max_keys_per_query() const { return count; }
  KOKKOS_FUNCTION int key(int /*b*/, int q, int j) const {
    int const k = last_grid_point(q) - j * stride;
    return k >= 0 ? k : -1;
  }
};

static_assert(sparse_pattern<Dilated>);

}  // namespace hax::attn
