// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/conv1d.hpp>
#include <hax/reference/nn/conv1d.hpp>

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
using tensor3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;  // (B, L, C)
template <class T>
using matrix = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;  // (C, K) or (B, L)
template <class T>
using vector1 = Kokkos::View<T*, Kokkos::LayoutRight, test_memory_space>;  // (C)

double dot(std::vector<double> const& a, std::vector<double> const& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    s += a[i] * b[i];
  }
  return s;
}

/// Right-padding mask (B, L): item b has lengths[b] real tokens, then pads.
std::vector<double> right_padding_mask(std::vector<std::size_t> const& lengths, std::size_t L) {
  std::vector<double> mask(lengths.size() * L, 0.0);
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    for (std::size_t t = 0; t < lengths[b]; ++t) {
      mask[b * L + t] = 1.0;
    }
  }
  return mask;
}

template <class T>
void forward(test_space const& space, bool fuse_silu, tensor3<T> x, matrix<T> w, vector1<T> bias,
             matrix<T> mask, tensor3<T> y) {
  if (fuse_silu) {
    hax::nn::conv1d_silu_forward(space, x, w, bias, mask, y);
  } else {
    hax::nn::conv1d_forward(space, x, w, bias, mask, y);
  }
}

template <class T>
void backward(test_space const& space, bool fuse_silu, tensor3<T> dy, tensor3<T> x, matrix<T> w,
              vector1<T> bias, matrix<T> mask, tensor3<T> dx, matrix<T> dw, vector1<T> dbias) {
  if (fuse_silu) {
    hax::nn::conv1d_silu_backward(space, dy, x, w, bias, mask, dx, dw, dbias);
  } else {
    hax::nn::conv1d_backward(space, dy, x, w, bias, mask, dx, dw, dbias);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("conv1d matches the reference, forward and backward", "[nn][conv1d]", float,
                   double) {
  using T = TestType;
  auto const fuse_silu = GENERATE(false, true);
  auto const masked = GENERATE(false, true);
  auto const K = GENERATE(std::size_t{1}, std::size_t{4}, std::size_t{5});
  CAPTURE(fuse_silu, masked, K);
  // L = 300 spans three 128-position chunks (halo reads and the dx tail cross their borders)
  std::size_t const B = 3, L = 300, C = 6;
  test_space space;
  tensor3<T> x("x", B, L, C), y("y", B, L, C), dy("dy", B, L, C), dx("dx", B, L, C);
  matrix<T> w("w", C, K), dw("dw", C, K), mask;
  vector1<T> bias("bias", C), dbias("dbias", C);
  auto const hx = hax::test::fill_random(x, 1);
  auto const hw = hax::test::fill_random(w, 2);
  auto const hb = hax::test::fill_random(bias, 3);
  auto const hdy = hax::test::fill_random(dy, 4);
  auto const hdw0 = hax::test::fill_random(dw, 5);  // nonzero: dw, dbias must accumulate
  auto const hdb0 = hax::test::fill_random(dbias, 6);
  hax::test::fill_random(dx, 7);  // garbage: dx must be overwritten
  hax::test::fill_random(y, 8);
  std::vector<double> hmask;
  if (masked) {
    mask = matrix<T>("mask", B, L);
    hmask = right_padding_mask({L, 200, 37}, L);
    hax::test::from_vector(mask, hmask);
  }

  forward(space, fuse_silu, x, w, bias, mask, y);
  backward(space, fuse_silu, dy, x, w, bias, mask, dx, dw, dbias);
  space.fence();

  namespace ref = hax::reference::nn;
  auto const ref_y = ref::conv1d_forward(hx, hw, hb, hmask, B, L, C, K, fuse_silu);
  std::vector<double> ref_dx, ref_dw = hdw0, ref_db = hdb0;
  ref::conv1d_backward(hdy, hx, hw, hb, hmask, B, L, C, K, fuse_silu, ref_dx, ref_dw, ref_db);

  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(y), ref_y, tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(dx), ref_dx, tol::rtol, tol::atol, "dx");
  hax::test::check_close(hax::test::to_vector(dw), ref_dw, tol::rtol, tol::atol, "dw");
  hax::test::check_close(hax::test::to_vector(dbias), ref_db, tol::rtol, tol::atol, "dbias");
}

TEMPLATE_TEST_CASE("conv1d + SiLU into column blocks matches the masked, split reference",
                   "[nn][conv1d]", float, double) {
  // [y0 | y1 | y2] = silu(conv1d(x ⊙ m)) ⊙ m and its backward from [dy0 | dy1 | dy2] ⊙ m:
  // the reference conv with the output rows masked and the columns split.
  using T = TestType;
  auto const masked = GENERATE(false, true);
  auto const K = GENERATE(std::size_t{1}, std::size_t{4});
  CAPTURE(masked, K);
  std::size_t const B = 3, L = 300, C0 = 5, C1 = 3, C2 = 2, C = C0 + C1 + C2;
  test_space space;
  tensor3<T> x("x", B, L, C), dx("dx", B, L, C);
  tensor3<T> y0("y0", B, L, C0), y1("y1", B, L, C1), y2("y2", B, L, C2);
  tensor3<T> dy0("dy0", B, L, C0), dy1("dy1", B, L, C1), dy2("dy2", B, L, C2);
  matrix<T> w("w", C, K), dw("dw", C, K), mask;
  vector1<T> bias("bias", C), dbias("dbias", C);
  auto const hx = hax::test::fill_random(x, 1);
  auto const hw = hax::test::fill_random(w, 2);
  auto const hb = hax::test::fill_random(bias, 3);
  std::vector<double> const hdy[3] = {hax::test::fill_random(dy0, 4), hax::test::fill_random(dy1, 5),
                                      hax::test::fill_random(dy2, 6)};
  auto const hdw0 = hax::test::fill_random(dw, 7);  // nonzero: dw, dbias must accumulate
  auto const hdb0 = hax::test::fill_random(dbias, 8);
  hax::test::fill_random(dx, 9);  // garbage: every output is overwritten
  hax::test::fill_random(y0, 10);
  hax::test::fill_random(y1, 11);
  hax::test::fill_random(y2, 12);
  std::vector<double> hmask;
  if (masked) {
    mask = matrix<T>("mask", B, L);
    hmask = right_padding_mask({L, 200, 37}, L);
    hax::test::from_vector(mask, hmask);
  }
  hax::nn::conv1d_silu_forward_columns(space, x, w, bias, mask, y0, y1, y2);
  hax::nn::conv1d_silu_backward_columns(space, dy0, dy1, dy2, x, w, bias, mask, dx, dw, dbias);
  space.fence();

  namespace ref = hax::reference::nn;
  std::size_t const widths[3] = {C0, C1, C2}, offsets[3] = {0, C0, C0 + C1};
  auto const row_mask = [&](std::size_t b, std::size_t t) { return masked ? hmask[b * L + t] : 1.0; };
  auto const full_y = ref::conv1d_forward(hx, hw, hb, hmask, B, L, C, K, true);
  std::vector<double> full_dy(B * L * C);
  std::vector<double> want_y[3];
  for (int part = 0; part < 3; ++part) {
    for (std::size_t b = 0; b < B; ++b) {
      for (std::size_t t = 0; t < L; ++t) {
        for (std::size_t c = 0; c < widths[part]; ++c) {
          std::size_t const i = (b * L + t) * C + offsets[part] + c;
          want_y[part].push_back(full_y[i] * row_mask(b, t));
          full_dy[i] = hdy[part][(b * L + t) * widths[part] + c] * row_mask(b, t);
        }
      }
    }
  }
  std::vector<double> ref_dx, ref_dw = hdw0, ref_db = hdb0;
  ref::conv1d_backward(full_dy, hx, hw, hb, hmask, B, L, C, K, true, ref_dx, ref_dw, ref_db);

  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(y0), want_y[0], tol::rtol, tol::atol, "y0");
  hax::test::check_close(hax::test::to_vector(y1), want_y[1], tol::rtol, tol::atol, "y1");
  hax::test::check_close(hax::test::to_vector(y2), want_y[2], tol::rtol, tol::atol, "y2");
  hax::test::check_close(hax::test::to_vector(dx), ref_dx, tol::rtol, tol::atol, "dx");
  hax::test::check_close(hax::test::to_vector(dw), ref_dw, tol::rtol, tol::atol, "dw");
  hax::test::check_close(hax::test::to_vector(dbias), ref_db, tol::rtol, tol::atol, "dbias");
  if (masked) {  // the test can see the output mask: item 2's pads right after its last token
    CHECK(hax::test::to_vector(y0)[(2 * L + 38) * C0] == 0.0);
    CHECK(full_y[(2 * L + 38) * C] != 0.0);
  }
}

