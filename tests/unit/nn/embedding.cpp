// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/embedding.hpp>
#include <hax/reference/nn/embedding.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cstddef>
#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
using view1 = Kokkos::View<T*, Kokkos::LayoutRight, test_memory_space>;
template <class T>
using view2 = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;
template <class T>
using view3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;

/// Random tokens in [0, V) with many repeats (B·L >> V), so the scatter has collisions.
template <class Token>
std::vector<Token> random_tokens(std::size_t n, std::size_t V, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> dist(0, static_cast<int>(V) - 1);
  std::vector<Token> out(n);
  for (auto& t : out) {
    t = static_cast<Token>(dist(rng));
  }
  return out;
}

template <class Token>
view2<Token> device_tokens(std::vector<Token> const& host, std::size_t B, std::size_t L) {
  view2<Token> tokens("tokens", B, L);  // (B, L)
  auto mirror = Kokkos::create_mirror_view(tokens);
  for (std::size_t i = 0; i < host.size(); ++i) {
    mirror.data()[i] = host[i];
  }
  Kokkos::deep_copy(tokens, mirror);
  return tokens;
}

double dot(std::vector<double> const& a, std::vector<double> const& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    s += a[i] * b[i];
  }
  return s;
}

}  // namespace

TEMPLATE_TEST_CASE("embedding forward and backward match the reference", "[nn][embedding]",
                   (std::tuple<float, std::uint8_t>), (std::tuple<float, std::int32_t>),
                   (std::tuple<double, std::uint8_t>), (std::tuple<double, std::int64_t>)) {
  using T = std::tuple_element_t<0, TestType>;
  using Token = std::tuple_element_t<1, TestType>;
  std::size_t const B = 3, L = 41, V = 13, D = 7;
  test_space space;
  auto const htok = random_tokens<Token>(B * L, V, 1);
  auto const tokens = device_tokens(htok, B, L);  // (B, L)
  view2<T> table("table", V, D);                  // (V, D)
  view3<T> y("y", B, L, D);                       // (B, L, D)
  view3<T> dy("dy", B, L, D);                     // (B, L, D)
  view2<T> dtable("dtable", V, D);                // (V, D)
  auto const htable = hax::test::fill_random(table, 2);
  auto const hdy = hax::test::fill_random(dy, 3);
  auto const hdtable0 = hax::test::fill_random(dtable, 4);  // nonzero: dE accumulates
  hax::test::fill_random(y, 5);

  hax::nn::embedding_forward(space, tokens, table, y);
  hax::nn::embedding_backward(space, tokens, dy, dtable);
  space.fence();

  auto const ref_y = hax::reference::nn::embedding_forward(htok, htable, D);
  auto ref_dtable = hdtable0;
  hax::reference::nn::embedding_backward(htok, hdy, ref_dtable, D);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(y), ref_y, 0.0, 0.0, "y");  // a copy: exact
  hax::test::check_close(hax::test::to_vector(dtable), ref_dtable, tol::rtol, tol::atol, "dtable");
}

TEST_CASE("embedding backward covers several position and column blocks, and large vocabularies",
          "[nn][embedding]") {
  // (B·L, D, V): 2 100 positions span two row blocks with 2 or more threads, D = 40 two 32-column
  // blocks;
  // V = 300 floats per column block exceeds the private scratch block, so it scatters directly.
  auto const [B, L, D, V] = GENERATE(std::tuple<std::size_t, std::size_t, std::size_t, std::size_t>{
                                         3, 700, 40, 13},
                                     std::tuple<std::size_t, std::size_t, std::size_t, std::size_t>{
                                         2, 50, 5, 300});
  CAPTURE(B, L, D, V);
  test_space space;
  auto const htok = random_tokens<std::int32_t>(B * L, V, 41);
  auto const tokens = device_tokens(htok, B, L);
  view3<float> dy("dy", B, L, D);
  view2<float> dtable("dtable", V, D);
  auto const hdy = hax::test::fill_random(dy, 42);
  auto ref_dtable = hax::test::fill_random(dtable, 43);
  hax::nn::embedding_backward(space, tokens, dy, dtable);
  space.fence();
  hax::reference::nn::embedding_backward(htok, hdy, ref_dtable, D);
  // ~160 terms per entry in float: a few ulps of accumulated rounding.
  hax::test::check_close(hax::test::to_vector(dtable), ref_dtable, 1e-4, 1e-5, "dtable");
}

TEST_CASE("embedding gradient matches central finite differences", "[nn][embedding]") {
  std::size_t const B = 2, L = 9, V = 5, D = 3;
  test_space space;
  auto const htok = random_tokens<std::int32_t>(B * L, V, 11);
  auto const tokens = device_tokens(htok, B, L);
  view2<double> table("table", V, D), dtable("dtable", V, D);
  view3<double> y("y", B, L, D), dy("dy", B, L, D);
  auto const htable = hax::test::fill_random(table, 12);
  auto const hdy = hax::test::fill_random(dy, 13);
  hax::nn::embedding_backward(space, tokens, dy, dtable);
  space.fence();
  auto const analytic = hax::test::to_vector(dtable);
  hax::test::check_gradient(
      htable, analytic,
      [&](std::vector<double> const& v) {
        hax::test::from_vector(table, v);
        hax::nn::embedding_forward(space, tokens, table, y);
        space.fence();
        return dot(hdy, hax::test::to_vector(y));
      },
      "dtable");
}

