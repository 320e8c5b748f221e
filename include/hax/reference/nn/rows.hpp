// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of hax/nn/rows.hpp: gather_rows and its backward scatter_rows over row-major
/// std::vectors, written to be read. The oracle of the rows tests.
#pragma once

#include <cstddef>
#include <vector>

namespace hax::reference::nn {

/// y (B, R, D): y(b, r, :) = x(b, positions(b, r), :) for a position in [0, L), else 0.
template <class T>
std::vector<T> gather_rows(std::vector<T> const& x, std::vector<int> const& positions,
                           std::size_t B, std::size_t L, std::size_t R, std::size_t D) {
  std::vector<T> y(B * R * D, T(0));
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t r = 0; r < R; ++r) {
      int const t = positions[b * R + r];
      if (t < 0 || static_cast<std::size_t>(t) >= L) continue;
      for (std::size_t d = 0; d < D; ++d) {
        y[(b * R + r) * D + d] = x[(b * L + t) * D + d];
      }
    }
  }
  return y;
}

/// dx (B, L, D): the rows of dy (B, R, D) at their positions, 0 at every other position.
template <class T>
std::vector<T> scatter_rows(std::vector<T> const& dy, std::vector<int> const& positions,
                            std::size_t B, std::size_t L, std::size_t R, std::size_t D) {
  std::vector<T> dx(B * L * D, T(0));
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t r = 0; r < R; ++r) {
      int const t = positions[b * R + r];
      if (t < 0 || static_cast<std::size_t>(t) >= L) continue;
      for (std::size_t d = 0; d < D; ++d) {
        dx[(b * L + t) * D + d] = dy[(b * R + r) * D + d];
      }
    }
  }
  return dx;
}

}  // namespace hax::reference::nn