TEST_CASE("conv1d gradients match central differences", "[nn][conv1d]") {
  auto const fuse_silu = GENERATE(false, true);
  auto const masked = GENERATE(false, true);
  CAPTURE(fuse_silu, masked);
  std::size_t const B = 2, L = 7, C = 2, K = 4;
  test_space space;
  tensor3<double> x("x", B, L, C), y("y", B, L, C), dy("dy", B, L, C), dx("dx", B, L, C);
  matrix<double> w("w", C, K), dw("dw", C, K), mask;
  vector1<double> bias("bias", C), dbias("dbias", C);
  auto const hx = hax::test::fill_random(x, 41);
  auto const hw = hax::test::fill_random(w, 42);
  auto const hb = hax::test::fill_random(bias, 43);
  auto const hdy = hax::test::fill_random(dy, 44);
  if (masked) {
    mask = matrix<double>("mask", B, L);
    hax::test::from_vector(mask, right_padding_mask({L, 4}, L));
  }

  forward(space, fuse_silu, x, w, bias, mask, y);
  backward(space, fuse_silu, dy, x, w, bias, mask, dx, dw, dbias);  // dw, dbias start at zero
  space.fence();
  auto const adx = hax::test::to_vector(dx);
  auto const adw = hax::test::to_vector(dw);
  auto const adb = hax::test::to_vector(dbias);

  auto loss_with = [&](auto target) {
    return [&, target](std::vector<double> const& v) {
      hax::test::from_vector(target, v);
      forward(space, fuse_silu, x, w, bias, mask, y);
      space.fence();
      return dot(hdy, hax::test::to_vector(y));
    };
  };
  hax::test::check_gradient(hx, adx, loss_with(x), "dx");
  hax::test::from_vector(x, hx);
  hax::test::check_gradient(hw, adw, loss_with(w), "dw");
  hax::test::from_vector(w, hw);
  hax::test::check_gradient(hb, adb, loss_with(bias), "dbias");
}