TEMPLATE_TEST_CASE("tied output projection matches the reference", "[nn][embedding]", float,
                   double) {
  using T = TestType;
  std::size_t const M = 29, D = 16, V = 23;
  test_space space;
  view2<T> h("h", M, D), table("table", V, D), logits("logits", M, V);
  view2<T> dlogits("dlogits", M, V), dh("dh", M, D), dtable("dtable", V, D);
  auto const hh = hax::test::fill_random(h, 21);
  auto const htable = hax::test::fill_random(table, 22);
  auto const hdlogits = hax::test::fill_random(dlogits, 23);
  auto const hdtable0 = hax::test::fill_random(dtable, 24);
  hax::test::fill_random(dh, 25);

  hax::nn::tied_output_forward(space, h, table, logits);
  hax::nn::tied_output_backward(space, dlogits, h, table, dh, dtable);
  space.fence();

  auto const ref_logits = hax::reference::nn::tied_output_forward(hh, htable, M, D, V);
  auto ref_dtable = hdtable0;
  auto const ref_dh =
      hax::reference::nn::tied_output_backward(hdlogits, hh, htable, ref_dtable, M, D, V);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(logits), ref_logits, tol::rtol, tol::atol, "logits");
  hax::test::check_close(hax::test::to_vector(dh), ref_dh, tol::rtol, tol::atol, "dh");
  hax::test::check_close(hax::test::to_vector(dtable), ref_dtable, tol::rtol, tol::atol, "dtable");
}

TEST_CASE("tied output gradients match central finite differences", "[nn][embedding]") {
  std::size_t const M = 5, D = 4, V = 6;
  test_space space;
  view2<double> h("h", M, D), table("table", V, D), logits("logits", M, V);
  view2<double> dlogits("dlogits", M, V), dh("dh", M, D), dtable("dtable", V, D);
  auto const hh = hax::test::fill_random(h, 31);
  auto const htable = hax::test::fill_random(table, 32);
  auto const hdl = hax::test::fill_random(dlogits, 33);
  hax::nn::tied_output_backward(space, dlogits, h, table, dh, dtable);
  space.fence();
  auto loss = [&](std::vector<double> const& vh, std::vector<double> const& vt) {
    hax::test::from_vector(h, vh);
    hax::test::from_vector(table, vt);
    hax::nn::tied_output_forward(space, h, table, logits);
    space.fence();
    return dot(hdl, hax::test::to_vector(logits));
  };
  auto const gh = hax::test::to_vector(dh);
  auto const gt = hax::test::to_vector(dtable);
  hax::test::check_gradient(hh, gh, [&](auto const& v) { return loss(v, htable); }, "dh");
  hax::test::check_gradient(htable, gt, [&](auto const& v) { return loss(hh, v); }, "dtable");
}

TEST_CASE("token validation counts tokens outside the vocabulary", "[nn][embedding]") {
  test_space space;
  std::vector<std::int32_t> const htok = {0, 4, 5, -1, 2, 7};  // V = 5: 5, -1 and 7 are invalid
  auto const tokens = device_tokens(htok, 2, 3);
  Kokkos::View<std::int64_t, test_memory_space> count("count");
  hax::nn::count_invalid_tokens(space, tokens, 5, count);
  auto const host_count = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, count);
  CHECK(host_count() == 3);
  CHECK_THROWS_WITH(hax::nn::validate_tokens(space, tokens, 5, "hax::data::loader"),
                    Catch::Matchers::ContainsSubstring("hax::data::loader: 3 of the tokens (2, 3)"));
  CHECK_THROWS_WITH(hax::nn::validate_tokens(space, tokens, 8),  // -1 stays invalid
                    Catch::Matchers::ContainsSubstring("1 of the tokens (2, 3)"));
  auto const valid = device_tokens(std::vector<std::int32_t>{0, 4, 2, 3, 1, 4}, 2, 3);
  CHECK_NOTHROW(hax::nn::validate_tokens(space, valid, 5));
}

TEST_CASE("embedding ops reject mismatched shapes naming the op and both shapes",
          "[nn][embedding]") {
  test_space space;
  using Catch::Matchers::ContainsSubstring;
  view2<std::int32_t> tokens("tokens", 2, 3);
  view2<float> table("table", 5, 4);
  view3<float> bad_y("bad_y", 2, 3, 6);
  CHECK_THROWS_AS(hax::nn::embedding_forward(space, tokens, table, bad_y), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::nn::embedding_forward(space, tokens, table, bad_y),
                    ContainsSubstring("hax::nn::embedding_forward") &&
                        ContainsSubstring("y (2, 3, 6)") && ContainsSubstring("table (5, 4)"));
  view3<float> bad_dy("bad_dy", 3, 2, 4);
  CHECK_THROWS_WITH(hax::nn::embedding_backward(space, tokens, bad_dy, table),
                    ContainsSubstring("hax::nn::embedding_backward") &&
                        ContainsSubstring("dy (3, 2, 4)") && ContainsSubstring("tokens (2, 3)"));
  view2<float> h("h", 7, 3), logits("logits", 7, 5);
  CHECK_THROWS_WITH(hax::nn::tied_output_forward(space, h, table, logits),
                    ContainsSubstring("hax::nn::tied_output_forward") &&
                        ContainsSubstring("h (7, 3)") && ContainsSubstring("table (5, 4)"));
  view2<float> dh("dh", 7, 4), h4("h4", 7, 4), bad_dtable("bad_dtable", 4, 5);
  CHECK_THROWS_WITH(hax::nn::tied_output_backward(space, logits, h4, table, dh, bad_dtable),
                    ContainsSubstring("hax::nn::tied_output_backward") &&
                        ContainsSubstring("dtable (4, 5)") && ContainsSubstring("table (5, 4)"));
}
