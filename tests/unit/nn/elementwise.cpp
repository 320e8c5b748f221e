// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/elementwise.hpp>
#include <hax/reference/nn/elementwise.hpp>

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
using tensor3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;  // (B, L, D)
template <class T>
using vector1 = Kokkos::View<T*, Kokkos::LayoutRight, test_memory_space>;  // (D)

double dot(std::vector<double> const& a, std::vector<double> const& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    s += a[i] * b[i];
  }
  return s;
}

}  // namespace

TEMPLATE_TEST_CASE("silu_gate and add match the reference", "[nn][elementwise]", float, double) {
  using T = TestType;
  std::size_t const B = 2, L = 11, D = 13;
  test_space space;
  tensor3<T> a("a", B, L, D), z("z", B, L, D), y("y", B, L, D), dy("dy", B, L, D);
  tensor3<T> da("da", B, L, D), dz("dz", B, L, D);
  auto const ha = hax::test::fill_random(a, 1);
  auto const hz = hax::test::fill_random(z, 2, -4.0, 4.0);
  auto const hdy = hax::test::fill_random(dy, 3);
  hax::test::fill_random(da, 4);  // garbage: da, dz must be overwritten
  hax::test::fill_random(dz, 5);
  namespace ref = hax::reference::nn;
  using tol = hax::test::tolerance<T>;

  hax::nn::silu_gate_forward(space, a, z, y);
  hax::nn::silu_gate_backward(space, dy, a, z, da, dz);
  space.fence();
  std::vector<double> ref_da, ref_dz;
  ref::silu_gate_backward(hdy, ha, hz, ref_da, ref_dz);
  hax::test::check_close(hax::test::to_vector(y), ref::silu_gate_forward(ha, hz), tol::rtol,
                         tol::atol, "silu_gate y");
  hax::test::check_close(hax::test::to_vector(da), ref_da, tol::rtol, tol::atol, "silu_gate da");
  hax::test::check_close(hax::test::to_vector(dz), ref_dz, tol::rtol, tol::atol, "silu_gate dz");

  // add: out of place, then in place (y += a, y aliasing the second operand)
  hax::nn::add_forward(space, a, z, y);
  space.fence();
  hax::test::check_close(hax::test::to_vector(y), ref::add_forward(ha, hz), tol::rtol, tol::atol,
                         "add y");
  hax::nn::add_forward(space, a, y, y);
  space.fence();
  hax::test::check_close(hax::test::to_vector(y), ref::add_forward(ha, ref::add_forward(ha, hz)),
                         tol::rtol, tol::atol, "add in place");
  // add backward accumulates into the residual gradient
  auto ref_dx = hax::test::fill_random(da, 6);
  hax::nn::add_backward(space, dy, da);
  space.fence();
  ref::add_backward(hdy, ref_dx);
  hax::test::check_close(hax::test::to_vector(da), ref_dx, tol::rtol, tol::atol, "add dx");
}

TEMPLATE_TEST_CASE("gated_scale_add matches the reference", "[nn][elementwise]", float, double) {
  using T = TestType;
  auto const with_da = GENERATE(false, true);
  CAPTURE(with_da);
  // L = 300 spans three 128-position chunks of the de reduction, the last one ragged
  std::size_t const B = 2, L = 300, D = 9;
  test_space space;
  tensor3<T> a("a", B, L, D), b("b", B, L, D), z("z", B, L, D), y("y", B, L, D);
  tensor3<T> dy("dy", B, L, D), da, db("db", B, L, D), dz("dz", B, L, D);
  vector1<T> e("e", D), de("de", D);
  auto const ha = hax::test::fill_random(a, 11);
  auto const hb = hax::test::fill_random(b, 12);
  auto const hz = hax::test::fill_random(z, 13, -4.0, 4.0);
  auto const he = hax::test::fill_random(e, 14, 0.5, 1.5);
  auto const hdy = hax::test::fill_random(dy, 15);
  auto const hde0 = hax::test::fill_random(de, 16);  // nonzero: de must accumulate
  hax::test::fill_random(db, 17);                    // garbage: db, dz must be overwritten
  hax::test::fill_random(dz, 18);
  if (with_da) {
    da = tensor3<T>("da", B, L, D);
    hax::test::fill_random(da, 19);
  }

  hax::nn::gated_scale_add_forward(space, a, b, e, z, y);
  hax::nn::gated_scale_add_backward(space, dy, b, e, z, da, db, de, dz);
  space.fence();

  namespace ref = hax::reference::nn;
  std::vector<double> ref_da, ref_db, ref_dz, ref_de = hde0;
  ref::gated_scale_add_backward(hdy, hb, he, hz, B * L, D, ref_da, ref_db, ref_de, ref_dz);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(y),
                         ref::gated_scale_add_forward(ha, hb, he, hz, B * L, D), tol::rtol,
                         tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(db), ref_db, tol::rtol, tol::atol, "db");
  hax::test::check_close(hax::test::to_vector(dz), ref_dz, tol::rtol, tol::atol, "dz");
  hax::test::check_close(hax::test::to_vector(de), ref_de, tol::rtol, tol::atol, "de");
  if (with_da) {
    hax::test::check_close(hax::test::to_vector(da), ref_da, tol::rtol, tol::atol, "da");
  }

  // in place onto the scan output: y aliasing a
  hax::nn::gated_scale_add_forward(space, a, b, e, z, a);
  space.fence();
  hax::test::check_close(hax::test::to_vector(a),
                         ref::gated_scale_add_forward(ha, hb, he, hz, B * L, D), tol::rtol,
                         tol::atol, "y in place");
}

