// SPDX-License-Identifier: MIT
/// Sparse attention forward and backward on the device vs the dense masked reference, for every
/// pattern, unions and random candidate lists (float, double); finite-difference gradient checks
/// in double; empty rows in both semantics; pad-mask behaviour and padding invariance; bad input.
#include <hax/attention/pattern/candidate_list.hpp>
#include <hax/attention/pattern/compose.hpp>
#include <hax/attention/pattern/dilated.hpp>
#include <hax/attention/pattern/full.hpp>
#include <hax/attention/pattern/names.hpp>
#include <hax/attention/pattern/sink.hpp>
#include <hax/attention/pattern/sliding_window.hpp>
#include <hax/attention/sparse_attention.hpp>
#include <hax/core/error.hpp>
#include <hax/reference/attention/dense_masked_attention.hpp>

#include <catch2/catch_approx.hpp>
#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::attn::AttentionOptions;
using hax::attn::BackwardAlgorithm;
using hax::attn::Semantics;
using hax::test::test_memory_space;
using hax::test::test_space;
namespace ref = hax::reference::attn;

template <class T>
using v2 = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;
template <class T>
using v3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;
using host_idx = Kokkos::View<int***, Kokkos::LayoutRight, Kokkos::HostSpace>;

/// Random causal candidate lists (distinct keys <= q in random slots, -1 elsewhere), on the host.
host_idx random_candidates(int B, int L, int kmax, unsigned seed) {
  host_idx idx("idx", B, L, kmax);  // (B, L, k')
  std::mt19937 rng(seed);
  for (int b = 0; b < B; ++b) {
    for (int q = 0; q < L; ++q) {
      std::vector<int> keys(static_cast<std::size_t>(q + 1));
      for (int t = 0; t <= q; ++t) { keys[static_cast<std::size_t>(t)] = t; }
      std::shuffle(keys.begin(), keys.end(), rng);
      int const take = std::min<int>(q + 1, static_cast<int>(rng() % (kmax + 1)));
      std::vector<int> row(static_cast<std::size_t>(kmax), -1);
      for (int j = 0; j < take; ++j) { row[static_cast<std::size_t>(j)] = keys[static_cast<std::size_t>(j)]; }
      std::shuffle(row.begin(), row.end(), rng);
      for (int j = 0; j < kmax; ++j) { idx(b, q, j) = row[static_cast<std::size_t>(j)]; }
    }
  }
  return idx;
}

/// The same candidates in the test's memory space.
v3<int> to_device(host_idx const& h) {
  v3<int> d("idx", h.extent(0), h.extent(1), h.extent(2));  // (B, L, k')
  Kokkos::deep_copy(d, h);
  return d;
}

/// -inf (empty-row marker) -> a finite sentinel, so that check_close can compare lse.
std::vector<double> finite_lse(std::vector<double> x) {
  for (auto& v : x) {
    if (std::isinf(v) && v < 0) { v = -1e300; }
  }
  return x;
}

