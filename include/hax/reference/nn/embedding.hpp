// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of the embedding lookup, its backward (scatter-add) and the tied output
/// projection logits = h·Eᵀ, as plain loops over row-major std::vectors, written to be read.
#pragma once

#include <hax/reference/nn/linear.hpp>

#include <cstddef>
#include <vector>

namespace hax::reference::nn {

/// y (N, D): row i is row tokens[i] of the table E (V, D). N = B·L positions, flattened.
template <class T, class Token>
std::vector<T> embedding_forward(std::vector<Token> const& tokens, std::vector<T> const& table,
                                 std::size_t D) {
  std::vector<T> y(tokens.size() * D);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    auto const v = static_cast<std::size_t>(tokens[i]);
    for (std::size_t d = 0; d < D; ++d) {
      y[i * D + d] = table[v * D + d];
    }
  }
  return y;
}

/// dE (V, D) += scatter of dy (N, D): every position adds its gradient row to its token's row.
template <class T, class Token>
void embedding_backward(std::vector<Token> const& tokens, std::vector<T> const& dy,
                        std::vector<T>& dtable, std::size_t D) {
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    auto const v = static_cast<std::size_t>(tokens[i]);
    for (std::size_t d = 0; d < D; ++d) {
      dtable[v * D + d] += dy[i * D + d];
    }
  }
}

/// logits (M, V) = h (M, D) · Eᵀ, E (V, D): a linear layer without bias whose weight is E.
template <class T>
std::vector<T> tied_output_forward(std::vector<T> const& h, std::vector<T> const& table,
                                   std::size_t M, std::size_t D, std::size_t V) {
  return linear_forward(h, table, std::vector<T>{}, M, D, V);
}

/// dh = dlogits·E (returned), dE += dlogitsᵀ·h.
template <class T>
std::vector<T> tied_output_backward(std::vector<T> const& dlogits, std::vector<T> const& h,
                                    std::vector<T> const& table, std::vector<T>& dtable,
                                    std::size_t M, std::size_t D, std::size_t V) {
  std::vector<T> no_bias;
  return linear_backward(dlogits, h, table, dtable, no_bias, M, D, V);
}

}  // namespace hax::reference::nn
