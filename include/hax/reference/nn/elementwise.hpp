// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of the fused elementwise ops of hax::nn (silu_gate, add, gated_scale_add)
/// and their backward, as plain loops over row-major std::vectors of (M, D) rows (M = B·L),
/// written to be read. The oracle of hax/nn/elementwise.hpp in the tests.
#pragma once

#include <hax/reference/nn/activation.hpp>

#include <cstddef>
#include <vector>

namespace hax::reference::nn {

/// y = a ⊙ silu(z).
template <class T>
std::vector<T> silu_gate_forward(std::vector<T> const& a, std::vector<T> const& z) {
  std::vector<T> y(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    y[i] = a[i] * silu(z[i]);
  }
  return y;
}

/// da = dy ⊙ silu(z), dz = dy ⊙ a ⊙ silu'(z), both written.
template <class T>
void silu_gate_backward(std::vector<T> const& dy, std::vector<T> const& a,
                        std::vector<T> const& z, std::vector<T>& da, std::vector<T>& dz) {
  da.assign(a.size(), T(0));
  dz.assign(a.size(), T(0));
  for (std::size_t i = 0; i < a.size(); ++i) {
    da[i] = dy[i] * silu(z[i]);
    dz[i] = dy[i] * a[i] * silu_derivative(z[i]);
  }
}

/// y = a + b.
template <class T>
std::vector<T> add_forward(std::vector<T> const& a, std::vector<T> const& b) {
  std::vector<T> y(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    y[i] = a[i] + b[i];
  }
  return y;
}

/// The residual stream's gradient accumulates: dx += dy.
template <class T>
void add_backward(std::vector<T> const& dy, std::vector<T>& dx) {
  for (std::size_t i = 0; i < dy.size(); ++i) {
    dx[i] += dy[i];
  }
}

/// y(m, d) = a(m, d) + b(m, d) · e(d) · silu(z(m, d)) over M rows of D channels.
template <class T>
std::vector<T> gated_scale_add_forward(std::vector<T> const& a, std::vector<T> const& b,
                                       std::vector<T> const& e, std::vector<T> const& z,
                                       std::size_t M, std::size_t D) {
  std::vector<T> y(M * D);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t d = 0; d < D; ++d) {
      std::size_t const i = m * D + d;
      y[i] = a[i] + b[i] * e[d] * silu(z[i]);
    }
  }
  return y;
}

/// Gradients of gated_scale_add: da = dy, db = dy e silu(z), dz = dy b e silu'(z) (written);
/// de(d) += Σ_m dy b silu(z) (accumulated, e is a parameter).
template <class T>
void gated_scale_add_backward(std::vector<T> const& dy, std::vector<T> const& b,
                              std::vector<T> const& e, std::vector<T> const& z, std::size_t M,
                              std::size_t D, std::vector<T>& da, std::vector<T>& db,
                              std::vector<T>& de, std::vector<T>& dz) {
  da.assign(M * D, T(0));
  db.assign(M * D, T(0));
  dz.assign(M * D, T(0));
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t d = 0; d < D; ++d) {
      std::size_t const i = m * D + d;
      da[i] = dy[i];                    // a enters y with slope 1
      db[i] = dy[i] * e[d] * silu(z[i]);  // the other factors of the product
      dz[i] = dy[i] * b[i] * e[d] * silu_derivative(z[i]);
      de[d] += dy[i] * b[i] * silu(z[i]);  // e(d) is shared by every row
    }
  }
}

}  // namespace hax::reference::nn
