// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/linear.hpp>
#include <hax/reference/nn/linear.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
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
using matrix = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;  // (rows, cols)
template <class T>
using vector1 = Kokkos::View<T*, Kokkos::LayoutRight, test_memory_space>;  // (n)

}  // namespace

TEMPLATE_TEST_CASE("linear forward and backward match the reference", "[nn][linear]", float,
                   double) {
  using T = TestType;
  auto const has_bias = GENERATE(false, true);
  CAPTURE(has_bias);
  std::size_t const M = 37, K = 24, N = 19;  // odd sizes: no tile divides them
  test_space space;
  matrix<T> x("x", M, K);     // (M, K)
  matrix<T> w("w", N, K);     // (N, K)
  vector1<T> b;               // (N) or empty
  matrix<T> y("y", M, N);     // (M, N)
  matrix<T> dy("dy", M, N);   // (M, N)
  matrix<T> dx("dx", M, K);   // (M, K)
  matrix<T> dw("dw", N, K);   // (N, K)
  vector1<T> db;              // (N) or empty
  auto const hx = hax::test::fill_random(x, 1);
  auto const hw = hax::test::fill_random(w, 2);
  auto const hdy = hax::test::fill_random(dy, 3);
  auto const hdw0 = hax::test::fill_random(dw, 4);  // nonzero: dW must accumulate (+=)
  hax::test::fill_random(dx, 5);                    // garbage: dx must be overwritten (=)
  hax::test::fill_random(y, 6);
  std::vector<double> hb, hdb0;
  if (has_bias) {
    b = vector1<T>("b", N);
    db = vector1<T>("db", N);
    hb = hax::test::fill_random(b, 7);
    hdb0 = hax::test::fill_random(db, 8);
  }

  hax::nn::linear_forward(space, x, w, b, y);
  hax::nn::linear_backward(space, dy, x, w, dx, dw, db);
  space.fence();

  auto const ref_y = hax::reference::nn::linear_forward(hx, hw, hb, M, K, N);
  std::vector<double> ref_dw = hdw0, ref_db = hdb0;
  auto const ref_dx = hax::reference::nn::linear_backward(hdy, hx, hw, ref_dw, ref_db, M, K, N);

  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(y), ref_y, tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(dx), ref_dx, tol::rtol, tol::atol, "dx");
  hax::test::check_close(hax::test::to_vector(dw), ref_dw, tol::rtol, tol::atol, "dw");
  if (has_bias) {
    hax::test::check_close(hax::test::to_vector(db), ref_db, tol::rtol, tol::atol, "db");
  }
}

TEST_CASE("linear bias gradient sums over many row chunks", "[nn][linear]") {
  // M spans several 256-row chunks of the column-sum kernel, with a ragged last chunk.
  std::size_t const M = 700, K = 3, N = 5;
  test_space space;
  matrix<double> x("x", M, K), w("w", N, K), dy("dy", M, N), dx("dx", M, K), dw("dw", N, K);
  vector1<double> db("db", N);
  auto const hx = hax::test::fill_random(x, 11);
  auto const hw = hax::test::fill_random(w, 12);
  auto const hdy = hax::test::fill_random(dy, 13);
  hax::nn::linear_backward(space, dy, x, w, dx, dw, db);
  space.fence();
  std::vector<double> ref_dw(N * K, 0.0), ref_db(N, 0.0);
  hax::reference::nn::linear_backward(hdy, hx, hw, ref_dw, ref_db, M, K, N);
  hax::test::check_close(hax::test::to_vector(db), ref_db, 1e-12, 1e-12, "db");
}

