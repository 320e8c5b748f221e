// SPDX-License-Identifier: MIT
/// \file
/// Serial host reference of the Mamba-2 mixer (hax::ssm::Mamba2Mixer), forward and backward,
/// composed from the plain references of its ops (linear, conv1d + SiLU, SSD, gated RMSNorm),
/// written to be read; step by step as docs/math/mamba2_mixer.md. With a MixerBranch
/// (reference/ssm/mamba_mixer.hpp) the HAX hybrid: scan + attn ⊙ E enters the gated norm, attn
/// from the SSD's input x. The tests compare the device mixer with it.
#pragma once

#include <hax/reference/nn/conv1d.hpp>
#include <hax/reference/nn/linear.hpp>
#include <hax/reference/nn/rms_norm.hpp>
#include <hax/reference/ssm/mamba_mixer.hpp>  // MixerBranch, mixer_branch_forward / _backward
#include <hax/reference/ssm/ssd.hpp>

#include <cmath>
#include <cstddef>
#include <utility>
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

/// Every intermediate of the Mamba-2 mixer forward (what the reference backward reads).
template <class T>
struct Mamba2MixerTrace {
  std::vector<T> xm;            // (B, L, D) the masked input of in_proj
  std::vector<T> z, xbc;        // (B, L, E), (B, L, E + 2N) in_proj's parts (dt is in q)
  SsdProblem<T> q;              // the SSD's inputs (x, B, C from the activated, masked xBC)
  std::vector<T> mixed;         // (B, L, E) scan (+ attn ⊙ E with the branch), the norm's input
  std::vector<T> normed;        // (B, L, E)
  MixerBranchTrace<T> branch;   // the branch's (when one ran)
  std::vector<T> y;             // (B, L, D)
};

/// The forward, keeping every intermediate; see mamba2_mixer_forward.
template <class T>
Mamba2MixerTrace<T> mamba2_mixer_trace(Mamba2MixerShape const& s, Mamba2MixerWeights<T> const& w,
                                       std::vector<T> const& x, std::vector<T> const& mask,
                                       MixerBranch<T> const* branch = nullptr) {
  std::size_t const M = s.B * s.L, E = s.H * s.P, N = s.N, H = s.H;
  std::size_t const C = E + 2 * N, W = 2 * E + 2 * N + H;
  Mamba2MixerTrace<T> tr;
  tr.xm = x;
  if (!mask.empty()) {  // the input is multiplied by the pad mask first
    for (std::size_t m = 0; m < M; ++m) {
      for (std::size_t d = 0; d < s.D; ++d) {
        tr.xm[m * s.D + d] *= mask[m];
      }
    }
  }
  auto const proj = nn::linear_forward(tr.xm, w.in_proj, {}, M, s.D, W);  // (M, W)
  tr.z.resize(M * E);
  tr.xbc.resize(M * C);
  std::vector<T> dt(M * H);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t j = 0; j < E; ++j) tr.z[m * E + j] = proj[m * W + j];
    for (std::size_t j = 0; j < C; ++j) tr.xbc[m * C + j] = proj[m * W + E + j];
    for (std::size_t j = 0; j < H; ++j) dt[m * H + j] = proj[m * W + E + C + j];
  }
  auto act = nn::conv1d_forward(tr.xbc, w.conv_w, w.conv_b, mask, s.B, s.L, C, s.K, true);
  auto& q = tr.q;
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
  tr.mixed = ssd_forward(q);  // (M, E)
  if (branch != nullptr) {  // scan + attn ⊙ E, attn from the SSD's input x
    tr.branch = mixer_branch_forward(*branch, q.x, mask, s.B, s.L, tr.mixed);
  }
  std::vector<T> rstd;
  tr.normed = nn::rms_norm_forward(tr.mixed, tr.z, w.norm_w, M, E, T(s.eps), rstd);
  tr.y = nn::linear_forward(tr.normed, w.out_proj, {}, M, E, s.D);
  return tr;
}

/// y (B, L, D) for input x (B, L, D) and pad mask (B, L) (1 = real; empty = no padding); with
/// `branch` the hybrid mixer, whose ranking loss is added to *gate_loss (when not null).
template <class T>
std::vector<T> mamba2_mixer_forward(Mamba2MixerShape const& s, Mamba2MixerWeights<T> const& w,
                                    std::vector<T> const& x, std::vector<T> const& mask,
                                    MixerBranch<T> const* branch = nullptr,
                                    T* gate_loss = nullptr) {
  auto tr = mamba2_mixer_trace(s, w, x, mask, branch);
  if (branch != nullptr && gate_loss != nullptr) {
    *gate_loss += tr.branch.res.gate_loss;
  }
  return std::move(tr.y);
}

