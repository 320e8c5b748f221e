// SPDX-License-Identifier: MIT
/// \file
/// Host-side helpers for the argument checks of the elementwise, activation, RMSNorm and conv1d
/// ops: a View's extents printed as "(2, 7, 16)", and an extent-by-extent comparison.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <string>

namespace hax::nn::impl {

/// The extents of `v` as "(e0, e1, ...)"; "()" for a rank-0 View.
template <class View>
std::string dims_of(View const& v) {
  std::string out = "(";
  for (std::size_t r = 0; r < View::rank(); ++r) {
    if (r > 0) {
      out += ", ";
    }
    out += std::to_string(v.extent(r));
  }
  return out + ")";
}

/// True when `a` and `b` have the same rank and extents.
template <class A, class B>
bool same_dims(A const& a, B const& b) {
  if (A::rank() != B::rank()) {
    return false;
  }
  for (std::size_t r = 0; r < A::rank(); ++r) {
    if (a.extent(r) != b.extent(r)) {
      return false;
    }
  }
  return true;
}

/// Rows per work item of the column sums of parameter gradients (dw of RMSNorm, de of the scaled
/// gate): enough rows to amortise one atomic per column and chunk, few enough that B·L = 67 648
/// rows still give every thread (and every GPU warp) work.
inline constexpr int kRowsPerChunk = 128;

}  // namespace hax::nn::impl
