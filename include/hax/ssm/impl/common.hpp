// SPDX-License-Identifier: MIT
/// \file
/// Pieces shared by the state-space kernels: softplus and its derivative in device code, the
/// shape printer for error messages (core::shape_of), the run-time N to compile-time state
/// capacity switch that lets a thread keep its N-vector of state in registers / on its stack, the
/// flat-index split of the thread-per-element kernels, and the per-state step of the scan's
/// reverse sweep.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstddef>
#include <cstdint>
#include <hax/core/error.hpp>
#include <hax/core/shape.hpp>
#include <type_traits>

namespace hax::ssm::impl {

/// softplus(x) = log(1 + e^x), evaluated without overflow (as torch.nn.functional.softplus with
/// threshold 20: above it, softplus(x) = x to within rounding).
template <class T>
KOKKOS_INLINE_FUNCTION T softplus(T x) {
  return x > T(20) ? x : Kokkos::log1p(Kokkos::exp(x));
}

/// d softplus / dx = sigmoid(x).
template <class T>
KOKKOS_INLINE_FUNCTION T sigmoid(T x) {
  return T(1) / (T(1) + Kokkos::exp(-x));
}

using core::shape_of;

/// Largest state size N (scan) supported by the per-thread state arrays.
inline constexpr int kMaxStateSize = 256;

/// Calls f.template operator()<kCap>() with the smallest capacity kCap in {16, 64, 256} that holds
/// n; throws hax::invalid_argument naming `op` when n exceeds kMaxStateSize.
template <class F>
void dispatch_capacity(int n, char const* op, F&& f) {
  core::require(n <= kMaxStateSize, op, "state size N = ", n, " exceeds the supported maximum ",
                kMaxStateSize);
  if (n <= 16) {
    f.template operator()<16>();
  } else if (n <= 64) {
    f.template operator()<64>();
  } else {
    f.template operator()<256>();
  }
}

/// A read-only LayoutRight View parameter whose type is not deduced (std::type_identity_t), so
/// callers can pass non-const Views; T and the memory space are deduced from other arguments.
template <class DataType, class MemorySpace>
using const_view = std::type_identity_t<Kokkos::View<DataType, Kokkos::LayoutRight, MemorySpace>>;

/// ceil(a / b) for positive b.
KOKKOS_INLINE_FUNCTION int ceil_div(int a, int b) { return (a + b - 1) / b; }

/// The steps of row b that are present (SsdInputs::lengths, SelectiveScanInputs::lengths):
/// lengths(b) clamped to [0, L], or L without lengths (an empty View).
template <class Lengths>
KOKKOS_INLINE_FUNCTION int present_steps(Lengths const& lengths, int b, int L) {
  return lengths.extent(0) == 0 ? L : Kokkos::min(Kokkos::max(lengths(b), 0), L);
}

/// A flat thread index split into three coordinates, the innermost fastest.
struct Index3 {
  int outer;
  int middle;
  int inner;
};

/// Splits i = (outer · n_middle + middle) · n_inner + inner. 64-bit, because the scan kernels'
/// thread counts (B · chunks · D, with chunk 1) can pass 2^31; each coordinate fits an int.
KOKKOS_INLINE_FUNCTION Index3 split_index3(std::int64_t i, int n_middle, int n_inner) {
  std::int64_t const rest = i / n_inner;
  return {static_cast<int>(rest / n_middle), static_cast<int>(rest % n_middle),
          static_cast<int>(i % n_inner)};
}

/// One state's terms of the selective scan's reverse sweep at step t (docs/math/selective_scan.md),
/// shared by both layouts' backward kernels.
template <class T>
struct StateAdjoint {
  T total;  ///< G = g + dy_t C_t[n]: dLoss/dh_t[n]
  T d_dt;   ///< G (A e h_{t-1} + B_t u_t): this state's share of dLoss/d dt_t
  T d_u;    ///< G dt B_t: its share of dLoss/du_t
  T d_A;    ///< G dt e h_{t-1}: its term of dLoss/dA[n]
  T carry;  ///< G e: the adjoint that reaches h_{t-1}
};

/// The terms for state n: g the adjoint carried from later steps, h_prev = h_{t-1}[n], a = A[n],
/// e = exp(dt a), b = B_t[n], c = C_t[n].
template <class T>
KOKKOS_INLINE_FUNCTION StateAdjoint<T> state_adjoint(T g, T h_prev, T a, T e, T b, T c, T dt, T u,
                                                     T dy) {
  T const G = g + dy * c;
  return {G, G * (a * e * h_prev + b * u), G * dt * b, G * dt * e * h_prev, G * e};
}

}  // namespace hax::ssm::impl
