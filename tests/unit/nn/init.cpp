// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/core/random.hpp>
#include <hax/nn/init.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numbers>
#include <vector>

#include "support/compare.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;
namespace init = hax::nn::init;

template <class T>
using flat = Kokkos::View<T*, Kokkos::LayoutRight, test_memory_space>;  // (n)

/// Fills a fresh flat View of `n` elements with the policy and returns its values.
template <class T>
std::vector<double> draw(init::Policy const& p, std::vector<std::size_t> const& shape,
                         char const* name, std::uint64_t seed = 1) {
  std::size_t n = 1;
  for (auto e : shape) {
    n *= e;
  }
  flat<T> x("x", n);
  test_space space;
  init::fill(space, p, x, seed, name, shape);
  space.fence();
  return hax::test::to_vector(x);
}

struct Moments {
  double mean;
  double std;
};

Moments moments(std::vector<double> const& x) {
  double sum = 0.0;
  for (double v : x) {
    sum += v;
  }
  double const mean = sum / static_cast<double>(x.size());
  double ss = 0.0;
  for (double v : x) {
    ss += (v - mean) * (v - mean);
  }
  return {mean, std::sqrt(ss / static_cast<double>(x.size() - 1))};
}

}  // namespace

TEST_CASE("normal init has the requested mean and std", "[nn][init]") {
  // n = 2^17 draws: the standard error of the mean is std/√n ≈ 0.0028·std and that of the sample
  // std ≈ std/√(2n) ≈ 0.002·std; 5 standard errors fail a wrong parameter (e.g. std·1.05).
  std::size_t const n = 1 << 17;
  double const mean = 0.3, std = 0.1;
  auto const x = draw<double>(init::Normal{mean, std}, {n}, "w");
  auto const mo = moments(x);
  double const se_mean = std / std::sqrt(static_cast<double>(n));
  double const se_std = std / std::sqrt(2.0 * static_cast<double>(n));
  CHECK(std::abs(mo.mean - mean) < 5 * se_mean);
  CHECK(std::abs(mo.std - std) < 5 * se_std);
  // Tails: a fraction of |z| > 2 near 4.55% (binomial standard error ≈ 0.058%).
  double const frac = static_cast<double>(std::count_if(x.begin(), x.end(), [&](double v) {
                        return std::abs(v - mean) > 2 * std;
                      })) /
                      static_cast<double>(n);
  CHECK(std::abs(frac - 0.0455) < 5 * 0.00058);
}

TEST_CASE("uniform and kaiming-uniform init respect their bounds and moments", "[nn][init]") {
  std::size_t const n = 1 << 16;
  auto const check_uniform = [&](std::vector<double> const& x, double lo, double hi) {
    CHECK(*std::min_element(x.begin(), x.end()) >= lo);
    CHECK(*std::max_element(x.begin(), x.end()) < hi);
    auto const mo = moments(x);
    double const sd = (hi - lo) / std::sqrt(12.0);
    CHECK(std::abs(mo.mean - (lo + hi) / 2) < 5 * sd / std::sqrt(static_cast<double>(x.size())));
    // The sample variance of a uniform has relative standard error √(4/5n); on std half that.
    CHECK(std::abs(mo.std / sd - 1.0) < 5 * std::sqrt(0.8 / static_cast<double>(x.size())) / 2);
    // Both ends are reached (the bound is the right one, not a smaller one).
    CHECK(*std::min_element(x.begin(), x.end()) < lo + (hi - lo) * 1e-3);
    CHECK(*std::max_element(x.begin(), x.end()) > hi - (hi - lo) * 1e-3);
  };
  SECTION("uniform(a, b)") { check_uniform(draw<double>(init::Uniform{-0.2, 0.7}, {n}, "u"), -0.2, 0.7); }
  SECTION("kaiming weight (out, in): bound 1/sqrt(in)") {
    double const b = 1.0 / std::sqrt(128.0);
    check_uniform(draw<double>(init::KaimingUniform{}, {512, 128}, "lin.w"), -b, b);
  }
  SECTION("kaiming depthwise conv (C, 1, 4): bound 0.5, as the reference's Conv1d") {
    check_uniform(draw<double>(init::KaimingUniform{}, {n / 4, 1, 4}, "conv.w"), -0.5, 0.5);
  }
  SECTION("kaiming bias with the weight's fan_in") {
    check_uniform(draw<double>(init::KaimingUniform{4}, {n}, "conv.b"), -0.5, 0.5);
  }
  SECTION("kaiming with scale (Mamba-2 out_proj: 1/sqrt(d_inner)/sqrt(2))") {
    double const b = 1.0 / std::sqrt(128.0) / std::sqrt(2.0);
    check_uniform(draw<double>(init::KaimingUniform{0, 1.0 / std::sqrt(2.0)}, {512, 128}, "o.w"),
                  -b, b);
  }
}

TEST_CASE("constant, zeros, ones and A_log are exact", "[nn][init]") {
  CHECK(draw<float>(init::Zeros{}, {3, 5}, "z") == std::vector<double>(15, 0.0));
  CHECK(draw<float>(init::Ones{}, {7}, "o") == std::vector<double>(7, 1.0));
  CHECK(draw<double>(init::Constant{-2.5}, {2, 2, 2}, "c") == std::vector<double>(8, -2.5));
  SECTION("Mamba-1 A_log (d_inner, N): every row log(1..N)") {
    std::size_t const d = 5, N = 16;
    auto const a = draw<double>(init::ALog{}, {d, N}, "A_log");
    for (std::size_t r = 0; r < d; ++r) {
      for (std::size_t j = 0; j < N; ++j) {
        CHECK(a[r * N + j] == std::log(static_cast<double>(j + 1)));
      }
    }
  }
  SECTION("Mamba-2 A_log (H): log(1..H)") {
    auto const a = draw<float>(init::ALog{}, {8}, "A_log");
    for (std::size_t h = 0; h < 8; ++h) {
      CHECK(a[h] == static_cast<double>(static_cast<float>(std::log(h + 1.0))));
    }
  }
}

