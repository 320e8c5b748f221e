// SPDX-License-Identifier: MIT
/// \file
/// Host-side helpers for tests: copy Views to and from std::vector<double>, fill Views with
/// reproducible random values, and compare with tolerances that report the worst element.
#pragma once

#include <Kokkos_Core.hpp>
#include <catch2/catch_test_macros.hpp>

#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace hax::test {

/// Tolerances per scalar type for device-vs-reference comparisons of the same algorithm.
/// float: a few ulps of accumulated rounding over reductions of ~1e3 terms; double: near exact.
template <class T>
struct tolerance;
template <>
struct tolerance<float> {
  static constexpr double rtol = 1e-4;
  static constexpr double atol = 1e-5;
};
template <>
struct tolerance<double> {
  static constexpr double rtol = 1e-10;
  static constexpr double atol = 1e-12;
};

/// Copies a contiguous View of any rank (any memory space) to a flat host vector<double>.
template <class View>
std::vector<double> to_vector(View const& v) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, v);
  std::vector<double> out(host.span());
  auto const* data = host.data();
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<double>(data[i]);
  }
  return out;
}

/// Writes a flat host vector into a contiguous View of any rank (any memory space).
template <class View>
void from_vector(View const& v, std::vector<double> const& values) {
  REQUIRE(values.size() == v.span());
  auto host = Kokkos::create_mirror_view(Kokkos::HostSpace{}, v);
  auto* data = host.data();
  for (std::size_t i = 0; i < values.size(); ++i) {
    data[i] = static_cast<typename View::non_const_value_type>(values[i]);
  }
  Kokkos::deep_copy(v, host);
}

/// `n` uniform values in [lo, hi) from a fixed seed (std::mt19937_64, so identical everywhere).
inline std::vector<double> random_vector(std::size_t n, std::uint64_t seed, double lo = -1.0,
                                         double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> out(n);
  for (auto& x : out) {
    x = dist(rng);
  }
  return out;
}

/// Fills a View with uniform values in [lo, hi) from `seed`; returns the values written.
template <class View>
std::vector<double> fill_random(View const& v, std::uint64_t seed, double lo = -1.0,
                                double hi = 1.0) {
  auto values = random_vector(v.span(), seed, lo, hi);
  from_vector(v, values);
  return to_vector(v);  // what the View holds after rounding to its value type
}

/// Checks |actual - expected| <= atol + rtol * |expected| element-wise. On failure reports how
/// many elements fail, the worst one, and its index, under the label `what`.
inline void check_close(std::vector<double> const& actual, std::vector<double> const& expected,
                        double rtol, double atol, std::string_view what) {
  REQUIRE(actual.size() == expected.size());
  std::size_t failures = 0;
  std::size_t worst = 0;
  double worst_excess = -1.0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    double const bound = atol + rtol * std::abs(expected[i]);
    double const err = std::abs(actual[i] - expected[i]);
    bool const bad = !(err <= bound);  // also catches NaN
    if (bad) {
      ++failures;
    }
    double const excess = std::isnan(err) ? 1e300 : err - bound;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  INFO(what << ": " << failures << " of " << actual.size() << " elements out of tolerance (rtol "
            << rtol << ", atol " << atol << "); worst at flat index " << worst << ": actual "
            << (actual.empty() ? 0.0 : actual[worst]) << " expected "
            << (expected.empty() ? 0.0 : expected[worst]));
  CHECK(failures == 0);
}

/// Largest |x| of a vector (to make sure compared data is not trivially zero).
inline double max_abs(std::vector<double> const& x) {
  double m = 0.0;
  for (double v : x) {
    m = std::max(m, std::abs(v));
  }
  return m;
}

}  // namespace hax::test
