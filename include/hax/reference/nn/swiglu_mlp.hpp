// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of the SwiGLU MLP y = (SiLU(x·W_gateᵀ) ⊙ x·W_upᵀ)·W_downᵀ and its backward, as
/// plain loops over row-major std::vectors (M = B·L rows): the oracle of hax::nn::swiglu_mlp_*.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace hax::reference::nn {

/// y (M, D) from x (M, D), W_gate and W_up (I, D), W_down (D, I).
template <class T>
std::vector<T> swiglu_mlp_forward(std::vector<T> const& x, std::vector<T> const& w_gate,
                                  std::vector<T> const& w_up, std::vector<T> const& w_down,
                                  std::size_t M, std::size_t D, std::size_t I) {
  std::vector<T> y(M * D, T(0));
  std::vector<T> h(I);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t i = 0; i < I; ++i) {
      T g = 0, u = 0;
      for (std::size_t d = 0; d < D; ++d) {
        g += x[m * D + d] * w_gate[i * D + d];
        u += x[m * D + d] * w_up[i * D + d];
      }
      h[i] = g / (T(1) + std::exp(-g)) * u;  // SiLU(g) ⊙ u
    }
    for (std::size_t d = 0; d < D; ++d) {
      for (std::size_t i = 0; i < I; ++i) {
        y[m * D + d] += h[i] * w_down[d * I + i];
      }
    }
  }
  return y;
}

/// Returns dx (M, D) (written); dW_gate, dW_up (I, D) and dW_down (D, I) are accumulated (+=).
template <class T>
std::vector<T> swiglu_mlp_backward(std::vector<T> const& dy, std::vector<T> const& x,
                                   std::vector<T> const& w_gate, std::vector<T> const& w_up,
                                   std::vector<T> const& w_down, std::vector<T>& dw_gate,
                                   std::vector<T>& dw_up, std::vector<T>& dw_down, std::size_t M,
                                   std::size_t D, std::size_t I) {
  std::vector<T> dx(M * D, T(0));
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t i = 0; i < I; ++i) {
      T g = 0, u = 0;
      for (std::size_t d = 0; d < D; ++d) {
        g += x[m * D + d] * w_gate[i * D + d];
        u += x[m * D + d] * w_up[i * D + d];
      }
      T const sig = T(1) / (T(1) + std::exp(-g));
      T const silu = g * sig;
      T dh = 0;  // ∂loss/∂h_i: h_i feeds every output channel through W_down
      for (std::size_t d = 0; d < D; ++d) {
        dh += dy[m * D + d] * w_down[d * I + i];
        dw_down[d * I + i] += dy[m * D + d] * silu * u;
      }
      T const du = dh * silu;
      T const dg = dh * u * sig * (T(1) + g * (T(1) - sig));  // SiLU'(g) = σ(g)(1 + g(1 − σ(g)))
      for (std::size_t d = 0; d < D; ++d) {
        dx[m * D + d] += dg * w_gate[i * D + d] + du * w_up[i * D + d];
        dw_gate[i * D + d] += dg * x[m * D + d];
        dw_up[i * D + d] += du * x[m * D + d];
      }
    }
  }
  return dx;
}

}  // namespace hax::reference::nn
