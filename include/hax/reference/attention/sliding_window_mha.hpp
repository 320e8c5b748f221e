// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of multi-head causal sliding-window softmax attention with RoPE (the Samba
/// attention layer) and its backward, over row-major std::vectors, written to be read: each query
/// row forms its window's probabilities explicitly. The oracle of hax::attn::sliding_window_mha_*.
#pragma once

#include <hax/reference/nn/linear.hpp>
#include <hax/reference/nn/rope.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace hax::reference::attn {

/// Sizes and settings of one layer; D = H·Dh is the model width.
struct SlidingWindowMhaShape {
  std::size_t B, L, H, Dh, window;
  double theta;
  std::size_t D() const { return H * Dh; }
};

/// Gradients of the weights, accumulated (+=) by sliding_window_mha_backward.
template <class T>
struct SlidingWindowMhaGrads {
  std::vector<T> dw_q, dw_k, dw_v, dw_o;  // (D, D) each
};

namespace detail {

/// The attention probabilities of query (b, h, i) over its window, keys from `first` to i:
/// p[j − first]; empty when the query is a pad. valid: (B, L) 1/0, or empty for no padding.
template <class T>
std::vector<double> window_probs(std::vector<T> const& q, std::vector<T> const& k,
                                 std::vector<int> const& valid, SlidingWindowMhaShape const& s,
                                 std::size_t b, std::size_t h, std::size_t i, std::size_t first) {
  auto real = [&](std::size_t t) { return valid.empty() || valid[b * s.L + t] != 0; };
  std::vector<double> p;
  if (!real(i)) {
    return p;  // pad query: zero output
  }
  double const scale = 1.0 / std::sqrt(double(s.Dh));
  double max_logit = -INFINITY;
  std::vector<double> logits(i - first + 1, -INFINITY);
  for (std::size_t j = first; j <= i; ++j) {
    if (!real(j)) {
      continue;  // pad keys are never attended
    }
    double dot = 0;
    for (std::size_t d = 0; d < s.Dh; ++d) {
      dot += double(q[((b * s.L + i) * s.H + h) * s.Dh + d]) * double(k[((b * s.L + j) * s.H + h) * s.Dh + d]);
    }
    logits[j - first] = dot * scale;
    max_logit = std::max(max_logit, logits[j - first]);
  }
  p.assign(logits.size(), 0.0);
  double sum = 0;
  for (std::size_t j = 0; j < p.size(); ++j) {
    p[j] = std::isinf(logits[j]) ? 0.0 : std::exp(logits[j] - max_logit);
    sum += p[j];
  }
  for (auto& pj : p) {
    pj /= sum;
  }
  return p;
}

template <class T>
std::size_t first_key(SlidingWindowMhaShape const& s, std::size_t i) {
  return i + 1 >= s.window ? i + 1 - s.window : 0;  // window keys, the query itself included
}

}  // namespace detail

/// y (B, L, D) from x (B, L, D), W_q, W_k, W_v (D, D), W_o (D, D) and valid (B, L) (empty = none).
template <class T>
std::vector<T> sliding_window_mha_forward(std::vector<T> const& x, std::vector<T> const& w_q,
                                          std::vector<T> const& w_k, std::vector<T> const& w_v,
                                          std::vector<T> const& w_o, std::vector<int> const& valid,
                                          SlidingWindowMhaShape const& s) {
  std::size_t const M = s.B * s.L, D = s.D();
  std::vector<T> const none;
  auto const q = nn::rope(nn::linear_forward(x, w_q, none, M, D, D), s.B, s.L, s.H, s.Dh, s.theta);
  auto const k = nn::rope(nn::linear_forward(x, w_k, none, M, D, D), s.B, s.L, s.H, s.Dh, s.theta);
  auto const v = nn::linear_forward(x, w_v, none, M, D, D);
  std::vector<T> o(M * D, T(0));
  for (std::size_t b = 0; b < s.B; ++b) {
    for (std::size_t h = 0; h < s.H; ++h) {
      for (std::size_t i = 0; i < s.L; ++i) {
        std::size_t const first = detail::first_key<T>(s, i);
        auto const p = detail::window_probs(q, k, valid, s, b, h, i, first);
        for (std::size_t j = 0; j < p.size(); ++j) {
          for (std::size_t d = 0; d < s.Dh; ++d) {
            o[((b * s.L + i) * s.H + h) * s.Dh + d] +=
                T(p[j]) * v[((b * s.L + first + j) * s.H + h) * s.Dh + d];
          }
        }
      }
    }
  }
  return nn::linear_forward(o, w_o, none, M, D, D);
}

