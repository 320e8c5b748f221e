// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of the Mamba-2 SSD core (forward and backward) as the plain sequential
/// recurrence S_t = exp(dt_t A_h) S_{t-1} + dt_t x_t ⊗ B_t, y_t = S_t C_t + Dskip_h x_t, over
/// row-major std::vectors, written to be read. It keeps every state (B, L, H, P, N): the oracle
/// of the chunked hax::ssm::ssd_* for the small shapes of tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <hax/reference/ssm/selective_scan.hpp>  // softplus
#include <vector>

namespace hax::reference::ssm {

/// Problem of SSD; all vectors row-major.
template <class T>
struct SsdProblem {
  std::size_t B = 0, L = 0, H = 0, P = 0, N = 0;
  std::vector<T> x;        // (B, L, H, P)
  std::vector<T> dt;       // (B, L, H) before softplus
  std::vector<T> dt_bias;  // (H)
  std::vector<T> A;        // (H)
  std::vector<T> Bm;       // (B, L, N)
  std::vector<T> Cm;       // (B, L, N)
  std::vector<T> Dskip;    // (H)
  /// (B) optional, empty = every row has L steps: positions t >= lengths[b] are absent (y = 0
  /// there, dy there ignored, their gradients 0), as if row b ended at lengths[b].
  std::vector<std::size_t> lengths;

  /// Steps of row b that are present.
  std::size_t length(std::size_t b) const { return lengths.empty() ? L : std::min(lengths[b], L); }
};

/// Gradients of SSD, all starting from zero.
template <class T>
struct SsdGradients {
  std::vector<T> dx;                // (B, L, H, P)
  std::vector<T> ddt;               // (B, L, H)
  std::vector<T> ddt_bias, dA, dD;  // (H)
  std::vector<T> dB, dC;            // (B, L, N)
};

/// y (B, L, H, P); if `states` is given it receives every S_t as (B, L, H, P, N). Absent
/// positions (q.lengths) get y = 0 and a zero state.
template <class T>
std::vector<T> ssd_forward(SsdProblem<T> const& q, std::vector<T>* states = nullptr) {
  std::size_t const B = q.B, L = q.L, H = q.H, P = q.P, N = q.N;
  std::vector<T> y(B * L * H * P);
  if (states != nullptr) {
    states->assign(B * L * H * P * N, T(0));
  }
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t h = 0; h < H; ++h) {
      std::vector<T> S(P * N, T(0));  // the head's (P, N) state starts at zero
      for (std::size_t t = 0; t < q.length(b); ++t) {
        std::size_t const bt = b * L + t;
        T const dt = softplus(q.dt[bt * H + h] + q.dt_bias[h]);
        T const decay = std::exp(dt * q.A[h]);  // one scalar decay per head
        for (std::size_t p = 0; p < P; ++p) {
          T const xv = q.x[(bt * H + h) * P + p];
          T out = q.Dskip[h] * xv;
          for (std::size_t n = 0; n < N; ++n) {
            T& s = S[p * N + n];
            s = decay * s + dt * xv * q.Bm[bt * N + n];
            out += s * q.Cm[bt * N + n];
            if (states != nullptr) {
              (*states)[((bt * H + h) * P + p) * N + n] = s;
            }
          }
          y[(bt * H + h) * P + p] = out;
        }
      }
    }
  }
  return y;
}

/// Gradients of loss = Σ dy ⊙ y by the reverse recurrence on G_t = dLoss/dS_t:
/// G_t = dy_t ⊗ C_t + exp(dt_{t+1} A) G_{t+1}. Absent positions (q.lengths) get zero gradients
/// and their dy is ignored.
template <class T>
SsdGradients<T> ssd_backward(SsdProblem<T> const& q, std::vector<T> const& dy) {
  std::size_t const B = q.B, L = q.L, H = q.H, P = q.P, N = q.N;
  std::vector<T> S;  // (B, L, H, P, N)
  ssd_forward(q, &S);
  SsdGradients<T> g{std::vector<T>(B * L * H * P),
                    std::vector<T>(B * L * H),
                    std::vector<T>(H),
                    std::vector<T>(H),
                    std::vector<T>(H),
                    std::vector<T>(B * L * N),
                    std::vector<T>(B * L * N)};
  auto state = [&](std::size_t b, std::size_t t, std::size_t h, std::size_t p, std::size_t n) {
    return S[((((b * L + t) * H + h) * P + p) * N) + n];
  };
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t h = 0; h < H; ++h) {
      std::vector<T> G(P * N, T(0));  // adjoint arriving from t + 1
      for (std::size_t t = q.length(b); t-- > 0;) {
        std::size_t const bt = b * L + t;
        T const raw = q.dt[bt * H + h] + q.dt_bias[h];
        T const dt = softplus(raw);
        T const decay = std::exp(dt * q.A[h]);
        T ddt = 0;
        for (std::size_t p = 0; p < P; ++p) {
          T const xv = q.x[(bt * H + h) * P + p];
          T const dyv = dy[(bt * H + h) * P + p];
          T dx = q.Dskip[h] * dyv;  // skip connection
          g.dD[h] += dyv * xv;
          for (std::size_t n = 0; n < N; ++n) {
            T& Gpn = G[p * N + n];
            Gpn += dyv * q.Cm[bt * N + n];  // y_t reads S_t through C_t
            g.dC[bt * N + n] += dyv * state(b, t, h, p, n);
            T const sprev = t > 0 ? state(b, t - 1, h, p, n) : T(0);
            dx += Gpn * dt * q.Bm[bt * N + n];
            g.dB[bt * N + n] += Gpn * dt * xv;
            ddt += Gpn * (q.A[h] * decay * sprev + xv * q.Bm[bt * N + n]);
            g.dA[h] += Gpn * dt * decay * sprev;
            Gpn *= decay;  // S_t = decay S_{t-1} + ...
          }
          g.dx[(bt * H + h) * P + p] = dx;
        }
        T const sig = T(1) / (T(1) + std::exp(-raw));  // softplus'
        g.ddt[bt * H + h] = ddt * sig;
        g.ddt_bias[h] += ddt * sig;
      }
    }
  }
  return g;
}

}  // namespace hax::reference::ssm
