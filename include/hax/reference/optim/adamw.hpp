// SPDX-License-Identifier: MIT
/// \file
/// Plain serial AdamW over std::vector<double>, written to be read: the oracle for
/// hax::optim::adamw_update. Same formulas as torch.optim.AdamW (amsgrad off), one element at a
/// time, every per-step scalar recomputed in the obvious way.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hax::reference::optim {

/// The state AdamW keeps next to the parameters.
struct AdamWState {
  std::vector<double> m;  // (n) first moment, starts at 0
  std::vector<double> v;  // (n) second moment, starts at 0
  std::int64_t t = 0;     // completed updates
};

/// One update: t ← t + 1, then for every i
///   p ← p − lr·wd·p (only if decay[i], or for all when `decay` is empty)
///   m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
///   p ← p − lr · (m / (1 − β1ᵗ)) / (sqrt(v / (1 − β2ᵗ)) + eps)
inline void adamw_step(std::vector<double>& p, std::vector<double> const& g, AdamWState& state,
                       double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
                       double weight_decay = 0.01, std::vector<bool> const& decay = {}) {
  std::size_t const n = p.size();
  if (state.m.empty()) {
    state.m.assign(n, 0.0);
    state.v.assign(n, 0.0);
  }
  state.t += 1;
  double const bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(state.t));
  double const bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(state.t));
  for (std::size_t i = 0; i < n; ++i) {
    if (decay.empty() || decay[i]) {
      p[i] -= lr * weight_decay * p[i];
    }
    state.m[i] = beta1 * state.m[i] + (1.0 - beta1) * g[i];
    state.v[i] = beta2 * state.v[i] + (1.0 - beta2) * g[i] * g[i];
    double const m_hat = state.m[i] / bias_correction1;
    double const v_hat = state.v[i] / bias_correction2;
    p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
  }
}

/// The reference's LambdaLR warm-up: update t (1-based) uses lr·(t − 1)/warmup while t ≤ warmup,
/// lr after.
inline double warmup_lr(double lr, std::int64_t warmup, std::int64_t t) {
  std::int64_t const scheduler_count = t - 1;  // LambdaLR's counter when update t runs
  if (scheduler_count < warmup) {
    return lr * static_cast<double>(scheduler_count) / static_cast<double>(warmup);
  }
  return lr;
}

}  // namespace hax::reference::optim
