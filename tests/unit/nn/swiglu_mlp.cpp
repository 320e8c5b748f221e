// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/swiglu_mlp.hpp>
#include <hax/reference/nn/swiglu_mlp.hpp>

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
using act = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;  // (B, L, D)
template <class T>
using matrix = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;  // (rows, cols)

/// One MLP of small odd sizes with its inputs, outputs and gradients.
template <class T>
struct Mlp {
  std::size_t B, L, D, I;
  act<T> x{"x", B, L, D}, y{"y", B, L, D}, dy{"dy", B, L, D}, dx{"dx", B, L, D};
  act<T> gate{"gate", B, L, I}, up{"up", B, L, I};
  matrix<T> wg{"wg", I, D}, wu{"wu", I, D}, wd{"wd", D, I};
  matrix<T> dwg{"dwg", I, D}, dwu{"dwu", I, D}, dwd{"dwd", D, I};

  void forward() { hax::nn::swiglu_mlp_forward(test_space{}, x, wg, wu, wd, gate, up, y); }
  void backward() {
    hax::nn::swiglu_mlp_backward(test_space{}, dy, x, wg, wu, wd, gate, up, dx, dwg, dwu, dwd);
  }
};

}  // namespace

TEMPLATE_TEST_CASE("swiglu mlp forward and backward match the reference", "[nn][swiglu]", float,
                   double) {
  using T = TestType;
  Mlp<T> m{2, 7, 5, 11};
  std::size_t const M = m.B * m.L;
  auto const hx = hax::test::fill_random(m.x, 1);
  auto const hwg = hax::test::fill_random(m.wg, 2);
  auto const hwu = hax::test::fill_random(m.wu, 3);
  auto const hwd = hax::test::fill_random(m.wd, 4);
  auto const hdy = hax::test::fill_random(m.dy, 5);
  auto ref_dwg = hax::test::fill_random(m.dwg, 6);  // nonzero: weight gradients accumulate
  auto ref_dwu = hax::test::fill_random(m.dwu, 7);
  auto ref_dwd = hax::test::fill_random(m.dwd, 8);
  hax::test::fill_random(m.dx, 9);  // garbage: dx is overwritten
  m.forward();
  m.backward();
  Kokkos::fence();
  auto const ref_y = hax::reference::nn::swiglu_mlp_forward(hx, hwg, hwu, hwd, M, m.D, m.I);
  auto const ref_dx = hax::reference::nn::swiglu_mlp_backward(hdy, hx, hwg, hwu, hwd, ref_dwg,
                                                              ref_dwu, ref_dwd, M, m.D, m.I);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(m.y), ref_y, tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(m.dx), ref_dx, tol::rtol, tol::atol, "dx");
  hax::test::check_close(hax::test::to_vector(m.dwg), ref_dwg, tol::rtol, tol::atol, "dw_gate");
  hax::test::check_close(hax::test::to_vector(m.dwu), ref_dwu, tol::rtol, tol::atol, "dw_up");
  hax::test::check_close(hax::test::to_vector(m.dwd), ref_dwd, tol::rtol, tol::atol, "dw_down");
}

TEST_CASE("swiglu mlp gradients match finite differences", "[nn][swiglu]") {
  auto const which = GENERATE(0, 1, 2, 3);  // x, w_gate, w_up, w_down
  CAPTURE(which);
  Mlp<double> m{1, 3, 4, 6};
  auto hx = hax::test::fill_random(m.x, 31);
  auto hwg = hax::test::fill_random(m.wg, 32, -2.0, 2.0);  // large enough to leave SiLU's linear part
  auto hwu = hax::test::fill_random(m.wu, 33);
  auto hwd = hax::test::fill_random(m.wd, 34);
  auto const hdy = hax::test::fill_random(m.dy, 35);
  Kokkos::deep_copy(m.dwg, 0.0);
  Kokkos::deep_copy(m.dwu, 0.0);
  Kokkos::deep_copy(m.dwd, 0.0);
  m.forward();
  m.backward();
  Kokkos::fence();
  std::vector<std::vector<double>*> const inputs{&hx, &hwg, &hwu, &hwd};
  auto const analytic = which == 0   ? hax::test::to_vector(m.dx)
                        : which == 1 ? hax::test::to_vector(m.dwg)
                        : which == 2 ? hax::test::to_vector(m.dwu)
                                     : hax::test::to_vector(m.dwd);
  auto loss = [&](std::vector<double> const& v) {
    auto set = [&](auto const& view, int k) { hax::test::from_vector(view, k == which ? v : *inputs[k]); };
    set(m.x, 0);
    set(m.wg, 1);
    set(m.wu, 2);
    set(m.wd, 3);
    m.forward();
    Kokkos::fence();
    auto const y = hax::test::to_vector(m.y);
    double acc = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      acc += hdy[i] * y[i];
    }
    return acc;
  };
  hax::test::check_gradient(*inputs[which], analytic, loss, "gradient");
}

TEST_CASE("swiglu mlp rejects mismatched shapes", "[nn][swiglu]") {
  using Catch::Matchers::ContainsSubstring;
  Mlp<float> m{1, 2, 4, 8};
  matrix<float> bad_down("bad", 4, 7);  // (D, I') with I' != I
  CHECK_THROWS_AS(
      hax::nn::swiglu_mlp_forward(test_space{}, m.x, m.wg, m.wu, bad_down, m.gate, m.up, m.y),
      hax::invalid_argument);
  CHECK_THROWS_WITH(
      hax::nn::swiglu_mlp_forward(test_space{}, m.x, m.wg, m.wu, bad_down, m.gate, m.up, m.y),
      ContainsSubstring("hax::nn::swiglu_mlp_forward") && ContainsSubstring("w_down") &&
          ContainsSubstring("(4, 7)"));
  act<float> bad_gate("g", 1, 2, 9);
  CHECK_THROWS_WITH(
      hax::nn::swiglu_mlp_backward(test_space{}, m.dy, m.x, m.wg, m.wu, m.wd, bad_gate, m.up, m.dx,
                                   m.dwg, m.dwu, m.dwd),
      ContainsSubstring("hax::nn::swiglu_mlp_backward") && ContainsSubstring("gate"));
}
