// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of the Mamba-1 selective scan (forward and backward) as the plain sequential
/// recurrence over row-major std::vectors, written to be read. It keeps every state (B, L, D, N):
/// fine for the small shapes of tests, and the oracle of hax::ssm::selective_scan_*.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <tuple>
#include <vector>

namespace hax::reference::ssm {

/// Problem of the selective scan; all vectors row-major.
template <class T>
struct SelectiveScanProblem {
  std::size_t B = 0, L = 0, D = 0, N = 0;
  std::vector<T> u;           // (B, L, D)
  std::vector<T> delta;       // (B, L, D) before softplus
  std::vector<T> delta_bias;  // (D)
  std::vector<T> A;           // (D, N)
  std::vector<T> Bm;          // (B, L, N)
  std::vector<T> Cm;          // (B, L, N)
  std::vector<T> Dskip;       // (D)
  /// (B) optional, empty = every row has L steps: positions t >= lengths[b] are absent (y = 0
  /// there, dy there ignored, their gradients 0), as if row b ended at lengths[b].
  std::vector<std::size_t> lengths;

  /// Steps of row b that are present.
  std::size_t length(std::size_t b) const { return lengths.empty() ? L : std::min(lengths[b], L); }
};

/// Gradients of the scan, all starting from zero.
template <class T>
struct SelectiveScanGradients {
  std::vector<T> du, ddelta;   // (B, L, D)
  std::vector<T> ddelta_bias;  // (D)
  std::vector<T> dA;           // (D, N)
  std::vector<T> dB, dC;       // (B, L, N)
  std::vector<T> dD;           // (D)
};

template <class T>
T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

/// y (B, L, D); if `states` is given it receives every h_t as (B, L, D, N). Absent positions
/// (p.lengths) get y = 0 and a zero state.
template <class T>
std::vector<T> selective_scan_forward(SelectiveScanProblem<T> const& p,
                                      std::vector<T>* states = nullptr) {
  auto const [B, L, D, N] = std::tuple{p.B, p.L, p.D, p.N};
  std::vector<T> y(B * L * D);
  if (states != nullptr) {
    states->assign(B * L * D * N, T(0));
  }
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t d = 0; d < D; ++d) {
      std::vector<T> h(N, T(0));  // the state of channel d starts at zero
      for (std::size_t t = 0; t < p.length(b); ++t) {
        std::size_t const bt = b * L + t;
        T const dt = softplus(p.delta[bt * D + d] + p.delta_bias[d]);
        T const u = p.u[bt * D + d];
        T out = p.Dskip[d] * u;  // the skip connection
        for (std::size_t n = 0; n < N; ++n) {
          // discretised (zero-order hold on A, Euler on B): h = exp(dt A) h + dt B u
          h[n] = std::exp(dt * p.A[d * N + n]) * h[n] + dt * p.Bm[bt * N + n] * u;
          out += p.Cm[bt * N + n] * h[n];
          if (states != nullptr) {
            (*states)[(bt * D + d) * N + n] = h[n];
          }
        }
        y[bt * D + d] = out;
      }
    }
  }
  return y;
}

/// Gradients of loss = Σ dy ⊙ y with respect to every input, by the reverse recurrence
/// g_t = dy_t C_t + exp(dt_{t+1} A) g_{t+1} on the adjoint g_t = dLoss/dh_t. Absent positions
/// (p.lengths) get zero gradients and their dy is ignored.
template <class T>
SelectiveScanGradients<T> selective_scan_backward(SelectiveScanProblem<T> const& p,
                                                  std::vector<T> const& dy) {
  auto const [B, L, D, N] = std::tuple{p.B, p.L, p.D, p.N};
  std::vector<T> h;  // (B, L, D, N) every state
  selective_scan_forward(p, &h);
  SelectiveScanGradients<T> g{std::vector<T>(B * L * D), std::vector<T>(B * L * D),
                              std::vector<T>(D),         std::vector<T>(D * N),
                              std::vector<T>(B * L * N), std::vector<T>(B * L * N),
                              std::vector<T>(D)};
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t d = 0; d < D; ++d) {
      std::vector<T> adj(N, T(0));  // dLoss/dh_{t} arriving from t + 1
      for (std::size_t t = p.length(b); t-- > 0;) {
        std::size_t const bt = b * L + t;
        T const x = p.delta[bt * D + d] + p.delta_bias[d];
        T const dt = softplus(x);
        T const u = p.u[bt * D + d];
        T const dyt = dy[bt * D + d];
        T ddt = 0;
        T du = p.Dskip[d] * dyt;  // through the skip
        g.dD[d] += dyt * u;
        for (std::size_t n = 0; n < N; ++n) {
          T const hprev = t > 0 ? h[((bt - 1) * D + d) * N + n] : T(0);
          T const A = p.A[d * N + n];
          T const a = std::exp(dt * A);
          adj[n] += dyt * p.Cm[bt * N + n];  // y_t reads h_t through C_t
          g.dC[bt * N + n] += dyt * h[(bt * D + d) * N + n];
          g.dB[bt * N + n] += adj[n] * dt * u;
          ddt += adj[n] * (A * a * hprev + p.Bm[bt * N + n] * u);
          g.dA[d * N + n] += adj[n] * dt * a * hprev;
          du += adj[n] * dt * p.Bm[bt * N + n];
          adj[n] *= a;  // h_t = a h_{t-1} + ...
        }
        g.du[bt * D + d] = du;
        T const sig = T(1) / (T(1) + std::exp(-x));  // softplus'(x)
        g.ddelta[bt * D + d] = ddt * sig;
        g.ddelta_bias[d] += ddt * sig;
      }
    }
  }
  return g;
}

}  // namespace hax::reference::ssm