/// Device forward + backward vs the dense reference on random inputs. `device_pattern` runs on
/// test_space, `host_pattern` is the same pattern readable on the host (for the reference).
template <class T, class DP, class HP>
void compare_with_reference(DP const& device_pattern, HP const& host_pattern, int B, int L, int N, int Dv,
                            double scale, Semantics semantics, std::vector<int> const& valid = {},
                            std::uint64_t seed = 1) {
  test_space space;
  v3<T> q("q", B, L, N), k("k", B, L, N), v("v", B, L, Dv);      // (B, L, N), (B, L, Dv)
  v3<T> o("o", B, L, Dv), dout("do", B, L, Dv);                  // (B, L, Dv)
  v3<T> dq("dq", B, L, N), dk("dk", B, L, N), dv("dv", B, L, Dv);
  v2<T> lse("lse", B, L);                                        // (B, L)
  v2<int> mask("mask", B, L);                                    // (B, L)
  auto const hq = hax::test::fill_random(q, seed, -2, 2);
  auto const hk = hax::test::fill_random(k, seed + 1, -2, 2);
  auto const hv = hax::test::fill_random(v, seed + 2);
  auto const hdo = hax::test::fill_random(dout, seed + 3);
  AttentionOptions opts{scale, semantics};
  if (valid.empty()) {
    hax::attn::sparse_attention_forward(space, device_pattern, q, k, v, o, lse, opts);
  } else {
    hax::test::from_vector(mask, std::vector<double>(valid.begin(), valid.end()));
    hax::attn::sparse_attention_forward(space, device_pattern, q, k, v, mask, o, lse, opts);
  }
  space.fence();
  auto cast = [](std::vector<double> const& x) { return std::vector<T>(x.begin(), x.end()); };
  auto const fwd = ref::dense_masked_attention_forward<T>(host_pattern, cast(hq), cast(hk), cast(hv), valid,
                                                          B, L, N, Dv, T(scale), semantics);
  auto const bwd = ref::dense_masked_attention_backward<T>(host_pattern, cast(hq), cast(hk), cast(hv), valid,
                                                           cast(hdo), B, L, N, Dv, T(scale), semantics);
  auto dbl = [](std::vector<T> const& x) { return std::vector<double>(x.begin(), x.end()); };
  using tol = hax::test::tolerance<T>;
  auto const ho = hax::test::to_vector(o);
  REQUIRE(hax::test::max_abs(ho) > 0.0);
  hax::test::check_close(ho, dbl(fwd.o), tol::rtol, tol::atol, "o");
  hax::test::check_close(finite_lse(hax::test::to_vector(lse)), finite_lse(dbl(fwd.lse)), tol::rtol, tol::atol, "lse");
  // Both backward algorithms (and the default) against the same reference gradients; the outputs
  // are first poisoned so that an entry an algorithm forgets to write cannot pass.
  for (auto algo : {BackwardAlgorithm::gather, BackwardAlgorithm::atomic_scatter, BackwardAlgorithm::automatic}) {
    INFO("backward algorithm " << static_cast<int>(algo));
    opts.backward = algo;
    Kokkos::deep_copy(dq, T(7));
    Kokkos::deep_copy(dk, T(7));
    Kokkos::deep_copy(dv, T(7));
    if (valid.empty()) {
      hax::attn::sparse_attention_backward(space, device_pattern, q, k, v, o, lse, dout, dq, dk, dv, opts);
    } else {
      hax::attn::sparse_attention_backward(space, device_pattern, q, k, v, mask, o, lse, dout, dq, dk, dv, opts);
    }
    space.fence();
    hax::test::check_close(hax::test::to_vector(dq), dbl(bwd.dq), tol::rtol, tol::atol, "dq");
    hax::test::check_close(hax::test::to_vector(dk), dbl(bwd.dk), tol::rtol, tol::atol, "dk");
    hax::test::check_close(hax::test::to_vector(dv), dbl(bwd.dv), tol::rtol, tol::atol, "dv");
  }
}

}  // namespace

TEMPLATE_TEST_CASE("sparse attention matches dense masked attention: static patterns", "[attention][sparse]",
                   float, double) {
  using hax::attn::Dilated;
  using hax::attn::Full;
  using hax::attn::Sink;
  using hax::attn::SlidingWindow;
  int const B = 2, L = 70, N = 16, Dv = 24;
  double const scale = 0.25;
  // GENERATE, not a loop: Catch2 runs one leaf SECTION per pass, so a loop around sections would
  // silently skip the second semantics.
  auto const sem = GENERATE(Semantics::causal, Semantics::reference);
  INFO("semantics " << (sem == Semantics::causal ? "causal" : "reference"));
  {
    SECTION("sliding window") { compare_with_reference<TestType>(SlidingWindow{9}, SlidingWindow{9}, B, L, N, Dv, scale, sem); }
    SECTION("dilated (empty rows)") {
      auto const d = Dilated::from_budget(8, 128);  // stride 16: queries 0..14 are empty
      compare_with_reference<TestType>(d, d, B, L, N, Dv, scale, sem);
    }
    SECTION("sink") { compare_with_reference<TestType>(Sink{5}, Sink{5}, B, L, N, Dv, scale, sem); }
    SECTION("full") { compare_with_reference<TestType>(Full{L}, Full{L}, B, L, N, Dv, scale, sem); }
    SECTION("union") {
      auto const u = hax::attn::SlidingWindow{8} | Dilated{6, 4} | Sink{3};
      compare_with_reference<TestType>(u, u, B, L, N, Dv, scale, sem);
    }
    SECTION("named union") {
      auto const p = hax::attn::make_pattern<test_memory_space>("sliding_window+dilated", 16, L, 64);
      auto const h = hax::attn::make_pattern<Kokkos::HostSpace>("sliding_window+dilated", 16, L, 64);
      compare_with_reference<TestType>(p, h, B, L, N, Dv, scale, sem);
    }
  }
}

