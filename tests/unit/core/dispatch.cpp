// SPDX-License-Identifier: MIT
#include <hax/core/dispatch.hpp>
#include <hax/core/error.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include "support/test_space.hpp"

TEST_CASE("dispatch_bool turns a run-time flag into a compile-time constant", "[core]") {
  auto const probe = []<bool kFlag>() { return kFlag ? 1 : 2; };
  CHECK(hax::core::dispatch_bool(true, probe) == 1);
  CHECK(hax::core::dispatch_bool(false, probe) == 2);
}

TEST_CASE("require names the operation and the problem", "[core]") {
  CHECK_NOTHROW(hax::core::require(true, "hax::op", "never shown"));
  CHECK_THROWS_WITH(hax::core::require(false, "hax::op", "n (", 3, ") must be even"),
                    Catch::Matchers::Equals("hax::op: n (3) must be even"));
  CHECK_THROWS_AS(hax::core::require(false, "hax::op", "x"), hax::invalid_argument);
}

TEST_CASE("the test executable runs on its backend", "[core]") {
  using space = hax::test::test_space;
  Kokkos::View<int*, space::memory_space> v("v", 100);
  Kokkos::parallel_for(Kokkos::RangePolicy<space>(0, 100), KOKKOS_LAMBDA(int i) { v(i) = i; });
  int sum = 0;
  Kokkos::parallel_reduce(Kokkos::RangePolicy<space>(0, 100),
                          KOKKOS_LAMBDA(int i, int& s) { s += v(i); }, sum);
  CHECK(sum == 4950);
}
