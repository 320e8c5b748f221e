// SPDX-License-Identifier: MIT
/// \file
/// Dense masked single-head attention, forward and backward, as plain loops over row-major
/// std::vectors: the full (L, L) score matrix per sequence masked by pattern.allows. O(L²): tests
/// only. It is the oracle of hax::attn::sparse_attention_forward/backward and implements the same
/// semantics (hax/attention/sparse_attention.hpp): in `causal`, pad keys are masked out, pad
/// queries and empty rows give 0; in `reference`, the pad mask is ignored and an empty row is the
/// mean of v over all L positions, without gradient to q or k.
#pragma once

#include <hax/attention/pattern/concepts.hpp>

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

namespace hax::reference::attn {

/// Outputs of the dense forward.
template <class T>
struct DenseAttentionForward {
  std::vector<T> o;    // (B, L, Dv)
  std::vector<T> lse;  // (B, L); -inf for empty rows
};

/// Gradients of the dense backward.
template <class T>
struct DenseAttentionBackward {
  std::vector<T> dq, dk;  // (B, L, N)
  std::vector<T> dv;      // (B, L, Dv)
};

/// The row's mask over keys 0..L-1: allows, minus pad keys in causal semantics; empty for pad
/// queries in causal semantics. valid (B, L) may be empty (no padding).
template <class P>
std::vector<bool> dense_row_mask(P const& pattern, std::vector<int> const& valid, int b, int i, int L,
                                 bool causal) {
  auto is_real = [&](int t) { return valid.empty() || valid[static_cast<std::size_t>(b * L + t)] != 0; };
  std::vector<bool> mask(static_cast<std::size_t>(L), false);
  if (causal && !is_real(i)) { return mask; }
  for (int t = 0; t < L; ++t) {
    mask[static_cast<std::size_t>(t)] = pattern.allows(b, i, t) && (!causal || is_real(t));
  }
  return mask;
}

/// Dense masked attention forward; q, k (B, L, N), v (B, L, Dv), valid (B, L) or empty.
template <class T, class P>
DenseAttentionForward<T> dense_masked_attention_forward(P const& pattern, std::vector<T> const& q,
                                                        std::vector<T> const& k, std::vector<T> const& v,
                                                        std::vector<int> const& valid, int B, int L, int N,
                                                        int Dv, T scale, hax::attn::Semantics semantics) {
  bool const causal = semantics == hax::attn::Semantics::causal;
  auto at = [](int b, int i, int d, int L_, int D) { return static_cast<std::size_t>((b * L_ + i) * D + d); };
  DenseAttentionForward<T> out{std::vector<T>(static_cast<std::size_t>(B * L * Dv), T(0)),
                               std::vector<T>(static_cast<std::size_t>(B * L), T(0))};
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < L; ++i) {
      auto const mask = dense_row_mask(pattern, valid, b, i, L, causal);
      std::vector<T> s(static_cast<std::size_t>(L), T(0));
      T m = -std::numeric_limits<T>::infinity();
      for (int t = 0; t < L; ++t) {
        if (!mask[static_cast<std::size_t>(t)]) { continue; }
        T dot = 0;
        for (int n = 0; n < N; ++n) { dot += q[at(b, i, n, L, N)] * k[at(b, t, n, L, N)]; }
        s[static_cast<std::size_t>(t)] = dot * scale;
        m = std::max(m, s[static_cast<std::size_t>(t)]);
      }
      T sum = 0;
      for (int t = 0; t < L; ++t) {
        if (mask[static_cast<std::size_t>(t)]) { sum += std::exp(s[static_cast<std::size_t>(t)] - m); }
      }
      out.lse[static_cast<std::size_t>(b * L + i)] = sum > 0 ? m + std::log(sum) : -std::numeric_limits<T>::infinity();
      for (int t = 0; t < L; ++t) {
        T p;
        if (sum > 0) {
          p = mask[static_cast<std::size_t>(t)] ? std::exp(s[static_cast<std::size_t>(t)] - m) / sum : T(0);
        } else {
          p = causal ? T(0) : T(1) / T(L);  // empty row
        }
        for (int d = 0; d < Dv; ++d) { out.o[at(b, i, d, L, Dv)] += p * v[at(b, t, d, L, Dv)]; }
      }
    }
  }
  return out;
}

