// SPDX-License-Identifier: MIT
#include <hax/attention/hash/argmax_hash.hpp>
#include <hax/attention/hash/random_projection.hpp>
#include <hax/attention/hash/sign_bit_hash.hpp>
#include <hax/attention/lsh/bucketing.hpp>
#include <hax/core/error.hpp>
#include <hax/reference/attention/lsh.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cmath>
#include <type_traits>
#include <vector>

#include "support/compare.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
using v2 = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;
template <class T>
using v3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;

}  // namespace

TEMPLATE_TEST_CASE("random projection is a pure function of (seed, layer, step)",
                   "[attention][hash]", float, double) {
  using T = TestType;
  int const N = 16, h = 8;
  test_space space;
  v2<T> w("w", N, h), w_again("w_again", N, h), w_step("w_step", N, h), w_layer("w_layer", N, h);
  hax::attn::draw_random_projection(space, w, 7, 1, 42);
  hax::attn::draw_random_projection(space, w_again, 7, 1, 42);
  hax::attn::draw_random_projection(space, w_step, 7, 1, 43);
  hax::attn::draw_random_projection(space, w_layer, 7, 0, 42);
  space.fence();
  auto const ref = hax::reference::attn::projection_matrix(7, 1, 42, N, h);
  auto const got = hax::test::to_vector(w);
  // The same draws on every backend. Device libm (CUDA's log/cos/sqrt) may differ from the host's
  // in the last ulp of a double, which can also flip the rounding to float: allow one ulp.
  hax::test::check_close(got, ref, std::is_same_v<T, float> ? 2.5e-7 : 1e-14, 0.0, "w");
  hax::test::check_close(hax::test::to_vector(w_again), got, 0.0, 0.0, "w redrawn");
  auto differs = [&](std::vector<double> const& other) {
    int n = 0;
    for (std::size_t i = 0; i < got.size(); ++i) { n += other[i] != got[i]; }
    return n;
  };
  CHECK(differs(hax::test::to_vector(w_step)) == N * h);
  CHECK(differs(hax::test::to_vector(w_layer)) == N * h);
  // Roughly standard normal: mean and variance of the 128 draws (loose, 4-sigma bounds).
  double mean = 0, var = 0;
  for (double x : ref) { mean += x / ref.size(); }
  for (double x : ref) { var += (x - mean) * (x - mean) / (ref.size() - 1); }
  CHECK(std::abs(mean) < 4.0 / std::sqrt(128.0));
  CHECK(std::abs(var - 1.0) < 4.0 * std::sqrt(2.0 / 127.0));
}

TEMPLATE_TEST_CASE("hash buckets match the reference and stay in range", "[attention][hash]", float,
                   double) {
  using T = TestType;
  bool const sign_bit = GENERATE(true, false);
  CAPTURE(sign_bit);
  int const B = 3, L = 50, N = 16, h = 8;
  test_space space;
  v2<T> w("w", N, h);
  hax::attn::draw_random_projection(space, w, 3, 0, 5);
  v3<T> x("x", B, L, N);
  auto const hx = hax::test::fill_random(x, 17);
  v2<int> buckets("buckets", B, L);
  if (sign_bit) {
    hax::attn::lsh_hash_rows(space, hax::attn::make_sign_bit_hash(w), x, buckets);
  } else {
    hax::attn::lsh_hash_rows(space, hax::attn::make_argmax_hash(w), x, buckets);
  }
  space.fence();
  std::vector<double> hw = hax::test::to_vector(w);
  auto const ref = hax::reference::attn::hash_rows(hx, hw, B, L, N, h, sign_bit);
  auto const got = hax::test::to_vector(buckets);
  int const nb = sign_bit ? (1 << h) : 2 * h;
  int distinct_hits = 0;
  std::vector<int> seen(nb, 0);
  for (std::size_t r = 0; r < got.size(); ++r) {
    CHECK(got[r] >= 0);
    CHECK(got[r] < nb);
    if (got[r] >= 0 && got[r] < nb && !seen[static_cast<int>(got[r])]++) { ++distinct_hits; }
  }
  CHECK(distinct_hits > 8);  // the hash spreads rows over many buckets
  std::vector<double> ref_d(ref.begin(), ref.end());
  hax::test::check_close(got, ref_d, 0.0, 0.0, "buckets");
}

