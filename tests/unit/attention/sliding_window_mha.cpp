// SPDX-License-Identifier: MIT
#include <hax/attention/sliding_window_mha.hpp>
#include <hax/core/error.hpp>
#include <hax/reference/attention/sliding_window_mha.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
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
using act = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;  // (B, L, D)
template <class T>
using matrix = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;  // (rows, cols)
using mask_view = Kokkos::View<int**, Kokkos::LayoutRight, test_memory_space>;  // (B, L)

/// One attention layer with its inputs, outputs and gradients.
template <class T>
struct Layer {
  hax::reference::attn::SlidingWindowMhaShape s;
  hax::attn::SlidingWindowMhaConfig cfg{int(s.H), int(s.Dh), int(s.window), s.theta};
  act<T> x{"x", s.B, s.L, s.D()}, y{"y", s.B, s.L, s.D()}, dy{"dy", s.B, s.L, s.D()},
      dx{"dx", s.B, s.L, s.D()};
  matrix<T> wq{"wq", s.D(), s.D()}, wk{"wk", s.D(), s.D()}, wv{"wv", s.D(), s.D()},
      wo{"wo", s.D(), s.D()};
  matrix<T> dwq{"dwq", s.D(), s.D()}, dwk{"dwk", s.D(), s.D()}, dwv{"dwv", s.D(), s.D()},
      dwo{"dwo", s.D(), s.D()};
  mask_view mask{};  // (B, L), empty unless set

  auto forward() {
    return hax::attn::sliding_window_mha_forward(test_space{}, cfg, x, wq, wk, wv, wo, mask, y);
  }
  template <class Saved>
  void backward(Saved const& saved) {
    hax::attn::sliding_window_mha_backward(test_space{}, cfg, saved, wq, wk, wv, wo, dy, dx, dwq,
                                           dwk, dwv, dwo);
  }
};

/// Right padding: sequence b has lengths[b] real tokens.
std::vector<int> right_padding(std::size_t B, std::size_t L, std::vector<std::size_t> const& lengths) {
  std::vector<int> valid(B * L, 0);
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t t = 0; t < lengths[b]; ++t) {
      valid[b * L + t] = 1;
    }
  }
  return valid;
}

}  // namespace

TEMPLATE_TEST_CASE("sliding-window MHA forward and backward match the reference", "[attention][mha]",
                   float, double) {
  using T = TestType;
  bool const padded = GENERATE(false, true);
  CAPTURE(padded);
  Layer<T> m{{2, 23, 3, 4, 5, 100.0}};  // L > window; small θ so every RoPE pair turns
  std::vector<int> valid;
  if (padded) {
    valid = right_padding(2, 23, {23, 15});
    m.mask = mask_view("mask", 2, 23);
    std::vector<double> hv(valid.begin(), valid.end());
    hax::test::from_vector(m.mask, hv);
  }
  auto const hx = hax::test::fill_random(m.x, 1);
  auto const hwq = hax::test::fill_random(m.wq, 2);
  auto const hwk = hax::test::fill_random(m.wk, 3);
  auto const hwv = hax::test::fill_random(m.wv, 4);
  auto const hwo = hax::test::fill_random(m.wo, 5);
  auto const hdy = hax::test::fill_random(m.dy, 6);
  hax::reference::attn::SlidingWindowMhaGrads<double> g;
  g.dw_q = hax::test::fill_random(m.dwq, 7);  // nonzero: weight gradients accumulate
  g.dw_k = hax::test::fill_random(m.dwk, 8);
  g.dw_v = hax::test::fill_random(m.dwv, 9);
  g.dw_o = hax::test::fill_random(m.dwo, 10);
  hax::test::fill_random(m.dx, 11);  // garbage: dx is overwritten
  auto const saved = m.forward();
  m.backward(saved);
  Kokkos::fence();
  auto const ref_y = hax::reference::attn::sliding_window_mha_forward(hx, hwq, hwk, hwv, hwo, valid, m.s);
  auto const ref_dx =
      hax::reference::attn::sliding_window_mha_backward(hdy, hx, hwq, hwk, hwv, hwo, valid, m.s, g);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(m.y), ref_y, tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(m.dx), ref_dx, tol::rtol, tol::atol, "dx");
  hax::test::check_close(hax::test::to_vector(m.dwq), g.dw_q, tol::rtol, tol::atol, "dw_q");
  hax::test::check_close(hax::test::to_vector(m.dwk), g.dw_k, tol::rtol, tol::atol, "dw_k");
  hax::test::check_close(hax::test::to_vector(m.dwv), g.dw_v, tol::rtol, tol::atol, "dw_v");
  hax::test::check_close(hax::test::to_vector(m.dwo), g.dw_o, tol::rtol, tol::atol, "dw_o");
}

