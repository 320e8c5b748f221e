// SPDX-License-Identifier: MIT
/// \file
/// Linear layer y = x·Wᵀ (+ b) with W (out, in) as in PyTorch, forward and hand-written backward,
/// every GEMM through KokkosBlas::gemm (native Kokkos Kernels on host backends, cuBLAS underneath
/// on CUDA). Also `as_rows`, which views (B, L, D) activations as (B*L, D) rows of tokens.
/// The derivation is in docs/math/linear.md.
#pragma once

#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/dispatch.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/nn/impl/shape.hpp>

#include <type_traits>

namespace hax::nn {

/// Unmanaged rank-2 View type on the same data as a rank-3 LayoutRight View `V`.
template <class V>
using rows_view_t = Kokkos::View<typename V::value_type**, Kokkos::LayoutRight,
                                 typename V::device_type, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

/// Views (B, L, D) activations as (B*L, D) rows, without a copy: an unmanaged View on the same
/// data (the caller keeps `v` alive). `v` must be LayoutRight and contiguous (not a strided
/// subview); throws hax::invalid_argument otherwise.
template <class V>
  requires(Kokkos::is_view_v<V> && V::rank() == 3)
rows_view_t<V> as_rows(V const& v) {
  static_assert(std::is_same_v<typename V::array_layout, Kokkos::LayoutRight>,
                "hax::nn::as_rows: the View must be LayoutRight (B, L, D)");
  core::require(v.span_is_contiguous(), "hax::nn::as_rows",
                "the View must be contiguous to be seen as rows, got a strided View of shape ",
                impl::shape_of(v));
  return rows_view_t<V>(v.data(), v.extent(0) * v.extent(1), v.extent(2));
}

/// Rows [first, last) of a (N, K) LayoutRight weight: the weight of output features first .. last − 1
/// as its own contiguous (last − first, K) matrix, no copy. A packed projection ([z | x | …] = x·Wᵀ)
/// then runs as one linear_forward per block, each straight into its own output.
template <class W>
  requires(Kokkos::is_view_v<W> && W::rank() == 2)
auto output_rows(W const& w, int first, int last) {
  static_assert(std::is_same_v<typename W::array_layout, Kokkos::LayoutRight>,
                "hax::nn::output_rows: the weight must be LayoutRight (out, in)");
  return Kokkos::subview(w, Kokkos::pair<int, int>(first, last), Kokkos::ALL);
}

namespace impl {

/// y(m, n) = b(n): the bias is written first so the GEMM can accumulate onto it (beta = 1); that
/// costs the same one pass over y as adding it afterwards, and keeps y's last write the GEMM's.
template <bool kHasBias, class Space, class B, class Y>
void linear_bias_broadcast(Space const& space, B b, Y y) {
  if constexpr (kHasBias) {
    int const M = y.extent_int(0);
    int const N = y.extent_int(1);
    core::for_each_row_major("hax::nn::linear_forward::bias", space, M, N,
                             KOKKOS_LAMBDA(int m, int n) { y(m, n) = b(n); });
  }
}

/// Rows per work item of the bias-gradient column sum: enough to amortise one atomic per column
/// and chunk, small enough to give every thread work at M = 67 648.
inline constexpr int kBiasGradRowsPerChunk = 256;

/// db(n) += Σ_m dy(m, n). Rows are cut into chunks; each (chunk, n) work item sums its column
/// slice and adds it with one atomic, so neighbouring work items read neighbouring columns of the
/// same rows. The order of the atomic additions is unspecified: in float the result can differ
/// in the last bits from run to run on GPUs (on OpenMP too, across thread counts).
template <bool kHasBias, class Space, class DY, class DB>
void linear_bias_grad(Space const& space, DY dy, DB db) {
  if constexpr (kHasBias) {
    int const M = dy.extent_int(0);
    int const N = dy.extent_int(1);
    int const chunks = (M + kBiasGradRowsPerChunk - 1) / kBiasGradRowsPerChunk;
    using value_type = typename DB::non_const_value_type;
    core::for_each_row_major(
        "hax::nn::linear_backward::bias", space, chunks, N, KOKKOS_LAMBDA(int c, int n) {
          int const begin = c * kBiasGradRowsPerChunk;
          int const end = begin + kBiasGradRowsPerChunk < M ? begin + kBiasGradRowsPerChunk : M;
          value_type sum = 0;
          for (int m = begin; m < end; ++m) {
            sum += dy(m, n);
          }
          Kokkos::atomic_add(&db(n), sum);
        });
  }
}

}  // namespace impl

/// Forward of a linear layer: y = x·Wᵀ (+ b), i.e. y(m, n) = Σ_k x(m, k) W(n, k) (+ b(n)).
///
/// \param space [in] execution-space instance; the op is asynchronous on it (no fence).
/// \param x [in] (M, K) input rows (callers flatten (B, L, K) with as_rows).
/// \param w [in] (N, K) weight, PyTorch's (out_features, in_features).
/// \param maybe_bias [in] (N) bias, or an empty View (is_allocated() false) for no bias.
/// \param y [out] (M, N) output, overwritten. Must not alias x.
/// Saved for backward: x (and w). Throws hax::invalid_argument on mismatched shapes.
template <execution_space Space, class X, class W, class Bias, class Y>
  requires(view_accessible_from<X, Space> && view_accessible_from<W, Space> &&
           view_accessible_from<Bias, Space> && view_accessible_from<Y, Space>)
void linear_forward(Space const& space, X const& x, W const& w, Bias const& maybe_bias,
                    Y const& y) {
  static_assert(X::rank() == 2 && W::rank() == 2 && Y::rank() == 2,
                "hax::nn::linear_forward: x, w and y must be rank 2 (M, K), (N, K), (M, N)");
  static_assert(Bias::rank() == 1, "hax::nn::linear_forward: maybe_bias must be rank 1 (N)");
  constexpr char const* op = "hax::nn::linear_forward";
  core::require(x.extent(1) == w.extent(1), op, "x ", impl::shape_of(x), " vs w ",
                impl::shape_of(w), ": in_features differ");
  core::require(y.extent(0) == x.extent(0) && y.extent(1) == w.extent(0), op, "y ",
                impl::shape_of(y), " must be (rows of x, rows of w) for x ", impl::shape_of(x),
                " and w ", impl::shape_of(w));
  bool const has_bias = maybe_bias.is_allocated();
  core::require(!has_bias || maybe_bias.extent(0) == w.extent(0), op, "bias ",
                impl::shape_of(maybe_bias), " vs w ", impl::shape_of(w),
                ": bias needs one entry per output feature");
  using value_type = typename Y::non_const_value_type;
  core::dispatch_bool(has_bias, [&]<bool kHasBias>() {
    impl::linear_bias_broadcast<kHasBias>(space, maybe_bias, y);
    value_type const beta = kHasBias ? value_type(1) : value_type(0);
    KokkosBlas::gemm(space, "N", "T", value_type(1), x, w, beta, y);
  });
}

/// Overload on the default instance of y's execution space.
template <class X, class W, class Bias, class Y>
void linear_forward(X const& x, W const& w, Bias const& maybe_bias, Y const& y) {
  linear_forward(typename Y::execution_space{}, x, w, maybe_bias, y);
}

/// Backward of a linear layer, llm.c style:
///   dx  = dy·W         (written),
///   dW += dyᵀ·x        (accumulated),
///   db += Σ_rows dy    (accumulated; only when maybe_db is allocated).
///
/// \param space [in] execution-space instance; asynchronous on it.
/// \param dy [in] (M, N) gradient of the loss with respect to y.
/// \param x [in] (M, K) the forward input (saved by the caller).
/// \param w [in] (N, K) weight.
/// \param dx [out] (M, K) overwritten; pass an empty View to skip it (e.g. the first layer).
/// \param dw [in,out] (N, K) accumulated (+=).
/// \param maybe_db [in,out] (N) accumulated (+=), or an empty View when the layer has no bias.
/// db uses atomics: its float sum order is unspecified (see docs/math/linear.md).
template <execution_space Space, class DY, class X, class W, class DX, class DW, class DB>
  requires(view_accessible_from<DY, Space> && view_accessible_from<X, Space> &&
           view_accessible_from<W, Space> && view_accessible_from<DX, Space> &&
           view_accessible_from<DW, Space> && view_accessible_from<DB, Space>)
void linear_backward(Space const& space, DY const& dy, X const& x, W const& w, DX const& dx,
                     DW const& dw, DB const& maybe_db) {
  static_assert(DY::rank() == 2 && X::rank() == 2 && W::rank() == 2 && DX::rank() == 2 &&
                    DW::rank() == 2,
                "hax::nn::linear_backward: dy, x, w, dx, dw must be rank 2");
  static_assert(DB::rank() == 1, "hax::nn::linear_backward: maybe_db must be rank 1 (N)");
  constexpr char const* op = "hax::nn::linear_backward";
  core::require(x.extent(1) == w.extent(1), op, "x ", impl::shape_of(x), " vs w ",
                impl::shape_of(w), ": in_features differ");
  core::require(dy.extent(0) == x.extent(0) && dy.extent(1) == w.extent(0), op, "dy ",
                impl::shape_of(dy), " must be (rows of x, rows of w) for x ", impl::shape_of(x),
                " and w ", impl::shape_of(w));
  bool const want_dx = dx.is_allocated();
  core::require(!want_dx || (dx.extent(0) == x.extent(0) && dx.extent(1) == x.extent(1)), op,
                "dx ", impl::shape_of(dx), " vs x ", impl::shape_of(x), ": must match");
  core::require(dw.extent(0) == w.extent(0) && dw.extent(1) == w.extent(1), op, "dw ",
                impl::shape_of(dw), " vs w ", impl::shape_of(w), ": must match");
  bool const has_bias = maybe_db.is_allocated();
  core::require(!has_bias || maybe_db.extent(0) == w.extent(0), op, "db ",
                impl::shape_of(maybe_db), " vs w ", impl::shape_of(w),
                ": db needs one entry per output feature");
  using value_type = typename DW::non_const_value_type;
  if (want_dx) {
    KokkosBlas::gemm(space, "N", "N", value_type(1), dy, w, value_type(0), dx);
  }
  KokkosBlas::gemm(space, "T", "N", value_type(1), dy, x, value_type(1), dw);
  core::dispatch_bool(has_bias,
                      [&]<bool kHasBias>() { impl::linear_bias_grad<kHasBias>(space, dy, maybe_db); });
}

/// Overload on the default instance of dw's execution space.
template <class DY, class X, class W, class DX, class DW, class DB>
void linear_backward(DY const& dy, X const& x, W const& w, DX const& dx, DW const& dw,
                     DB const& maybe_db) {
  linear_backward(typename DW::execution_space{}, dy, x, w, dx, dw, maybe_db);
}

}  // namespace hax::nn
