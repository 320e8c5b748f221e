// SPDX-License-Identifier: MIT
/// \file
/// Serial reference of SiLU and softplus (PyTorch's threshold 20) and their derivatives, as plain
/// scalar functions and loops over std::vector, written to be read. The oracle of
/// hax::nn::{silu,softplus}_* in the tests.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace hax::reference::nn {

/// σ(x) = 1 / (1 + e^{-x}), written as e^{x} / (1 + e^{x}) for x < 0 so e^{±x} stays ≤ 1.
template <class T>
T sigmoid(T x) {
  return x >= T(0) ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
}

/// silu(x) = x σ(x).
template <class T>
T silu(T x) {
  return x * sigmoid(x);
}

/// silu'(x) = σ(x) + x σ(x) (1 − σ(x)), by the product rule and σ' = σ (1 − σ).
template <class T>
T silu_derivative(T x) {
  T const s = sigmoid(x);
  return s + x * s * (T(1) - s);
}

/// softplus(x) = log(1 + e^{x}), and x itself above PyTorch's threshold 20.
template <class T>
T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

/// softplus'(x) = e^{x} / (1 + e^{x}) = σ(x), and 1 above the threshold.
template <class T>
T softplus_derivative(T x) {
  return x > T(20) ? T(1) : sigmoid(x);
}

/// y = silu(x) elementwise.
template <class T>
std::vector<T> silu_forward(std::vector<T> const& x) {
  std::vector<T> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    y[i] = silu(x[i]);
  }
  return y;
}

/// dx = dy · silu'(x).
template <class T>
std::vector<T> silu_backward(std::vector<T> const& dy, std::vector<T> const& x) {
  std::vector<T> dx(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    dx[i] = dy[i] * silu_derivative(x[i]);
  }
  return dx;
}

/// y = softplus(x) elementwise.
template <class T>
std::vector<T> softplus_forward(std::vector<T> const& x) {
  std::vector<T> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    y[i] = softplus(x[i]);
  }
  return y;
}

/// dx = dy · softplus'(x).
template <class T>
std::vector<T> softplus_backward(std::vector<T> const& dy, std::vector<T> const& x) {
  std::vector<T> dx(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    dx[i] = dy[i] * softplus_derivative(x[i]);
  }
  return dx;
}

}  // namespace hax::reference::nn
