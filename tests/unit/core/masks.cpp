// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/core/masks.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <vector>

#include "support/compare.hpp"
#include "support/test_space.hpp"

using hax::test::test_memory_space;
using hax::test::test_space;

TEST_CASE("real_extent is one past each row's last real token", "[core]") {
  // L = 700 spans several threads of a team; rows: right-padded, a hole inside, all pads, none,
  // one token at the end, one at the start.
  int const B = 6, L = 700;
  std::vector<double> mask(B * L, 0.0);
  auto fill = [&](int b, int from, int to) {
    for (int t = from; t < to; ++t) { mask[b * L + t] = 1.0; }
  };
  fill(0, 0, 417);
  fill(1, 0, 100);
  fill(1, 300, 529);
  fill(3, 0, L);
  fill(4, L - 1, L);
  fill(5, 0, 1);
  Kokkos::View<int**, Kokkos::LayoutRight, test_memory_space> m("mask", B, L);
  hax::test::from_vector(m, mask);
  Kokkos::View<int*, test_memory_space> extents("extents", B);
  hax::test::from_vector(extents, std::vector<double>(B, -5.0));  // every entry must be written
  test_space space;
  hax::core::real_extent(space, m, extents);
  space.fence();
  CHECK(hax::test::to_vector(extents) == std::vector<double>{417, 529, 0, L, L, 1});
  Kokkos::View<int*, test_memory_space> wrong("wrong", B - 1);
  CHECK_THROWS_WITH(hax::core::real_extent(space, m, wrong),
                    Catch::Matchers::ContainsSubstring("hax::core::real_extent") &&
                        Catch::Matchers::ContainsSubstring("extents (5)"));
}