/// Gradients of the hybrid (or plain) mixer for the loss Σ dy ⊙ y + α · ranking loss.
template <class T>
struct Mamba2MixerGradients {
  std::vector<T> dx;                   // (B, L, D)
  Mamba2MixerWeights<T> dw;            // as the weights
  std::vector<T> dE;                   // (E) (with the branch)
  attn::SparseBranchGrads<T> branch;   // dxx_proj, dmlp (with the branch; its dx is folded in)
};

/// The reference backward, step by step as docs/math/mamba2_mixer.md, from the forward's trace.
template <class T>
Mamba2MixerGradients<T> mamba2_mixer_backward(Mamba2MixerShape const& s,
                                              Mamba2MixerWeights<T> const& w,
                                              std::vector<T> const& mask,
                                              Mamba2MixerTrace<T> const& tr,
                                              std::vector<T> const& dy,
                                              MixerBranch<T> const* branch = nullptr) {
  std::size_t const M = s.B * s.L, E = s.H * s.P, N = s.N, H = s.H;
  std::size_t const C = E + 2 * N, W = 2 * E + 2 * N + H;
  Mamba2MixerGradients<T> g;
  auto& dw = g.dw;
  std::vector<T> none;  // no bias
  dw.out_proj.assign(w.out_proj.size(), T(0));
  auto const dnormed = nn::linear_backward(dy, tr.normed, w.out_proj, dw.out_proj, none, M, E, s.D);
  std::vector<T> dmixed, dz;
  dw.norm_w.assign(E, T(0));
  nn::rms_norm_backward(dnormed, tr.mixed, tr.z, w.norm_w, M, E, T(s.eps), dmixed, dz, dw.norm_w);
  auto sg = ssd_backward(tr.q, dmixed);  // dmixed is also the SSD's gradient
  dw.dt_bias = sg.ddt_bias;
  dw.D = sg.dD;
  dw.A_log.resize(H);
  for (std::size_t h = 0; h < H; ++h) {
    dw.A_log[h] = sg.dA[h] * tr.q.A[h];  // dA/dA_log = A
  }
  if (branch != nullptr) {  // dE, and the branch's gradient of x (V and xx_proj)
    g.branch = mixer_branch_backward(*branch, tr.branch, tr.q.x, dmixed, s.B, s.L, g.dE);
    for (std::size_t i = 0; i < M * E; ++i) {
      sg.dx[i] += g.branch.dx[i];
    }
  }
  std::vector<T> dact(M * C);  // [dx | dB | dC] ⊙ m
  for (std::size_t m = 0; m < M; ++m) {
    T const keep = mask.empty() ? T(1) : mask[m];
    for (std::size_t j = 0; j < E; ++j) dact[m * C + j] = sg.dx[m * E + j] * keep;
    for (std::size_t n = 0; n < N; ++n) {
      dact[m * C + E + n] = sg.dB[m * N + n] * keep;
      dact[m * C + E + N + n] = sg.dC[m * N + n] * keep;
    }
  }
  std::vector<T> dxbc;
  dw.conv_w.assign(w.conv_w.size(), T(0));
  dw.conv_b.assign(w.conv_b.size(), T(0));
  nn::conv1d_backward(dact, tr.xbc, w.conv_w, w.conv_b, mask, s.B, s.L, C, s.K, true, dxbc,
                      dw.conv_w, dw.conv_b);
  std::vector<T> dproj(M * W);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t j = 0; j < E; ++j) dproj[m * W + j] = dz[m * E + j];
    for (std::size_t j = 0; j < C; ++j) dproj[m * W + E + j] = dxbc[m * C + j];
    for (std::size_t j = 0; j < H; ++j) dproj[m * W + E + C + j] = sg.ddt[m * H + j];
  }
  dw.in_proj.assign(w.in_proj.size(), T(0));
  g.dx = nn::linear_backward(dproj, tr.xm, w.in_proj, dw.in_proj, none, M, s.D, W);
  if (!mask.empty()) {  // the input was multiplied by the mask
    for (std::size_t i = 0; i < g.dx.size(); ++i) {
      g.dx[i] *= mask[i / s.D];
    }
  }
  return g;
}

}  // namespace hax::reference::ssm
