// SPDX-License-Identifier: MIT
/// \file
/// Serial host reference of the Mamba-1 mixer (hax::ssm::MambaMixer), forward and backward,
/// composed from the plain references of its ops (linear, conv1d + SiLU, selective scan, the
/// SiLU gate), written to be read; step by step as docs/math/mamba_mixer.md. With a MixerBranch,
/// the HAX hybrid: the sparse branch's reference (reference/attention/sparse_branch.hpp) on the
/// post-conv x, added as scan + attn ⊙ E before the gate. MixerBranch and mixer_branch_forward /
/// _backward are shared with the Mamba-2 reference. The tests compare the device mixer with it.
#pragma once

#include <hax/attention/sparse_branch.hpp>
#include <hax/reference/attention/sparse_branch.hpp>
#include <hax/reference/nn/activation.hpp>
#include <hax/reference/nn/conv1d.hpp>
#include <hax/reference/nn/elementwise.hpp>
#include <hax/reference/nn/linear.hpp>
#include <hax/reference/ssm/selective_scan.hpp>

#include <cmath>
#include <cstddef>
#include <utility>
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

/// The branch's part of a hybrid forward: its reference result and the valid mask it used.
template <class T>
struct MixerBranchTrace {
  bool on = false;                   // a branch ran
  std::vector<int> valid;            // (B, L) 1 = real token, or empty (no padding)
  attn::SparseBranchResult<T> res;   // attn (B, L, E), q, k, pattern, ranking loss...
};

/// scan (B·L, E) += attn ⊙ E with attn = the branch reference on x (B·L, E), the post-conv,
/// pad-masked x; mask (B·L) 1 = real or empty. The trace keeps the branch result (its gate_loss
/// is the ranking loss: 0 unless training with key selection).
template <class T>
MixerBranchTrace<T> mixer_branch_forward(MixerBranch<T> const& br, std::vector<T> const& x,
                                         std::vector<T> const& mask, std::size_t B, std::size_t L,
                                         std::vector<T>& scan) {
  MixerBranchTrace<T> t;
  t.on = true;
  for (T m : mask) {
    t.valid.push_back(m != T(0) ? 1 : 0);
  }
  t.res = attn::sparse_branch_forward(br.config, br.params, x, t.valid, int(B), int(L), br.ctx);
  std::size_t const E = br.E.size();
  for (std::size_t i = 0; i < scan.size(); ++i) {
    scan[i] += t.res.attn[i] * br.E[i % E];
  }
  return t;
}

/// Gradients of the branch part given dmixed (B·L, E), the gradient of scan + attn ⊙ E:
/// dE (E) = Σ dmixed ⊙ attn, and the branch reference's backward of dattn = dmixed ⊙ E (its dx is
/// the gradient of the post-conv x through V and xx_proj; the MLP's is α · d(ranking loss)).
template <class T>
attn::SparseBranchGrads<T> mixer_branch_backward(MixerBranch<T> const& br,
                                                 MixerBranchTrace<T> const& t,
                                                 std::vector<T> const& x,
                                                 std::vector<T> const& dmixed, std::size_t B,
                                                 std::size_t L, std::vector<T>& dE) {
  std::size_t const E = br.E.size();
  dE.assign(E, T(0));
  std::vector<T> dattn(dmixed.size());
  for (std::size_t i = 0; i < dmixed.size(); ++i) {
    dE[i % E] += dmixed[i] * t.res.attn[i];
    dattn[i] = dmixed[i] * br.E[i % E];
  }
  return attn::sparse_branch_backward(br.config, br.params, t.res, x, t.valid, dattn, int(B),
                                      int(L), br.ctx);
}

/// Every intermediate of the Mamba-1 mixer forward (what the reference backward reads).
template <class T>
struct MambaMixerTrace {
  std::vector<T> xin, z;        // (B, L, E) in_proj's halves
  std::vector<T> xc;            // (B, L, E) SiLU(conv(xin ⊙ m)) ⊙ m
  std::vector<T> dt_low;        // (B, L, R)
  SelectiveScanProblem<T> p;    // the scan's inputs (u = xc, delta, A, B, C, ...)
  std::vector<T> mixed;         // (B, L, E) scan (+ attn ⊙ E with the branch), the gate's input
  std::vector<T> gated;         // (B, L, E) mixed ⊙ SiLU(z)
  MixerBranchTrace<T> branch;   // the branch's (when one ran)
  std::vector<T> y;             // (B, L, D)
};

