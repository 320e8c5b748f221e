// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of the HAX sparse-attention branch (hax::attn::SparseBranch), as plain loops
/// over row-major std::vectors built from the other references: the xx projection and the
/// [K, Q] split, the LSH candidates by a direct scan (reference/attention/lsh.hpp), key selection
/// by sorting every prefix (reference/attention/key_selection.hpp), the ranking loss, and dense
/// masked attention over the resulting pattern (reference/attention/dense_masked_attention.hpp).
/// O(L²): tests only. The random draws (projection, candidate sampling) use the same counter-based
/// streams as the device code, so both see the same patterns.
#pragma once

#include <hax/attention/sparse_branch.hpp>
#include <hax/core/random.hpp>
#include <hax/reference/attention/dense_masked_attention.hpp>
#include <hax/reference/attention/key_selection.hpp>
#include <hax/reference/attention/lsh.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hax::reference::attn {

/// The branch's parameters, row-major.
template <class T>
struct SparseBranchParams {
  std::vector<T> xx_proj;  // (2N, d_inner)
  ScoreMlpParams<T> mlp;   // D = H = 2N (only with key selection)
};

/// The reference forward's results and what its backward needs.
template <class T>
struct SparseBranchResult {
  std::vector<T> attn;                                     // (B, L, d_inner)
  std::vector<T> q, k;                                     // (B, L, N); k scaled by 1/√N
  hax::attn::RuntimePattern<Kokkos::HostSpace> pattern;    // with host candidate lists
  bool ranking = false;                                    // the ranking loss was computed
  T gate_loss = 0;                                         // the ranking loss (0 without ranking)
  std::vector<T> feat;                                     // (B, L, 2N) MLP input (key selection)
  std::vector<int> cand;                                   // (B, k') sampled candidates (ranking)
  std::vector<T> ds;                                       // (B, k') dLoss/ds (ranking)
};

/// The reference gradients: dx = the branch's own contribution (not accumulated onto anything).
template <class T>
struct SparseBranchGrads {
  std::vector<T> dx;       // (B, L, d_inner)
  std::vector<T> dxx_proj; // (2N, d_inner)
  ScoreMlpParams<T> dmlp;  // as params.mlp
};

/// cand (B, k'): Floyd's sampling of k' distinct positions in [0, lengths[b]), with the stream
/// (seed, layer, step, b) of hax::attn::sample_candidates; lengths[b] <= k' gives 0..len-1, -1.
inline std::vector<int> sample_candidates(std::vector<int> const& lengths, std::uint64_t seed, std::uint64_t layer,
                                          std::uint64_t step, int B, int kprime) {
  std::vector<int> cand(static_cast<std::size_t>(B) * kprime, -1);
  for (int b = 0; b < B; ++b) {
    int* row = cand.data() + static_cast<std::size_t>(b) * kprime;
    int const n = lengths[b];
    if (n <= kprime) {
      for (int c = 0; c < n; ++c) { row[c] = c; }
      continue;
    }
    core::RngStream rng(core::stream_key(seed, layer, step, static_cast<std::uint64_t>(b)));
    int count = 0;
    for (int m = n - kprime; m < n; ++m) {
      int const t = static_cast<int>(rng.uniform_int(static_cast<std::uint32_t>(m + 1)));
      bool taken = false;
      for (int c = 0; c < count; ++c) { taken = taken || row[c] == t; }
      row[count++] = taken ? m : t;
    }
  }
  return cand;
}

/// Host View (B, L, k') holding idx, for RuntimePattern::set_candidates.
inline Kokkos::View<int***, Kokkos::LayoutRight, Kokkos::HostSpace> host_idx(std::vector<int> const& idx, int B,
                                                                             int L, int kprime) {
  Kokkos::View<int***, Kokkos::LayoutRight, Kokkos::HostSpace> v("hax::reference::sparse_branch::idx", B, L, kprime);
  for (std::size_t i = 0; i < idx.size(); ++i) { v.data()[i] = idx[i]; }
  return v;
}

