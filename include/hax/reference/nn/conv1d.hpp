// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of the causal depthwise conv1d (with optional pad mask and fused SiLU) and its
/// backward, as plain loops over row-major std::vectors: x, y (B, L, C), w (C, K), bias (C),
/// mask (B, L) or empty. Written to be read; the oracle of hax/nn/conv1d.hpp in the tests.
#pragma once

#include <hax/reference/nn/activation.hpp>

#include <cstddef>
#include <vector>

namespace hax::reference::nn {

/// x ·= mask, as the reference model does before its conv (nonzero mask = real token).
template <class T>
std::vector<T> conv1d_masked_input(std::vector<T> const& x, std::vector<T> const& mask,
                                   std::size_t B, std::size_t L, std::size_t C) {
  std::vector<T> xm = x;
  if (!mask.empty()) {
    for (std::size_t b = 0; b < B; ++b) {
      for (std::size_t t = 0; t < L; ++t) {
        for (std::size_t c = 0; c < C; ++c) {
          xm[(b * L + t) * C + c] = mask[b * L + t] != T(0) ? x[(b * L + t) * C + c] : T(0);
        }
      }
    }
  }
  return xm;
}

/// The pre-activation pre(b,t,c) = bias(c) + Σ_k w(c,k) xm(b, t−K+1+k, c), zero before t = 0.
template <class T>
std::vector<T> conv1d_preactivation(std::vector<T> const& xm, std::vector<T> const& w,
                                    std::vector<T> const& bias, std::size_t B, std::size_t L,
                                    std::size_t C, std::size_t K) {
  std::vector<T> pre(B * L * C);
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t t = 0; t < L; ++t) {
      for (std::size_t c = 0; c < C; ++c) {
        T acc = bias[c];
        for (std::size_t k = 0; k < K; ++k) {
          // input position t − K + 1 + k, as a signed number: negative means left padding
          long const s = static_cast<long>(t + k) - static_cast<long>(K - 1);
          if (s >= 0) {
            acc += w[c * K + k] * xm[(b * L + static_cast<std::size_t>(s)) * C + c];
          }
        }
        pre[(b * L + t) * C + c] = acc;
      }
    }
  }
  return pre;
}

/// y = conv(x ⊙ mask) (+ SiLU when `fuse_silu`).
template <class T>
std::vector<T> conv1d_forward(std::vector<T> const& x, std::vector<T> const& w,
                              std::vector<T> const& bias, std::vector<T> const& mask,
                              std::size_t B, std::size_t L, std::size_t C, std::size_t K,
                              bool fuse_silu) {
  auto y = conv1d_preactivation(conv1d_masked_input(x, mask, B, L, C), w, bias, B, L, C, K);
  if (fuse_silu) {
    for (auto& v : y) {
      v = silu(v);
    }
  }
  return y;
}

/// Gradients given dy: dx written (zero at pad positions), dw (C, K) and dbias (C) accumulated.
/// Each output y(t) sends g(t) = dy(t) (· silu'(pre(t))) back to the inputs it read.
template <class T>
void conv1d_backward(std::vector<T> const& dy, std::vector<T> const& x, std::vector<T> const& w,
                     std::vector<T> const& bias, std::vector<T> const& mask, std::size_t B,
                     std::size_t L, std::size_t C, std::size_t K, bool fuse_silu,
                     std::vector<T>& dx, std::vector<T>& dw, std::vector<T>& dbias) {
  auto const xm = conv1d_masked_input(x, mask, B, L, C);
  auto const pre = conv1d_preactivation(xm, w, bias, B, L, C, K);
  std::vector<T> dxm(B * L * C, T(0));  // gradient with respect to the masked input
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t t = 0; t < L; ++t) {
      for (std::size_t c = 0; c < C; ++c) {
        std::size_t const i = (b * L + t) * C + c;
        T const g = fuse_silu ? dy[i] * silu_derivative(pre[i]) : dy[i];
        dbias[c] += g;
        for (std::size_t k = 0; k < K; ++k) {
          long const s = static_cast<long>(t + k) - static_cast<long>(K - 1);
          if (s >= 0) {
            std::size_t const j = (b * L + static_cast<std::size_t>(s)) * C + c;
            dw[c * K + k] += g * xm[j];
            dxm[j] += g * w[c * K + k];
          }
        }
      }
    }
  }
  dx = conv1d_masked_input(dxm, mask, B, L, C);  // ∂xm/∂x = mask
}

}  // namespace hax::reference::nn
