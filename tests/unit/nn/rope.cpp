// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/rope.hpp>
#include <hax/reference/nn/rope.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cstddef>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
using heads = Kokkos::View<T****, Kokkos::LayoutRight, test_memory_space>;  // (B, L, H, Dh)

}  // namespace

TEMPLATE_TEST_CASE("rope forward and backward match the reference", "[nn][rope]", float, double) {
  using T = TestType;
  std::size_t const B = 2, L = 37, H = 3, Dh = 6;  // odd L and H, Dh/2 = 3 pairs
  double const theta = 1e4;
  test_space space;
  heads<T> x("x", B, L, H, Dh), y("y", B, L, H, Dh), dy("dy", B, L, H, Dh), dx("dx", B, L, H, Dh);
  auto const hx = hax::test::fill_random(x, 11);
  auto const hdy = hax::test::fill_random(dy, 12);
  hax::test::fill_random(y, 13);  // garbage: must be overwritten
  hax::test::fill_random(dx, 14);
  hax::nn::rope_forward(space, x, y, theta);
  hax::nn::rope_backward(space, dy, dx, theta);
  space.fence();
  using tol = hax::test::tolerance<T>;
  auto const ref_y = hax::reference::nn::rope(hx, B, L, H, Dh, theta);
  auto const ref_dx = hax::reference::nn::rope(hdy, B, L, H, Dh, theta, true);
  hax::test::check_close(hax::test::to_vector(y), ref_y, tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(dx), ref_dx, tol::rtol, tol::atol, "dx");
  // Position 0 is not rotated; later positions are (so the check above is not vacuous).
  auto const hy = hax::test::to_vector(y);
  CHECK(hy[0] == hx[0]);
  CHECK(std::abs(hy[H * Dh * 5] - hx[H * Dh * 5]) > 1e-3);

  // In place gives the same result.
  hax::nn::rope_forward(space, x, x, theta);
  space.fence();
  hax::test::check_close(hax::test::to_vector(x), ref_y, tol::rtol, tol::atol, "y in place");
}

TEST_CASE("rope scores depend only on the position difference", "[nn][rope]") {
  // q at position t and k at position s: RoPE(q)·RoPE(k) must equal the score at (t+3, s+3).
  std::size_t const L = 12, Dh = 8;
  test_space space;
  heads<double> q("q", 1, L, 1, Dh), k("k", 1, L, 1, Dh);
  auto const same = hax::test::random_vector(Dh, 5);
  std::vector<double> hq(L * Dh), hk(L * Dh);
  auto const other = hax::test::random_vector(Dh, 6);
  for (std::size_t t = 0; t < L; ++t) {
    for (std::size_t d = 0; d < Dh; ++d) {
      hq[t * Dh + d] = same[d];
      hk[t * Dh + d] = other[d];
    }
  }
  hax::test::from_vector(q, hq);
  hax::test::from_vector(k, hk);
  hax::nn::rope_forward(space, q, q);
  hax::nn::rope_forward(space, k, k);
  space.fence();
  auto const rq = hax::test::to_vector(q), rk = hax::test::to_vector(k);
  auto score = [&](std::size_t t, std::size_t s) {
    double acc = 0;
    for (std::size_t d = 0; d < Dh; ++d) {
      acc += rq[t * Dh + d] * rk[s * Dh + d];
    }
    return acc;
  };
  for (std::size_t t = 0; t + 3 < L; ++t) {
    for (std::size_t s = 0; s <= t; ++s) {
      CHECK(std::abs(score(t, s) - score(t + 3, s + 3)) < 1e-12);
    }
  }
  CHECK(std::abs(score(5, 1) - score(5, 4)) > 1e-6);  // but does depend on the difference
}

TEST_CASE("rope backward matches finite differences", "[nn][rope]") {
  std::size_t const B = 1, L = 9, H = 2, Dh = 4;
  test_space space;
  heads<double> x("x", B, L, H, Dh), y("y", B, L, H, Dh), dy("dy", B, L, H, Dh),
      dx("dx", B, L, H, Dh);
  auto const hx = hax::test::fill_random(x, 21);
  auto const hdy = hax::test::fill_random(dy, 22);
  hax::nn::rope_backward(space, dy, dx, 100.0);  // small θ: every pair rotates visibly
  space.fence();
  auto loss = [&](std::vector<double> const& xv) {
    hax::test::from_vector(x, xv);
    hax::nn::rope_forward(space, x, y, 100.0);
    space.fence();
    auto const yv = hax::test::to_vector(y);
    double acc = 0;
    for (std::size_t i = 0; i < yv.size(); ++i) {
      acc += hdy[i] * yv[i];
    }
    return acc;
  };
  hax::test::check_gradient(hx, hax::test::to_vector(dx), loss, "dx");
}

TEST_CASE("rope rejects bad inputs", "[nn][rope]") {
  using Catch::Matchers::ContainsSubstring;
  heads<float> odd("odd", 1, 4, 2, 7), y_odd("y", 1, 4, 2, 7), x("x", 1, 4, 2, 8),
      y_short("y", 1, 3, 2, 8);
  CHECK_THROWS_AS(hax::nn::rope_forward(test_space{}, odd, y_odd), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::nn::rope_forward(test_space{}, odd, y_odd),
                    ContainsSubstring("hax::nn::rope_forward") && ContainsSubstring("head_dim") &&
                        ContainsSubstring("even"));
  CHECK_THROWS_WITH(hax::nn::rope_backward(test_space{}, x, y_short),
                    ContainsSubstring("hax::nn::rope_backward") && ContainsSubstring("same shape"));
  CHECK_THROWS_WITH(hax::nn::rope_forward(test_space{}, x, x, 0.5), ContainsSubstring("theta"));
}
