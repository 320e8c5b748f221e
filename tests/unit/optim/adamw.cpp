// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/optim/adamw.hpp>
#include <hax/optim/schedule.hpp>
#include <hax/reference/optim/adamw.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "support/compare.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
using flat = Kokkos::View<T*, Kokkos::LayoutRight, test_memory_space>;  // (n)

}  // namespace

TEST_CASE("adamw matches hand-computed updates with warm-up and weight decay", "[optim][adamw]") {
  // Three parameters, four updates, warm-up of 2: lrs are 0, peak/2, peak, peak. The expected
  // values are computed here from the formulas, element by element, without the code under test.
  double const peak = 0.1, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, wd = 0.01;
  std::vector<double> p = {0.5, -1.0, 2.0};
  std::vector<std::vector<double>> const g = {
      {0.1, -0.2, 0.3}, {-0.4, 0.5, 0.0}, {0.2, 0.2, -0.1}, {1.0, -3.0, 0.05}};
  double const lrs[] = {0.0, peak / 2, peak, peak};

  test_space space;
  flat<double> dp("p", 3), dg("g", 3), dm("m", 3), dv("v", 3);
  hax::test::from_vector(dp, p);
  hax::optim::AdamWConfig cfg;  // PyTorch defaults
  REQUIRE(cfg.beta1 == beta1);
  REQUIRE(cfg.beta2 == beta2);
  REQUIRE(cfg.eps == eps);
  REQUIRE(cfg.weight_decay == wd);

  std::vector<double> m(3, 0.0), v(3, 0.0);
  for (int step = 0; step < 4; ++step) {
    int const t = step + 1;
    double const lr = lrs[step];
    std::vector<double> const p_before = p;
    for (int i = 0; i < 3; ++i) {
      double x = p[i] * (1.0 - lr * wd);
      m[i] = beta1 * m[i] + (1.0 - beta1) * g[step][i];
      v[i] = beta2 * v[i] + (1.0 - beta2) * g[step][i] * g[step][i];
      double const m_hat = m[i] / (1.0 - std::pow(beta1, t));
      double const v_hat = v[i] / (1.0 - std::pow(beta2, t));
      p[i] = x - lr * m_hat / (std::sqrt(v_hat) + eps);
    }
    hax::test::from_vector(dg, g[step]);
    hax::optim::adamw_update(space, cfg, lr, t, dp, dg, dm, dv, 3);
    space.fence();
    CAPTURE(t);
    hax::test::check_close(hax::test::to_vector(dp), p, 1e-13, 1e-15, "p");
    hax::test::check_close(hax::test::to_vector(dm), m, 1e-13, 1e-15, "m");
    hax::test::check_close(hax::test::to_vector(dv), v, 1e-13, 1e-15, "v");
    if (t == 1) {
      CHECK(hax::test::to_vector(dp) == p_before);  // lr 0: nothing moves, exactly
    }
  }
}

TEST_CASE("adamw first update with lr > 0 moves each parameter by about lr", "[optim][adamw]") {
  // t = 1: m̂ = g and v̂ = g², so the step is lr·g/(|g| + eps) ≈ lr·sign(g), plus lr·wd·p decay.
  test_space space;
  flat<double> dp("p", 4), dg("g", 4), dm("m", 4), dv("v", 4);
  std::vector<double> const p = {1.0, -2.0, 0.25, 3.0};
  std::vector<double> const g = {0.5, -1e-3, 7.0, -0.02};
  hax::test::from_vector(dp, p);
  hax::test::from_vector(dg, g);
  double const lr = 1e-2;
  hax::optim::adamw_update(space, hax::optim::AdamWConfig{}, lr, 1, dp, dg, dm, dv, 4);
  space.fence();
  auto const out = hax::test::to_vector(dp);
  for (std::size_t i = 0; i < 4; ++i) {
    double const expected =
        p[i] * (1.0 - lr * 0.01) - lr * g[i] / (std::abs(g[i]) + 1e-8);
    CHECK(std::abs(out[i] - expected) <= 1e-14);
  }
}

TEST_CASE("adamw excludes elements past decay_count from weight decay", "[optim][adamw]") {
  // g = 0 keeps m = v = 0 and the Adam step exactly 0, so only the decay can move p.
  test_space space;
  std::size_t const n = 10, decay_count = 6;
  flat<double> dp("p", n), dg("g", n), dm("m", n), dv("v", n);
  auto const p0 = hax::test::fill_random(dp, 11);
  double const lr = 0.5;
  hax::optim::AdamWConfig cfg;
  cfg.weight_decay = 0.1;
  hax::optim::adamw_update(space, cfg, lr, 1, dp, dg, dm, dv, decay_count);
  space.fence();
  auto const out = hax::test::to_vector(dp);
  for (std::size_t i = 0; i < n; ++i) {
    double const expected = i < decay_count ? p0[i] * (1.0 - lr * 0.1) : p0[i];
    CHECK(out[i] == expected);
  }
}

