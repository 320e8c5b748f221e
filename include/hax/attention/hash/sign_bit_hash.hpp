// SPDX-License-Identifier: MIT
/// \file
/// Sign-bit binning (SimHash): bucket = Σ_b [x·w_b > 0] · 2^b over h projections, 2^h buckets.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/attention/hash/concepts.hpp>
#include <hax/attention/hash/random_projection.hpp>
#include <hax/core/error.hpp>

namespace hax::attn {

/// Sign-bit binning over a RandomProjection. The test is strict (x·w_b > 0, as the reference's
/// `proj > 0`), so a zero row (all projections exactly 0) lands in bucket 0, and x and -x get
/// complementary codes whenever no projection is exactly 0.
template <class T, class MemorySpace>
struct SignBitHash {
  RandomProjection<T, MemorySpace> proj;

  KOKKOS_FUNCTION int num_buckets() const { return 1 << proj.size(); }

  template <class Row>
  KOKKOS_FUNCTION int bucket(Row const& x) const {
    int code = 0;
    for (int b = 0; b < proj.size(); ++b) {
      code |= static_cast<int>(proj(x, b) > T(0)) << b;
    }
    return code;
  }
};

namespace impl {
using archetype_row = Kokkos::View<float const*, Kokkos::LayoutStride, Kokkos::HostSpace>;
}
static_assert(hash_policy_for<SignBitHash<float, Kokkos::HostSpace>, impl::archetype_row>);

/// Wraps w (N, h) into a SignBitHash, checking h in [1, kMaxHashBits] on the host (the bucket index
/// is an int and the bucketing plans size per-sequence tables by num_buckets() = 2^h).
template <class W>
SignBitHash<typename W::non_const_value_type, typename W::memory_space> make_sign_bit_hash(W const& w) {
  static_assert(W::rank() == 2, "hax::attn::make_sign_bit_hash: w must be rank 2 (N, h)");
  core::require(w.extent_int(1) >= 1 && w.extent_int(1) <= kMaxHashBits,
                "hax::attn::make_sign_bit_hash", "h = ", w.extent(1), " (w is (", w.extent(0), ", ",
                w.extent(1), ")) is out of range: the bucket index type (int) allows 1 <= h <= ",
                kMaxHashBits);
  return {RandomProjection<typename W::non_const_value_type, typename W::memory_space>{w}};
}

}  // namespace hax::attn
