// SPDX-License-Identifier: MIT
/// \file
/// Rotary position embedding (RoPE) over per-head activations (B, L, H, Dh), forward and backward,
/// in the non-interleaved ("rotate half", GPT-NeoX / fla RotaryEmbedding default) layout: channel
/// i < Dh/2 is paired with channel i + Dh/2 and the pair is rotated by the angle
///   φ(t, i) = t · θ^(−2i/Dh),   t = the position in the sequence (0-based),
///   y_i = x_i cos φ − x_{i+Dh/2} sin φ,   y_{i+Dh/2} = x_i sin φ + x_{i+Dh/2} cos φ.
/// The rotation is orthogonal, so the backward is the rotation by −φ. Angles are evaluated in
/// double (φ reaches ~10³ rad at L = 1057). Derivation: docs/math/samba.md.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>

namespace hax::nn {

/// RoPE's default base θ (the Samba config's rope_theta).
inline constexpr double kRopeTheta = 1e4;

namespace impl {

template <class X, class Y>
void rope_check(char const* op, X const& x, Y const& y, double theta) {
  static_assert(X::rank() == 4 && Y::rank() == 4,
                "hax::nn::rope: x and y must be rank 4 (B, L, H, Dh)");
  for (int r = 0; r < 4; ++r) {
    core::require(x.extent(r) == y.extent(r), op, "x (", x.extent(0), ", ", x.extent(1), ", ",
                  x.extent(2), ", ", x.extent(3), ") and y (", y.extent(0), ", ", y.extent(1),
                  ", ", y.extent(2), ", ", y.extent(3), ") must have the same shape");
  }
  core::require(x.extent(3) % 2 == 0 && x.extent(3) > 0, op, "head_dim (extent 3 of x (",
                x.extent(0), ", ", x.extent(1), ", ", x.extent(2), ", ", x.extent(3),
                ")) must be even and positive: RoPE rotates channel pairs (i, i + head_dim/2)");
  core::require(theta > 1.0, op, "theta (", theta, ") must be > 1");
}

/// y = R(±φ) x for every (b, t, h, i < Dh/2); `sign` = +1 forward, −1 backward. Each work item
/// reads both channels of its pair before writing, so y may alias x.
template <class Space, class X, class Y>
void rope_apply(Space const& space, char const* label, X const& x, Y const& y, double theta,
                double sign) {
  using value_type = typename Y::non_const_value_type;
  int const B = x.extent_int(0), L = x.extent_int(1), H = x.extent_int(2);
  int const half = x.extent_int(3) / 2;
  double const log_theta = Kokkos::log(theta);
  Kokkos::parallel_for(
      label,
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<4, Kokkos::Iterate::Right, Kokkos::Iterate::Right>>(
          space, {0, 0, 0, 0}, {B, L, H, half}),
      KOKKOS_LAMBDA(int b, int t, int h, int i) {
        // θ^(−2i/Dh) = exp(−(i/half)·log θ); the product with t stays exact in double.
        double const phi = static_cast<double>(t) *
                           Kokkos::exp(-static_cast<double>(i) / static_cast<double>(half) * log_theta);
        value_type const c = static_cast<value_type>(Kokkos::cos(phi));
        value_type const s = static_cast<value_type>(sign * Kokkos::sin(phi));
        value_type const x1 = x(b, t, h, i);
        value_type const x2 = x(b, t, h, i + half);
        y(b, t, h, i) = x1 * c - x2 * s;
        y(b, t, h, i + half) = x1 * s + x2 * c;
      });
}

}  // namespace impl

/// RoPE forward: y = rotate(x) by φ(t, i) = t·θ^(−2i/Dh) on channel pairs (i, i + Dh/2).
///
/// \param space [in] execution-space instance; asynchronous on it (no fence).
/// \param x [in] (B, L, H, Dh), Dh even.
/// \param y [out] (B, L, H, Dh), overwritten; may alias x (in place).
/// \param theta [in] the base θ (> 1; Samba: 1e4).
/// Nothing needs saving (the backward only needs the positions). Positions start at 0 for every
/// sequence; a constant shift of all positions of a sequence (fla's offset for padded batches)
/// leaves every q·k unchanged, since the score depends only on the position difference.
/// Throws hax::invalid_argument for mismatched shapes, odd Dh or θ ≤ 1.
template <execution_space Space, class X, class Y>
  requires(view_accessible_from<X, Space> && view_accessible_from<Y, Space>)
void rope_forward(Space const& space, X const& x, Y const& y, double theta = kRopeTheta) {
  impl::rope_check("hax::nn::rope_forward", x, y, theta);
  impl::rope_apply(space, "hax::nn::rope_forward", x, y, theta, 1.0);
}

/// Overload on the default instance of y's execution space.
template <class X, class Y>
  requires(Kokkos::is_view_v<Y>)
void rope_forward(X const& x, Y const& y, double theta = kRopeTheta) {
  rope_forward(typename Y::execution_space{}, x, y, theta);
}

/// RoPE backward: dx = R(φ)ᵀ dy = R(−φ) dy (written).
/// \param dy [in] (B, L, H, Dh). \param dx [out] (B, L, H, Dh); may alias dy (in place).
/// Asynchronous on `space`.
template <execution_space Space, class DY, class DX>
  requires(view_accessible_from<DY, Space> && view_accessible_from<DX, Space>)
void rope_backward(Space const& space, DY const& dy, DX const& dx, double theta = kRopeTheta) {
  impl::rope_check("hax::nn::rope_backward", dy, dx, theta);
  impl::rope_apply(space, "hax::nn::rope_backward", dy, dx, theta, -1.0);
}

/// Overload on the default instance of dx's execution space.
template <class DY, class DX>
  requires(Kokkos::is_view_v<DX>)
void rope_backward(DY const& dy, DX const& dx, double theta = kRopeTheta) {
  rope_backward(typename DX::execution_space{}, dy, dx, theta);
}

}  // namespace hax::nn
