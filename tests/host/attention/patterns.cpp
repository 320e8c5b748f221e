// SPDX-License-Identifier: MIT
/// Host property tests of the sparse patterns: for every query, the candidate list equals the
/// brute-force dense mask (no duplicates, causal, within max_keys_per_query), for each pattern,
/// unions, candidate lists and the name factory; the dilated grid and the budget split exactly as
/// semantics.md sections 3 and 9 describe.
#include <hax/attention/pattern/candidate_list.hpp>
#include <hax/attention/pattern/compose.hpp>
#include <hax/attention/pattern/dilated.hpp>
#include <hax/attention/pattern/full.hpp>
#include <hax/attention/pattern/names.hpp>
#include <hax/attention/pattern/sink.hpp>
#include <hax/attention/pattern/sliding_window.hpp>
#include <hax/core/error.hpp>
#include <hax/reference/attention/patterns.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <random>
#include <vector>

namespace {

using namespace hax::attn;
namespace ref = hax::reference::attn;
using host_idx = Kokkos::View<int***, Kokkos::LayoutRight, Kokkos::HostSpace>;

/// The pattern's candidate lists agree with its dense mask for every (b, q); returns the largest
/// row size so that callers can check budgets.
template <class P>
int check_pattern(P const& p, int B, int L) {
  int largest = 0;
  int failures = 0;
  for (int b = 0; b < B; ++b) {
    for (int q = 0; q < L; ++q) {
      auto cand = ref::candidate_keys(p, b, q);
      auto const allowed = ref::allowed_keys(p, b, q, L);
      bool const causal = std::all_of(cand.begin(), cand.end(), [&](int k) { return k <= q; });
      std::sort(cand.begin(), cand.end());
      bool const distinct = std::adjacent_find(cand.begin(), cand.end()) == cand.end();
      bool const within = static_cast<int>(cand.size()) <= static_cast<int>(p.max_keys_per_query());
      if (!(causal && distinct && within && cand == allowed)) {
        if (failures++ < 3) {
          INFO("b " << b << " q " << q << ": " << cand.size() << " candidates, " << allowed.size()
                    << " allowed; causal " << causal << " distinct " << distinct << " within " << within);
          CHECK(false);
        }
      }
      largest = std::max(largest, static_cast<int>(allowed.size()));
    }
  }
  CHECK(failures == 0);
  return largest;
}

/// Random causal candidate lists: each row holds distinct keys <= q in random slots, -1 elsewhere.
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

}  // namespace

TEST_CASE("static patterns: candidate lists equal the dense mask", "[attention][patterns]") {
  for (int L : {1, 7, 64, 200}) {
    for (int w : {1, 3, 32}) {
      CHECK(check_pattern(SlidingWindow{w}, 1, L) == std::min(w, L));
      CHECK(check_pattern(Sink{w}, 1, L) == std::min(w, L));
    }
    CHECK(check_pattern(Full{L}, 1, L) == L);
    for (int kp : {4, 32, 64}) { check_pattern(Dilated::from_budget(kp, 128), 1, L); }
    check_pattern(Dilated{5, 3}, 1, L);  // a custom grid, capped at the 3 most recent points
  }
}

TEST_CASE("unions never visit a key twice and equal the OR of the masks", "[attention][patterns]") {
  int const L = 300;
  check_pattern(SlidingWindow{32} | Dilated::from_budget(32), 1, L);
  check_pattern(Dilated::from_budget(8, 256) | SlidingWindow{40}, 1, L);
  check_pattern(SlidingWindow{16} | Sink{16}, 1, L);
  check_pattern(Sink{20} | SlidingWindow{16} | Dilated{7, 10}, 1, L);
  check_pattern(Full{L} | SlidingWindow{4}, 1, L);  // the second part is entirely skipped
}

TEST_CASE("dilated grid as the reference: k' = 64, L = 1057", "[attention][patterns]") {
  auto const d = Dilated::from_budget(64);  // max_length 2048
  CHECK(d.stride == 32);
  int const L = 1057;
  CHECK(check_pattern(d, 1, L) == 33);
  for (int q = 0; q < 31; ++q) { CHECK(ref::allowed_keys(d, 0, q, L).empty()); }
  CHECK(ref::allowed_keys(d, 0, 31, L) == std::vector<int>{31});
  auto const last = ref::allowed_keys(d, 0, L - 1, L);
  REQUIRE(last.size() == 33);
  CHECK(last.front() == 31);
  CHECK(last.back() == 1055);
  // Non-power-of-two budgets: the grid has max_length / s points, all reachable below max_length.
  auto const d100 = Dilated::from_budget(100);
  CHECK(d100.stride == 20);
  CHECK(check_pattern(d100, 1, 2048) == 102);
}

