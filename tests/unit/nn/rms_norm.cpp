// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/rms_norm.hpp>
#include <hax/reference/nn/rms_norm.hpp>

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
using tensor3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;  // (B, L, D)
template <class T>
using matrix = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;  // (B, L)
template <class T>
using vector1 = Kokkos::View<T*, Kokkos::LayoutRight, test_memory_space>;  // (D)

double dot(std::vector<double> const& a, std::vector<double> const& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    s += a[i] * b[i];
  }
  return s;
}

/// Runs the plain or gated forward (gated when z is allocated).
template <class T>
void forward(test_space const& space, bool gated, tensor3<T> x, tensor3<T> z, vector1<T> w,
             tensor3<T> y, matrix<T> rstd) {
  if (gated) {
    hax::nn::gated_rms_norm_forward(space, x, z, w, y, rstd);
  } else {
    hax::nn::rms_norm_forward(space, x, w, y, rstd);
  }
}

template <class T>
void backward(test_space const& space, bool gated, tensor3<T> dy, tensor3<T> x, tensor3<T> z,
              vector1<T> w, matrix<T> rstd, tensor3<T> dx, tensor3<T> dz, vector1<T> dw) {
  if (gated) {
    hax::nn::gated_rms_norm_backward(space, dy, x, z, w, rstd, dx, dz, dw);
  } else {
    hax::nn::rms_norm_backward(space, dy, x, w, rstd, dx, dw);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("rms_norm and gated_rms_norm match the reference", "[nn][rms_norm]", float,
                   double) {
  using T = TestType;
  auto const gated = GENERATE(false, true);
  // B·L = 600 spans ten 64-row chunks of the backward, the last one ragged. D = 1100 (float:
  // 8 rows × 1100 values > 32 KiB) moves the backward's per-row dw partials to level-1 scratch.
  auto const L = GENERATE(std::size_t{7}, std::size_t{300});
  auto const D = GENERATE(std::size_t{37}, std::size_t{1100});
  CAPTURE(gated, L, D);
  std::size_t const B = 2;
  test_space space;
  tensor3<T> x("x", B, L, D), z("z", B, L, D), y("y", B, L, D), dy("dy", B, L, D);
  tensor3<T> dx("dx", B, L, D), dz("dz", B, L, D);
  vector1<T> w("w", D), dw("dw", D);
  matrix<T> rstd("rstd", B, L);
  auto const hx = hax::test::fill_random(x, 1, -2.0, 2.0);
  auto const hz = gated ? hax::test::fill_random(z, 2, -3.0, 3.0) : std::vector<double>{};
  auto const hw = hax::test::fill_random(w, 3, 0.5, 1.5);
  auto const hdy = hax::test::fill_random(dy, 4);
  auto const hdw0 = hax::test::fill_random(dw, 5);  // nonzero: dw must accumulate
  hax::test::fill_random(dx, 6);                    // garbage: dx, dz must be overwritten
  hax::test::fill_random(dz, 7);

  forward(space, gated, x, z, w, y, rstd);
  backward(space, gated, dy, x, z, w, rstd, dx, dz, dw);
  space.fence();

  namespace ref = hax::reference::nn;
  std::vector<double> ref_rstd, ref_dx, ref_dz, ref_dw = hdw0;
  auto const ref_y = ref::rms_norm_forward(hx, hz, hw, B * L, D, 1e-5, ref_rstd);
  ref::rms_norm_backward(hdy, hx, hz, hw, B * L, D, 1e-5, ref_dx, ref_dz, ref_dw);

  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(y), ref_y, tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(rstd), ref_rstd, tol::rtol, tol::atol, "rstd");
  hax::test::check_close(hax::test::to_vector(dx), ref_dx, tol::rtol, tol::atol, "dx");
  hax::test::check_close(hax::test::to_vector(dw), ref_dw, tol::rtol, tol::atol, "dw");
  if (gated) {
    hax::test::check_close(hax::test::to_vector(dz), ref_dz, tol::rtol, tol::atol, "dz");
  }
}

TEST_CASE("rms_norm gradients match central differences", "[nn][rms_norm]") {
  auto const gated = GENERATE(false, true);
  CAPTURE(gated);
  std::size_t const B = 2, L = 3, D = 5;
  test_space space;
  tensor3<double> x("x", B, L, D), z("z", B, L, D), y("y", B, L, D), dy("dy", B, L, D);
  tensor3<double> dx("dx", B, L, D), dz("dz", B, L, D);
  vector1<double> w("w", D), dw("dw", D);
  matrix<double> rstd("rstd", B, L);
  auto const hx = hax::test::fill_random(x, 31);
  auto const hz = hax::test::fill_random(z, 32, -2.0, 2.0);
  auto const hw = hax::test::fill_random(w, 33, 0.5, 1.5);
  auto const hdy = hax::test::fill_random(dy, 34);

  forward(space, gated, x, z, w, y, rstd);
  backward(space, gated, dy, x, z, w, rstd, dx, dz, dw);  // dw starts at zero
  space.fence();
  auto const adx = hax::test::to_vector(dx);
  auto const adz = hax::test::to_vector(dz);
  auto const adw = hax::test::to_vector(dw);

  // loss(v) = Σ dy ⊙ y with the View `target` set to v (restored afterwards by the caller)
  auto loss_with = [&](auto target) {
    return [&, target](std::vector<double> const& v) {
      hax::test::from_vector(target, v);
      forward(space, gated, x, z, w, y, rstd);
      space.fence();
      return dot(hdy, hax::test::to_vector(y));
    };
  };
  hax::test::check_gradient(hx, adx, loss_with(x), "dx");
  hax::test::from_vector(x, hx);
  hax::test::check_gradient(hw, adw, loss_with(w), "dw");
  hax::test::from_vector(w, hw);
  if (gated) {
    hax::test::check_gradient(hz, adz, loss_with(z), "dz");
  }
}

TEST_CASE("rms_norm rejects mismatched shapes, naming the op and the shapes", "[nn][rms_norm]") {
  tensor3<float> x("x", 2, 3, 4), y("y", 2, 3, 4), z("z", 2, 3, 5);
  vector1<float> w("w", 4), w5("w5", 5), dw("dw", 4);
  matrix<float> rstd("rstd", 2, 3), rstd_bad("rstd_bad", 3, 2);
  using Catch::Matchers::ContainsSubstring;
  CHECK_THROWS_AS(hax::nn::rms_norm_forward(x, w5, y, rstd), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::nn::rms_norm_forward(x, w5, y, rstd),
                    ContainsSubstring("hax::nn::rms_norm_forward") &&
                        ContainsSubstring("w (5)") && ContainsSubstring("(2, 3, 4)"));
  CHECK_THROWS_WITH(hax::nn::rms_norm_forward(x, w, y, rstd_bad),
                    ContainsSubstring("rstd (3, 2)") && ContainsSubstring("(2, 3, 4)"));
  CHECK_THROWS_WITH(hax::nn::rms_norm_forward(x, w, y, rstd, 0.0),
                    ContainsSubstring("eps (0)"));
  CHECK_THROWS_WITH(hax::nn::gated_rms_norm_forward(x, z, w, y, rstd),
                    ContainsSubstring("hax::nn::gated_rms_norm_forward") &&
                        ContainsSubstring("z (2, 3, 5)") && ContainsSubstring("x (2, 3, 4)"));
  CHECK_THROWS_WITH(hax::nn::gated_rms_norm_backward(y, x, z, w, rstd, y, y, dw),
                    ContainsSubstring("hax::nn::gated_rms_norm_backward") &&
                        ContainsSubstring("z (2, 3, 5)"));
  CHECK_THROWS_WITH(hax::nn::rms_norm_backward(y, x, w, rstd, y, w5),
                    ContainsSubstring("hax::nn::rms_norm_backward") &&
                        ContainsSubstring("dw (5)"));
}
