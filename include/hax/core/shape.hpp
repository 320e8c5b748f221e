// SPDX-License-Identifier: MIT
/// \file
/// Host-side helpers for argument checks: a View's extents printed as "(2, 7, 16)", so that an
/// error message can name the shapes it compares, and an extent-by-extent comparison.
#pragma once

#include <cstddef>
#include <string>

namespace hax::core {

/// The extents of `v` as "(e0, e1, ...)"; "()" for a rank-0 View.
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

/// True when `a` and `b` have the same rank and extents.
template <class A, class B>
bool same_shape(A const& a, B const& b) {
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

}  // namespace hax::core