/// Dense masked attention backward for the loss Σ do·o: dq, dk, dv.
template <class T, class P>
DenseAttentionBackward<T> dense_masked_attention_backward(P const& pattern, std::vector<T> const& q,
                                                          std::vector<T> const& k, std::vector<T> const& v,
                                                          std::vector<int> const& valid, std::vector<T> const& dout,
                                                          int B, int L, int N, int Dv, T scale,
                                                          hax::attn::Semantics semantics) {
  bool const causal = semantics == hax::attn::Semantics::causal;
  auto at = [](int b, int i, int d, int L_, int D) { return static_cast<std::size_t>((b * L_ + i) * D + d); };
  DenseAttentionBackward<T> g{std::vector<T>(q.size(), T(0)), std::vector<T>(k.size(), T(0)),
                              std::vector<T>(v.size(), T(0))};
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < L; ++i) {
      auto const mask = dense_row_mask(pattern, valid, b, i, L, causal);
      // Probabilities of row i, as in the forward.
      std::vector<T> p(static_cast<std::size_t>(L), T(0));
      T m = -std::numeric_limits<T>::infinity();
      for (int t = 0; t < L; ++t) {
        if (!mask[static_cast<std::size_t>(t)]) { continue; }
        T dot = 0;
        for (int n = 0; n < N; ++n) { dot += q[at(b, i, n, L, N)] * k[at(b, t, n, L, N)]; }
        p[static_cast<std::size_t>(t)] = dot * scale;
        m = std::max(m, p[static_cast<std::size_t>(t)]);
      }
      T sum = 0;
      for (int t = 0; t < L; ++t) {
        if (mask[static_cast<std::size_t>(t)]) {
          p[static_cast<std::size_t>(t)] = std::exp(p[static_cast<std::size_t>(t)] - m);
          sum += p[static_cast<std::size_t>(t)];
        }
      }
      if (sum == 0) {  // empty row: reference semantics spreads do over all v; no dq, dk
        if (!causal) {
          for (int t = 0; t < L; ++t) {
            for (int d = 0; d < Dv; ++d) { g.dv[at(b, t, d, L, Dv)] += dout[at(b, i, d, L, Dv)] / T(L); }
          }
        }
        continue;
      }
      for (int t = 0; t < L; ++t) { p[static_cast<std::size_t>(t)] /= sum; }
      // dP_t = do_i · v_t; dS_t = P_t (dP_t - Σ_u P_u dP_u).
      std::vector<T> dp(static_cast<std::size_t>(L), T(0));
      T pdp = 0;
      for (int t = 0; t < L; ++t) {
        for (int d = 0; d < Dv; ++d) { dp[static_cast<std::size_t>(t)] += dout[at(b, i, d, L, Dv)] * v[at(b, t, d, L, Dv)]; }
        pdp += p[static_cast<std::size_t>(t)] * dp[static_cast<std::size_t>(t)];
      }
      for (int t = 0; t < L; ++t) {
        T const pt = p[static_cast<std::size_t>(t)];
        if (pt == 0) { continue; }
        T const ds = pt * (dp[static_cast<std::size_t>(t)] - pdp) * scale;
        for (int n = 0; n < N; ++n) {
          g.dq[at(b, i, n, L, N)] += ds * k[at(b, t, n, L, N)];
          g.dk[at(b, t, n, L, N)] += ds * q[at(b, i, n, L, N)];
        }
        for (int d = 0; d < Dv; ++d) { g.dv[at(b, t, d, L, Dv)] += pt * dout[at(b, i, d, L, Dv)]; }
      }
    }
  }
  return g;
}

}  // namespace hax::reference::attn