/// The forward, keeping every intermediate; see mamba_mixer_forward.
template <class T>
MambaMixerTrace<T> mamba_mixer_trace(MambaMixerShape const& s, MambaMixerWeights<T> const& w,
                                     std::vector<T> const& x, std::vector<T> const& mask,
                                     MixerBranch<T> const* branch = nullptr) {
  std::size_t const M = s.B * s.L, E = s.E, N = s.N, R = s.R;
  MambaMixerTrace<T> tr;
  // in_proj → (x, z)
  auto const xz = nn::linear_forward(x, w.in_proj, {}, M, s.D, 2 * E);  // (M, 2E)
  tr.xin.resize(M * E);
  tr.z.resize(M * E);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t e = 0; e < E; ++e) {
      tr.xin[m * E + e] = xz[m * 2 * E + e];
      tr.z[m * E + e] = xz[m * 2 * E + E + e];
    }
  }
  // x ·= m; conv + SiLU; x ·= m
  tr.xc = nn::conv1d_forward(tr.xin, w.conv_w, w.conv_b, mask, s.B, s.L, E, s.K, true);
  if (!mask.empty()) {
    for (std::size_t m = 0; m < M; ++m) {
      for (std::size_t e = 0; e < E; ++e) {
        tr.xc[m * E + e] *= mask[m];
      }
    }
  }
  // x_proj → (dt_low, B, C); delta = dt_proj.weight · dt_low
  auto const xdbl = nn::linear_forward(tr.xc, w.x_proj, {}, M, E, R + 2 * N);
  tr.dt_low.resize(M * R);
  std::vector<T> Bm(M * N), Cm(M * N);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t r = 0; r < R; ++r) {
      tr.dt_low[m * R + r] = xdbl[m * (R + 2 * N) + r];
    }
    for (std::size_t n = 0; n < N; ++n) {
      Bm[m * N + n] = xdbl[m * (R + 2 * N) + R + n];
      Cm[m * N + n] = xdbl[m * (R + 2 * N) + R + N + n];
    }
  }
  auto& p = tr.p;
  p.B = s.B;
  p.L = s.L;
  p.D = E;
  p.N = N;
  p.u = tr.xc;
  p.delta = nn::linear_forward(tr.dt_low, w.dt_proj_w, {}, M, R, E);
  p.delta_bias = w.dt_proj_b;
  p.A.resize(E * N);
  for (std::size_t i = 0; i < E * N; ++i) {
    p.A[i] = -std::exp(w.A_log[i]);  // A = −exp(A_log)
  }
  p.Bm = Bm;
  p.Cm = Cm;
  p.Dskip = w.D;
  tr.mixed = selective_scan_forward(p);  // (M, E)
  if (branch != nullptr) {  // scan + attn ⊙ E, attn from the scan's input x
    tr.branch = mixer_branch_forward(*branch, tr.xc, mask, s.B, s.L, tr.mixed);
  }
  // (scan + attn ⊙ E) ⊙ SiLU(z) → out_proj
  tr.gated.resize(M * E);
  for (std::size_t i = 0; i < M * E; ++i) {
    tr.gated[i] = tr.mixed[i] * nn::silu(tr.z[i]);
  }
  tr.y = nn::linear_forward(tr.gated, w.out_proj, {}, M, E, s.D);
  return tr;
}

/// y (B, L, D) for input x (B, L, D) and pad mask (B, L) (1 = real; empty = no padding); with
/// `branch` the hybrid mixer, whose ranking loss is added to *gate_loss (when not null).
template <class T>
std::vector<T> mamba_mixer_forward(MambaMixerShape const& s, MambaMixerWeights<T> const& w,
                                   std::vector<T> const& x, std::vector<T> const& mask,
                                   MixerBranch<T> const* branch = nullptr,
                                   T* gate_loss = nullptr) {
  auto tr = mamba_mixer_trace(s, w, x, mask, branch);
  if (branch != nullptr && gate_loss != nullptr) {
    *gate_loss += tr.branch.res.gate_loss;
  }
  return std::move(tr.y);
}

