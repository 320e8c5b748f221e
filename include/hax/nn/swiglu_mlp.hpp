// SPDX-License-Identifier: MIT
/// \file
/// The SwiGLU MLP of the Samba blocks (fla's GatedMLP, no biases), forward and hand-written
/// backward over (B, L, D) LayoutRight activations:
///   g = x·W_gateᵀ,  u = x·W_upᵀ  (B, L, I);   h = SiLU(g) ⊙ u;   y = h·W_downᵀ  (B, L, D).
/// The three GEMMs go through nn::linear (KokkosBlas::gemm). The forward saves g and u; the
/// backward recomputes h from them instead of keeping a third (B, L, I) tensor. Derivation:
/// docs/math/samba.md.
#pragma once

#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/views.hpp>
#include <hax/nn/elementwise.hpp>
#include <hax/nn/impl/shape.hpp>
#include <hax/nn/linear.hpp>

#include <string>

namespace hax::nn {

namespace impl {

template <class X, class WG, class WU, class WD, class G, class U>
void swiglu_check(char const* op, X const& x, WG const& w_gate, WU const& w_up, WD const& w_down,
                  G const& gate, U const& up) {
  static_assert(X::rank() == 3 && G::rank() == 3 && U::rank() == 3,
                "hax::nn::swiglu_mlp: x, gate and up must be rank 3 (B, L, D) / (B, L, I)");
  static_assert(WG::rank() == 2 && WU::rank() == 2 && WD::rank() == 2,
                "hax::nn::swiglu_mlp: the weights must be rank 2 (I, D), (I, D), (D, I)");
  auto const D = x.extent(2), I = w_gate.extent(0);
  core::require(w_gate.extent(1) == D && w_up.extent(0) == I && w_up.extent(1) == D, op,
                "w_gate ", shape_of(w_gate), " and w_up ", shape_of(w_up),
                " must both be (I, D) with D = ", D, " the width of x ", shape_of(x));
  core::require(w_down.extent(0) == D && w_down.extent(1) == I, op, "w_down ", shape_of(w_down),
                " must be (D, I) = (", D, ", ", I, ")");
  core::require(gate.extent(0) == x.extent(0) && gate.extent(1) == x.extent(1) &&
                    gate.extent(2) == I && same_shape(gate, up),
                op, "gate ", shape_of(gate), " and up ", shape_of(up), " must be (B, L, I) = (",
                x.extent(0), ", ", x.extent(1), ", ", I, ")");
}

}  // namespace impl

/// SwiGLU MLP forward: y = (SiLU(x·W_gateᵀ) ⊙ x·W_upᵀ)·W_downᵀ.
///
/// \param space [in] execution-space instance; asynchronous on it (allocates one (B, L, I)
///   temporary on it).
/// \param x [in] (B, L, D), contiguous LayoutRight.
/// \param w_gate, w_up [in] (I, D). \param w_down [in] (D, I).
/// \param gate, up [out] (B, L, I): the pre-activations, written; keep them for the backward.
/// \param y [out] (B, L, D), overwritten; must not alias x.
/// Throws hax::invalid_argument for mismatched shapes.
template <execution_space Space, class X, class WG, class WU, class WD, class G, class U, class Y>
  requires(view_accessible_from<X, Space> && view_accessible_from<WG, Space> &&
           view_accessible_from<WU, Space> && view_accessible_from<WD, Space> &&
           view_accessible_from<G, Space> && view_accessible_from<U, Space> &&
           view_accessible_from<Y, Space>)
void swiglu_mlp_forward(Space const& space, X const& x, WG const& w_gate, WU const& w_up,
                        WD const& w_down, G const& gate, U const& up, Y const& y) {
  constexpr char const* op = "hax::nn::swiglu_mlp_forward";
  static_assert(Y::rank() == 3, "hax::nn::swiglu_mlp_forward: y must be rank 3 (B, L, D)");
  impl::swiglu_check(op, x, w_gate, w_up, w_down, gate, up);
  impl::require_same_shape(op, "x", x, "y", y);
  using T = typename Y::non_const_value_type;
  auto const h = uninitialized_view<T***>(space, "hax::nn::swiglu_mlp::h", gate.extent(0),
                                          gate.extent(1), gate.extent(2));  // (B, L, I)
  Kokkos::View<T*, typename Space::memory_space> no_bias;  // empty: the MLP has no biases
  linear_forward(space, as_rows(x), w_gate, no_bias, as_rows(gate));
  linear_forward(space, as_rows(x), w_up, no_bias, as_rows(up));
  silu_gate_forward(space, up, gate, h);  // h = up ⊙ SiLU(gate)
  linear_forward(space, as_rows(h), w_down, no_bias, as_rows(y));
}

/// Overload on the default instance of y's execution space.
template <class X, class WG, class WU, class WD, class G, class U, class Y>
  requires(Kokkos::is_view_v<Y>)
void swiglu_mlp_forward(X const& x, WG const& w_gate, WU const& w_up, WD const& w_down,
                        G const& gate, U const& up, Y const& y) {
  swiglu_mlp_forward(typename Y::execution_space{}, x, w_gate, w_up, w_down, gate, up, y);
}

/// SwiGLU MLP backward (llm.c contract): dx written (=), dw_gate, dw_up, dw_down accumulated (+=).
///   h = SiLU(g) ⊙ u (recomputed);  dW_down += dyᵀ·h;  dh = dy·W_down;
///   du = dh ⊙ SiLU(g);  dg = dh ⊙ u ⊙ SiLU'(g);
///   dx = dg·W_gate + du·W_up;  dW_gate += dgᵀ·x;  dW_up += duᵀ·x.
///
/// \param space [in] execution-space instance; asynchronous on it (two (B, L, I) temporaries).
/// \param dy [in] (B, L, D). \param x, gate, up [in] the forward's input and saved pre-activations.
/// \param dx [out] (B, L, D), overwritten; must not alias dy or x.
/// \param dw_gate, dw_up [in,out] (I, D). \param dw_down [in,out] (D, I).
template <execution_space Space, class DY, class X, class WG, class WU, class WD, class G, class U,
          class DX, class DWG, class DWU, class DWD>
  requires(view_accessible_from<DY, Space> && view_accessible_from<X, Space> &&
           view_accessible_from<G, Space> && view_accessible_from<U, Space> &&
           view_accessible_from<DX, Space> && view_accessible_from<DWG, Space> &&
           view_accessible_from<DWU, Space> && view_accessible_from<DWD, Space>)
void swiglu_mlp_backward(Space const& space, DY const& dy, X const& x, WG const& w_gate,
                         WU const& w_up, WD const& w_down, G const& gate, U const& up, DX const& dx,
                         DWG const& dw_gate, DWU const& dw_up, DWD const& dw_down) {
  constexpr char const* op = "hax::nn::swiglu_mlp_backward";
  static_assert(DY::rank() == 3 && DX::rank() == 3,
                "hax::nn::swiglu_mlp_backward: dy and dx must be rank 3 (B, L, D)");
  impl::swiglu_check(op, x, w_gate, w_up, w_down, gate, up);
  impl::require_same_shape(op, "x", x, "dy", dy);
  impl::require_same_shape(op, "x", x, "dx", dx);
  core::require(impl::same_shape(dw_gate, w_gate) && impl::same_shape(dw_up, w_up) &&
                    impl::same_shape(dw_down, w_down),
                op, "dw_gate ", impl::shape_of(dw_gate), ", dw_up ", impl::shape_of(dw_up),
                ", dw_down ", impl::shape_of(dw_down), " must match their weights ",
                impl::shape_of(w_gate), ", ", impl::shape_of(w_up), ", ", impl::shape_of(w_down));
  using T = typename DX::non_const_value_type;
  using buffer = Kokkos::View<T***, Kokkos::LayoutRight, typename Space::memory_space>;
  auto const B = gate.extent(0), L = gate.extent(1), I = gate.extent(2);
  // (B, L, I) each: h, then dh, then du (each dead once the next is written); dg
  auto const h_then_du = uninitialized_view<buffer>(space, "hax::nn::swiglu_mlp::dh", B, L, I);
  auto const dg = uninitialized_view<buffer>(space, "hax::nn::swiglu_mlp::dg", B, L, I);
  Kokkos::View<T*, typename Space::memory_space> no_bias;
  Kokkos::View<T**, Kokkos::LayoutRight, typename Space::memory_space> no_dx;
  auto const dy_rows = as_rows(dy);          // (B·L, D)
  auto const hbuf_rows = as_rows(h_then_du);  // (B·L, I)
  silu_gate_forward(space, up, gate, h_then_du);
  linear_backward(space, dy_rows, hbuf_rows, w_down, no_dx, dw_down, no_bias);  // dW_down += dyᵀh
  KokkosBlas::gemm(space, "N", "N", T(1), dy_rows, w_down, T(0), hbuf_rows);    // dh = dy·W_down
  silu_gate_backward(space, h_then_du, up, gate, h_then_du, dg);                // du (over dh), dg
  auto const x_rows = as_rows(x);
  auto const dx_rows = as_rows(dx);
  linear_backward(space, as_rows(dg), x_rows, w_gate, dx_rows, dw_gate, no_bias);
  linear_backward(space, hbuf_rows, x_rows, w_up, no_dx, dw_up, no_bias);
  KokkosBlas::gemm(space, "N", "N", T(1), hbuf_rows, w_up, T(1), dx_rows);  // dx += du·W_up
}

/// Overload on the default instance of dx's execution space.
template <class DY, class X, class WG, class WU, class WD, class G, class U, class DX, class DWG,
          class DWU, class DWD>
  requires(Kokkos::is_view_v<DX>)
void swiglu_mlp_backward(DY const& dy, X const& x, WG const& w_gate, WU const& w_up,
                         WD const& w_down, G const& gate, U const& up, DX const& dx,
                         DWG const& dw_gate, DWU const& dw_up, DWD const& dw_down) {
  swiglu_mlp_backward(typename DX::execution_space{}, dy, x, w_gate, w_up, w_down, gate, up, dx,
                      dw_gate, dw_up, dw_down);
}

}  // namespace hax::nn
