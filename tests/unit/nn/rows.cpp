// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/rows.hpp>
#include <hax/reference/nn/rows.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
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
using tensor3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;  // (B, L|R, D)
using positions_view = Kokkos::View<int**, Kokkos::LayoutRight, test_memory_space>;  // (B, R)

// Sequence 0 names positions out of order and leaves slots empty; sequence 1 fills every slot
// and names the last position; sequence 2 has only empty slots and out-of-range marks.
std::vector<int> const kPositions = {
    4, 0, 9, -1, -1,   // b = 0
    1, 2, 3, 10, 7,    // b = 1
    -1, 11, -5, -1, 40  // b = 2: nothing in [0, L)
};
constexpr std::size_t kB = 3, kL = 11, kR = 5, kD = 6;

positions_view make_positions() {
  positions_view p("positions", kB, kR);
  auto h = Kokkos::create_mirror_view(p);
  for (std::size_t i = 0; i < kPositions.size(); ++i) h.data()[i] = kPositions[i];
  Kokkos::deep_copy(p, h);
  return p;
}

}  // namespace

TEMPLATE_TEST_CASE("gather_rows and scatter_rows match the reference", "[nn][rows]", float, double) {
  using T = TestType;
  test_space space;
  auto const positions = make_positions();
  tensor3<T> x("x", kB, kL, kD), y("y", kB, kR, kD), dy("dy", kB, kR, kD), dx("dx", kB, kL, kD);
  auto const hx = hax::test::fill_random(x, 1);
  auto const hdy = hax::test::fill_random(dy, 2);
  hax::test::fill_random(y, 3);   // garbage: every slot is written, empty ones with 0
  hax::test::fill_random(dx, 4);  // garbage: every position is written, unnamed ones with 0
  hax::nn::gather_rows(space, x, positions, y);
  hax::nn::scatter_rows(space, dy, positions, dx);
  space.fence();
  namespace ref = hax::reference::nn;
  auto const want_y = ref::gather_rows(hx, kPositions, kB, kL, kR, kD);
  auto const want_dx = ref::scatter_rows(hdy, kPositions, kB, kL, kR, kD);
  // Copies, so exact.
  CHECK(hax::test::to_vector(y) == want_y);
  CHECK(hax::test::to_vector(dx) == want_dx);
  // The reference itself: slot (1, 3) holds row (1, 10); sequence 2 is all zeros.
  CHECK(want_y[(1 * kR + 3) * kD + 2] == hx[(1 * kL + 10) * kD + 2]);
  for (std::size_t i = 2 * kR * kD; i < 3 * kR * kD; ++i) CHECK(want_y[i] == 0.0);
}

TEST_CASE("scatter_rows is the gradient of gather_rows (central differences)", "[nn][rows]") {
  test_space space;
  auto const positions = make_positions();
  tensor3<double> x("x", kB, kL, kD), y("y", kB, kR, kD), dy("dy", kB, kR, kD), dx("dx", kB, kL, kD);
  auto const hx = hax::test::fill_random(x, 11);
  auto const hdy = hax::test::fill_random(dy, 12);
  hax::nn::scatter_rows(space, dy, positions, dx);
  space.fence();
  auto const loss = [&](std::vector<double> const& v) {
    hax::test::from_vector(x, v);
    hax::nn::gather_rows(space, x, positions, y);
    space.fence();
    auto const hy = hax::test::to_vector(y);
    double s = 0.0;
    for (std::size_t i = 0; i < hy.size(); ++i) s += hdy[i] * hy[i];
    return s;
  };
  hax::test::check_gradient(hx, hax::test::to_vector(dx), loss, "dx");
}

TEST_CASE("gather_rows and scatter_rows reject mismatched shapes, naming the op and the shapes",
          "[nn][rows]") {
  tensor3<float> x("x", 2, 7, 4), y("y", 2, 3, 4), y5("y5", 2, 3, 5);
  positions_view p("p", 2, 3), p1("p1", 1, 3), p4("p4", 2, 4);
  using Catch::Matchers::ContainsSubstring;
  CHECK_THROWS_AS(hax::nn::gather_rows(x, p1, y), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::nn::gather_rows(x, p1, y),
                    ContainsSubstring("hax::nn::gather_rows") &&
                        ContainsSubstring("positions (1, 3)") && ContainsSubstring("x (2, 7, 4)"));
  CHECK_THROWS_WITH(hax::nn::gather_rows(x, p4, y),
                    ContainsSubstring("y (2, 3, 4)") && ContainsSubstring("(2, 4, 4)"));
  CHECK_THROWS_WITH(hax::nn::gather_rows(x, p, y5), ContainsSubstring("y (2, 3, 5)"));
  CHECK_THROWS_WITH(hax::nn::scatter_rows(y5, p, x),
                    ContainsSubstring("hax::nn::scatter_rows") && ContainsSubstring("dy (2, 3, 5)") &&
                        ContainsSubstring("dx (2, 7, 4)"));
  CHECK_NOTHROW(hax::nn::gather_rows(x, p, y));
}