/// Returns dx (B, L, D) (written) and accumulates the weight gradients into g (+=). Recomputes
/// the forward; softmax backward per row: ds_j = p_j (dp_j − Σ_l p_l dp_l), dp_j = do·v_j.
template <class T>
std::vector<T> sliding_window_mha_backward(std::vector<T> const& dy, std::vector<T> const& x,
                                           std::vector<T> const& w_q, std::vector<T> const& w_k,
                                           std::vector<T> const& w_v, std::vector<T> const& w_o,
                                           std::vector<int> const& valid,
                                           SlidingWindowMhaShape const& s,
                                           SlidingWindowMhaGrads<T>& g) {
  std::size_t const M = s.B * s.L, D = s.D();
  std::vector<T> none, no_db;
  auto const q = nn::rope(nn::linear_forward(x, w_q, none, M, D, D), s.B, s.L, s.H, s.Dh, s.theta);
  auto const k = nn::rope(nn::linear_forward(x, w_k, none, M, D, D), s.B, s.L, s.H, s.Dh, s.theta);
  auto const v = nn::linear_forward(x, w_v, none, M, D, D);
  std::vector<T> o(M * D, T(0)), dq(M * D, T(0)), dk(M * D, T(0)), dv(M * D, T(0));
  double const scale = 1.0 / std::sqrt(double(s.Dh));
  auto at = [&](std::size_t b, std::size_t t, std::size_t h, std::size_t d) {
    return ((b * s.L + t) * s.H + h) * s.Dh + d;
  };
  std::vector<std::vector<double>> probs(s.B * s.H * s.L);
  for (std::size_t b = 0; b < s.B; ++b) {
    for (std::size_t h = 0; h < s.H; ++h) {
      for (std::size_t i = 0; i < s.L; ++i) {
        std::size_t const first = detail::first_key<T>(s, i);
        auto& p = probs[(b * s.H + h) * s.L + i];
        p = detail::window_probs(q, k, valid, s, b, h, i, first);
        for (std::size_t j = 0; j < p.size(); ++j) {
          for (std::size_t d = 0; d < s.Dh; ++d) {
            o[at(b, i, h, d)] += T(p[j]) * v[at(b, first + j, h, d)];
          }
        }
      }
    }
  }
  auto const d_o = nn::linear_backward(dy, o, w_o, g.dw_o, no_db, M, D, D);  // do = dy·W_o
  for (std::size_t b = 0; b < s.B; ++b) {
    for (std::size_t h = 0; h < s.H; ++h) {
      for (std::size_t i = 0; i < s.L; ++i) {
        std::size_t const first = detail::first_key<T>(s, i);
        auto const& p = probs[(b * s.H + h) * s.L + i];
        std::vector<double> dp(p.size(), 0.0);
        double p_dot_dp = 0;
        for (std::size_t j = 0; j < p.size(); ++j) {
          for (std::size_t d = 0; d < s.Dh; ++d) {
            dp[j] += double(d_o[at(b, i, h, d)]) * double(v[at(b, first + j, h, d)]);
            dv[at(b, first + j, h, d)] += T(p[j]) * d_o[at(b, i, h, d)];
          }
          p_dot_dp += p[j] * dp[j];
        }
        for (std::size_t j = 0; j < p.size(); ++j) {
          double const ds = p[j] * (dp[j] - p_dot_dp) * scale;  // ∂loss/∂(q·k) of key first + j
          for (std::size_t d = 0; d < s.Dh; ++d) {
            dq[at(b, i, h, d)] += T(ds * double(k[at(b, first + j, h, d)]));
            dk[at(b, first + j, h, d)] += T(ds * double(q[at(b, i, h, d)]));
          }
        }
      }
    }
  }
  // RoPE is a rotation: its backward rotates by the opposite angle.
  auto const dq_pre = nn::rope(dq, s.B, s.L, s.H, s.Dh, s.theta, true);
  auto const dk_pre = nn::rope(dk, s.B, s.L, s.H, s.Dh, s.theta, true);
  auto dx = nn::linear_backward(dq_pre, x, w_q, g.dw_q, no_db, M, D, D);
  auto const dx_k = nn::linear_backward(dk_pre, x, w_k, g.dw_k, no_db, M, D, D);
  auto const dx_v = nn::linear_backward(dv, x, w_v, g.dw_v, no_db, M, D, D);
  for (std::size_t i = 0; i < dx.size(); ++i) {
    dx[i] += dx_k[i] + dx_v[i];
  }
  return dx;
}

}  // namespace hax::reference::attn
