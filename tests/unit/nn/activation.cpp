// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/activation.hpp>
#include <hax/reference/nn/activation.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cmath>
#include <cstddef>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
using tensor3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;  // (B, L, D)

double dot(std::vector<double> const& a, std::vector<double> const& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    s += a[i] * b[i];
  }
  return s;
}

}  // namespace

TEMPLATE_TEST_CASE("silu and softplus match the reference, forward and backward",
                   "[nn][activation]", float, double) {
  using T = TestType;
  std::size_t const B = 2, L = 9, D = 7;
  test_space space;
  tensor3<T> x("x", B, L, D), y("y", B, L, D), dy("dy", B, L, D), dx("dx", B, L, D);
  // [-30, 30) covers both sides of softplus' threshold and saturated sigmoids
  auto const hx = hax::test::fill_random(x, 11, -30.0, 30.0);
  auto const hdy = hax::test::fill_random(dy, 12);
  using tol = hax::test::tolerance<T>;
  namespace ref = hax::reference::nn;

  hax::nn::silu_forward(space, x, y);
  space.fence();
  hax::test::check_close(hax::test::to_vector(y), ref::silu_forward(hx), tol::rtol, tol::atol,
                         "silu y");
  hax::test::fill_random(dx, 13);  // garbage: dx must be overwritten
  hax::nn::silu_backward(space, dy, x, dx);
  space.fence();
  hax::test::check_close(hax::test::to_vector(dx), ref::silu_backward(hdy, hx), tol::rtol,
                         tol::atol, "silu dx");

  hax::nn::softplus_forward(space, x, y);
  space.fence();
  hax::test::check_close(hax::test::to_vector(y), ref::softplus_forward(hx), tol::rtol, tol::atol,
                         "softplus y");
  hax::test::fill_random(dx, 14);
  hax::nn::softplus_backward(space, dy, x, dx);
  space.fence();
  hax::test::check_close(hax::test::to_vector(dx), ref::softplus_backward(hdy, hx), tol::rtol,
                         tol::atol, "softplus dx");
}

TEST_CASE("silu and softplus gradients match central differences", "[nn][activation]") {
  std::size_t const B = 2, L = 3, D = 4;
  test_space space;
  tensor3<double> x("x", B, L, D), y("y", B, L, D), dy("dy", B, L, D), dx("dx", B, L, D);
  auto const hx = hax::test::fill_random(x, 21, -5.0, 5.0);
  auto const hdy = hax::test::fill_random(dy, 22);

  auto loss_of = [&](auto forward) {
    return [&, forward](std::vector<double> const& xv) {
      hax::test::from_vector(x, xv);
      forward(space, x, y);
      space.fence();
      return dot(hdy, hax::test::to_vector(y));
    };
  };
  auto silu_fwd = [](test_space const& s, tensor3<double> const& a, tensor3<double> const& b) {
    hax::nn::silu_forward(s, a, b);
  };
  auto softplus_fwd = [](test_space const& s, tensor3<double> const& a,
                         tensor3<double> const& b) { hax::nn::softplus_forward(s, a, b); };

  hax::nn::silu_backward(space, dy, x, dx);
  space.fence();
  auto const dx_silu = hax::test::to_vector(dx);
  hax::test::check_gradient(hx, dx_silu, loss_of(silu_fwd), "silu dx");

  hax::test::from_vector(x, hx);
  hax::nn::softplus_backward(space, dy, x, dx);
  space.fence();
  auto const dx_softplus = hax::test::to_vector(dx);
  hax::test::check_gradient(hx, dx_softplus, loss_of(softplus_fwd), "softplus dx");
}

