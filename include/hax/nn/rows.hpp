// SPDX-License-Identifier: MIT
/// \file
/// Chosen rows of (B, L, D) activations: gather_rows takes, per sequence b, the rows at positions
/// (b, 0 .. R-1) into a (B, R, D) block, and scatter_rows is its backward (the rows go back to
/// their positions, every other row is zero). The model uses them to compute its output head
/// only where a loss reads it (Model::forward with positions): in joint recall that is at most
/// 256 of the 1 057 positions of an item, so the logits, their gradient and the final norm shrink
/// about fourfold. Derivation and costs: docs/math/output_rows.md.
#pragma once

#include <Kokkos_Core.hpp>

#include <type_traits>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/nn/impl/shape.hpp>

namespace hax::nn {

namespace impl {

template <class X, class P, class Y>
void check_rows_shapes(char const* op, char const* x_name, X const& x, P const& positions,
                       char const* y_name, Y const& y) {
  static_assert(X::rank() == 3 && P::rank() == 2 && Y::rank() == 3,
                "hax::nn::gather_rows / scatter_rows: activations (B, L, D), positions (B, R), "
                "rows (B, R, D)");
  static_assert(std::is_integral_v<typename P::value_type>,
                "hax::nn::gather_rows / scatter_rows: positions must be integral");
  core::require(positions.extent(0) == x.extent(0), op, "positions ", shape_of(positions),
                " must have one row per sequence of ", x_name, " ", shape_of(x));
  core::require(y.extent(0) == x.extent(0) && y.extent(1) == positions.extent(1) &&
                    y.extent(2) == x.extent(2),
                op, y_name, " ", shape_of(y), " must be (B, R, D) = (", x.extent(0), ", ",
                positions.extent(1), ", ", x.extent(2), ") for ", x_name, " ", shape_of(x),
                " and positions ", shape_of(positions));
}

}  // namespace impl

/// y(b, r, :) = x(b, positions(b, r), :), or 0 where positions(b, r) is not a position of x
/// (negative, the "no row" mark, or >= L: such a slot reads nothing).
/// \param x [in] (B, L, D). \param positions [in] (B, R) integral.
/// \param y [out] (B, R, D), written; must not alias x. Asynchronous on `space`.
template <execution_space Space, class X, class P, class Y>
  requires(view_accessible_from<X, Space> && view_accessible_from<P, Space> &&
           view_accessible_from<Y, Space>)
void gather_rows(Space const& space, X const& x, P const& positions, Y const& y) {
  constexpr char const* op = "hax::nn::gather_rows";
  impl::check_rows_shapes(op, "x", x, positions, "y", y);
  using T = typename Y::non_const_value_type;
  int const L = x.extent_int(1);
  core::for_each_row_major(
      op, space, y.extent_int(0), y.extent_int(1), y.extent_int(2),
      KOKKOS_LAMBDA(int b, int r, int d) {
        int const t = static_cast<int>(positions(b, r));
        y(b, r, d) = t >= 0 && t < L ? static_cast<T>(x(b, t, d)) : T(0);
      });
}

/// Backward of gather_rows: dx(b, t, :) = dy(b, r, :) where positions(b, r) = t, and 0 at every
/// position no slot names (written). The positions of a sequence must be distinct (as the loss
/// positions are), so that no row receives two slots; slots that name no position are skipped.
/// \param dy [in] (B, R, D). \param positions [in] (B, R). \param dx [out] (B, L, D), written.
/// Asynchronous on `space`.
template <execution_space Space, class DY, class P, class DX>
  requires(view_accessible_from<DY, Space> && view_accessible_from<P, Space> &&
           view_accessible_from<DX, Space>)
void scatter_rows(Space const& space, DY const& dy, P const& positions, DX const& dx) {
  constexpr char const* op = "hax::nn::scatter_rows";
  impl::check_rows_shapes(op, "dx", dx, positions, "dy", dy);
  using T = typename DX::non_const_value_type;
  int const L = dx.extent_int(1);
  Kokkos::deep_copy(space, dx, T(0));
  core::for_each_row_major(
      op, space, dy.extent_int(0), dy.extent_int(1), dy.extent_int(2),
      KOKKOS_LAMBDA(int b, int r, int d) {
        int const t = static_cast<int>(positions(b, r));
        if (t >= 0 && t < L) { dx(b, t, d) = static_cast<T>(dy(b, r, d)); }
      });
}

/// Overloads on the default instance of the output's execution space.
template <class X, class P, class Y>
void gather_rows(X const& x, P const& positions, Y const& y) {
  gather_rows(typename Y::execution_space{}, x, positions, y);
}
template <class DY, class P, class DX>
void scatter_rows(DY const& dy, P const& positions, DX const& dx) {
  scatter_rows(typename DX::execution_space{}, dy, positions, dx);
}

}  // namespace hax::nn
