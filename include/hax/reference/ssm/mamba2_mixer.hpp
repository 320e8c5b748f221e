// SPDX-License-Identifier: MIT
/// \file
/// Serial host reference of the Mamba-2 mixer forward (hax::ssm::Mamba2Mixer), composed from the
/// plain references of its ops (linear, conv1d + SiLU, SSD, gated RMSNorm), written to be read.
/// The tests compare the device mixer with it; gradients are checked by finite differences.
/// Step by step as docs/math/mamba2_mixer.md. With a MixerBranch (reference/ssm/mamba_mixer.hpp)
/// the HAX hybrid: scan + attn ⊙ E enters the gated norm, attn from the SSD's input x. There is
/// no reference backward: gradients are checked by finite differences.
#pragma once

#include <hax/reference/nn/conv1d.hpp>
#include <hax/reference/ssm/mamba_mixer.hpp>  // MixerBranch, mixer_branch_forward
#include <hax/reference/nn/linear.hpp>
#include <hax/reference/nn/rms_norm.hpp>
#include <hax/reference/ssm/ssd.hpp>

#include <cmath>
#include <cstddef>
#include <vector>

namespace hax::reference::ssm {

/// Sizes of a Mamba-2 mixer problem (E = H·P).
struct Mamba2MixerShape {
  std::size_t B = 0, L = 0;  // batch, length
  std::size_t D = 0;         // d_model
  std::size_t H = 0, P = 0;  // heads, head_dim
  std::size_t N = 0;         // state size
  std::size_t K = 4;         // conv width
  double eps = 1e-5;         // gated RMSNorm epsilon
};

/// The mixer's parameters, row-major, PyTorch shapes.
template <class T>
struct Mamba2MixerWeights {
  std::vector<T> in_proj;   // (2E + 2N + H, D)
  std::vector<T> conv_w;    // (E + 2N, 1, K)
  std::vector<T> conv_b;    // (E + 2N)
  std::vector<T> dt_bias;   // (H)
  std::vector<T> A_log;     // (H)
  std::vector<T> D;         // (H)
  std::vector<T> norm_w;    // (E)
  std::vector<T> out_proj;  // (D, E)
};

/// y (B, L, D) for input x (B, L, D) and pad mask (B, L) (1 = real; empty = no padding); with
/// `branch` the hybrid mixer, whose ranking loss is added to *gate_loss (when not null).
template <class T>
std::vector<T> mamba2_mixer_forward(Mamba2MixerShape const& s, Mamba2MixerWeights<T> const& w,
                                    std::vector<T> x, std::vector<T> const& mask,
                                    MixerBranch<T> const* branch = nullptr,
                                    T* gate_loss = nullptr) {
  std::size_t const M = s.B * s.L, E = s.H * s.P, N = s.N, H = s.H;
  std::size_t const C = E + 2 * N, W = 2 * E + 2 * N + H;
  if (!mask.empty()) {  // the input is multiplied by the pad mask first
    for (std::size_t m = 0; m < M; ++m) {
      for (std::size_t d = 0; d < s.D; ++d) {
        x[m * s.D + d] *= mask[m];
      }
    }
  }
  auto const proj = nn::linear_forward(x, w.in_proj, {}, M, s.D, W);  // (M, W)
  std::vector<T> z(M * E), xbc(M * C), dt(M * H);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t j = 0; j < E; ++j) z[m * E + j] = proj[m * W + j];
    for (std::size_t j = 0; j < C; ++j) xbc[m * C + j] = proj[m * W + E + j];
    for (std::size_t j = 0; j < H; ++j) dt[m * H + j] = proj[m * W + E + C + j];
  }
  auto act = nn::conv1d_forward(xbc, w.conv_w, w.conv_b, mask, s.B, s.L, C, s.K, true);
  SsdProblem<T> q;
  q.B = s.B;
  q.L = s.L;
  q.H = H;
  q.P = s.P;
  q.N = N;
  q.x.resize(M * E);
  q.Bm.resize(M * N);
  q.Cm.resize(M * N);
  for (std::size_t m = 0; m < M; ++m) {
    T const keep = mask.empty() ? T(1) : mask[m];  // the pad mask again after the conv
    for (std::size_t j = 0; j < E; ++j) q.x[m * E + j] = act[m * C + j] * keep;
    for (std::size_t n = 0; n < N; ++n) {
      q.Bm[m * N + n] = act[m * C + E + n] * keep;
      q.Cm[m * N + n] = act[m * C + E + N + n] * keep;
    }
  }
  q.dt = dt;
  q.dt_bias = w.dt_bias;
  q.A.resize(H);
  for (std::size_t h = 0; h < H; ++h) {
    q.A[h] = -std::exp(w.A_log[h]);  // A = −exp(A_log)
  }
  q.Dskip = w.D;
  auto scan = ssd_forward(q);  // (M, E)
  if (branch != nullptr) {  // scan + attn ⊙ E, attn from the SSD's input x
    T const loss = mixer_branch_forward(*branch, q.x, mask, s.B, s.L, scan);
    if (gate_loss != nullptr) {
      *gate_loss += loss;
    }
  }
  std::vector<T> rstd;
  auto const normed = nn::rms_norm_forward(scan, z, w.norm_w, M, E, T(s.eps), rstd);
  return nn::linear_forward(normed, w.out_proj, {}, M, E, s.D);
}

}  // namespace hax::reference::ssm