TEMPLATE_TEST_CASE("sparse attention matches dense masked attention: candidate lists", "[attention][sparse]",
                   float, double) {
  int const B = 2, L = 60, N = 8, Dv = 16, kmax = 10;
  auto const h = random_candidates(B, L, kmax, 11);
  auto const d = to_device(h);
  hax::attn::CandidateList dl(d);
  hax::attn::CandidateList hl(h);
  for (auto sem : {Semantics::causal, Semantics::reference}) {
    compare_with_reference<TestType>(dl, hl, B, L, N, Dv, 1.0, sem);  // rows may be empty
    compare_with_reference<TestType>(hax::attn::SlidingWindow{4} | dl, hax::attn::SlidingWindow{4} | hl, B, L,
                                     N, Dv, 1.0, sem);
    auto rd = hax::attn::make_pattern<test_memory_space>("sign_bin_lsh+key_selection", 2 * kmax, L);
    auto rh = hax::attn::make_pattern<Kokkos::HostSpace>("sign_bin_lsh+key_selection", 2 * kmax, L);
    auto const h2 = random_candidates(B, L, kmax, 12);
    auto const d2 = to_device(h2);
    rd.set_candidates(hax::attn::PatternKind::sign_bin_lsh, d);
    rd.set_candidates(hax::attn::PatternKind::key_selection, d2);
    rh.set_candidates(hax::attn::PatternKind::sign_bin_lsh, h);
    rh.set_candidates(hax::attn::PatternKind::key_selection, h2);
    compare_with_reference<TestType>(rd, rh, B, L, N, Dv, 1.0, sem);
    // The same union with the second list deduplicated once in the plan (what SparseBranch does).
    auto once = hax::attn::make_pattern<test_memory_space>("sign_bin_lsh+key_selection", 2 * kmax, L);
    once.set_candidates(test_space{}, hax::attn::PatternKind::sign_bin_lsh, to_device(h));
    once.set_candidates(test_space{}, hax::attn::PatternKind::key_selection, to_device(h2));
    compare_with_reference<TestType>(once, rh, B, L, N, Dv, 1.0, sem);
  }
}

/// Every slot's key() of `pattern` (B, L, max_keys_per_query) on the device, read back.
template <class Pattern>
std::vector<int> slot_keys(Pattern const& pattern, int B, int L) {
  int const slots = pattern.max_keys_per_query();
  v3<int> out("slot_keys", B, L, slots);  // (B, L, slots)
  Kokkos::parallel_for(
      "slot_keys", Kokkos::RangePolicy<test_space>(0, B * L), KOKKOS_LAMBDA(int row) {
        int const b = row / L, q = row % L;
        for (int j = 0; j < slots; ++j) { out(b, q, j) = pattern.key(b, q, j); }
      });
  auto const h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, out);
  return {h.data(), h.data() + h.size()};
}

