// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of the linear layer y = x·Wᵀ (+ b) and its backward, as plain loops over
/// row-major std::vectors, written to be read. The oracle of hax::nn::linear_* in the tests.
#pragma once

#include <cstddef>
#include <vector>

namespace hax::reference::nn {

/// y (M, N) = x (M, K) · Wᵀ with W (N, K), plus b (N) when b is non-empty.
template <class T>
std::vector<T> linear_forward(std::vector<T> const& x, std::vector<T> const& w,
                              std::vector<T> const& b, std::size_t M, std::size_t K,
                              std::size_t N) {
  std::vector<T> y(M * N);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t n = 0; n < N; ++n) {
      T acc = b.empty() ? T(0) : b[n];
      for (std::size_t k = 0; k < K; ++k) {
        acc += x[m * K + k] * w[n * K + k];
      }
      y[m * N + n] = acc;
    }
  }
  return y;
}

/// Gradients of a linear layer given dy (M, N): dx = dy·W is returned (written); dW (N, K) and db
/// (N, skipped when empty) are accumulated with +=, as the device op does.
template <class T>
std::vector<T> linear_backward(std::vector<T> const& dy, std::vector<T> const& x,
                               std::vector<T> const& w, std::vector<T>& dw, std::vector<T>& db,
                               std::size_t M, std::size_t K, std::size_t N) {
  std::vector<T> dx(M * K, T(0));
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t n = 0; n < N; ++n) {
      T const g = dy[m * N + n];  // ∂loss/∂y(m, n) flows to every term of y(m, n)
      for (std::size_t k = 0; k < K; ++k) {
        dx[m * K + k] += g * w[n * K + k];  // y(m, n) depends on x(m, k) through W(n, k)
        dw[n * K + k] += g * x[m * K + k];  // ... and on W(n, k) through x(m, k)
      }
      if (!db.empty()) {
        db[n] += g;
      }
    }
  }
  return dx;
}

}  // namespace hax::reference::nn
