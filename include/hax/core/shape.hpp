// SPDX-License-Identifier: MIT
/// \file
/// Host-side helpers for argument checks: a View's extents printed as "(2, 7, 16)", so that an
/// error message can name the shapes it compares, an extent-by-extent comparison, and the check
/// that two Views have one shape.
#pragma once

#include <hax/core/error.hpp>

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

/// Throws hax::invalid_argument naming `op`, both Views and their shapes unless `a` and `b` have
/// the same shape.
template <class A, class B>
void require_same_shape(char const* op, char const* a_name, A const& a, char const* b_name,
                        B const& b) {
  require(same_shape(a, b), op, a_name, " ", shape_of(a), " and ", b_name, " ", shape_of(b),
          " must have the same shape");
}

}  // namespace hax::core