TEMPLATE_TEST_CASE("antipodal rows: complementary sign bits, argmax bucket shifted by h",
                   "[attention][hash]", float, double) {
  using T = TestType;
  int const L = 64, N = 8, h = 6;
  test_space space;
  v2<T> w("w", N, h);
  hax::attn::draw_random_projection(space, w, 11, 2, 0);
  v3<T> x("x", 2, L, N);  // sequence 0: rows x; sequence 1: the same rows negated
  auto hx = hax::test::random_vector(2 * L * N, 5);
  for (int r = 0; r < L * N; ++r) { hx[L * N + r] = -hx[r]; }
  hax::test::from_vector(x, hx);
  v2<int> sb("sb", 2, L), am("am", 2, L);
  hax::attn::lsh_hash_rows(space, hax::attn::make_sign_bit_hash(w), x, sb);
  hax::attn::lsh_hash_rows(space, hax::attn::make_argmax_hash(w), x, am);
  space.fence();
  auto const s = hax::test::to_vector(sb);
  auto const a = hax::test::to_vector(am);
  for (int i = 0; i < L; ++i) {
    CAPTURE(i);
    CHECK(static_cast<int>(s[i]) + static_cast<int>(s[L + i]) == (1 << h) - 1);
    CHECK(static_cast<int>(a[L + i]) == (static_cast<int>(a[i]) + h) % (2 * h));
    CHECK(s[i] != s[L + i]);  // a vector and its negation never collide under sign-bit binning
  }
}

TEST_CASE("zero rows hash to bucket 0 under both rules", "[attention][hash]") {
  int const N = 4, h = 5;
  test_space space;
  v2<float> w("w", N, h);
  hax::attn::draw_random_projection(space, w, 1, 0, 0);
  v3<float> x("x", 1, 3, N);  // zero-initialised
  v2<int> sb("sb", 1, 3), am("am", 1, 3);
  hax::test::from_vector(sb, {7, 7, 7});
  hax::test::from_vector(am, {7, 7, 7});
  hax::attn::lsh_hash_rows(space, hax::attn::make_sign_bit_hash(w), x, sb);
  hax::attn::lsh_hash_rows(space, hax::attn::make_argmax_hash(w), x, am);
  space.fence();
  hax::test::check_close(hax::test::to_vector(sb), {0, 0, 0}, 0.0, 0.0, "sign-bit");
  hax::test::check_close(hax::test::to_vector(am), {0, 0, 0}, 0.0, 0.0, "argmax");
}

TEST_CASE("hashing rejects bad input", "[attention][hash]") {
  test_space space;
  v2<float> w31("w31", 4, 31), w0("w0", 4, 0);
  CHECK_THROWS_WITH(hax::attn::draw_random_projection(space, w31, 1, 0, 0),
                    Catch::Matchers::ContainsSubstring("hax::attn::draw_random_projection") &&
                        Catch::Matchers::ContainsSubstring("(4, 31)"));
  CHECK_THROWS_AS(hax::attn::draw_random_projection(space, w0, 1, 0, 0), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::attn::make_sign_bit_hash(w31),
                    Catch::Matchers::ContainsSubstring("h = 31") &&
                        Catch::Matchers::ContainsSubstring("bucket index type"));
  CHECK_THROWS_AS(hax::attn::make_argmax_hash(w31), hax::invalid_argument);
  v2<float> w("w", 4, 3);
  v3<float> x("x", 2, 5, 6);  // N = 6 but W expects 4
  v2<int> buckets("buckets", 2, 5), wrong("wrong", 2, 4);
  CHECK_THROWS_WITH(hax::attn::lsh_hash_rows(space, hax::attn::make_sign_bit_hash(w), x, buckets),
                    Catch::Matchers::ContainsSubstring("hax::attn::lsh_hash_rows"));
  v3<float> x4("x4", 2, 5, 4);
  CHECK_THROWS_WITH(hax::attn::lsh_hash_rows(space, hax::attn::make_sign_bit_hash(w), x4, wrong),
                    Catch::Matchers::ContainsSubstring("buckets (2, 4)"));
}