/// Gradients of the hybrid (or plain) mixer for the loss Σ dy ⊙ y + α · ranking loss.
template <class T>
struct MambaMixerGradients {
  std::vector<T> dx;                   // (B, L, D)
  MambaMixerWeights<T> dw;             // as the weights
  std::vector<T> dE;                   // (E) (with the branch)
  attn::SparseBranchGrads<T> branch;   // dxx_proj, dmlp (with the branch; its dx is folded in)
};

/// The reference backward, step by step as docs/math/mamba_mixer.md, from the forward's trace.
template <class T>
MambaMixerGradients<T> mamba_mixer_backward(MambaMixerShape const& s, MambaMixerWeights<T> const& w,
                                            std::vector<T> const& x, std::vector<T> const& mask,
                                            MambaMixerTrace<T> const& tr, std::vector<T> const& dy,
                                            MixerBranch<T> const* branch = nullptr) {
  std::size_t const M = s.B * s.L, E = s.E, N = s.N, R = s.R;
  MambaMixerGradients<T> g;
  auto& dw = g.dw;
  std::vector<T> none;  // no bias
  dw.out_proj.assign(w.out_proj.size(), T(0));
  auto const dgated = nn::linear_backward(dy, tr.gated, w.out_proj, dw.out_proj, none, M, E, s.D);
  std::vector<T> dmixed, dz;  // the gate
  nn::silu_gate_backward(dgated, tr.mixed, tr.z, dmixed, dz);
  auto const sg = selective_scan_backward(tr.p, dmixed);  // dmixed is also the scan's gradient
  dw.dt_proj_b = sg.ddelta_bias;
  dw.D = sg.dD;
  dw.A_log.resize(E * N);
  for (std::size_t i = 0; i < E * N; ++i) {
    dw.A_log[i] = sg.dA[i] * tr.p.A[i];  // dA/dA_log = −exp(A_log) = A
  }
  dw.dt_proj_w.assign(w.dt_proj_w.size(), T(0));
  auto const ddt_low =
      nn::linear_backward(sg.ddelta, tr.dt_low, w.dt_proj_w, dw.dt_proj_w, none, M, R, E);
  std::vector<T> dxdbl(M * (R + 2 * N));
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t r = 0; r < R; ++r) dxdbl[m * (R + 2 * N) + r] = ddt_low[m * R + r];
    for (std::size_t n = 0; n < N; ++n) {
      dxdbl[m * (R + 2 * N) + R + n] = sg.dB[m * N + n];
      dxdbl[m * (R + 2 * N) + R + N + n] = sg.dC[m * N + n];
    }
  }
  dw.x_proj.assign(w.x_proj.size(), T(0));
  auto dxc = nn::linear_backward(dxdbl, tr.xc, w.x_proj, dw.x_proj, none, M, E, R + 2 * N);
  for (std::size_t i = 0; i < M * E; ++i) {
    dxc[i] += sg.du[i];
  }
  if (branch != nullptr) {  // dE, and the branch's gradient of xc (V and xx_proj)
    g.branch = mixer_branch_backward(*branch, tr.branch, tr.xc, dmixed, s.B, s.L, g.dE);
    for (std::size_t i = 0; i < M * E; ++i) {
      dxc[i] += g.branch.dx[i];
    }
  }
  if (!mask.empty()) {  // xc = (...) ⊙ m
    for (std::size_t i = 0; i < M * E; ++i) {
      dxc[i] *= mask[i / E];
    }
  }
  std::vector<T> dxin;
  dw.conv_w.assign(w.conv_w.size(), T(0));
  dw.conv_b.assign(w.conv_b.size(), T(0));
  nn::conv1d_backward(dxc, tr.xin, w.conv_w, w.conv_b, mask, s.B, s.L, E, s.K, true, dxin,
                      dw.conv_w, dw.conv_b);
  std::vector<T> dxz(M * 2 * E);
  for (std::size_t m = 0; m < M; ++m) {
    for (std::size_t e = 0; e < E; ++e) {
      dxz[m * 2 * E + e] = dxin[m * E + e];
      dxz[m * 2 * E + E + e] = dz[m * E + e];
    }
  }
  dw.in_proj.assign(w.in_proj.size(), T(0));
  g.dx = nn::linear_backward(dxz, x, w.in_proj, dw.in_proj, none, M, s.D, 2 * E);
  return g;
}

}  // namespace hax::reference::ssm
