// SPDX-License-Identifier: MIT
/// \file
/// Tests of hax::constructive: the hand-set 2-layer model scores 100% on generated associative,
/// joint and multi-level joint recall items at several table sizes; it matches the serial
/// hax::reference::constructive model exactly (generated items and arbitrary token streams);
/// it is causal; the overwrite scan matches a plain loop across chunk boundaries; the state
/// width is the O(log n) of the construction; bad input is rejected.
#include "support/compare.hpp"
#include "support/test_space.hpp"

#include <hax/constructive/joint_recall_solver.hpp>
#include <hax/constructive/overwrite_scan.hpp>
#include <hax/data/joint_recall.hpp>
#include <hax/reference/constructive/joint_recall_solver.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace {

using hax::data::recall_spec;
using space_t = hax::test::test_space;
using mem_t = space_t::memory_space;
using solver_t = hax::constructive::JointRecallSolver<space_t>;
using Catch::Matchers::ContainsSubstring;

template <class DataType>
using dview = Kokkos::View<DataType, Kokkos::LayoutRight, mem_t>;

/// A resolved spec whose items all have level sizes `n` (n_min = n_max per level), with `items`
/// items in the valid split and none in the others.
recall_spec fixed_spec(std::vector<int> const& n, std::int64_t items, int vocab_size = 100) {
  recall_spec s;
  s.levels = static_cast<int>(n.size());
  for (int l = 0; l < s.levels; ++l) {
    s.n_min[l] = n[static_cast<std::size_t>(l)];
    s.n_max[l] = n[static_cast<std::size_t>(l)];
  }
  s.vocab_size = vocab_size;
  s.items_per_combination[0] = 0;
  s.items_per_combination[1] = items;
  s.items_per_combination[2] = 0;
  return hax::data::resolve(s);
}

struct generated {
  dview<std::int32_t**> tokens;  // (B, Lpad)
  dview<std::int8_t**> mask;     // (B, Lpad)
};

generated generate(recall_spec const& s, std::int64_t items) {
  space_t space;
  generated g{dview<std::int32_t**>("tokens", items, s.padded_length),
              dview<std::int8_t**>("mask", items, s.padded_length)};
  Kokkos::View<int, mem_t> failures("failures");
  hax::data::split_exclusions<mem_t> none;
  hax::data::generate_batch(space, s, none, hax::data::split::valid, 0, g.tokens, g.mask, failures);
  return g;
}

template <class Tokens>
dview<int**> predict(solver_t const& solver, Tokens const& tokens) {
  space_t space;
  int const B = tokens.extent_int(0), L = tokens.extent_int(1);
  auto const act = solver.allocate(space, B, L);
  dview<int**> pred("pred", B, L);  // (B, L)
  solver.forward(space, tokens, act, pred);
  space.fence();
  return pred;
}

/// Runs the solver on `items` generated items of sizes n and checks every loss position.
void check_exact(std::vector<int> const& n, std::int64_t items, int vocab_size = 100) {
  recall_spec const s = fixed_spec(n, items, vocab_size);
  solver_t const solver(s);
  auto const g = generate(s, items);
  auto const pred = predict(solver, g.tokens);
  dview<std::int64_t*> correct("correct", items), total("total", items);
  hax::constructive::score_items(space_t{}, pred, g.tokens, g.mask, correct, total);
  auto const c = hax::test::to_vector(correct);
  auto const t = hax::test::to_vector(total);
  std::int64_t leaves = 1;
  for (int x : n) leaves *= x;
  for (std::int64_t b = 0; b < items; ++b) {
    INFO("item " << b << " of levels " << n.size() << ", n_0 = " << n[0]);
    CHECK(t[static_cast<std::size_t>(b)] == static_cast<double>(leaves));  // every leaf is queried once
    CHECK(c[static_cast<std::size_t>(b)] == t[static_cast<std::size_t>(b)]);
  }
}

std::vector<int> to_ints(std::vector<double> const& x) { return {x.begin(), x.end()}; }