TEST_CASE("softplus inverse round-trips", "[nn][init]") {
  for (double y : {1e-6, 1e-4, 1e-3, 0.05, 0.1, 1.0, 5.0, 30.0}) {
    CAPTURE(y);
    double const x = init::softplus_inverse(y);
    double const back = std::log1p(std::exp(x));  // softplus
    CHECK(std::abs(back - y) <= 1e-12 * y);
  }
}

TEST_CASE("dt-bias init: softplus(bias) is log-uniform in [dt_min, dt_max], floored", "[nn][init]") {
  std::size_t const n = 1 << 15;
  init::DtBias const p{1e-3, 0.1, 1e-4};
  auto const bias = draw<double>(p, {n}, "dt_bias");
  std::vector<double> log_dt(n);
  for (std::size_t i = 0; i < n; ++i) {
    double const dt = std::log1p(std::exp(bias[i]));
    REQUIRE(dt >= 1e-3 * (1 - 1e-12));
    REQUIRE(dt <= 0.1 * (1 + 1e-12));
    log_dt[i] = std::log(dt);
  }
  double const lo = std::log(1e-3), hi = std::log(0.1);
  auto const mo = moments(log_dt);
  double const sd = (hi - lo) / std::sqrt(12.0);
  CHECK(std::abs(mo.mean - (lo + hi) / 2) < 5 * sd / std::sqrt(static_cast<double>(n)));
  CHECK(std::abs(mo.std / sd - 1.0) < 5 * std::sqrt(0.8 / static_cast<double>(n)) / 2);
  SECTION("the floor applies when dt_min is below it") {
    auto const floored = draw<double>(init::DtBias{1e-6, 1e-5, 1e-4}, {64}, "dt_bias");
    for (double b : floored) {
      CHECK(std::abs(std::log1p(std::exp(b)) - 1e-4) <= 1e-15);
    }
  }
}

TEMPLATE_TEST_CASE("init values are a function of (seed, name, index) only", "[nn][init]", float,
                   double) {
  // Recomputed here on the host from the documented streams, so every backend must agree with
  // the same numbers (Serial and OpenMP with any thread count, later CUDA up to libm ulps).
  using T = TestType;
  std::size_t const n = 1000;
  std::uint64_t const seed = 1234;
  auto const device = draw<T>(init::Normal{0.0, 0.1}, {10, 100}, "layers.0.in_proj.weight", seed);
  auto const uniform = draw<T>(init::Uniform{-1.0, 1.0}, {n}, "conv.b", seed);
  std::uint64_t const key = hax::core::stream_key(seed, init::kInitDomain,
                                                  init::name_hash("layers.0.in_proj.weight"));
  std::uint64_t const ukey =
      hax::core::stream_key(seed, init::kInitDomain, init::name_hash("conv.b"));
  std::vector<double> expected(n), expected_u(n);
  for (std::size_t i = 0; i < n; ++i) {
    hax::core::RngStream rng(key, 2 * i);
    double const u1 = 1.0 - rng.uniform();
    double const u2 = rng.uniform();
    double const z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    expected[i] = static_cast<T>(0.1 * z);
    hax::core::RngStream urng(ukey, 2 * i);
    expected_u[i] = static_cast<T>(-1.0 + 2.0 * urng.uniform());
  }
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(device, expected, tol::rtol, tol::atol, "normal");
  hax::test::check_close(uniform, expected_u, tol::rtol, tol::atol, "uniform");
  // Different names and seeds give different streams.
  CHECK(draw<T>(init::Normal{0.0, 0.1}, {n}, "other", seed) != device);
  CHECK(draw<T>(init::Normal{0.0, 0.1}, {10, 100}, "layers.0.in_proj.weight", seed + 1) != device);
  CHECK(init::name_hash("a") != init::name_hash("b"));
}

TEST_CASE("init rejects bad policies and sizes", "[nn][init]") {
  using Catch::Matchers::ContainsSubstring;
  flat<float> x("x", 12);
  test_space space;
  CHECK_THROWS_WITH(init::fill(space, init::KaimingUniform{}, x, 1, "b", {12}),
                    ContainsSubstring("hax::nn::init::fill") && ContainsSubstring("\"b\"") &&
                        ContainsSubstring("fan_in"));
  CHECK_THROWS_WITH(init::fill(space, init::Normal{0.0, 1.0}, x, 1, "w", {3, 5}),
                    ContainsSubstring("15 elements") && ContainsSubstring("span 12"));
  CHECK_THROWS_AS(init::fill(space, init::Uniform{1.0, -1.0}, x, 1, "u", {12}),
                  hax::invalid_argument);
  CHECK_THROWS_AS(init::fill(space, init::Normal{0.0, -1.0}, x, 1, "n", {12}),
                  hax::invalid_argument);
  CHECK_THROWS_AS(init::fill(space, init::DtBias{0.1, 1e-3, 1e-4}, x, 1, "dt", {12}),
                  hax::invalid_argument);
  CHECK(std::string(init::policy_name(init::KaimingUniform{})) == "kaiming_uniform");
}