TEMPLATE_TEST_CASE("adamw on the device matches the serial reference", "[optim][adamw]", float,
                   double) {
  using T = TestType;
  std::size_t const n = 1013;
  int const steps = 7;
  test_space space;
  flat<T> dp("p", n), dg("g", n), dm("m", n), dv("v", n);
  auto p = hax::test::fill_random(dp, 21);
  hax::reference::optim::AdamWState state;
  hax::optim::WarmupCosine const sched{3e-2, 3, 0, 0.0};
  for (int s = 0; s < steps; ++s) {
    auto const g = hax::test::fill_random(dg, 100 + s, -2.0, 2.0);
    std::int64_t const t = s + 1;
    double const lr = sched(t);
    hax::optim::adamw_update(space, hax::optim::AdamWConfig{}, lr, t, dp, dg, dm, dv, n);
    hax::reference::optim::adamw_step(p, g, state, lr);
  }
  space.fence();
  REQUIRE(state.t == steps);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(dp), p, tol::rtol, tol::atol, "p");
  hax::test::check_close(hax::test::to_vector(dm), state.m, tol::rtol, tol::atol, "m");
  hax::test::check_close(hax::test::to_vector(dv), state.v, tol::rtol, tol::atol, "v");
}

TEST_CASE("adamw driven from device memory equals the host-driven update", "[optim][adamw]") {
  // The device form keeps the step counter and evaluates the schedule on the device; after k
  // updates it must have produced exactly the same numbers as k host-driven calls.
  std::size_t const n = 257, decay_count = 200;
  int const steps = 6;
  test_space space;
  flat<float> p1("p1", n), p2("p2", n), g("g", n), m1("m1", n), v1("v1", n), m2("m2", n),
      v2("v2", n);
  auto const p0 = hax::test::fill_random(p1, 31);
  hax::test::from_vector(p2, p0);
  hax::optim::WarmupCosine const sched{1e-2, 2, 3, 1e-3};
  hax::optim::AdamW<test_space> adamw(hax::optim::AdamWConfig{}, space);
  for (int s = 0; s < steps; ++s) {
    hax::test::fill_random(g, 200 + s);
    hax::optim::adamw_update(space, adamw.config(), sched(s + 1), s + 1, p1, g, m1, v1,
                             decay_count);
    adamw.update(space, sched, p2, g, m2, v2, decay_count);
  }
  space.fence();
  auto const step = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, adamw.step_count());
  CHECK(step() == steps);
  // Same arithmetic on the same backend: equal up to the device's pow/cos (exact on hosts).
  hax::test::check_close(hax::test::to_vector(p2), hax::test::to_vector(p1), 1e-6, 0.0, "p");
  hax::test::check_close(hax::test::to_vector(m2), hax::test::to_vector(m1), 1e-6, 0.0, "m");
  hax::test::check_close(hax::test::to_vector(v2), hax::test::to_vector(v1), 1e-6, 0.0, "v");
  CHECK(hax::test::to_vector(p2) != p0);
}

TEST_CASE("adamw can take its learning rate from a device View", "[optim][adamw]") {
  std::size_t const n = 33;
  test_space space;
  flat<double> p1("p1", n), p2("p2", n), g("g", n), m1("m1", n), v1("v1", n), m2("m2", n),
      v2("v2", n);
  auto const p0 = hax::test::fill_random(p1, 41);
  hax::test::from_vector(p2, p0);
  hax::test::fill_random(g, 42);
  Kokkos::View<double, test_memory_space> lr("lr");
  Kokkos::deep_copy(lr, 0.25);
  hax::optim::AdamW<test_space> adamw;
  adamw.update(space, hax::optim::LrFromView<test_memory_space>{lr}, p2, g, m2, v2, n);
  hax::optim::adamw_update(space, adamw.config(), 0.25, 1, p1, g, m1, v1, n);
  space.fence();
  CHECK(hax::test::to_vector(p2) == hax::test::to_vector(p1));
}

TEST_CASE("adamw rejects bad input", "[optim][adamw]") {
  using Catch::Matchers::ContainsSubstring;
  test_space space;
  flat<float> p("p", 8), g("g", 8), m("m", 8), v("v", 7);
  hax::optim::AdamWConfig const cfg;
  CHECK_THROWS_WITH(hax::optim::adamw_update(space, cfg, 1e-3, 1, p, g, m, v, 8),
                    ContainsSubstring("hax::optim::adamw_update") &&
                        ContainsSubstring("v (7)") && ContainsSubstring("params (8)"));
  flat<float> v8("v8", 8);
  CHECK_THROWS_AS(hax::optim::adamw_update(space, cfg, 1e-3, 0, p, g, m, v8, 8),
                  hax::invalid_argument);
  CHECK_THROWS_WITH(hax::optim::adamw_update(space, cfg, 1e-3, 1, p, g, m, v8, 9),
                    ContainsSubstring("decay_count (9)"));
  hax::optim::AdamWConfig bad;
  bad.beta2 = 1.0;
  CHECK_THROWS_WITH(hax::optim::AdamW<test_space>(bad),
                    ContainsSubstring("hax::optim::AdamWConfig") && ContainsSubstring("beta2"));
  bad = {};
  bad.weight_decay = -1.0;
  CHECK_THROWS_AS(bad.validate(), hax::invalid_argument);
}
