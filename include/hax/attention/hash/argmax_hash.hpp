// SPDX-License-Identifier: MIT
/// \file
/// Argmax binning (angular LSH): bucket = argmax over [x·W, -x·W], 2h buckets.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/attention/hash/concepts.hpp>
#include <hax/attention/hash/random_projection.hpp>
#include <hax/core/error.hpp>

namespace hax::attn {

/// Argmax binning over a RandomProjection: bucket b < h when x·w_b is the largest of the 2h
/// values [x·W, -x·W], bucket b + h when -x·w_b is. Ties go to the first index in that order
/// (so a zero row lands in bucket 0). With a unique maximum, -x lands in (bucket(x) + h) mod 2h.
template <class T, class MemorySpace>
struct ArgmaxHash {
  RandomProjection<T, MemorySpace> proj;

  KOKKOS_FUNCTION int num_buckets() const { return 2 * proj.size(); }

  template <class Row>
  KOKKOS_FUNCTION int bucket(Row const& x) const {
    int const h = proj.size();
    int best = 0;
    T best_score = proj(x, 0);
    for (int b = 1; b < h; ++b) {
      T const s = proj(x, b);
      if (s > best_score) {
        best_score = s;
        best = b;
      }
    }
    // The negated half: -s beats the best positive value only when strictly larger.
    for (int b = 0; b < h; ++b) {
      T const s = -proj(x, b);
      if (s > best_score) {
        best_score = s;
        best = b + h;
      }
    }
    return best;
  }
};

static_assert(hash_policy_for<ArgmaxHash<float, Kokkos::HostSpace>,
                              Kokkos::View<float const*, Kokkos::LayoutStride, Kokkos::HostSpace>>);

/// Wraps w (N, h) into a ArgmaxHash, checking h in [1, kMaxHashBits] on the host (the bucket index
/// is an int and the bucketing plans size per-sequence tables by num_buckets() = 2h).
template <class W>
ArgmaxHash<typename W::non_const_value_type, typename W::memory_space> make_argmax_hash(W const& w) {
  static_assert(W::rank() == 2, "hax::attn::make_argmax_hash: w must be rank 2 (N, h)");
  core::require(w.extent_int(1) >= 1 && w.extent_int(1) <= kMaxHashBits,
                "hax::attn::make_argmax_hash", "h = ", w.extent(1), " (w is (", w.extent(0), ", ",
                w.extent(1), ")) is out of range: the bucket index type (int) allows 1 <= h <= ",
                kMaxHashBits);
  return {RandomProjection<typename W::non_const_value_type, typename W::memory_space>{w}};
}

}  // namespace hax::attn