TEST_CASE("softplus follows PyTorch's threshold and stays finite for large |x|",
          "[nn][activation]") {
  // Device values of the scalar functions, in float (where a naive log(1 + e^x) overflows at
  // x > 88) and in double.
  std::vector<double> const xs = {-1e4, -100.0, -30.0, -1.0, 0.0, 1.0, 19.5, 20.0, 20.5, 30.0,
                                  100.0, 1e4};
  std::size_t const n = xs.size();
  tensor3<float> xf("xf", 1, 1, n), yf("yf", 1, 1, n), gf("gf", 1, 1, n), sf("sf", 1, 1, n);
  tensor3<double> xd("xd", 1, 1, n), yd("yd", 1, 1, n), gd("gd", 1, 1, n);
  tensor3<float> onesf("onesf", 1, 1, n);
  tensor3<double> onesd("onesd", 1, 1, n);
  Kokkos::deep_copy(onesf, 1.0f);
  Kokkos::deep_copy(onesd, 1.0);
  hax::test::from_vector(xf, xs);
  hax::test::from_vector(xd, xs);
  test_space space;
  hax::nn::softplus_forward(space, xf, yf);
  hax::nn::softplus_backward(space, onesf, xf, gf);
  hax::nn::silu_forward(space, xf, sf);
  hax::nn::softplus_forward(space, xd, yd);
  hax::nn::softplus_backward(space, onesd, xd, gd);
  space.fence();
  auto const hyf = hax::test::to_vector(yf);
  auto const hgf = hax::test::to_vector(gf);
  auto const hsf = hax::test::to_vector(sf);
  auto const hyd = hax::test::to_vector(yd);
  auto const hgd = hax::test::to_vector(gd);
  for (std::size_t i = 0; i < n; ++i) {
    double const x = xs[i];
    CAPTURE(x);
    REQUIRE(std::isfinite(hyf[i]));
    REQUIRE(std::isfinite(hgf[i]));
    REQUIRE(std::isfinite(hsf[i]));
    CHECK(hyd[i] >= 0.0);
    if (x > 20.0) {  // the threshold branch: the identity, slope exactly 1
      CHECK(hyd[i] == x);
      CHECK(hyf[i] == static_cast<float>(x));
      CHECK(hgd[i] == 1.0);
      CHECK(hgf[i] == 1.0f);
    } else {  // log(1 + e^x) in long double as the independent oracle
      long double const e = std::exp(static_cast<long double>(x));
      double const expected = static_cast<double>(std::log1p(e));
      double const slope = static_cast<double>(e / (1.0L + e));
      CHECK(std::abs(hyd[i] - expected) <= 1e-15 + 1e-14 * expected);
      CHECK(std::abs(hgd[i] - slope) <= 1e-15 + 1e-14 * slope);
      CHECK(std::abs(hyf[i] - expected) <= 1e-30 + 1e-6 * expected);
    }
  }
  // x = 20 is still below the threshold (PyTorch tests x * beta > threshold), so its value is
  // log1p(e^20), a little above 20.
  CHECK(hyd[7] > 20.0);
  // silu saturates without NaN: silu(-1e4) = -0, silu(1e4) = 1e4.
  CHECK(hsf[0] == 0.0f);
  CHECK(hsf[n - 1] == 1e4f);
}

TEST_CASE("activations reject mismatched shapes, naming the op and both shapes",
          "[nn][activation]") {
  tensor3<float> x("x", 2, 3, 4), y("y", 2, 3, 5), dy("dy", 2, 3, 4);
  using Catch::Matchers::ContainsSubstring;
  CHECK_THROWS_AS(hax::nn::silu_forward(x, y), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::nn::silu_forward(x, y), ContainsSubstring("hax::nn::silu_forward") &&
                                                     ContainsSubstring("(2, 3, 4)") &&
                                                     ContainsSubstring("(2, 3, 5)"));
  CHECK_THROWS_WITH(hax::nn::softplus_forward(x, y),
                    ContainsSubstring("hax::nn::softplus_forward") &&
                        ContainsSubstring("(2, 3, 5)"));
  CHECK_THROWS_WITH(hax::nn::silu_backward(dy, x, y), ContainsSubstring("hax::nn::silu_backward") &&
                                                          ContainsSubstring("dx (2, 3, 5)"));
  CHECK_THROWS_WITH(hax::nn::softplus_backward(y, x, dy),
                    ContainsSubstring("hax::nn::softplus_backward") &&
                        ContainsSubstring("dy (2, 3, 5)"));
}
