// SPDX-License-Identifier: MIT
/// \file
/// Host-side helpers for the argument checks of the dense nn ops (linear, embedding,
/// cross-entropy): a View's extents printed as "(6, 5)", so error messages can name both shapes.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <string>

namespace hax::nn::impl {

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

}  // namespace hax::nn::impl
