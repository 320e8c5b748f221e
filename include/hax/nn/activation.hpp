// SPDX-License-Identifier: MIT
/// \file
/// Activations of the Mamba blocks: SiLU x·σ(x) and softplus with PyTorch's threshold semantics
/// (beta 1, threshold 20), as device scalar functions (for fusion into other kernels) and as
/// forward/backward ops over (B, L, D) activations. Derivations in docs/math/activation.md.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/nn/impl/shape.hpp>

namespace hax::nn {

/// Logistic sigmoid σ(x) = 1 / (1 + e^{-x}), evaluated so that exp never overflows: for x < 0
/// it uses e^{x} / (1 + e^{x}), whose exponential is below 1.
template <class T>
KOKKOS_INLINE_FUNCTION T sigmoid(T x) {
  if (x >= T(0)) {
    return T(1) / (T(1) + Kokkos::exp(-x));
  }
  T const e = Kokkos::exp(x);
  return e / (T(1) + e);
}

/// SiLU (swish): x·σ(x).
template <class T>
KOKKOS_INLINE_FUNCTION T silu(T x) {
  return x * sigmoid(x);
}

/// d silu / dx = σ(x)·(1 + x·(1 − σ(x))).
template <class T>
KOKKOS_INLINE_FUNCTION T silu_derivative(T x) {
  T const s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}

/// PyTorch's softplus threshold (beta = 1): above it softplus(x) is x (and its slope 1).
inline constexpr double kSoftplusThreshold = 20.0;

/// softplus(x) = log(1 + e^{x}) for x ≤ 20, x above (torch.nn.functional.softplus defaults).
/// log1p keeps precision where e^{x} is tiny (x very negative), and the threshold keeps e^{x}
/// finite, so no input overflows.
template <class T>
KOKKOS_INLINE_FUNCTION T softplus(T x) {
  if (x > T(kSoftplusThreshold)) {
    return x;
  }
  return Kokkos::log1p(Kokkos::exp(x));
}

/// d softplus / dx: σ(x) for x ≤ 20, 1 above (the threshold branch is the identity).
template <class T>
KOKKOS_INLINE_FUNCTION T softplus_derivative(T x) {
  if (x > T(kSoftplusThreshold)) {
    return T(1);
  }
  return sigmoid(x);
}

namespace impl {

/// Iteration over (B, L, D) with D fastest, so neighbouring work items touch neighbouring
/// addresses of LayoutRight Views on every backend (the default order on CUDA would be Left).
template <class Space>
using policy_bld = Kokkos::MDRangePolicy<Space, Kokkos::Rank<3, Kokkos::Iterate::Right,
                                                             Kokkos::Iterate::Right>>;

template <class Space, class V>
policy_bld<Space> make_policy_bld(Space const& space, V const& v) {
  return policy_bld<Space>(space, {0, 0, 0},
                           {v.extent_int(0), v.extent_int(1), v.extent_int(2)});
}

}  // namespace impl

/// y = silu(x), elementwise.
/// \param space [in] execution-space instance; asynchronous on it.
/// \param x [in] (B, L, D).
/// \param y [out] (B, L, D), overwritten; may alias x (in place).
/// Saved for backward: x.
template <execution_space Space, class X, class Y>
  requires(view_accessible_from<X, Space> && view_accessible_from<Y, Space>)
void silu_forward(Space const& space, X const& x, Y const& y) {
  static_assert(X::rank() == 3 && Y::rank() == 3,
                "hax::nn::silu_forward: x and y must be rank 3 (B, L, D)");
  impl::require_same_shape("hax::nn::silu_forward", "x", x, "y", y);
  core::for_each_row_major(
      "hax::nn::silu_forward", space, y.extent_int(0), y.extent_int(1), y.extent_int(2),
      KOKKOS_LAMBDA(int b, int t, int d) { y(b, t, d) = silu(x(b, t, d)); });
}

/// Overload on the default instance of y's execution space.
template <class X, class Y>
void silu_forward(X const& x, Y const& y) {
  silu_forward(typename Y::execution_space{}, x, y);
}

/// dx = dy · silu'(x) (written).
/// \param dy [in] (B, L, D). \param x [in] (B, L, D) the forward input.
/// \param dx [out] (B, L, D), overwritten; may alias dy.
template <execution_space Space, class DY, class X, class DX>
  requires(view_accessible_from<DY, Space> && view_accessible_from<X, Space> &&
           view_accessible_from<DX, Space>)
void silu_backward(Space const& space, DY const& dy, X const& x, DX const& dx) {
  static_assert(DY::rank() == 3 && X::rank() == 3 && DX::rank() == 3,
                "hax::nn::silu_backward: dy, x and dx must be rank 3 (B, L, D)");
  impl::require_same_shape("hax::nn::silu_backward", "dy", dy, "x", x);
  impl::require_same_shape("hax::nn::silu_backward", "dy", dy, "dx", dx);
  core::for_each_row_major(
      "hax::nn::silu_backward", space, dx.extent_int(0), dx.extent_int(1), dx.extent_int(2),
      KOKKOS_LAMBDA(int b, int t, int d) {
        dx(b, t, d) = dy(b, t, d) * silu_derivative(x(b, t, d));
      });
}

/// Overload on the default instance of dx's execution space.
template <class DY, class X, class DX>
void silu_backward(DY const& dy, X const& x, DX const& dx) {
  silu_backward(typename DX::execution_space{}, dy, x, dx);
}

/// y = softplus(x), elementwise, with PyTorch's threshold (x > 20 → x).
/// \param x [in] (B, L, D). \param y [out] (B, L, D), overwritten; may alias x.
/// Saved for backward: x.
template <execution_space Space, class X, class Y>
  requires(view_accessible_from<X, Space> && view_accessible_from<Y, Space>)
void softplus_forward(Space const& space, X const& x, Y const& y) {
  static_assert(X::rank() == 3 && Y::rank() == 3,
                "hax::nn::softplus_forward: x and y must be rank 3 (B, L, D)");
  impl::require_same_shape("hax::nn::softplus_forward", "x", x, "y", y);
  core::for_each_row_major(
      "hax::nn::softplus_forward", space, y.extent_int(0), y.extent_int(1), y.extent_int(2),
      KOKKOS_LAMBDA(int b, int t, int d) { y(b, t, d) = softplus(x(b, t, d)); });
}

/// Overload on the default instance of y's execution space.
template <class X, class Y>
void softplus_forward(X const& x, Y const& y) {
  softplus_forward(typename Y::execution_space{}, x, y);
}

/// dx = dy · softplus'(x) (written): dy·σ(x), or dy above the threshold.
/// \param dy [in] (B, L, D). \param x [in] (B, L, D). \param dx [out] (B, L, D); may alias dy.
template <execution_space Space, class DY, class X, class DX>
  requires(view_accessible_from<DY, Space> && view_accessible_from<X, Space> &&
           view_accessible_from<DX, Space>)
void softplus_backward(Space const& space, DY const& dy, X const& x, DX const& dx) {
  static_assert(DY::rank() == 3 && X::rank() == 3 && DX::rank() == 3,
                "hax::nn::softplus_backward: dy, x and dx must be rank 3 (B, L, D)");
  impl::require_same_shape("hax::nn::softplus_backward", "dy", dy, "x", x);
  impl::require_same_shape("hax::nn::softplus_backward", "dy", dy, "dx", dx);
  core::for_each_row_major(
      "hax::nn::softplus_backward", space, dx.extent_int(0), dx.extent_int(1), dx.extent_int(2),
      KOKKOS_LAMBDA(int b, int t, int d) {
        dx(b, t, d) = dy(b, t, d) * softplus_derivative(x(b, t, d));
      });
}

/// Overload on the default instance of dx's execution space.
template <class DY, class X, class DX>
void softplus_backward(DY const& dy, X const& x, DX const& dx) {
  softplus_backward(typename DX::execution_space{}, dy, x, dx);
}

}  // namespace hax::nn