TEST_CASE("elementwise gradients match central differences", "[nn][elementwise]") {
  std::size_t const B = 2, L = 3, D = 4;
  test_space space;
  tensor3<double> a("a", B, L, D), b("b", B, L, D), z("z", B, L, D), y("y", B, L, D);
  tensor3<double> dy("dy", B, L, D), da("da", B, L, D), db("db", B, L, D), dz("dz", B, L, D);
  vector1<double> e("e", D), de("de", D);
  auto const ha = hax::test::fill_random(a, 21);
  auto const hb = hax::test::fill_random(b, 22);
  auto const hz = hax::test::fill_random(z, 23, -3.0, 3.0);
  auto const he = hax::test::fill_random(e, 24);
  auto const hdy = hax::test::fill_random(dy, 25);

  auto loss_with = [&](auto target, auto forward) {
    return [&, target, forward](std::vector<double> const& v) {
      hax::test::from_vector(target, v);
      forward();
      space.fence();
      return dot(hdy, hax::test::to_vector(y));
    };
  };

  SECTION("silu_gate") {
    auto fwd = [&] { hax::nn::silu_gate_forward(space, a, z, y); };
    hax::nn::silu_gate_backward(space, dy, a, z, da, dz);
    space.fence();
    auto const ada = hax::test::to_vector(da);
    auto const adz = hax::test::to_vector(dz);
    hax::test::check_gradient(ha, ada, loss_with(a, fwd), "da");
    hax::test::from_vector(a, ha);
    hax::test::check_gradient(hz, adz, loss_with(z, fwd), "dz");
  }
  SECTION("add") {
    auto fwd = [&] { hax::nn::add_forward(space, a, b, y); };
    Kokkos::deep_copy(da, 0.0);
    hax::nn::add_backward(space, dy, da);
    space.fence();
    auto const ada = hax::test::to_vector(da);
    hax::test::check_gradient(ha, ada, loss_with(a, fwd), "da");
    hax::test::check_gradient(hb, ada, loss_with(b, fwd), "db");
  }
  SECTION("gated_scale_add") {
    auto fwd = [&] { hax::nn::gated_scale_add_forward(space, a, b, e, z, y); };
    Kokkos::deep_copy(de, 0.0);
    hax::nn::gated_scale_add_backward(space, dy, b, e, z, da, db, de, dz);
    space.fence();
    auto const ada = hax::test::to_vector(da);
    auto const adb = hax::test::to_vector(db);
    auto const ade = hax::test::to_vector(de);
    auto const adz = hax::test::to_vector(dz);
    hax::test::check_gradient(ha, ada, loss_with(a, fwd), "da");
    hax::test::from_vector(a, ha);
    hax::test::check_gradient(hb, adb, loss_with(b, fwd), "db");
    hax::test::from_vector(b, hb);
    hax::test::check_gradient(he, ade, loss_with(e, fwd), "de");
    hax::test::from_vector(e, he);
    hax::test::check_gradient(hz, adz, loss_with(z, fwd), "dz");
  }
}

TEST_CASE("elementwise ops reject mismatched shapes, naming the op and the shapes",
          "[nn][elementwise]") {
  tensor3<float> a("a", 2, 3, 4), b("b", 2, 3, 5), y("y", 2, 3, 4), empty;
  vector1<float> e("e", 4), e3("e3", 3);
  using Catch::Matchers::ContainsSubstring;
  CHECK_THROWS_AS(hax::nn::silu_gate_forward(a, b, y), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::nn::silu_gate_forward(a, b, y),
                    ContainsSubstring("hax::nn::silu_gate_forward") &&
                        ContainsSubstring("a (2, 3, 4)") && ContainsSubstring("z (2, 3, 5)"));
  CHECK_THROWS_WITH(hax::nn::silu_gate_backward(y, a, a, b, a),
                    ContainsSubstring("hax::nn::silu_gate_backward") &&
                        ContainsSubstring("da (2, 3, 5)"));
  CHECK_THROWS_WITH(hax::nn::add_forward(a, b, y), ContainsSubstring("hax::nn::add_forward") &&
                                                       ContainsSubstring("b (2, 3, 5)"));
  CHECK_THROWS_WITH(hax::nn::add_backward(b, y), ContainsSubstring("hax::nn::add_backward") &&
                                                     ContainsSubstring("dy (2, 3, 5)"));
  CHECK_THROWS_WITH(hax::nn::gated_scale_add_forward(a, a, e3, a, y),
                    ContainsSubstring("hax::nn::gated_scale_add_forward") &&
                        ContainsSubstring("e (3)") && ContainsSubstring("(2, 3, 4)"));
  CHECK_THROWS_WITH(hax::nn::gated_scale_add_backward(y, a, e, a, b, a, e, a),
                    ContainsSubstring("hax::nn::gated_scale_add_backward") &&
                        ContainsSubstring("maybe_da (2, 3, 5)"));
  CHECK_THROWS_WITH(hax::nn::gated_scale_add_backward(y, a, e, a, empty, a, e3, a),
                    ContainsSubstring("de (3)"));
}