TEST_CASE("a union's lists deduplicated once per plan keep every row and drop the per-key check",
          "[attention][sparse]") {
  test_space space;
  int const B = 2, L = 50, kp = 12;
  auto const h1 = random_candidates(B, L, kp, 21), h2 = random_candidates(B, L, kp, 22);
  for (std::string const name : {"sign_bin_lsh+key_selection", "sliding_window+key_selection",
                                 "key_selection+dilated+sign_bin_lsh"}) {
    DYNAMIC_SECTION(name) {
      int const parts = static_cast<int>(hax::attn::parse_pattern_name(name, kp).size());
      auto checked = hax::attn::make_pattern<test_memory_space>(name, parts * kp, L, 64);
      auto once = checked;
      auto const d2 = to_device(h2);
      std::vector<hax::attn::PatternKind> lists;
      for (int p = 0; p < checked.num_parts; ++p) {
        if (hax::attn::is_data_dependent(checked.parts[p].kind)) { lists.push_back(checked.parts[p].kind); }
      }
      std::vector<v3<int>> owned;  // the lists `once` deduplicates in place
      for (std::size_t i = 0; i < lists.size(); ++i) {
        auto const& h = i == 0 ? h1 : h2;
        checked.set_candidates(lists[i], to_device(h));
        owned.push_back(to_device(h));
        once.set_candidates(space, lists[i], owned.back());
      }
      space.fence();
      // The same key in every slot: a key an earlier part allows was -1 in `checked` through the
      // per-key check and is -1 in `once` because its list now says so.
      auto const a = slot_keys(checked, B, L), b = slot_keys(once, B, L);
      REQUIRE(a.size() == b.size());
      CHECK(std::equal(a.begin(), a.end(), b.begin()));
      // And the overlap was real: some list slots were rewritten to -1 by the plan-time pass.
      std::size_t dropped = 0;
      for (std::size_t i = 0; i < lists.size(); ++i) {
        auto const& before = i == 0 ? h1 : h2;
        auto const after = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, owned[i]);
        for (std::size_t e = 0; e < after.size(); ++e) { dropped += before.data()[e] != after.data()[e]; }
      }
      bool const first_is_list = hax::attn::is_data_dependent(checked.parts[0].kind);
      CHECK(dropped > 0);
      CHECK(once.disjoint[0] == first_is_list);  // part 0 has nothing earlier to check against
    }
  }
}

TEST_CASE("deduplicating a list before the earlier lists are attached is refused", "[attention][sparse]") {
  test_space space;
  auto pattern = hax::attn::make_pattern<test_memory_space>("sign_bin_lsh+key_selection", 8, 20);
  auto const idx = to_device(random_candidates(1, 20, 4, 3));
  CHECK_THROWS_WITH(pattern.set_candidates(space, hax::attn::PatternKind::key_selection, idx),
                    Catch::Matchers::ContainsSubstring("'sign_bin_lsh', whose candidates are not attached yet"));
}

TEST_CASE("deduplicating a list against itself is refused", "[attention][sparse]") {
  // The same View attached to both parts would be compared with itself while it is rewritten.
  test_space space;
  auto pattern = hax::attn::make_pattern<test_memory_space>("sign_bin_lsh+key_selection", 8, 20);
  auto const idx = to_device(random_candidates(1, 20, 4, 3));
  pattern.set_candidates(space, hax::attn::PatternKind::sign_bin_lsh, idx);
  CHECK_THROWS_WITH(pattern.set_candidates(space, hax::attn::PatternKind::key_selection, idx),
                    Catch::Matchers::ContainsSubstring("the View already attached to the earlier part 'sign_bin_lsh'"));
}

TEMPLATE_TEST_CASE("sparse attention with a pad mask", "[attention][sparse]", float, double) {
  int const B = 2, L = 40, N = 8, Dv = 12;
  std::vector<int> valid(static_cast<std::size_t>(B * L), 1);
  for (int i = 30; i < L; ++i) { valid[static_cast<std::size_t>(i)] = 0; }            // trailing pads
  for (int i = 0; i < L; i += 7) { valid[static_cast<std::size_t>(L + i)] = 0; }      // scattered pads
  auto const u = hax::attn::SlidingWindow{6} | hax::attn::Dilated{5, 3};
  compare_with_reference<TestType>(u, u, B, L, N, Dv, 0.5, Semantics::causal, valid);
  compare_with_reference<TestType>(u, u, B, L, N, Dv, 0.5, Semantics::reference, valid);
}

