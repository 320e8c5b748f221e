// SPDX-License-Identifier: MIT
/// \file
/// Serial host reference of the Mamba-1 mixer forward (hax::ssm::MambaMixer), composed from the
/// plain references of its ops (linear, conv1d + SiLU, selective scan), written to be read. The
/// tests compare the device mixer with it; gradients are checked by finite differences of it and
/// of the device forward. Step by step as docs/math/mamba_mixer.md. With a MixerBranch, the HAX
/// hybrid: the sparse branch's reference (reference/attention/sparse_branch.hpp) on the post-conv
/// x, added as scan + attn ⊙ E before the gate. MixerBranch and mixer_branch_forward are shared
/// with the Mamba-2 reference. There is no reference backward: gradients are checked by finite
/// differences (docs/math/mamba_mixer.md, "What the tests check").
#pragma once

#include <hax/attention/sparse_branch.hpp>
#include <hax/reference/attention/sparse_branch.hpp>
#include <hax/reference/nn/activation.hpp>
#include <hax/reference/nn/conv1d.hpp>
#include <hax/reference/nn/linear.hpp>
#include <hax/reference/ssm/selective_scan.hpp>

#include <cmath>
#include <cstddef>
#include <vector>

namespace hax::reference::ssm {

/// Sizes of a Mamba-1 mixer problem.
struct MambaMixerShape {
  std::size_t B = 0, L = 0;  // batch, length
  std::size_t D = 0;         // d_model
  std::size_t E = 0;         // d_inner
  std::size_t N = 0;         // state size
  std::size_t R = 0;         // dt_rank
  std::size_t K = 4;         // conv width
};

/// The mixer's parameters, row-major, PyTorch shapes.
template <class T>
struct MambaMixerWeights {
  std::vector<T> in_proj;    // (2E, D)
  std::vector<T> conv_w;     // (E, 1, K)
  std::vector<T> conv_b;     // (E)
  std::vector<T> x_proj;     // (R + 2N, E)
  std::vector<T> dt_proj_w;  // (E, R)
  std::vector<T> dt_proj_b;  // (E)
  std::vector<T> A_log;      // (E, N)
  std::vector<T> D;          // (E)
  std::vector<T> out_proj;   // (D, E)
};

/// The HAX branch of a hybrid mixer reference: the branch config (its d_inner and state_size are
/// the mixer's), its parameters, E and the step context of the forward.
template <class T>
struct MixerBranch {
  hax::attn::SparseBranchConfig config;
  attn::SparseBranchParams<T> params;  // xx_proj (2N, E), the scoring MLP (key selection)
  std::vector<T> E;                    // (E)
  hax::attn::StepContext ctx;
};

/// scan (B·L, E) += attn ⊙ E with attn = the branch reference on x (B·L, E), the post-conv,
/// pad-masked x; mask (B·L) 1 = real or empty. Returns the branch's ranking loss (0 unless
/// training with key selection).
template <class T>
T mixer_branch_forward(MixerBranch<T> const& br, std::vector<T> const& x, std::vector<T> const& mask,
                       std::size_t B, std::size_t L, std::vector<T>& scan) {
  std::vector<int> valid;  // the branch reference's mask type; empty = no padding
  for (T m : mask) {
    valid.push_back(m != T(0) ? 1 : 0);
  }
  auto const r = attn::sparse_branch_forward(br.config, br.params, x, valid, int(B), int(L), br.ctx);
  std::size_t const E = br.E.size();
  for (std::size_t i = 0; i < scan.size(); ++i) {
    scan[i] += r.attn[i] * br.E[i % E];
  }
  return r.gate_loss;
}

/// y (B, L, D) for input x (B, L, D) and pad mask (B, L) (1 = real; empty = no padding); with
/// `branch` the hybrid mixer, whose ranking loss is added to *gate_loss (when not null).
template <class T>
std::vector<T> mamba_mixer_forward(MambaMixerShape const& s, MambaMixerWeights<T> const& w,
                                   std::vector<T> const& x, std::vector<T> const& mask,
                                   MixerBranch<T> const* branch = nullptr,
                                   T* gate_loss = nullptr) {
  std::size_t const M = s.B * s.L, E = s.E, N = s.N, R = s.R;
  // in_proj → (x, z)
  auto const xz = nn::linear_forward(x, w.in_proj, {}, M, s.D, 2 * E);  // (M, 2E)
  std::vector<T> xin(M * E), z(M * E);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t e = 0; e < E; ++e) {
      xin[m * E + e] = xz[m * 2 * E + e];
      z[m * E + e] = xz[m * 2 * E + E + e];
    }
  }
  // x ·= m; conv + SiLU; x ·= m
  auto xc = nn::conv1d_forward(xin, w.conv_w, w.conv_b, mask, s.B, s.L, E, s.K, true);
  if (!mask.empty()) {
    for (std::size_t m = 0; m < M; ++m) {
      for (std::size_t e = 0; e < E; ++e) {
        xc[m * E + e] *= mask[m];
      }
    }
  }
  // x_proj → (dt_low, B, C); delta = dt_proj.weight · dt_low
  auto const xdbl = nn::linear_forward(xc, w.x_proj, {}, M, E, R + 2 * N);
  std::vector<T> dt_low(M * R), Bm(M * N), Cm(M * N);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t r = 0; r < R; ++r) {
      dt_low[m * R + r] = xdbl[m * (R + 2 * N) + r];
    }
    for (std::size_t n = 0; n < N; ++n) {
      Bm[m * N + n] = xdbl[m * (R + 2 * N) + R + n];
      Cm[m * N + n] = xdbl[m * (R + 2 * N) + R + N + n];
    }
  }
  SelectiveScanProblem<T> p;
  p.B = s.B;
  p.L = s.L;
  p.D = E;
  p.N = N;
  p.u = xc;
  p.delta = nn::linear_forward(dt_low, w.dt_proj_w, {}, M, R, E);
  p.delta_bias = w.dt_proj_b;
  p.A.resize(E * N);
  for (std::size_t i = 0; i < E * N; ++i) {
    p.A[i] = -std::exp(w.A_log[i]);  // A = −exp(A_log)
  }
  p.Bm = Bm;
  p.Cm = Cm;
  p.Dskip = w.D;
  auto scan = selective_scan_forward(p);  // (M, E)
  if (branch != nullptr) {  // scan + attn ⊙ E, attn from the scan's input x
    T const loss = mixer_branch_forward(*branch, xc, mask, s.B, s.L, scan);
    if (gate_loss != nullptr) {
      *gate_loss += loss;
    }
  }
  // scan ⊙ SiLU(z) → out_proj
  std::vector<T> gated(M * E);
  for (std::size_t i = 0; i < M * E; ++i) {
    gated[i] = scan[i] * nn::silu(z[i]);
  }
  return nn::linear_forward(gated, w.out_proj, {}, M, E, s.D);
}

}  // namespace hax::reference::ssm
