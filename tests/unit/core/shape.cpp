// SPDX-License-Identifier: MIT
#include <Kokkos_Core.hpp>
#include <catch2/catch_test_macros.hpp>
#include <hax/core/shape.hpp>

#include "support/test_space.hpp"

using hax::test::test_memory_space;

TEST_CASE("shape_of prints every extent in order", "[core][shape]") {
  Kokkos::View<float***, test_memory_space> x("x", 2, 7, 16);
  Kokkos::View<int*, test_memory_space> v("v", 0);
  Kokkos::View<double, test_memory_space> s("s");
  CHECK(hax::core::shape_of(x) == "(2, 7, 16)");
  CHECK(hax::core::shape_of(v) == "(0)");
  CHECK(hax::core::shape_of(s) == "()");
}

TEST_CASE("same_shape compares rank and every extent", "[core][shape]") {
  Kokkos::View<float***, test_memory_space> a("a", 2, 7, 16);
  Kokkos::View<double***, Kokkos::LayoutLeft, test_memory_space> b("b", 2, 7, 16);
  Kokkos::View<float***, test_memory_space> last("last", 2, 7, 15);
  Kokkos::View<float***, test_memory_space> first("first", 3, 7, 16);
  Kokkos::View<float**, test_memory_space> flat("flat", 14, 16);
  // Same leading extents, one more rank (Kokkos reports extent 1 past a View's rank).
  Kokkos::View<float****, test_memory_space> extra("extra", 2, 7, 16, 1);
  CHECK(hax::core::same_shape(a, b));  // layout and value type do not matter
  CHECK_FALSE(hax::core::same_shape(a, last));
  CHECK_FALSE(hax::core::same_shape(a, first));
  CHECK_FALSE(hax::core::same_shape(a, flat));
  CHECK_FALSE(hax::core::same_shape(a, extra));
}