TEST_CASE("causal semantics: outputs at real positions ignore padding and later tokens", "[attention][sparse]") {
  test_space space;
  int const B = 1, L = 32, N = 4, Dv = 6, cut = 20;
  auto const pattern = hax::attn::SlidingWindow{5} | hax::attn::Dilated{4, 8};
  v3<double> q("q", B, L, N), k("k", B, L, N), v("v", B, L, Dv), o("o", B, L, Dv);  // (B, L, *)
  v2<double> lse("lse", B, L);                                                     // (B, L)
  v2<int> mask("mask", B, L);                                                      // (B, L)
  std::vector<double> m(L, 1.0);
  for (int i = cut; i < L; ++i) { m[static_cast<std::size_t>(i)] = 0.0; }
  hax::test::from_vector(mask, m);
  auto hq = hax::test::fill_random(q, 3), hk = hax::test::fill_random(k, 4), hv = hax::test::fill_random(v, 5);
  hax::attn::sparse_attention_forward(space, pattern, q, k, v, mask, o, lse);
  space.fence();
  auto const before = hax::test::to_vector(o);
  // Change every pad position's q, k, v: no output may move (pad rows output 0 anyway).
  for (int i = cut; i < L; ++i) {
    for (int n = 0; n < N; ++n) { hq[static_cast<std::size_t>(i * N + n)] += 3.0; hk[static_cast<std::size_t>(i * N + n)] -= 2.0; }
    for (int d = 0; d < Dv; ++d) { hv[static_cast<std::size_t>(i * Dv + d)] *= -5.0; }
  }
  hax::test::from_vector(q, hq);
  hax::test::from_vector(k, hk);
  hax::test::from_vector(v, hv);
  hax::attn::sparse_attention_forward(space, pattern, q, k, v, mask, o, lse);
  space.fence();
  auto const after = hax::test::to_vector(o);
  REQUIRE(hax::test::max_abs(before) > 0.0);
  hax::test::check_close(after, before, 0.0, 0.0, "o after changing pads");
  for (int i = cut; i < L; ++i) {
    for (int d = 0; d < Dv; ++d) { CHECK(after[static_cast<std::size_t>(i * Dv + d)] == 0.0); }
  }
}

TEST_CASE("empty rows: zero in causal, uniform over all L in reference", "[attention][sparse]") {
  test_space space;
  int const B = 2, L = 12, N = 4, Dv = 5;
  hax::attn::Dilated const d{8, 2};  // queries 0..6 have no key
  v3<double> q("q", B, L, N), k("k", B, L, N), v("v", B, L, Dv), o("o", B, L, Dv);  // (B, L, *)
  v2<double> lse("lse", B, L);                                                     // (B, L)
  hax::test::fill_random(q, 1);
  hax::test::fill_random(k, 2);
  auto const hv = hax::test::fill_random(v, 3);
  hax::attn::sparse_attention_forward(space, d, q, k, v, o, lse, {1.0, Semantics::causal});
  space.fence();
  auto ho = hax::test::to_vector(o);
  auto hl = hax::test::to_vector(lse);
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < 7; ++i) {
      CHECK(std::isinf(hl[static_cast<std::size_t>(b * L + i)]));
      for (int c = 0; c < Dv; ++c) { CHECK(ho[static_cast<std::size_t>((b * L + i) * Dv + c)] == 0.0); }
    }
    // Query 7 has exactly key 7: its output is v_7 and its lse the single logit.
    for (int c = 0; c < Dv; ++c) {
      CHECK(ho[static_cast<std::size_t>((b * L + 7) * Dv + c)] ==
            Catch::Approx(hv[static_cast<std::size_t>((b * L + 7) * Dv + c)]).epsilon(1e-12));
    }
  }
  hax::attn::sparse_attention_forward(space, d, q, k, v, o, lse, {1.0, Semantics::reference});
  space.fence();
  ho = hax::test::to_vector(o);
  for (int b = 0; b < B; ++b) {
    for (int c = 0; c < Dv; ++c) {
      double mean = 0;
      for (int t = 0; t < L; ++t) { mean += hv[static_cast<std::size_t>((b * L + t) * Dv + c)]; }
      mean /= L;
      for (int i = 0; i < 7; ++i) {
        CHECK(ho[static_cast<std::size_t>((b * L + i) * Dv + c)] == Catch::Approx(mean).epsilon(1e-12));
      }
    }
  }
}

