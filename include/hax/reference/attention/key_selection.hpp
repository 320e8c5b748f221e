// SPDX-License-Identifier: MIT
/// \file
/// Serial references of key selection (docs/math/key_selection.md), as plain loops over
/// row-major std::vectors, written to be read: the MLP input features in both semantics, the
/// scoring MLP and its backward, the causal top-k' by sorting every prefix, and the ranking
/// targets, loss and gradient. The oracle of hax::attn's key selection in the tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <vector>

namespace hax::reference::attn {

/// feat (B, L, 2N) = [k_j, normalise(Σ_{t<=j} q_t)], per row (causal) or per feature column over
/// all L positions (reference); norms floored at 1e-12.
template <class T>
std::vector<T> key_selection_features(std::vector<T> const& q, std::vector<T> const& k, int B,
                                      int L, int N, bool causal) {
  std::vector<T> feat(static_cast<std::size_t>(B) * L * 2 * N);
  std::vector<T> prefix(static_cast<std::size_t>(L) * N);
  for (int b = 0; b < B; ++b) {
    for (int n = 0; n < N; ++n) {
      T run = 0;
      for (int j = 0; j < L; ++j) {
        run += q[(static_cast<std::size_t>(b) * L + j) * N + n];
        prefix[static_cast<std::size_t>(j) * N + n] = run;
      }
    }
    std::vector<T> norm_row(L, T(0)), norm_col(N, T(0));
    for (int j = 0; j < L; ++j) {
      for (int n = 0; n < N; ++n) {
        T const p = prefix[static_cast<std::size_t>(j) * N + n];
        norm_row[j] += p * p;
        norm_col[n] += p * p;
      }
    }
    for (int j = 0; j < L; ++j) {
      for (int n = 0; n < N; ++n) {
        std::size_t const row = (static_cast<std::size_t>(b) * L + j);
        T const norm = std::max(std::sqrt(causal ? norm_row[j] : norm_col[n]), T(1e-12));
        feat[row * 2 * N + n] = k[row * N + n];
        feat[row * 2 * N + N + n] = prefix[static_cast<std::size_t>(j) * N + n] / norm;
      }
    }
  }
  return feat;
}

/// The scoring MLP's parameters, row-major (out, in).
template <class T>
struct ScoreMlpParams {
  int D = 0, H = 0;
  std::vector<T> w1, b1, w2, b2, w3, b3;  // (H, D), (H), (H, H), (H), (1, H), (1)
};

/// Hidden activations (post-ReLU) and the score of one input row t (D).
template <class T>
struct MlpRow {
  std::vector<T> h1, h2;  // (H), (H)
  T score;
};

template <class T>
MlpRow<T> score_mlp_row(ScoreMlpParams<T> const& p, T const* t) {
  MlpRow<T> r{std::vector<T>(p.H), std::vector<T>(p.H), p.b3[0]};
  for (int o = 0; o < p.H; ++o) {
    T acc = p.b1[o];
    for (int i = 0; i < p.D; ++i) { acc += p.w1[static_cast<std::size_t>(o) * p.D + i] * t[i]; }
    r.h1[o] = std::max(acc, T(0));
  }
  for (int o = 0; o < p.H; ++o) {
    T acc = p.b2[o];
    for (int i = 0; i < p.H; ++i) { acc += p.w2[static_cast<std::size_t>(o) * p.H + i] * r.h1[i]; }
    r.h2[o] = std::max(acc, T(0));
  }
  for (int i = 0; i < p.H; ++i) { r.score += p.w3[i] * r.h2[i]; }
  return r;
}

/// scores (rows) of feat (rows, D).
template <class T>
std::vector<T> score_mlp_forward(ScoreMlpParams<T> const& p, std::vector<T> const& feat) {
  std::size_t const rows = feat.size() / p.D;
  std::vector<T> s(rows);
  for (std::size_t r = 0; r < rows; ++r) { s[r] = score_mlp_row(p, feat.data() + r * p.D).score; }
  return s;
}

/// Accumulates (+=) into g the gradient of Σ_r ds[r] · score(feat row rows[r]) (rows[r] < 0 skipped).
template <class T>
void score_mlp_backward(ScoreMlpParams<T> const& p, std::vector<T> const& feat,
                        std::vector<int> const& rows, std::vector<T> const& ds,
                        ScoreMlpParams<T>& g) {
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (rows[r] < 0) { continue; }
    T const* t = feat.data() + static_cast<std::size_t>(rows[r]) * p.D;
    auto const a = score_mlp_row(p, t);
    std::vector<T> g2(p.H), g1(p.H, T(0));
    for (int o = 0; o < p.H; ++o) { g2[o] = a.h2[o] > 0 ? ds[r] * p.w3[o] : T(0); }
    for (int o = 0; o < p.H; ++o) {
      for (int i = 0; i < p.H; ++i) { g1[i] += g2[o] * p.w2[static_cast<std::size_t>(o) * p.H + i]; }
    }
    for (int i = 0; i < p.H; ++i) { g1[i] = a.h1[i] > 0 ? g1[i] : T(0); }
    g.b3[0] += ds[r];
    for (int i = 0; i < p.H; ++i) { g.w3[i] += ds[r] * a.h2[i]; }
    for (int o = 0; o < p.H; ++o) {
      g.b2[o] += g2[o];
      for (int i = 0; i < p.H; ++i) { g.w2[static_cast<std::size_t>(o) * p.H + i] += g2[o] * a.h1[i]; }
      g.b1[o] += g1[o];
      for (int i = 0; i < p.D; ++i) { g.w1[static_cast<std::size_t>(o) * p.D + i] += g1[o] * t[i]; }
    }
  }
}