TEST_CASE("sliding-window MHA gradients match finite differences", "[attention][mha]") {
  auto const which = GENERATE(0, 1, 2, 3, 4);  // x, w_q, w_k, w_v, w_o
  CAPTURE(which);
  Layer<double> m{{1, 7, 2, 4, 3, 100.0}};
  std::vector<std::vector<double>> inputs{
      hax::test::fill_random(m.x, 41),  hax::test::fill_random(m.wq, 42),
      hax::test::fill_random(m.wk, 43), hax::test::fill_random(m.wv, 44),
      hax::test::fill_random(m.wo, 45)};
  auto const hdy = hax::test::fill_random(m.dy, 46);
  for (auto const& w : {m.dwq, m.dwk, m.dwv, m.dwo}) {
    Kokkos::deep_copy(w, 0.0);
  }
  auto const saved = m.forward();
  m.backward(saved);
  Kokkos::fence();
  std::vector<matrix<double>> const dws{m.dwq, m.dwk, m.dwv, m.dwo};
  auto const analytic = which == 0 ? hax::test::to_vector(m.dx) : hax::test::to_vector(dws[which - 1]);
  auto loss = [&](std::vector<double> const& v) {
    hax::test::from_vector(m.x, which == 0 ? v : inputs[0]);
    hax::test::from_vector(m.wq, which == 1 ? v : inputs[1]);
    hax::test::from_vector(m.wk, which == 2 ? v : inputs[2]);
    hax::test::from_vector(m.wv, which == 3 ? v : inputs[3]);
    hax::test::from_vector(m.wo, which == 4 ? v : inputs[4]);
    m.forward();
    Kokkos::fence();
    auto const y = hax::test::to_vector(m.y);
    double acc = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      acc += hdy[i] * y[i];
    }
    return acc;
  };
  hax::test::check_gradient(inputs[which], analytic, loss, "gradient");
}

TEST_CASE("sliding-window MHA: padding never changes non-pad outputs", "[attention][mha]") {
  // Two runs that agree on the real tokens and differ at the (right) pad positions: with the
  // mask, every real output and every input gradient of a real token must agree, pads output 0.
  std::size_t const B = 2, L = 19;
  Layer<double> a{{B, L, 2, 4, 4, 1e4}}, b{{B, L, 2, 4, 4, 1e4}};
  auto const valid = right_padding(B, L, {11, 19});
  for (auto* m : {&a, &b}) {
    m->mask = mask_view("mask", B, L);
    hax::test::from_vector(m->mask, std::vector<double>(valid.begin(), valid.end()));
    hax::test::fill_random(m->wq, 2);
    hax::test::fill_random(m->wk, 3);
    hax::test::fill_random(m->wv, 4);
    hax::test::fill_random(m->wo, 5);
  }
  auto xa = hax::test::random_vector(B * L * 8, 51);
  auto xb = xa;
  auto dya = hax::test::random_vector(B * L * 8, 52);
  auto dyb = dya;
  auto other = hax::test::random_vector(B * L * 8, 53, -5.0, 5.0);
  for (std::size_t i = 0; i < xb.size(); ++i) {
    if (valid[i / 8] == 0) {
      xb[i] = other[i];
      dyb[i] = -other[i];
    }
  }
  hax::test::from_vector(a.x, xa);
  hax::test::from_vector(b.x, xb);
  hax::test::from_vector(a.dy, dya);
  hax::test::from_vector(b.dy, dyb);
  auto const sa = a.forward();
  auto const sb = b.forward();
  a.backward(sa);
  b.backward(sb);
  Kokkos::fence();
  auto const ya = hax::test::to_vector(a.y), yb = hax::test::to_vector(b.y);
  auto const dxa = hax::test::to_vector(a.dx), dxb = hax::test::to_vector(b.dx);
  std::size_t real = 0;
  for (std::size_t i = 0; i < ya.size(); ++i) {
    if (valid[i / 8] != 0) {
      ++real;
      CHECK(ya[i] == yb[i]);
      // The backward's default on CUDA scatters dk and dv with atomics, whose order (and so the
      // last bits of a sum) may differ between two runs; a pad value leaking in would move dx by
      // far more than this (the pads' inputs are drawn from ±5).
      CHECK(std::abs(dxa[i] - dxb[i]) <= 1e-13 * (1.0 + std::abs(dxa[i])));
    } else {
      CHECK(ya[i] == 0.0);
      CHECK(yb[i] == 0.0);
    }
  }
  CHECK(real == (11 + 19) * 8);
  CHECK(hax::test::max_abs(ya) > 0.0);
}

TEST_CASE("sliding-window MHA rejects bad configs naming the field", "[attention][mha]") {
  using Catch::Matchers::ContainsSubstring;
  act<float> x("x", 1, 4, 32), y("y", 1, 4, 32);
  matrix<float> w("w", 32, 32);
  mask_view none;
  auto run = [&](hax::attn::SlidingWindowMhaConfig const& cfg) {
    hax::attn::sliding_window_mha_forward(test_space{}, cfg, x, w, w, w, w, none, y);
  };
  CHECK_THROWS_AS(run({4, 6, 64, 1e4}), hax::invalid_argument);
  CHECK_THROWS_WITH(run({4, 6, 64, 1e4}), ContainsSubstring("hax::attn::sliding_window_mha_forward") &&
                                              ContainsSubstring("d_model (32)") &&
                                              ContainsSubstring("num_heads × head_dim"));
  CHECK_THROWS_WITH(run({32, 1, 64, 1e4}), ContainsSubstring("head_dim (1)") && ContainsSubstring("even"));
  CHECK_THROWS_WITH(run({4, 8, 0, 1e4}), ContainsSubstring("window (0)"));
  CHECK_THROWS_WITH(run({0, 8, 64, 1e4}), ContainsSubstring("num_heads (0)"));
  matrix<float> wo_bad("wo", 32, 16);
  CHECK_THROWS_WITH(
      hax::attn::sliding_window_mha_forward(test_space{}, hax::attn::SlidingWindowMhaConfig{}, x, w,
                                            w, w, wo_bad, none, y),
      ContainsSubstring("w_o (32, 16)"));
}