namespace {

/// Analytic dq, dk, dv vs central differences of Σ do·o, in double.
template <class P>
void gradient_check(P const& pattern, Semantics sem, BackwardAlgorithm algo) {
  test_space space;
  int const B = 2, L = 10, N = 3, Dv = 4;
  v3<double> q("q", B, L, N), k("k", B, L, N), v("v", B, L, Dv), o("o", B, L, Dv), dout("do", B, L, Dv);
  v3<double> dq("dq", B, L, N), dk("dk", B, L, N), dv("dv", B, L, Dv);
  v2<double> lse("lse", B, L);  // (B, L)
  auto const hq = hax::test::fill_random(q, 21, -1.5, 1.5);
  auto const hk = hax::test::fill_random(k, 22, -1.5, 1.5);
  auto const hv = hax::test::fill_random(v, 23);
  auto const hdo = hax::test::fill_random(dout, 24);
  AttentionOptions const opts{0.7, sem, algo};
  hax::attn::sparse_attention_forward(space, pattern, q, k, v, o, lse, opts);
  hax::attn::sparse_attention_backward(space, pattern, q, k, v, o, lse, dout, dq, dk, dv, opts);
  space.fence();
  auto const gq = hax::test::to_vector(dq), gk = hax::test::to_vector(dk), gv = hax::test::to_vector(dv);
  // loss(x) = Σ do · forward(...), with one input replaced by x.
  auto loss_with = [&](v3<double> const& target, std::vector<double> const& saved) {
    return [&, target, saved](std::vector<double> const& x) {
      hax::test::from_vector(target, x);
      hax::attn::sparse_attention_forward(space, pattern, q, k, v, o, lse, opts);
      space.fence();
      auto const y = hax::test::to_vector(o);
      hax::test::from_vector(target, saved);
      double s = 0;
      for (std::size_t i = 0; i < y.size(); ++i) { s += hdo[i] * y[i]; }
      return s;
    };
  };
  hax::test::check_gradient(hq, gq, loss_with(q, hq), "dq");
  hax::test::check_gradient(hk, gk, loss_with(k, hk), "dk");
  hax::test::check_gradient(hv, gv, loss_with(v, hv), "dv");
}

}  // namespace

TEST_CASE("sparse attention gradients: finite differences in double", "[attention][sparse]") {
  auto const algo = GENERATE(BackwardAlgorithm::gather, BackwardAlgorithm::atomic_scatter);
  INFO("backward algorithm " << static_cast<int>(algo));
  auto const u = hax::attn::SlidingWindow{3} | hax::attn::Dilated{4, 2};
  SECTION("union, causal") { gradient_check(u, Semantics::causal, algo); }
  SECTION("union, reference") { gradient_check(u, Semantics::reference, algo); }
  // Dilated{4, 2}: queries 0..2 are empty rows (zero in causal, uniform over L in reference).
  SECTION("dilated with empty rows, causal") { gradient_check(hax::attn::Dilated{4, 2}, Semantics::causal, algo); }
  SECTION("dilated with empty rows, reference") { gradient_check(hax::attn::Dilated{4, 2}, Semantics::reference, algo); }
}