/// idx (B, L, k'): for query i, positions 0..i sorted by (score descending, position descending),
/// the first k' of them, then -1; a NaN score ranks as -inf. Sorts every prefix: O(L² log L).
template <class T>
std::vector<int> causal_topk(std::vector<T> const& scores, int B, int L, int kprime) {
  std::vector<int> idx(static_cast<std::size_t>(B) * L * kprime, -1);
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < L; ++i) {
      std::vector<int> order(i + 1);
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int x, int y) {
        auto const key = [](T v) { return std::isnan(v) ? -std::numeric_limits<T>::infinity() : v; };
        T const sx = key(scores[b * L + x]), sy = key(scores[b * L + y]);
        return sx > sy || (sx == sy && x > y);
      });
      for (int t = 0; t < std::min(kprime, i + 1); ++t) {
        idx[(static_cast<std::size_t>(b) * L + i) * kprime + t] = order[t];
      }
    }
  }
  return idx;
}

/// targets (B, k'): a_c = Σ_{i = j..end-1} σ(q_i · k_j), j = cand(b, c), end = lengths[b] (causal)
/// or L (reference); 0 where cand = -1.
template <class T>
std::vector<T> ranking_targets(std::vector<T> const& q, std::vector<T> const& k,
                               std::vector<int> const& lengths, std::vector<int> const& cand,
                               int B, int L, int N, int kprime, bool causal) {
  std::vector<T> a(static_cast<std::size_t>(B) * kprime, T(0));
  for (int b = 0; b < B; ++b) {
    for (int c = 0; c < kprime; ++c) {
      int const j = cand[b * kprime + c];
      if (j < 0) { continue; }
      int const end = causal ? lengths[b] : L;
      for (int i = j; i < end; ++i) {
        T dot = 0;
        for (int n = 0; n < N; ++n) {
          dot += q[(static_cast<std::size_t>(b) * L + i) * N + n] *
                 k[(static_cast<std::size_t>(b) * L + j) * N + n];
        }
        a[b * kprime + c] += T(1) / (T(1) + std::exp(-dot));
      }
    }
  }
  return a;
}

/// The mean pairwise BCE-with-logits over B·k'·k' ordered pairs, by the textbook formula
/// -(t log σ(x) + (1 - t) log(1 - σ(x))), x = s_a - s_b; fills ds (B, k') with dLoss/ds_a
/// summed pair by pair (both the (a, c) and the (c, a) terms). s: (B, k') candidate scores.
template <class T>
T ranking_loss(std::vector<T> const& s, std::vector<T> const& targets, int B, int kprime,
               std::vector<T>& ds) {
  ds.assign(static_cast<std::size_t>(B) * kprime, T(0));
  T const m = T(B) * kprime * kprime;
  T loss = 0;
  for (int b = 0; b < B; ++b) {
    for (int a = 0; a < kprime; ++a) {
      for (int c = 0; c < kprime; ++c) {
        T const x = s[b * kprime + a] - s[b * kprime + c];
        T const ta = targets[b * kprime + a], tc = targets[b * kprime + c];
        T const t = ta > tc ? T(1) : (ta < tc ? T(0) : T(0.5));
        T const sig = T(1) / (T(1) + std::exp(-x));
        loss += -(t * std::log(sig) + (T(1) - t) * std::log(T(1) - sig)) / m;
        ds[b * kprime + a] += (sig - t) / m;
        ds[b * kprime + c] -= (sig - t) / m;
      }
    }
  }
  return loss;
}

}  // namespace hax::reference::attn
