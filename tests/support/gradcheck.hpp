// SPDX-License-Identifier: MIT
/// \file
/// Central finite-difference gradient checks in double.
///
/// Pattern: run the op in double with a random upstream gradient dy, take the scalar
/// loss(x) = sum(dy * forward(x)); its gradient with respect to every input or parameter is what
/// backward(dy) returns. Compare each analytic component with (loss(x + h e_i) - loss(x - h e_i)) / 2h.
#pragma once

#include <catch2/catch_test_macros.hpp>

#include <cmath>
#include <cstddef>
#include <string_view>
#include <vector>

#include "support/compare.hpp"

namespace hax::test {

/// Central differences of `loss` (vector<double> -> double) at `x`, for every component.
template <class Loss>
std::vector<double> numerical_gradient(std::vector<double> x, Loss&& loss, double h = 1e-6) {
  std::vector<double> grad(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    double const saved = x[i];
    x[i] = saved + h;
    double const up = loss(x);
    x[i] = saved - h;
    double const down = loss(x);
    x[i] = saved;
    grad[i] = (up - down) / (2.0 * h);
  }
  return grad;
}

/// Compares an analytic gradient with central differences of `loss` at `x`. Default tolerances
/// suit smooth ops in double with h = 1e-6 (truncation error O(h^2), rounding O(eps/h)).
template <class Loss>
void check_gradient(std::vector<double> const& x, std::vector<double> const& analytic, Loss&& loss,
                    std::string_view what, double rtol = 1e-6, double atol = 1e-7,
                    double h = 1e-6) {
  REQUIRE(x.size() == analytic.size());
  auto const numeric = numerical_gradient(x, loss, h);
  INFO("max |numeric gradient| = " << max_abs(numeric));
  REQUIRE(max_abs(numeric) > 0.0);  // a vanishing gradient would make the check meaningless
  check_close(analytic, numeric, rtol, atol, what);
}

}  // namespace hax::test