TEST_CASE("sparse attention: bad input", "[attention][sparse]") {
  using Catch::Matchers::ContainsSubstring;
  test_space space;
  int const B = 2, L = 8, N = 4, Dv = 6;
  v3<float> q("q", B, L, N), k("k", B, L, N), v("v", B, L, Dv), o("o", B, L, Dv);  // (B, L, *)
  v3<float> dq("dq", B, L, N), dk("dk", B, L, N), dv("dv", B, L, Dv);
  v2<float> lse("lse", B, L);                                                      // (B, L)
  hax::attn::SlidingWindow const sw{3};
  v3<float> k_bad("k", B, L, N + 1), v_bad("v", B, L + 1, Dv), o_bad("o", B, L, Dv + 1);
  v2<float> lse_bad("lse", B, L + 1);
  v2<int> mask_bad("mask", B + 1, L);
  CHECK_THROWS_AS(hax::attn::sparse_attention_forward(space, sw, q, k_bad, v, o, lse), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::attn::sparse_attention_forward(space, sw, q, k_bad, v, o, lse),
                    ContainsSubstring("sparse_attention_forward") && ContainsSubstring("k (2, 8, 5)") &&
                        ContainsSubstring("q (2, 8, 4)"));
  CHECK_THROWS_WITH(hax::attn::sparse_attention_forward(space, sw, q, k, v_bad, o, lse), ContainsSubstring("v (2, 9, 6)"));
  CHECK_THROWS_WITH(hax::attn::sparse_attention_forward(space, sw, q, k, v, o_bad, lse), ContainsSubstring("o (2, 8, 7)"));
  CHECK_THROWS_WITH(hax::attn::sparse_attention_forward(space, sw, q, k, v, o, lse_bad), ContainsSubstring("lse (2, 9)"));
  CHECK_THROWS_WITH(hax::attn::sparse_attention_forward(space, sw, q, k, v, mask_bad, o, lse),
                    ContainsSubstring("pad_mask (3, 8)"));
  CHECK_THROWS_WITH(hax::attn::sparse_attention_backward(space, sw, q, k, v, o, lse, o, dq, dk, o_bad),
                    ContainsSubstring("sparse_attention_backward") && ContainsSubstring("dv (2, 8, 7)"));
  CHECK_THROWS_WITH(hax::attn::sparse_attention_backward(space, sw, q, k, v, o, lse, o, dq, k_bad, dv),
                    ContainsSubstring("dk (2, 8, 5)"));
  v3<int> idx("idx", B, L + 1, 3);  // wrong L
  CHECK_THROWS_WITH(hax::attn::sparse_attention_forward(space, hax::attn::CandidateList(idx), q, k, v, o, lse),
                    ContainsSubstring("idx (2, 9, 3)"));
  CHECK_THROWS_WITH(hax::attn::sparse_attention_forward(space, sw | hax::attn::CandidateList(idx), q, k, v, o, lse),
                    ContainsSubstring("idx (2, 9, 3)"));
  auto rt = hax::attn::make_pattern<test_memory_space>("sliding_window+key_selection", 4, L);
  CHECK_THROWS_WITH(hax::attn::sparse_attention_forward(space, rt, q, k, v, o, lse),
                    ContainsSubstring("set_candidates"));
}

TEST_CASE("transposed candidate lists: each key lists exactly the queries that list it", "[attention][sparse]") {
  test_space space;
  int const B = 3, L = 50, kmax = 7;
  auto const h = random_candidates(B, L, kmax, 31);
  auto const pattern = hax::attn::Sink{2} | hax::attn::CandidateList(to_device(h));
  v2<int> mask("mask", B, L);  // (B, L)
  std::vector<double> m(static_cast<std::size_t>(B * L), 1.0);
  for (int i = 0; i < L; i += 5) { m[static_cast<std::size_t>(L + i)] = 0.0; }  // pads in sequence 1
  hax::test::from_vector(mask, m);
  auto const causal = GENERATE(true, false);
  INFO("causal " << causal);
  auto const t = hax::attn::impl::transpose_candidates(space, pattern, hax::attn::impl::PadMask<v2<int>>{mask}, B, L,
                                                       causal);
  space.fence();
  auto const off = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, t.offsets);
  auto const qs = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, t.queries);
  auto const hp = hax::attn::Sink{2} | hax::attn::CandidateList(h);
  auto real = [&](int b, int i) { return !causal || m[static_cast<std::size_t>(b * L + i)] != 0.0; };
  REQUIRE(off(0) == 0);
  for (int b = 0; b < B; ++b) {
    for (int key = 0; key < L; ++key) {
      std::vector<int> expected;
      for (int i = 0; i < L; ++i) {
        if (!real(b, i)) { continue; }
        for (int j = 0; j < static_cast<int>(hp.max_keys_per_query()); ++j) {
          if (hp.key(b, i, j) == key && real(b, key)) { expected.push_back(i); }
        }
      }
      std::vector<int> got;
      for (std::int64_t e = off(b * L + key); e < off(b * L + key + 1); ++e) { got.push_back(qs(e)); }
      std::sort(got.begin(), got.end());
      INFO("b " << b << " key " << key);
      CHECK(got == expected);
    }
  }
}