/// The branch forward. x (B, L, d_inner), valid (B, L) (non-zero = real token) or empty.
template <class T>
SparseBranchResult<T> sparse_branch_forward(hax::attn::SparseBranchConfig const& cfg, SparseBranchParams<T> const& p,
                                            std::vector<T> const& x, std::vector<int> const& valid, int B, int L,
                                            hax::attn::StepContext const& ctx) {
  using hax::attn::PatternKind;
  int const N = cfg.state_size, D = cfg.d_inner;
  bool const causal = cfg.semantics == hax::attn::Semantics::causal;
  auto const parts = hax::attn::parse_pattern_name(cfg.arch, cfg.keys);
  SparseBranchResult<T> r;
  // [K, Q] = split(x · W_xxᵀ), K scaled by 1/√N.
  r.q.assign(static_cast<std::size_t>(B) * L * N, T(0));
  r.k.assign(r.q.size(), T(0));
  T const inv = T(1) / std::sqrt(T(N));
  for (int row = 0; row < B * L; ++row) {
    for (int o = 0; o < 2 * N; ++o) {
      T acc = 0;
      for (int d = 0; d < D; ++d) { acc += p.xx_proj[static_cast<std::size_t>(o) * D + d] * x[static_cast<std::size_t>(row) * D + d]; }
      if (o < N) {
        r.k[static_cast<std::size_t>(row) * N + o] = acc * inv;
      } else {
        r.q[static_cast<std::size_t>(row) * N + o - N] = acc;
      }
    }
  }
  r.pattern = hax::attn::make_pattern<Kokkos::HostSpace>(cfg.arch, cfg.keys, L, cfg.max_length);
  for (auto const& part : parts) {
    int const kp = part.kprime;
    if (part.kind == PatternKind::sign_bin_lsh || part.kind == PatternKind::argmax_lsh) {
      int const h = cfg.num_hash;
      auto const wd = projection_matrix(ctx.seed, static_cast<std::uint64_t>(ctx.layer),
                                        hax::attn::projection_step(cfg, ctx), N, h);
      std::vector<T> const w(wd.begin(), wd.end());
      bool const sign = part.kind == PatternKind::sign_bin_lsh;
      auto const bq = hash_rows(lsh_prehash_transform(r.q, B, L, N, causal), w, B, L, N, h, sign);
      auto const bk = hash_rows(lsh_prehash_transform(r.k, B, L, N, causal), w, B, L, N, h, sign);
      r.pattern.set_candidates(part.kind, host_idx(lsh_candidates(bq, bk, B, L, kp), B, L, kp));
    } else if (part.kind == PatternKind::key_selection) {
      r.feat = key_selection_features(r.q, r.k, B, L, N, causal);
      auto const scores = score_mlp_forward(p.mlp, r.feat);  // (B·L)
      r.pattern.set_candidates(part.kind, host_idx(causal_topk(scores, B, L, kp), B, L, kp));
      if (ctx.training) {
        std::vector<int> lengths(B, L);
        if (!valid.empty()) {
          for (int b = 0; b < B; ++b) {
            lengths[b] = 0;
            for (int i = 0; i < L; ++i) { lengths[b] += valid[static_cast<std::size_t>(b) * L + i] != 0; }
          }
        }
        r.cand = sample_candidates(lengths, ctx.seed, static_cast<std::uint64_t>(ctx.layer), ctx.step, B, kp);
        for (int c : r.cand) {
          // The reference loss averages over all B·k'·k' pairs; short sequences are not modelled here.
          if (c < 0) { throw hax::invalid_argument("hax::reference::attn::sparse_branch_forward: a sequence is shorter than k'"); }
        }
        auto const targets = ranking_targets(r.q, r.k, lengths, r.cand, B, L, N, kp, causal);
        std::vector<T> s(r.cand.size());
        for (int b = 0; b < B; ++b) {
          for (int c = 0; c < kp; ++c) { s[b * kp + c] = scores[static_cast<std::size_t>(b) * L + r.cand[b * kp + c]]; }
        }
        r.gate_loss = ranking_loss(s, targets, B, kp, r.ds);
        r.ranking = true;
      }
    }
  }
  r.attn = dense_masked_attention_forward(r.pattern, r.q, r.k, x, valid, B, L, N, D, T(1), cfg.semantics).o;
  return r;
}

/// The branch backward for the loss Σ dattn ⊙ attn + α · gate_loss (α = ctx.gate_loss_weight).
template <class T>
SparseBranchGrads<T> sparse_branch_backward(hax::attn::SparseBranchConfig const& cfg, SparseBranchParams<T> const& p,
                                            SparseBranchResult<T> const& r, std::vector<T> const& x,
                                            std::vector<int> const& valid, std::vector<T> const& dattn, int B,
                                            int L, hax::attn::StepContext const& ctx) {
  int const N = cfg.state_size, D = cfg.d_inner;
  auto const g = dense_masked_attention_backward(r.pattern, r.q, r.k, x, valid, dattn, B, L, N, D, T(1), cfg.semantics);
  SparseBranchGrads<T> out;
  out.dx = g.dv;  // V = x
  out.dxx_proj.assign(p.xx_proj.size(), T(0));
  T const inv = T(1) / std::sqrt(T(N));
  for (int row = 0; row < B * L; ++row) {
    for (int o = 0; o < 2 * N; ++o) {
      // dxx = [dk / √N, dq]
      T const dxx = o < N ? g.dk[static_cast<std::size_t>(row) * N + o] * inv : g.dq[static_cast<std::size_t>(row) * N + o - N];
      for (int d = 0; d < D; ++d) {
        out.dxx_proj[static_cast<std::size_t>(o) * D + d] += dxx * x[static_cast<std::size_t>(row) * D + d];
        out.dx[static_cast<std::size_t>(row) * D + d] += dxx * p.xx_proj[static_cast<std::size_t>(o) * D + d];
      }
    }
  }
  if (r.ranking) {
    auto& m = out.dmlp;
    m.D = p.mlp.D;
    m.H = p.mlp.H;
    m.w1.assign(p.mlp.w1.size(), T(0));
    m.b1.assign(p.mlp.b1.size(), T(0));
    m.w2.assign(p.mlp.w2.size(), T(0));
    m.b2.assign(p.mlp.b2.size(), T(0));
    m.w3.assign(p.mlp.w3.size(), T(0));
    m.b3.assign(p.mlp.b3.size(), T(0));
    int const kp = static_cast<int>(r.cand.size()) / B;
    std::vector<int> rows(r.cand.size());
    std::vector<T> ds(r.ds.size());
    for (int b = 0; b < B; ++b) {
      for (int c = 0; c < kp; ++c) {
        rows[b * kp + c] = b * L + r.cand[b * kp + c];
        ds[b * kp + c] = T(ctx.gate_loss_weight) * r.ds[b * kp + c];
      }
    }
    score_mlp_backward(p.mlp, r.feat, rows, ds, m);
  }
  return out;
}

}  // namespace hax::reference::attn