/// Row b of a (B, L) device View as host ints.
template <class V>
std::vector<int> row(V const& v, int b) {
  auto const all = hax::test::to_vector(v);
  std::size_t const L = v.extent(1);
  return to_ints(std::vector<double>(all.begin() + static_cast<std::ptrdiff_t>(b * L),
                                     all.begin() + static_cast<std::ptrdiff_t>((b + 1) * L)));
}

/// Random token streams: mostly ids of the vocabulary (levels, values, specials), some outside.
std::vector<int> random_tokens(recall_spec const& s, std::size_t count, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> any(-3, s.vocab_size + 3);
  std::uniform_int_distribution<int> value(0, s.n_values - 1);
  std::uniform_int_distribution<int> kind(0, 9);
  std::vector<int> out(count);
  for (auto& t : out) {
    int const k = kind(rng);
    if (k < 4) {
      t = s.value_bias + value(rng);  // values often, so that buckets repeat
    } else if (k < 8) {
      int const l = k % s.levels;
      std::uniform_int_distribution<int> c(0, s.n_max[l] - 1);
      t = hax::data::level_token(s, l, c(rng));
    } else {
      t = any(rng);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("constructive: 100% on multi-query joint recall (w = 2) at several table sizes",
          "[constructive]") {
  int const nc = GENERATE(5, 8, 16);
  int const nk = GENERATE(5, 8, 16);
  check_exact({nc, nk}, 3);
}

TEST_CASE("constructive: 100% on associative recall (w = 1)", "[constructive]") {
  int const n = GENERATE(5, 16, 64);
  check_exact({n}, 4);
  SECTION("a level of 200 keys (8-bit codes)") { check_exact({200}, 2, 512); }
}

TEST_CASE("constructive: 100% on multi-level joint recall (w = 3, 4)", "[constructive]") {
  check_exact({5, 5, 5}, 3);
  check_exact({3, 8, 4}, 3);
  check_exact({8, 8, 8}, 2, 128);
  check_exact({3, 4, 3, 5}, 2, 128);
}

TEST_CASE("constructive: bucketing by counting gives the same predictions", "[constructive]") {
  recall_spec const s = fixed_spec({16, 8}, 2);
  auto const g = generate(s, 2);
  auto const sorted = predict(solver_t(s), g.tokens);
  hax::constructive::JointRecallSolver<space_t, double, hax::attn::BucketCount> const counting(s);
  space_t space;
  auto const act = counting.allocate(space, 2, s.padded_length);
  dview<int**> pred("pred", 2, s.padded_length);  // (B, L)
  counting.forward(space, g.tokens, act, pred);
  dview<std::int64_t*> correct("correct", 2), total("total", 2);
  hax::constructive::score_items(space, pred, g.tokens, g.mask, correct, total);
  CHECK(hax::test::to_vector(pred) == hax::test::to_vector(sorted));
  CHECK(hax::test::to_vector(correct) == std::vector<double>{128.0, 128.0});
  CHECK(hax::test::to_vector(total) == std::vector<double>{128.0, 128.0});
}

TEST_CASE("constructive: state width is Σ ceil(log2 n_l) + ceil(log2 |V|) + 1", "[constructive]") {
  // Hand-computed from the construction: level codes, the value code (|V| = 16: 4 bits), is_value.
  CHECK(hax::constructive::make_layout(fixed_spec({5, 5}, 1)).state_width == 3 + 3 + 4 + 1);
  CHECK(hax::constructive::make_layout(fixed_spec({16, 16}, 1)).state_width == 4 + 4 + 4 + 1);
  CHECK(hax::constructive::make_layout(fixed_spec({16, 16}, 1)).key_width == 4 + 4 + 1);
  CHECK(hax::constructive::make_layout(fixed_spec({200}, 1, 512)).state_width == 8 + 4 + 1);
  CHECK(hax::constructive::make_layout(fixed_spec({8, 8, 8}, 1, 128)).state_width == 9 + 4 + 1);
  CHECK(hax::constructive::code_bits(1) == 1);
  CHECK(hax::constructive::code_bits(2) == 1);
  CHECK(hax::constructive::code_bits(17) == 5);
}

TEST_CASE("constructive: device model equals the serial reference", "[constructive]") {
  SECTION("generated items, w = 2 and w = 3") {
    for (auto const& n : {std::vector<int>{8, 5}, std::vector<int>{3, 4, 5}}) {
      recall_spec const s = fixed_spec(n, 2);
      auto const g = generate(s, 2);
      auto const pred = predict(solver_t(s), g.tokens);
      for (int b = 0; b < 2; ++b) {
        CHECK(row(pred, b) == hax::reference::constructive::solve(s, row(g.tokens, b)));
      }
    }
  }
  SECTION("arbitrary token streams (ids out of range, repeated and missing paths)") {
    int const levels = GENERATE(1, 2, 3);
    recall_spec const s = fixed_spec(std::vector<int>(static_cast<std::size_t>(levels), 6), 1);
    int const B = 3, L = 257;  // several scan chunks, a partial last one
    dview<int**> tokens("tokens", B, L);  // (B, L)
    std::vector<double> flat;
    for (int b = 0; b < B; ++b) {
      for (int t : random_tokens(s, L, 100 + static_cast<std::uint64_t>(b))) flat.push_back(t);
    }
    hax::test::from_vector(tokens, flat);
    auto const pred = predict(solver_t(s), tokens);
    int found = 0;
    for (int b = 0; b < B; ++b) {
      auto const expected = hax::reference::constructive::solve(s, row(tokens, b));
      CHECK(row(pred, b) == expected);
      for (int p : expected) found += p >= 0 ? 1 : 0;
    }
    CHECK(found > L);  // the streams do exercise hits, not only empty rows
  }
}

TEST_CASE("constructive: later tokens never change earlier predictions", "[constructive]") {
  recall_spec const s = fixed_spec({5, 6}, 1);
  int const L = 300;
  auto const base = random_tokens(s, L, 7);
  dview<int**> tokens("tokens", 1, L);  // (1, L)
  hax::test::from_vector(tokens, std::vector<double>(base.begin(), base.end()));
  solver_t const solver(s);
  auto const before = row(predict(solver, tokens), 0);
  for (int cut : {0, 63, 64, 65, 150, 298}) {
    auto changed = base;
    auto const noise = random_tokens(s, L, 1000 + static_cast<std::uint64_t>(cut));
    for (int t = cut + 1; t < L; ++t) changed[static_cast<std::size_t>(t)] = noise[static_cast<std::size_t>(t)];
    hax::test::from_vector(tokens, std::vector<double>(changed.begin(), changed.end()));
    auto const after = row(predict(solver, tokens), 0);
    INFO("tokens after position " << cut << " replaced");
    CHECK(std::vector<int>(after.begin(), after.begin() + cut + 1) ==
          std::vector<int>(before.begin(), before.begin() + cut + 1));
    CHECK(after != before);  // the change is visible later, so the check above is not vacuous
  }
  SECTION("a generated item cut short predicts its prefix the same") {
    recall_spec const g_spec = fixed_spec({8, 8}, 1);
    auto const g = generate(g_spec, 1);
    auto const full = row(predict(solver_t(g_spec), g.tokens), 0);
    int const cut = 200;
    auto const prefix = Kokkos::subview(g.tokens, Kokkos::ALL, Kokkos::make_pair(0, cut));
    auto const short_pred = row(predict(solver_t(g_spec), prefix), 0);
    CHECK(short_pred == std::vector<int>(full.begin(), full.begin() + cut));
  }
}

TEST_CASE("constructive: overwrite scan equals a plain loop", "[constructive]") {
  int const L = GENERATE(1, 63, 64, 65, 200);
  int const B = 2, V = 7, D = 3;
  using T = double;
  dview<int**> tokens("tokens", B, L);  // (B, L)
  dview<T**> wv("wv", V, D), wm("wm", V, D);  // (V, D)
  dview<T*> h0("h0", D);                      // (D)
  dview<T***> state("state", B, L, D);        // (B, L, D)
  std::vector<double> tok = hax::test::random_vector(static_cast<std::size_t>(B * L), 3, -1.0, V + 1.0);
  for (auto& t : tok) t = std::floor(t);  // ids in [-1, V]: some outside the table
  hax::test::from_vector(tokens, tok);
  auto const e = hax::test::fill_random(wv, 4);
  auto m = hax::test::random_vector(static_cast<std::size_t>(V * D), 5, 0.0, 1.0);
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = (i % 3 == 0) ? 1.0 : (i % 3 == 1 ? 0.0 : m[i]);
  hax::test::from_vector(wm, m);
  auto const init = hax::test::fill_random(h0, 6);
  hax::constructive::overwrite_scan(space_t{}, tokens, wv, wm, h0, state);
  std::vector<double> expected;
  for (int b = 0; b < B; ++b) {
    std::vector<double> h = init;
    for (int t = 0; t < L; ++t) {
      int const id = static_cast<int>(tok[static_cast<std::size_t>(b * L + t)]);
      for (int d = 0; d < D; ++d) {
        if (id >= 0 && id < V) {
          double const g = m[static_cast<std::size_t>(id * D + d)];
          h[static_cast<std::size_t>(d)] = (1 - g) * h[static_cast<std::size_t>(d)] + g * e[static_cast<std::size_t>(id * D + d)];
        }
        expected.push_back(h[static_cast<std::size_t>(d)]);
      }
    }
  }
  auto const actual = hax::test::to_vector(state);
  REQUIRE(hax::test::max_abs(expected) > 0.1);
  hax::test::check_close(actual, expected, hax::test::tolerance<T>::rtol, hax::test::tolerance<T>::atol,
                         "overwrite_scan state");
}

TEST_CASE("constructive: bad input", "[constructive]") {
  space_t space;
  SECTION("unresolved spec") {
    CHECK_THROWS_WITH(hax::constructive::make_layout(recall_spec{}),
                      ContainsSubstring("make_layout") && ContainsSubstring("not resolved"));
  }
  SECTION("key code wider than the bucket index") {
    // Four levels of 256 symbols: 4 * 8 + 1 = 33 sign bits. Such items are far too long to
    // generate, so the spec's derived fields are filled by hand instead of by resolve().
    recall_spec s = hax::data::make_spec(4, 256, 256);
    s.vocab_size = 2000;
    s.level_capacity = 256;
    s.padded_length = 1;
    CHECK_THROWS_AS(solver_t(s), hax::invalid_argument);
    CHECK_THROWS_WITH(hax::constructive::make_layout(s), ContainsSubstring("33 sign bits"));
  }
  recall_spec const s = fixed_spec({5, 5}, 1);
  solver_t const solver(s);
  dview<int**> tokens("tokens", 2, 10);  // (B, L)
  SECTION("predictions of the wrong shape") {
    auto const act = solver.allocate(space, 2, 10);
    dview<int**> pred("pred", 2, 9);
    CHECK_THROWS_WITH(solver.forward(space, tokens, act, pred),
                      ContainsSubstring("forward") && ContainsSubstring("predictions (2, 9)"));
  }
  SECTION("activations of another batch shape") {
    auto const act = solver.allocate(space, 2, 12);
    dview<int**> pred("pred", 2, 10);
    CHECK_THROWS_WITH(solver.forward(space, tokens, act, pred), ContainsSubstring("(2, 12)"));
  }
  SECTION("overwrite scan with mismatched tables") {
    dview<double**> wv("wv", 4, 3), wm("wm", 4, 2);
    dview<double*> h0("h0", 3);
    dview<double***> state("state", 2, 10, 3);
    CHECK_THROWS_WITH(hax::constructive::overwrite_scan(space, tokens, wv, wm, h0, state),
                      ContainsSubstring("overwrite_scan") && ContainsSubstring("write_mask (4, 2)"));
  }
  SECTION("score_items with a short count View") {
    dview<int**> pred("pred", 2, 10);
    dview<std::int8_t**> mask("mask", 2, 10);
    dview<std::int64_t*> c("c", 1), t("t", 1);
    CHECK_THROWS_WITH(hax::constructive::score_items(space, pred, tokens, mask, c, t),
                      ContainsSubstring("score_items") && ContainsSubstring("B = 2"));
  }
}
