// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of rotary position embedding (non-interleaved, "rotate half") over row-major
/// std::vectors of shape (B, L, H, Dh), written to be read: the oracle of hax::nn::rope_*.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace hax::reference::nn {

/// y = RoPE(x) for x (B, L, H, Dh): the pair (i, i + Dh/2) at position t is rotated by
/// t / θ^(2i/Dh). With `inverse`, rotates by the opposite angle (the backward: Rᵀ = R⁻¹).
template <class T>
std::vector<T> rope(std::vector<T> const& x, std::size_t B, std::size_t L, std::size_t H,
                    std::size_t Dh, double theta, bool inverse = false) {
  std::vector<T> y(x.size());
  std::size_t const half = Dh / 2;
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t t = 0; t < L; ++t) {
      for (std::size_t h = 0; h < H; ++h) {
        std::size_t const row = ((b * L + t) * H + h) * Dh;
        for (std::size_t i = 0; i < half; ++i) {
          double const inv_freq = 1.0 / std::pow(theta, 2.0 * double(i) / double(Dh));
          double const phi = double(t) * inv_freq * (inverse ? -1.0 : 1.0);
          double const x1 = x[row + i], x2 = x[row + i + half];
          y[row + i] = T(x1 * std::cos(phi) - x2 * std::sin(phi));
          y[row + i + half] = T(x1 * std::sin(phi) + x2 * std::cos(phi));
        }
      }
    }
  }
  return y;
}

}  // namespace hax::reference::nn
