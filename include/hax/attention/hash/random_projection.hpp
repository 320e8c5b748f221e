// SPDX-License-Identifier: MIT
/// \file
/// The random Gaussian projection W (N, h) shared by both binning rules, and its draw on the
/// device from counter-based streams: W is a pure function of (seed, layer, step), so it can be
/// redrawn every training step per layer with no host work, fixed at evaluation (`causal`: pass a
/// fixed step), and it is identical on every backend.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/attention/hash/concepts.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/random.hpp>

#include <cstdint>

namespace hax::attn {

/// The random directions w_b, one per column of W (N, h).
template <class T, class MemorySpace>
struct RandomProjection {
  Kokkos::View<T const**, Kokkos::LayoutRight, MemorySpace> w;  // (N, h)

  KOKKOS_FUNCTION int dim() const { return static_cast<int>(w.extent(0)); }
  KOKKOS_FUNCTION int size() const { return static_cast<int>(w.extent(1)); }

  /// x · w_b for a row x of length N.
  template <class Row>
  KOKKOS_FUNCTION T operator()(Row const& x, int b) const {
    T s = 0;
    for (int i = 0; i < static_cast<int>(x.extent(0)); ++i) {
      s += x(i) * w(i, b);
    }
    return s;
  }
};

/// Element (n, b) of W is draw pair number n*h + b of the stream stream_key(seed, layer, step):
/// a standard normal (Box-Muller over two uniform draws, in double, then rounded to T).
KOKKOS_INLINE_FUNCTION double projection_entry(std::uint64_t key, int n, int b, int h) {
  core::RngStream stream(key, 2 * (static_cast<std::uint64_t>(n) * h + b));
  return stream.normal();
}

/// Fills w (N, h) with i.i.d. N(0, 1) entries drawn from (seed, layer, step) on `space`.
/// Asynchronous on `space`. Throws hax::invalid_argument if h is outside [1, kMaxHashBits].
template <execution_space Space, class W>
  requires(view_accessible_from<W, Space>)
void draw_random_projection(Space const& space, W const& w, std::uint64_t seed,
                            std::uint64_t layer, std::uint64_t step) {
  static_assert(W::rank() == 2, "hax::attn::draw_random_projection: w must be rank 2 (N, h)");
  int const N = w.extent_int(0), h = w.extent_int(1);
  core::require(N >= 1 && h >= 1 && h <= kMaxHashBits, "hax::attn::draw_random_projection",
                "w (N, h) = (", N, ", ", h, ") must have N >= 1 and 1 <= h <= ", kMaxHashBits);
  std::uint64_t const key = core::stream_key(seed, layer, step);
  using value_type = typename W::non_const_value_type;
  Kokkos::parallel_for(
      "hax::attn::draw_random_projection",
      Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {N, h}),
      KOKKOS_LAMBDA(int n, int b) { w(n, b) = static_cast<value_type>(projection_entry(key, n, b, h)); });
}

/// Overload on the default instance of w's execution space.
template <class W>
void draw_random_projection(W const& w, std::uint64_t seed, std::uint64_t layer,
                            std::uint64_t step) {
  draw_random_projection(typename W::execution_space{}, w, seed, layer, step);
}

}  // namespace hax::attn
