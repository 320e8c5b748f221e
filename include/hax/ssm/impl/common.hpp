// SPDX-License-Identifier: MIT
/// \file
/// Pieces shared by the state-space kernels: softplus and its derivative in device code, the
/// shape printer for error messages, and the run-time N to compile-time state capacity switch that
/// lets a thread keep its N-vector of state in registers / on its stack.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstddef>
#include <hax/core/error.hpp>
#include <string>
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

/// The extents of `v` as "(e0, e1, ...)".
template <class View>
std::string shape_of(View const& v) {
  std::string out = "(";
  for (std::size_t r = 0; r < View::rank(); ++r) {
    if (r > 0) {
      out += ", ";
    }
    out += std::to_string(v.extent(r));
  }
  return out + ")";
}

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
inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace hax::ssm::impl