TEST_CASE("conv1d: right padding never changes real positions", "[nn][conv1d]") {
  auto const fuse_silu = GENERATE(false, true);
  CAPTURE(fuse_silu);
  std::size_t const B = 3, L = 150, C = 4, K = 4;
  std::vector<std::size_t> const lengths = {150, 130, 5};
  test_space space;
  tensor3<double> x("x", B, L, C), y1("y1", B, L, C), y2("y2", B, L, C);
  tensor3<double> dy("dy", B, L, C), dx1("dx1", B, L, C), dx2("dx2", B, L, C);
  matrix<double> w("w", C, K), dw("dw", C, K), mask("mask", B, L), no_mask;
  vector1<double> bias("bias", C), dbias("dbias", C);
  auto const hmask = right_padding_mask(lengths, L);
  hax::test::from_vector(mask, hmask);
  auto hx = hax::test::fill_random(x, 51);
  hax::test::fill_random(w, 52);
  hax::test::fill_random(bias, 53);
  auto hdy = hax::test::fill_random(dy, 54);
  for (std::size_t i = 0; i < hdy.size(); ++i) {  // the loss ignores pad positions
    hdy[i] *= hmask[i / C];
  }
  hax::test::from_vector(dy, hdy);

  forward(space, fuse_silu, x, w, bias, mask, y1);
  backward(space, fuse_silu, dy, x, w, bias, mask, dx1, dw, dbias);
  space.fence();
  auto const hy1 = hax::test::to_vector(y1);
  auto const hdx1 = hax::test::to_vector(dx1);

  // Different garbage in every pad position: real outputs and gradients must not move at all.
  auto const other = hax::test::random_vector(hx.size(), 55, -100.0, 100.0);
  for (std::size_t i = 0; i < hx.size(); ++i) {
    if (hmask[i / C] == 0.0) {
      hx[i] = other[i];
    }
  }
  hax::test::from_vector(x, hx);
  forward(space, fuse_silu, x, w, bias, mask, y2);
  backward(space, fuse_silu, dy, x, w, bias, mask, dx2, dw, dbias);
  // Without the mask, the causal conv alone keeps real outputs unaffected by right padding.
  tensor3<double> y3("y3", B, L, C);
  forward(space, fuse_silu, x, w, bias, no_mask, y3);
  space.fence();
  auto const hy2 = hax::test::to_vector(y2);
  auto const hy3 = hax::test::to_vector(y3);
  auto const hdx2 = hax::test::to_vector(dx2);

  std::size_t real = 0;
  for (std::size_t i = 0; i < hx.size(); ++i) {
    if (hmask[i / C] != 0.0) {
      ++real;
      CHECK(hy1[i] == hy2[i]);
      CHECK(hy1[i] == hy3[i]);
      CHECK(hdx1[i] == hdx2[i]);
    } else {
      CHECK(hdx1[i] == 0.0);  // x ⊙ mask: pad inputs get no gradient
      CHECK(hdx2[i] == 0.0);
    }
  }
  CHECK(real == (150 + 130 + 5) * C);
  CHECK(hax::test::max_abs(hdx1) > 0.0);
}