TEST_CASE("names: budget split and the reference's sparse architectures", "[attention][patterns]") {
  auto const parts = parse_pattern_name("sliding_window+dilated", 64);
  REQUIRE(parts.size() == 2);
  CHECK(parts[0].kind == PatternKind::sliding_window);
  CHECK(parts[1].kind == PatternKind::dilated);
  CHECK(parts[0].kprime == 32);
  CHECK(parts[1].kprime == 32);
  auto const hax_parts = parse_pattern_name("sign_bin_lsh+key_selection", 64);
  REQUIRE(hax_parts.size() == 2);
  CHECK(hax_parts[0].kind == PatternKind::sign_bin_lsh);
  CHECK(hax_parts[1].kprime == 32);
  CHECK(parse_pattern_name("dilated", 64).front().kprime == 64);

  int const L = 1057;
  // +SW+D: a window of 32 plus dilation 2048 / 32 = 64: at most 48 keys.
  auto const swd = make_pattern<Kokkos::HostSpace>("sliding_window+dilated", 64, L);
  CHECK(check_pattern(swd, 1, L) == 48);
  // +A: sinks 0..31 and a window of 32.
  auto const a = make_pattern<Kokkos::HostSpace>("sliding_window+sink", 64, L);
  CHECK(check_pattern(a, 1, L) == 64);
  CHECK(check_pattern(make_pattern<Kokkos::HostSpace>("dilated", 64, L), 1, L) == 33);
  CHECK(check_pattern(make_pattern<Kokkos::HostSpace>("sliding_window", 64, L), 1, L) == 64);
}

TEST_CASE("runtime patterns agree with the compile-time unions", "[attention][patterns]") {
  int const L = 400;
  auto const rt = make_pattern<Kokkos::HostSpace>("sink+sliding_window+dilated", 48, L, 512);
  auto const ct = Sink{16} | SlidingWindow{16} | Dilated::from_budget(16, 512);
  check_pattern(rt, 1, L);
  for (int q = 0; q < L; ++q) {
    auto a = ref::candidate_keys(rt, 0, q);
    auto b = ref::candidate_keys(ct, 0, q);
    CHECK(a == b);  // same slot order too
  }
}

TEST_CASE("candidate lists and their unions with static patterns", "[attention][patterns]") {
  int const B = 3, L = 90, kmax = 12;
  auto const idx = random_candidates(B, L, kmax, 7);
  CandidateList list(idx);
  check_pattern(list, B, L);
  check_pattern(SlidingWindow{8} | list, B, L);
  check_pattern(list | Dilated{9, 4}, B, L);
  auto const idx2 = random_candidates(B, L, kmax, 8);
  check_pattern(list | CandidateList(idx2), B, L);

  auto rt = make_pattern<Kokkos::HostSpace>("sliding_window+key_selection", 2 * kmax, L);
  CHECK_THROWS_WITH(rt.check(B, L), Catch::Matchers::ContainsSubstring("key_selection") &&
                                        Catch::Matchers::ContainsSubstring("set_candidates"));
  rt.set_candidates(PatternKind::key_selection, idx);
  rt.check(B, L);
  int const largest = check_pattern(rt, B, L);
  CHECK(largest <= 2 * kmax);
  auto const ct = SlidingWindow{kmax} | list;
  for (int b = 0; b < B; ++b) {
    for (int q = 0; q < L; ++q) { CHECK(ref::candidate_keys(rt, b, q) == ref::candidate_keys(ct, b, q)); }
  }
}

TEST_CASE("pattern names and settings: bad input", "[attention][patterns]") {
  using Catch::Matchers::ContainsSubstring;
  CHECK_THROWS_AS(parse_pattern_name("sliding_window+dilated", 63), hax::invalid_argument);
  CHECK_THROWS_WITH(parse_pattern_name("sliding_window+dilated", 63),
                    ContainsSubstring("(63)") && ContainsSubstring("2 parts"));
  CHECK_THROWS_WITH(parse_pattern_name("sliding_window+sink+dilated", 64), ContainsSubstring("3 parts"));
  CHECK_THROWS_AS(parse_pattern_name("sliding_windw", 64), hax::invalid_argument);
  CHECK_THROWS_WITH(parse_pattern_name("sliding_windw", 64),
                    ContainsSubstring("sliding_windw") && ContainsSubstring("sign_bin_lsh") &&
                        ContainsSubstring("key_selection") && ContainsSubstring("dilated"));
  CHECK_THROWS_WITH(parse_pattern_name("dilated+", 64), ContainsSubstring("unknown pattern part ''"));
  CHECK_THROWS_WITH(parse_pattern_name("sink+sink", 64), ContainsSubstring("twice"));
  CHECK_THROWS_WITH(make_pattern<Kokkos::HostSpace>("sliding_window", 64, 50),
                    ContainsSubstring("k' = 64") && ContainsSubstring("L = 50"));
  CHECK_THROWS_WITH(Dilated::from_budget(4096), ContainsSubstring("4096"));
  host_idx idx("idx", 2, 10, 4);  // (B, L, k')
  CHECK_THROWS_WITH(CandidateList(idx).check(2, 11), ContainsSubstring("(2, 10, 4)"));
  auto rt = make_pattern<Kokkos::HostSpace>("sign_bin_lsh", 8, 10);
  CHECK_THROWS_WITH(rt.set_candidates(PatternKind::sign_bin_lsh, idx), ContainsSubstring("k' = 8"));
  CHECK_THROWS_WITH(rt.set_candidates(PatternKind::key_selection, idx), ContainsSubstring("key_selection"));
}
