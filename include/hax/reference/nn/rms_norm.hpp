// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of RMSNorm and Mamba2's gated RMSNorm (norm_before_gate = False, one group)
/// and their backward, as plain loops over row-major std::vectors of (M, D) rows (M = B·L),
/// written to be read. The backward differentiates the forward formula term by term, without the
/// simplifications of the device kernel (see docs/math/rms_norm.md).
#pragma once

#include <hax/reference/nn/activation.hpp>

#include <cmath>
#include <cstddef>
#include <vector>

namespace hax::reference::nn {

/// y(m, :) = u(m, :) / sqrt(mean(u(m, :)²) + eps) · w with u = x, or x ⊙ silu(z) when z is
/// non-empty (the gated form). Returns y; rstd (M) gets 1 / sqrt(mean(u²) + eps).
template <class T>
std::vector<T> rms_norm_forward(std::vector<T> const& x, std::vector<T> const& z,
                                std::vector<T> const& w, std::size_t M, std::size_t D, T eps,
                                std::vector<T>& rstd) {
  std::vector<T> y(M * D);
  rstd.assign(M, T(0));
  for (std::size_t m = 0; m < M; ++m) {
    std::vector<T> u(D);
    T mean_sq = 0;
    for (std::size_t d = 0; d < D; ++d) {
      u[d] = z.empty() ? x[m * D + d] : x[m * D + d] * silu(z[m * D + d]);
      mean_sq += u[d] * u[d] / T(D);
    }
    rstd[m] = T(1) / std::sqrt(mean_sq + eps);
    for (std::size_t d = 0; d < D; ++d) {
      y[m * D + d] = u[d] * rstd[m] * w[d];
    }
  }
  return y;
}

/// Gradients given dy: dx (and dz when z is non-empty) written, dw (D) accumulated.
/// By the chain rule through y(d) = u(d) r w(d) with r = (mean(u²) + eps)^(-1/2):
///   ∂y(d)/∂u(j) = w(d) (r δ(d, j) + u(d) ∂r/∂u(j)),  ∂r/∂u(j) = −r³ u(j) / D.
template <class T>
void rms_norm_backward(std::vector<T> const& dy, std::vector<T> const& x,
                       std::vector<T> const& z, std::vector<T> const& w, std::size_t M,
                       std::size_t D, T eps, std::vector<T>& dx, std::vector<T>& dz,
                       std::vector<T>& dw) {
  dx.assign(M * D, T(0));
  dz.assign(z.empty() ? 0 : M * D, T(0));
  for (std::size_t m = 0; m < M; ++m) {
    std::vector<T> u(D);
    T mean_sq = 0;
    for (std::size_t d = 0; d < D; ++d) {
      u[d] = z.empty() ? x[m * D + d] : x[m * D + d] * silu(z[m * D + d]);
      mean_sq += u[d] * u[d] / T(D);
    }
    T const r = T(1) / std::sqrt(mean_sq + eps);
    for (std::size_t j = 0; j < D; ++j) {
      T const dr_du = -r * r * r * u[j] / T(D);
      T du = 0;  // ∂loss/∂u(j) = Σ_d dy(d) ∂y(d)/∂u(j)
      for (std::size_t d = 0; d < D; ++d) {
        T const dyd_duj = w[d] * ((d == j ? r : T(0)) + u[d] * dr_du);
        du += dy[m * D + d] * dyd_duj;
      }
      std::size_t const i = m * D + j;
      if (z.empty()) {
        dx[i] = du;
      } else {
        dx[i] = du * silu(z[i]);  // u = x silu(z)
        dz[i] = du * x[i] * silu_derivative(z[i]);
      }
      dw[j] += dy[i] * u[j] * r;  // y(j) = w(j) · (u(j) r)
    }
  }
}

}  // namespace hax::reference::nn
