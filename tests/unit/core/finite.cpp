// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/core/finite.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "support/compare.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
std::int64_t read_count(Kokkos::View<std::int64_t, test_memory_space> const& c) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, c);
  return h();
}

}  // namespace

TEMPLATE_TEST_CASE("count_nonfinite counts NaN and both infinities", "[core][finite]", float,
                   double) {
  using T = TestType;
  test_space space;
  Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space> x("x", 37, 29);  // (37, 29)
  auto values = hax::test::fill_random(x, 5, -1e3, 1e3);
  Kokkos::View<std::int64_t, test_memory_space> count("count");
  hax::core::count_nonfinite(space, x, count);
  space.fence();
  CHECK(read_count<T>(count) == 0);

  values[0] = std::numeric_limits<double>::quiet_NaN();
  values[17] = std::numeric_limits<double>::infinity();
  values[500] = -std::numeric_limits<double>::infinity();
  values.back() = std::numeric_limits<double>::quiet_NaN();
  values[3] = static_cast<double>(std::numeric_limits<T>::max());  // large but finite
  hax::test::from_vector(x, values);
  hax::core::count_nonfinite(space, x, count);
  space.fence();
  CHECK(read_count<T>(count) == 4);
}

TEMPLATE_TEST_CASE("sum of squares and non-finite count come from one reduction", "[core][finite]",
                   float, double) {
  using T = TestType;
  test_space space;
  Kokkos::View<T*, Kokkos::LayoutRight, test_memory_space> x("x", 10007);  // (n)
  auto values = hax::test::fill_random(x, 7);
  Kokkos::View<hax::core::FiniteStats, test_memory_space> stats("stats");
  hax::core::sum_squares_and_count_nonfinite(space, x, stats);
  space.fence();
  double expected = 0.0;
  for (double v : values) {
    expected += v * v;
  }
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, stats);
  CHECK(h().nonfinite == 0);
  CHECK(std::abs(h().sum_squares - expected) <= 1e-12 * expected);

  values[42] = std::numeric_limits<double>::infinity();
  hax::test::from_vector(x, values);
  hax::core::sum_squares_and_count_nonfinite(space, x, stats);
  space.fence();
  Kokkos::deep_copy(h, stats);
  CHECK(h().nonfinite == 1);
  CHECK(std::isinf(h().sum_squares));
}

TEST_CASE("require_finite reports the op, the tensor and the step", "[core][finite]") {
  using Catch::Matchers::ContainsSubstring;
  test_space space;
  Kokkos::View<float*, Kokkos::LayoutRight, test_memory_space> x("loss", 4);  // (4)
  hax::test::from_vector(x, {1.0, 2.0, 3.0, 4.0});
  CHECK_NOTHROW(hax::core::check_finite(space, x, "hax::nn::cross_entropy", "loss", 12));
  hax::test::from_vector(x, {1.0, std::nan(""), 3.0, 4.0});
  CHECK_THROWS_AS(hax::core::check_finite(space, x, "hax::nn::cross_entropy", "loss", 12),
                  hax::numerical_error);
  CHECK_THROWS_WITH(hax::core::check_finite(space, x, "hax::nn::cross_entropy", "loss", 12),
                    ContainsSubstring("hax::nn::cross_entropy") && ContainsSubstring("loss") &&
                        ContainsSubstring("1 non-finite") && ContainsSubstring("step 12"));

  Kokkos::View<hax::core::FiniteStats, test_memory_space> stats("stats");
  hax::core::sum_squares_and_count_nonfinite(space, x, stats);
  CHECK_THROWS_WITH(hax::core::require_finite(space, stats, "hax::train", "gradients", 7),
                    ContainsSubstring("gradients") && ContainsSubstring("step 7"));
}

TEST_CASE("count_nonfinite rejects non-contiguous Views", "[core][finite]") {
  using Catch::Matchers::ContainsSubstring;
  Kokkos::View<double**, Kokkos::LayoutRight, test_memory_space> x("x", 6, 5);  // (6, 5)
  auto column = Kokkos::subview(x, Kokkos::ALL, 2);                              // strided (6)
  Kokkos::View<std::int64_t, test_memory_space> count("count");
  CHECK_THROWS_WITH(hax::core::count_nonfinite(test_space{}, column, count),
                    ContainsSubstring("hax::core::count_nonfinite") &&
                        ContainsSubstring("contiguous"));
}