TEST_CASE("conv1d into column blocks rejects blocks that do not tile x", "[nn][conv1d]") {
  tensor3<float> x("x", 2, 7, 6), a("a", 2, 7, 3), b("b", 2, 7, 2), c1("c1", 2, 7, 1),
      c2("c2", 2, 7, 2), bad("bad", 2, 6, 1), dx("dx", 2, 7, 6);
  matrix<float> w("w", 6, 4), dw("dw", 6, 4), mask;
  vector1<float> bias("bias", 6), dbias("dbias", 6);
  using Catch::Matchers::ContainsSubstring;
  CHECK_NOTHROW(hax::nn::conv1d_silu_forward_columns(x, w, bias, mask, a, b, c1));
  CHECK_THROWS_AS(hax::nn::conv1d_silu_forward_columns(x, w, bias, mask, a, b, c2),
                  hax::invalid_argument);
  CHECK_THROWS_WITH(hax::nn::conv1d_silu_forward_columns(x, w, bias, mask, a, b, c2),
                    ContainsSubstring("hax::nn::conv1d_silu_forward_columns") &&
                        ContainsSubstring("y2 (2, 7, 2)") && ContainsSubstring("add up") &&
                        ContainsSubstring("x (2, 7, 6)"));
  CHECK_THROWS_WITH(hax::nn::conv1d_silu_forward_columns(x, w, bias, mask, a, b, bad),
                    ContainsSubstring("y2 (2, 6, 1)"));
  CHECK_THROWS_WITH(
      hax::nn::conv1d_silu_backward_columns(a, b, c2, x, w, bias, mask, dx, dw, dbias),
      ContainsSubstring("hax::nn::conv1d_silu_backward_columns") && ContainsSubstring("dy2 (2, 7, 2)"));
}

TEST_CASE("conv1d rejects bad shapes, naming the op and the shapes", "[nn][conv1d]") {
  tensor3<float> x("x", 2, 5, 3), y("y", 2, 5, 3), y_bad("y_bad", 2, 6, 3);
  matrix<float> w("w", 3, 4), w_c("w_c", 4, 4), w_wide("w_wide", 3, 9), mask_bad("m", 5, 2);
  matrix<float> no_mask;
  vector1<float> bias("bias", 3), bias_bad("bias_bad", 2), dbias("dbias", 3);
  matrix<float> dw_bad("dw_bad", 3, 3);
  using Catch::Matchers::ContainsSubstring;
  CHECK_THROWS_AS(hax::nn::conv1d_forward(x, w_c, bias, no_mask, y), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::nn::conv1d_forward(x, w_c, bias, no_mask, y),
                    ContainsSubstring("hax::nn::conv1d_forward") &&
                        ContainsSubstring("w (4, 4)") && ContainsSubstring("x (2, 5, 3)"));
  CHECK_THROWS_WITH(hax::nn::conv1d_silu_forward(x, w_wide, bias, no_mask, y),
                    ContainsSubstring("hax::nn::conv1d_silu_forward") &&
                        ContainsSubstring("w (3, 9)") && ContainsSubstring("width K"));
  CHECK_THROWS_WITH(hax::nn::conv1d_forward(x, w, bias_bad, no_mask, y),
                    ContainsSubstring("bias (2)"));
  CHECK_THROWS_WITH(hax::nn::conv1d_forward(x, w, bias, mask_bad, y),
                    ContainsSubstring("maybe_mask (5, 2)") && ContainsSubstring("(2, 5, 3)"));
  CHECK_THROWS_WITH(hax::nn::conv1d_forward(x, w, bias, no_mask, y_bad),
                    ContainsSubstring("y (2, 6, 3)"));
  CHECK_THROWS_WITH(hax::nn::conv1d_backward(y, x, w, bias, no_mask, y, dw_bad, dbias),
                    ContainsSubstring("hax::nn::conv1d_backward") &&
                        ContainsSubstring("dw (3, 3)") && ContainsSubstring("w (3, 4)"));
  CHECK_THROWS_WITH(hax::nn::conv1d_silu_backward(y_bad, x, w, bias, no_mask, y, w, dbias),
                    ContainsSubstring("hax::nn::conv1d_silu_backward") &&
                        ContainsSubstring("dy (2, 6, 3)"));
}