TEST_CASE("linear gradients match central finite differences", "[nn][linear]") {
  std::size_t const M = 6, K = 5, N = 4;
  test_space space;
  matrix<double> x("x", M, K), w("w", N, K), y("y", M, N), dy("dy", M, N);
  matrix<double> dx("dx", M, K), dw("dw", N, K);
  vector1<double> b("b", N), db("db", N);
  auto const hx = hax::test::fill_random(x, 21);
  auto const hw = hax::test::fill_random(w, 22);
  auto const hb = hax::test::fill_random(b, 23);
  auto const hdy = hax::test::fill_random(dy, 24);
  hax::nn::linear_backward(space, dy, x, w, dx, dw, db);  // dw, db start at zero
  space.fence();

  // loss(x, W, b) = Σ dy ⊙ linear_forward(x, W, b), evaluated by the device op.
  auto loss = [&](std::vector<double> const& vx, std::vector<double> const& vw,
                  std::vector<double> const& vb) {
    hax::test::from_vector(x, vx);
    hax::test::from_vector(w, vw);
    hax::test::from_vector(b, vb);
    hax::nn::linear_forward(space, x, w, b, y);
    space.fence();
    auto const out = hax::test::to_vector(y);
    double s = 0.0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      s += hdy[i] * out[i];
    }
    return s;
  };
  auto const gx = hax::test::to_vector(dx);
  auto const gw = hax::test::to_vector(dw);
  auto const gb = hax::test::to_vector(db);
  hax::test::check_gradient(hx, gx, [&](auto const& v) { return loss(v, hw, hb); }, "dx");
  hax::test::check_gradient(hw, gw, [&](auto const& v) { return loss(hx, v, hb); }, "dw");
  hax::test::check_gradient(hb, gb, [&](auto const& v) { return loss(hx, hw, v); }, "db");
}

TEST_CASE("as_rows views (B, L, D) as (B*L, D) rows without a copy", "[nn][linear]") {
  Kokkos::View<float***, Kokkos::LayoutRight, test_memory_space> h("h", 3, 4, 5);  // (B, L, D)
  auto const values = hax::test::fill_random(h, 31);
  auto rows = hax::nn::as_rows(h);  // (12, 5)
  CHECK(rows.extent(0) == 12);
  CHECK(rows.extent(1) == 5);
  CHECK(rows.data() == h.data());
  hax::test::check_close(hax::test::to_vector(rows), values, 0.0, 0.0, "rows");

  auto sub = Kokkos::subview(h, Kokkos::pair<int, int>(0, 2), Kokkos::ALL, Kokkos::ALL);
  CHECK(hax::nn::as_rows(sub).extent(0) == 8);  // a leading-index slice stays contiguous
}

TEST_CASE("linear rejects mismatched shapes naming the op and both shapes", "[nn][linear]") {
  test_space space;
  matrix<float> x("x", 6, 5), w("w", 4, 3), y("y", 6, 4), good_w("good_w", 4, 5);
  vector1<float> no_bias;
  using Catch::Matchers::ContainsSubstring;
  CHECK_THROWS_AS(hax::nn::linear_forward(space, x, w, no_bias, y), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::nn::linear_forward(space, x, w, no_bias, y),
                    ContainsSubstring("hax::nn::linear_forward") &&
                        ContainsSubstring("x (6, 5)") && ContainsSubstring("w (4, 3)"));
  matrix<float> bad_y("bad_y", 6, 3);
  CHECK_THROWS_WITH(hax::nn::linear_forward(space, x, good_w, no_bias, bad_y),
                    ContainsSubstring("y (6, 3)") && ContainsSubstring("w (4, 5)"));
  vector1<float> bad_b("bad_b", 3);
  CHECK_THROWS_WITH(hax::nn::linear_forward(space, x, good_w, bad_b, y),
                    ContainsSubstring("bias (3)") && ContainsSubstring("w (4, 5)"));
  matrix<float> dx("dx", 6, 5), dw("dw", 4, 5), bad_dw("bad_dw", 5, 4);
  CHECK_THROWS_WITH(hax::nn::linear_backward(space, y, x, good_w, dx, bad_dw, no_bias),
                    ContainsSubstring("hax::nn::linear_backward") &&
                        ContainsSubstring("dw (5, 4)") && ContainsSubstring("w (4, 5)"));
  matrix<float> bad_dy("bad_dy", 6, 2);
  CHECK_THROWS_WITH(hax::nn::linear_backward(space, bad_dy, x, good_w, dx, dw, no_bias),
                    ContainsSubstring("dy (6, 2)") && ContainsSubstring("x (6, 5)"));
}
