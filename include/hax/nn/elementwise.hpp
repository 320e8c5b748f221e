// SPDX-License-Identifier: MIT
/// \file
/// The small set of fused elementwise ops the mixers need, each with its backward, over (B, L, D)
/// LayoutRight activations:
///   - silu_gate:        y = a ⊙ SiLU(z)              (the Mamba output gate),
///   - add:              y = a + b                   (residual add; y may alias a or b),
///   - gated_scale_add:  y = a + b ⊙ e ⊙ SiLU(z)      (the HAX branch: scan + attn ⊙ E ⊙ SiLU(z)),
///                       e a per-channel vector (D).
/// Each forward is one pass over memory; each backward computes every gradient of its op in one
/// pass (the gate's SiLU is recomputed from z rather than saved).
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/dispatch.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/nn/activation.hpp>
#include <hax/nn/impl/shape.hpp>

namespace hax::nn {

/// y = a ⊙ silu(z).
/// \param space [in] execution-space instance; asynchronous on it.
/// \param a [in] (B, L, D). \param z [in] (B, L, D) gate pre-activation.
/// \param y [out] (B, L, D), overwritten; may alias a or z.
/// Saved for backward: a and z.
template <execution_space Space, class A, class Z, class Y>
  requires(view_accessible_from<A, Space> && view_accessible_from<Z, Space> &&
           view_accessible_from<Y, Space>)
void silu_gate_forward(Space const& space, A const& a, Z const& z, Y const& y) {
  static_assert(A::rank() == 3 && Z::rank() == 3 && Y::rank() == 3,
                "hax::nn::silu_gate_forward: a, z and y must be rank 3 (B, L, D)");
  constexpr char const* op = "hax::nn::silu_gate_forward";
  impl::require_same_shape(op, "a", a, "z", z);
  impl::require_same_shape(op, "a", a, "y", y);
  core::for_each_row_major(
      op, space, y.extent_int(0), y.extent_int(1), y.extent_int(2),
      KOKKOS_LAMBDA(int b, int t, int d) { y(b, t, d) = a(b, t, d) * silu(z(b, t, d)); });
}

/// Overload on the default instance of y's execution space.
template <class A, class Z, class Y>
void silu_gate_forward(A const& a, Z const& z, Y const& y) {
  silu_gate_forward(typename Y::execution_space{}, a, z, y);
}

/// Backward of y = a ⊙ silu(z): da = dy ⊙ silu(z), dz = dy ⊙ a ⊙ silu'(z) (both written).
/// \param dy, a, z [in] (B, L, D). \param da, dz [out] (B, L, D); must not alias a, z or each
/// other (da may alias dy).
template <execution_space Space, class DY, class A, class Z, class DA, class DZ>
  requires(view_accessible_from<DY, Space> && view_accessible_from<A, Space> &&
           view_accessible_from<Z, Space> && view_accessible_from<DA, Space> &&
           view_accessible_from<DZ, Space>)
void silu_gate_backward(Space const& space, DY const& dy, A const& a, Z const& z, DA const& da,
                        DZ const& dz) {
  static_assert(DY::rank() == 3 && A::rank() == 3 && Z::rank() == 3 && DA::rank() == 3 &&
                    DZ::rank() == 3,
                "hax::nn::silu_gate_backward: dy, a, z, da and dz must be rank 3 (B, L, D)");
  constexpr char const* op = "hax::nn::silu_gate_backward";
  impl::require_same_shape(op, "dy", dy, "a", a);
  impl::require_same_shape(op, "dy", dy, "z", z);
  impl::require_same_shape(op, "dy", dy, "da", da);
  impl::require_same_shape(op, "dy", dy, "dz", dz);
  using value_type = typename DA::non_const_value_type;
  core::for_each_row_major(
      op, space, dy.extent_int(0), dy.extent_int(1), dy.extent_int(2), KOKKOS_LAMBDA(int b, int t, int d) {
        value_type const g = dy(b, t, d);
        value_type const zz = z(b, t, d);
        value_type const aa = a(b, t, d);
        da(b, t, d) = g * silu(zz);
        dz(b, t, d) = g * aa * silu_derivative(zz);
      });
}

/// Overload on the default instance of da's execution space.
template <class DY, class A, class Z, class DA, class DZ>
void silu_gate_backward(DY const& dy, A const& a, Z const& z, DA const& da, DZ const& dz) {
  silu_gate_backward(typename DA::execution_space{}, dy, a, z, da, dz);
}

/// y = a + b (residual add). y may alias a or b, so `add_forward(space, x, y, y)` is y += x.
/// \param a, b [in] (B, L, D). \param y [out] (B, L, D), overwritten. Nothing is saved.
template <execution_space Space, class A, class B, class Y>
  requires(view_accessible_from<A, Space> && view_accessible_from<B, Space> &&
           view_accessible_from<Y, Space>)
void add_forward(Space const& space, A const& a, B const& b, Y const& y) {
  static_assert(A::rank() == 3 && B::rank() == 3 && Y::rank() == 3,
                "hax::nn::add_forward: a, b and y must be rank 3 (B, L, D)");
  constexpr char const* op = "hax::nn::add_forward";
  impl::require_same_shape(op, "a", a, "b", b);
  impl::require_same_shape(op, "a", a, "y", y);
  core::for_each_row_major(
      op, space, y.extent_int(0), y.extent_int(1), y.extent_int(2),
      KOKKOS_LAMBDA(int i, int t, int d) { y(i, t, d) = a(i, t, d) + b(i, t, d); });
}

/// Overload on the default instance of y's execution space.
template <class A, class B, class Y>
void add_forward(A const& a, B const& b, Y const& y) {
  add_forward(typename Y::execution_space{}, a, b, y);
}

/// Backward of y = a + b: the residual stream's gradient accumulates, dx += dy (llm.c's
/// residual_backward). The gradient of the other operand is dy itself, which callers pass on
/// without a copy. dx may not alias dy.
/// \param dy [in] (B, L, D). \param dx [in,out] (B, L, D), accumulated (+=).
template <execution_space Space, class DY, class DX>
  requires(view_accessible_from<DY, Space> && view_accessible_from<DX, Space>)
void add_backward(Space const& space, DY const& dy, DX const& dx) {
  static_assert(DY::rank() == 3 && DX::rank() == 3,
                "hax::nn::add_backward: dy and dx must be rank 3 (B, L, D)");
  constexpr char const* op = "hax::nn::add_backward";
  impl::require_same_shape(op, "dy", dy, "dx", dx);
  core::for_each_row_major(
      op, space, dx.extent_int(0), dx.extent_int(1), dx.extent_int(2),
      KOKKOS_LAMBDA(int i, int t, int d) { dx(i, t, d) += dy(i, t, d); });
}

/// Overload on the default instance of dx's execution space.
template <class DY, class DX>
void add_backward(DY const& dy, DX const& dx) {
  add_backward(typename DX::execution_space{}, dy, dx);
}

/// y = a + b ⊙ e ⊙ silu(z), with e a per-channel vector: the HAX branch added to the scan output
/// (scan + attn ⊙ E ⊙ SiLU(z)).
/// \param a [in] (B, L, D) scan output. \param b [in] (B, L, D) attention output.
/// \param e [in] (D) per-channel scale. \param z [in] (B, L, D) gate pre-activation.
/// \param y [out] (B, L, D), overwritten; may alias a (in place onto the scan output).
/// Saved for backward: b, e, z (a is not needed).
template <execution_space Space, class A, class B, class E, class Z, class Y>
  requires(view_accessible_from<A, Space> && view_accessible_from<B, Space> &&
           view_accessible_from<E, Space> && view_accessible_from<Z, Space> &&
           view_accessible_from<Y, Space>)
void gated_scale_add_forward(Space const& space, A const& a, B const& b, E const& e, Z const& z,
                             Y const& y) {
  static_assert(A::rank() == 3 && B::rank() == 3 && Z::rank() == 3 && Y::rank() == 3,
                "hax::nn::gated_scale_add_forward: a, b, z and y must be rank 3 (B, L, D)");
  static_assert(E::rank() == 1, "hax::nn::gated_scale_add_forward: e must be rank 1 (D)");
  constexpr char const* op = "hax::nn::gated_scale_add_forward";
  impl::require_same_shape(op, "a", a, "b", b);
  impl::require_same_shape(op, "a", a, "z", z);
  impl::require_same_shape(op, "a", a, "y", y);
  core::require(e.extent(0) == a.extent(2), op, "e ", impl::shape_of(e),
                " needs one entry per channel of a ", impl::shape_of(a));
  core::for_each_row_major(
      op, space, y.extent_int(0), y.extent_int(1), y.extent_int(2), KOKKOS_LAMBDA(int i, int t, int d) {
        y(i, t, d) = a(i, t, d) + b(i, t, d) * e(d) * silu(z(i, t, d));
      });
}

/// Overload on the default instance of y's execution space.
template <class A, class B, class E, class Z, class Y>
void gated_scale_add_forward(A const& a, B const& b, E const& e, Z const& z, Y const& y) {
  gated_scale_add_forward(typename Y::execution_space{}, a, b, e, z, y);
}

namespace impl {

// Inside KOKKOS_LAMBDA the compile-time flags are tested with a plain `if`, not `if constexpr`:
// nvcc rejects an extended lambda that first captures a View inside an `if constexpr` branch.
// The flag is a constant, so the dead branch is still folded away; both branches compile for
// every instantiation.

/// The one-pass kernel of gated_scale_add_backward (a free function, so that KOKKOS_LAMBDA is
/// never inside the generic lambda of dispatch_bool, which nvcc rejects).
template <bool kHasDa, class Space, class DY, class B, class E, class Z, class DA, class DB,
          class DE, class DZ>
void gated_scale_add_backward_kernel(Space const& space, DY const& dy, B const& b, E const& e,
                                     Z const& z, DA const& maybe_da, DB const& db, DE const& de,
                                     DZ const& dz) {
  int const n_batch = dy.extent_int(0);
  int const L = dy.extent_int(1);
  int const D = dy.extent_int(2);
  int const chunks = (L + kRowsPerChunk - 1) / kRowsPerChunk;
  using value_type = typename DB::non_const_value_type;
  core::for_each_row_major(
      "hax::nn::gated_scale_add_backward", space, n_batch, chunks, D,
      KOKKOS_LAMBDA(int i, int c, int d) {
        int const begin = c * kRowsPerChunk;
        int const end = begin + kRowsPerChunk < L ? begin + kRowsPerChunk : L;
        value_type const ed = e(d);
        value_type de_sum = 0;  // this chunk's share of de(d): one atomic instead of one per row
        for (int t = begin; t < end; ++t) {
          value_type const g = dy(i, t, d);
          value_type const zz = z(i, t, d);
          value_type const bb = b(i, t, d);
          value_type const s = silu(zz);
          if (kHasDa) {
            maybe_da(i, t, d) = g;
          }
          db(i, t, d) = g * ed * s;
          dz(i, t, d) = g * bb * ed * silu_derivative(zz);
          de_sum += g * bb * s;
        }
        Kokkos::atomic_add(&de(d), de_sum);
      });
}

}  // namespace impl

/// Backward of y = a + b ⊙ e ⊙ silu(z), one pass over memory:
///   da  = dy                         (written; only when maybe_da is allocated, since callers
///                                     can usually pass dy on instead of copying it),
///   db  = dy ⊙ e ⊙ silu(z)           (written),
///   dz  = dy ⊙ b ⊙ e ⊙ silu'(z)      (written),
///   de += Σ_{b,t} dy ⊙ b ⊙ silu(z)   (accumulated).
/// Work items are (batch, chunk of kRowsPerChunk positions, channel); each sums its chunk and
/// adds it to de with one atomic, so de's float sum order is unspecified.
/// \param dy, b, z [in] (B, L, D). \param e [in] (D).
/// \param maybe_da [out] (B, L, D) or empty. \param db, dz [out] (B, L, D).
/// \param de [in,out] (D). The outputs must not alias the inputs (maybe_da may alias dy).
template <execution_space Space, class DY, class B, class E, class Z, class DA, class DB,
          class DE, class DZ>
  requires(view_accessible_from<DY, Space> && view_accessible_from<B, Space> &&
           view_accessible_from<E, Space> && view_accessible_from<Z, Space> &&
           view_accessible_from<DA, Space> && view_accessible_from<DB, Space> &&
           view_accessible_from<DE, Space> && view_accessible_from<DZ, Space>)
void gated_scale_add_backward(Space const& space, DY const& dy, B const& b, E const& e,
                              Z const& z, DA const& maybe_da, DB const& db, DE const& de,
                              DZ const& dz) {
  static_assert(DY::rank() == 3 && B::rank() == 3 && Z::rank() == 3 && DA::rank() == 3 &&
                    DB::rank() == 3 && DZ::rank() == 3,
                "hax::nn::gated_scale_add_backward: dy, b, z, maybe_da, db and dz must be rank 3 "
                "(B, L, D)");
  static_assert(E::rank() == 1 && DE::rank() == 1,
                "hax::nn::gated_scale_add_backward: e and de must be rank 1 (D)");
  constexpr char const* op = "hax::nn::gated_scale_add_backward";
  impl::require_same_shape(op, "dy", dy, "b", b);
  impl::require_same_shape(op, "dy", dy, "z", z);
  impl::require_same_shape(op, "dy", dy, "db", db);
  impl::require_same_shape(op, "dy", dy, "dz", dz);
  bool const has_da = maybe_da.is_allocated();
  core::require(!has_da || impl::same_shape(dy, maybe_da), op, "maybe_da ",
                impl::shape_of(maybe_da), " must be empty or have dy's shape ", impl::shape_of(dy));
  core::require(e.extent(0) == dy.extent(2) && de.extent(0) == dy.extent(2), op, "e ",
                impl::shape_of(e), " and de ", impl::shape_of(de),
                " need one entry per channel of dy ", impl::shape_of(dy));
  core::dispatch_bool(has_da, [&]<bool kHasDa>() {
    impl::gated_scale_add_backward_kernel<kHasDa>(space, dy, b, e, z, maybe_da, db, de, dz);
  });
}

/// Overload on the default instance of db's execution space.
template <class DY, class B, class E, class Z, class DA, class DB, class DE, class DZ>
void gated_scale_add_backward(DY const& dy, B const& b, E const& e, Z const& z,
                              DA const& maybe_da, DB const& db, DE const& de, DZ const& dz) {
  gated_scale_add_backward(typename DB::execution_space{}, dy, b, e, z, maybe_da, db, de, dz);
}

}  // namespace hax::nn
