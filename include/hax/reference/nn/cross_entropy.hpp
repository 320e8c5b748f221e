// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of the masked cross-entropy (token-level mean over masked positions), its
/// gradient, and per-item masked accuracy with the batch mean, as plain loops over row-major
/// std::vectors, written to be read. Same conventions as hax/nn/cross_entropy.hpp: an empty mask
/// gives loss 0 and gradient 0; argmax ties go to the lowest index; items without masked positions
/// get accuracy 0 and are left out of the batch mean.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hax::reference::nn {

/// Positions are (B·L) rows of `logits` (B·L, V); labels and mask hold one entry per row.
/// Returns the loss; writes dlogits (B·L, V) = ∂loss/∂logits.
template <class T, class Label, class Mask>
T cross_entropy(std::vector<T> const& logits, std::vector<Label> const& labels,
                std::vector<Mask> const& mask, std::size_t V, std::vector<T>& dlogits) {
  std::size_t const rows = mask.size();
  std::size_t count = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    count += mask[r] != 0 ? 1 : 0;
  }
  dlogits.assign(rows * V, T(0));
  if (count == 0) {
    return T(0);  // no scored position: loss 0, gradient 0
  }
  T loss = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    if (mask[r] == 0) {
      continue;
    }
    T const* z = &logits[r * V];
    T z_max = z[0];
    for (std::size_t v = 1; v < V; ++v) {
      z_max = std::max(z_max, z[v]);
    }
    T denom = 0;
    for (std::size_t v = 0; v < V; ++v) {
      denom += std::exp(z[v] - z_max);  // shifted by the max so exp cannot overflow
    }
    auto const label = static_cast<std::size_t>(labels[r]);
    loss += std::log(denom) - (z[label] - z_max);  // −log softmax(z)[label]
    for (std::size_t v = 0; v < V; ++v) {
      T const p = std::exp(z[v] - z_max) / denom;
      dlogits[r * V + v] = (p - (v == label ? T(1) : T(0))) / static_cast<T>(count);
    }
  }
  return loss / static_cast<T>(count);
}

/// Per-item accuracy (B) over (B, L, V) logits; `mean` receives the mean over scored items.
template <class T, class Label, class Mask>
std::vector<T> masked_accuracy(std::vector<T> const& logits, std::vector<Label> const& labels,
                               std::vector<Mask> const& mask, std::size_t B, std::size_t L,
                               std::size_t V, T& mean) {
  std::vector<T> acc(B, T(0));
  T sum = 0;
  std::size_t items = 0;
  for (std::size_t b = 0; b < B; ++b) {
    std::size_t scored = 0;
    std::size_t correct = 0;
    for (std::size_t t = 0; t < L; ++t) {
      std::size_t const r = b * L + t;
      if (mask[r] == 0) {
        continue;
      }
      ++scored;
      std::size_t best = 0;
      for (std::size_t v = 1; v < V; ++v) {
        if (logits[r * V + v] > logits[r * V + best]) {  // strict: the first maximum wins ties
          best = v;
        }
      }
      correct += static_cast<std::size_t>(labels[r]) == best ? 1 : 0;
    }
    if (scored > 0) {
      acc[b] = static_cast<T>(correct) / static_cast<T>(scored);
      sum += acc[b];
      ++items;
    }
  }
  mean = items > 0 ? sum / static_cast<T>(items) : T(0);
  return acc;
}

}  // namespace hax::reference::nn
