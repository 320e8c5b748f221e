// SPDX-License-Identifier: MIT
/// \file
/// Tests of hax::data's generator: device batches against hax::reference::data, layout
/// invariants for many sizes and levels, streaming determinism, split disjointness (including a
/// tiny configuration where collisions do happen), distributions, the trainer's shifted view, the
/// loss positions against hax::reference::data and bad input.
#include "support/test_space.hpp"

#include <hax/core/random.hpp>
#include <hax/data/joint_recall.hpp>
#include <hax/reference/data/joint_recall.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <tuple>
#include <set>
#include <vector>

namespace {

using hax::data::recall_spec;
using hax::data::split;
using space_t = hax::test::test_space;
using mem_t = space_t::memory_space;
using Catch::Matchers::ContainsSubstring;

struct batch {
  std::int64_t rows = 0;
  std::int64_t lp = 0;
  std::vector<int> tokens;  // (rows, lp)
  std::vector<int> mask;    // (rows, lp)
  int failures = 0;
  int token(std::int64_t r, std::int64_t p) const { return tokens[r * lp + p]; }
  int masked(std::int64_t r, std::int64_t p) const { return mask[r * lp + p]; }
};

template <class Token = std::int32_t>
batch generate(recall_spec const& s, hax::data::split_exclusions<mem_t> const& ex, split sp,
               std::int64_t first, std::int64_t rows) {
  space_t space;
  Kokkos::View<Token**, Kokkos::LayoutRight, mem_t> t("t", rows, s.padded_length);  // (B, Lpad)
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> m("m", rows, s.padded_length);  // (B, Lpad)
  Kokkos::View<int, mem_t> failures("failures");
  hax::data::generate_batch(space, s, ex, sp, first, t, m, failures);
  space.fence();
  batch b;
  b.rows = rows;
  b.lp = s.padded_length;
  auto ht = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, t);
  auto hm = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, m);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t p = 0; p < b.lp; ++p) {
      b.tokens.push_back(static_cast<int>(ht(r, p)));
      b.mask.push_back(static_cast<int>(hm(r, p)));
    }
  }
  Kokkos::deep_copy(b.failures, failures);
  return b;
}

std::vector<int> row_of(batch const& b, std::int64_t r, bool mask = false) {
  auto const& v = mask ? b.mask : b.tokens;
  return std::vector<int>(v.begin() + r * b.lp, v.begin() + (r + 1) * b.lp);
}

/// The reference item padded to `lp` with PAD (attempt 0, or the first attempt outside
/// `excluded` when given).
hax::reference::data::item padded_reference(recall_spec const& s, split sp, std::int64_t i,
                                            std::set<std::vector<int>> const* excluded = nullptr) {
  auto item = excluded ? hax::reference::data::generate_disjoint_item(s, sp, i, *excluded)
                       : hax::reference::data::generate_split_item(s, sp, i);
  item.tokens.resize(s.padded_length, s.pad);
  item.mask.resize(s.padded_length, 0);
  return item;
}

recall_spec small_spec(int levels, int n_min, int n_max, std::int64_t train, std::int64_t eval) {
  recall_spec s = hax::data::make_spec(levels, n_min, n_max);
  s.items_per_combination[0] = train;
  s.items_per_combination[1] = eval;
  s.items_per_combination[2] = eval;
  return hax::data::resolve(s);
}

/// Checks every layout invariant of row r, parsing it with the spec's id ranges (written out
/// here independently of the generator): the length, the tree structure of both halves, every
/// leaf asked exactly once, inquiry values equal store values, the mask, ids, padding.
void check_layout(recall_spec const& s, batch const& b, std::int64_t r, std::vector<int> const& n) {
  int const w = s.levels;
  std::int64_t nodes = 0;
  std::int64_t leaves = 1;
  for (int l = 0; l < w; ++l) {
    leaves *= n[l];
    nodes += leaves;
  }
  std::int64_t const length = 2 + 2 * (nodes + leaves);
  REQUIRE(length <= b.lp);
  auto level_of = [&](int id) {  // level whose id block holds `id`, or -1
    int const base = s.value_bias + s.n_values;
    if (id < base || id >= base + w * s.level_capacity) return -1;
    return w - 1 - (id - base) / s.level_capacity;
  };
  CHECK(b.token(r, 0) == s.bos);
  CHECK(b.masked(r, 0) == 0);
  std::int64_t p = 1;
  std::map<std::vector<int>, int> stored;  // path -> value
  std::int64_t mask_count = 0;
  for (int half = 0; half < 2; ++half) {
    std::vector<int> path;
    std::set<std::vector<int>> seen;  // every node of this half once
    std::int64_t emitted = 0;
    while (emitted < nodes) {
      int const id = b.token(r, p);
      int const l = level_of(id);
      REQUIRE(l >= 0);
      REQUIRE(l <= static_cast<int>(path.size()));
      path.resize(l);
      int const c = id - (s.value_bias + s.n_values + (w - 1 - l) * s.level_capacity);
      REQUIRE(c < n[l]);
      path.push_back(c);
      CHECK(seen.insert(path).second);
      CHECK(b.masked(r, p) == ((half == 1 && l == w - 1) ? 1 : 0));
      mask_count += b.masked(r, p);
      ++p;
      ++emitted;
      if (l == w - 1) {
        int const v = b.token(r, p);
        REQUIRE(v >= s.value_bias);
        REQUIRE(v < s.value_bias + s.n_values);
        CHECK(b.masked(r, p) == 0);
        if (half == 0) {
          stored[path] = v;
        } else {
          CHECK(stored.at(path) == v);
        }
        ++p;
      }
    }
    CHECK(static_cast<std::int64_t>(seen.size()) == nodes);
    if (half == 0) {
      CHECK(static_cast<std::int64_t>(stored.size()) == leaves);
      CHECK(b.token(r, p) == s.sep);
      CHECK(b.masked(r, p) == 0);
      ++p;
    }
  }
  CHECK(p == length);
  CHECK(mask_count == leaves);
  for (; p < b.lp; ++p) {
    CHECK(b.token(r, p) == s.pad);
    CHECK(b.masked(r, p) == 0);
  }
}

}  // namespace

TEST_CASE("data: reference layout defaults", "[data]") {
  recall_spec const s = hax::data::resolve(recall_spec{});
  CHECK(s.padded_length == 1058);
  CHECK(s.level_capacity == 16);
  CHECK(hax::data::n_combinations(s) == 144);
  CHECK(hax::data::split_size(s, split::train) == 1440000);
  CHECK(hax::data::split_size(s, split::valid) == 14400);
  CHECK(hax::data::split_size(s, split::test) == 14400);
  CHECK(hax::data::level_token(s, 1, 0) == 26);   // keys 26-41
  CHECK(hax::data::level_token(s, 1, 15) == 41);
  CHECK(hax::data::level_token(s, 0, 0) == 42);   // contexts 42-57
  CHECK(hax::data::level_token(s, 0, 15) == 57);
  int n[hax::data::kMaxLevels] = {5, 5};
  CHECK(hax::data::item_length(2, n) == 112);
  // The (n_c, n_k) cycle: n_k fastest, as the reference's loops.
  for (std::int64_t i : {0, 1, 11, 12, 143, 144, 1000, 1439999}) {
    int m[hax::data::kMaxLevels];
    hax::data::item_sizes(s, i, m);
    CHECK(m[0] == 5 + static_cast<int>((i % 144) / 12));
    CHECK(m[1] == 5 + static_cast<int>(i % 12));
  }
}

TEST_CASE("data: device batch equals the serial reference", "[data]") {
  struct config {
    int levels, n_min, n_max;
  };
  for (config c : {config{1, 1, 9}, config{2, 5, 16}, config{2, 1, 4}, config{3, 2, 4}}) {
    recall_spec const s = small_spec(c.levels, c.n_min, c.n_max, 3, 1);
    auto const ex = hax::data::make_exclusions(space_t{}, s);
    for (split sp : {split::train, split::valid, split::test}) {
      std::int64_t const first = 5;
      std::int64_t const rows = hax::data::split_size(s, sp) - first < 37
                                    ? hax::data::split_size(s, sp) - first
                                    : 37;
      auto const b = generate(s, ex, sp, first, rows);
      auto const excluded = hax::reference::data::excluded_items(s, sp);
      CHECK(b.failures == 0);
      for (std::int64_t r = 0; r < rows; ++r) {
        auto const ref = padded_reference(s, sp, first + r, &excluded);
        INFO("levels " << c.levels << " split " << hax::data::split_name(sp) << " item " << first + r);
        CHECK(row_of(b, r) == ref.tokens);
        CHECK(row_of(b, r, true) == ref.mask);
      }
    }
  }
}

TEST_CASE("data: layout invariants for many sizes and levels", "[data]") {
  struct config {
    int levels, n_min, n_max;
  };
  for (config c : {config{1, 1, 20}, config{2, 1, 16}, config{3, 1, 5}, config{4, 1, 3}}) {
    recall_spec const s = small_spec(c.levels, c.n_min, c.n_max, 1, 0);
    auto const ex = hax::data::make_exclusions(space_t{}, s);
    std::int64_t const rows = hax::data::split_size(s, split::train);
    auto const b = generate(s, ex, split::train, 0, rows);
    for (std::int64_t r = 0; r < rows; ++r) {
      INFO("levels " << c.levels << " item " << r);
      check_layout(s, b, r, hax::reference::data::sizes_of(s, r));
    }
  }
}

TEST_CASE("data: token type uint8 holds the reference vocabulary", "[data]") {
  recall_spec const s = small_spec(2, 5, 16, 1, 1);
  auto const ex = hax::data::make_exclusions(space_t{}, s);
  auto const a = generate<std::uint8_t>(s, ex, split::train, 100, 20);
  auto const b = generate<std::int32_t>(s, ex, split::train, 100, 20);
  CHECK(a.tokens == b.tokens);
  CHECK(a.mask == b.mask);
}

TEST_CASE("data: streaming is random access (batch boundaries do not matter)", "[data]") {
  recall_spec const s = small_spec(2, 3, 9, 4, 1);
  auto const ex = hax::data::make_exclusions(space_t{}, s);
  auto const whole = generate(s, ex, split::train, 0, 120);
  auto const part = generate(s, ex, split::train, 77, 13);
  for (std::int64_t r = 0; r < 13; ++r) {
    CHECK(row_of(part, r) == row_of(whole, 77 + r));
  }
  // a different seed gives different items
  recall_spec t = s;
  t.seed = 2;
  auto const other = generate(t, hax::data::make_exclusions(space_t{}, t), split::train, 0, 120);
  CHECK(other.tokens != whole.tokens);
}

TEST_CASE("data: splits are disjoint where collisions really happen", "[data]") {
  // One level of size 1 and two values: only two distinct items exist (value 0 or value 1).
  recall_spec s = hax::data::make_spec(1, 1, 1);
  s.n_values = 2;
  s.items_per_combination[0] = 40;
  s.items_per_combination[1] = 1;
  s.items_per_combination[2] = 0;
  s = hax::data::resolve(s);
  auto const ex = hax::data::make_exclusions(space_t{}, s);
  auto const valid = generate(s, ex, split::valid, 0, 1);
  auto const train = generate(s, ex, split::train, 0, 40);
  CHECK(train.failures == 0);
  int collisions_at_attempt_0 = 0;
  for (std::int64_t r = 0; r < 40; ++r) {
    CHECK(row_of(train, r) != row_of(valid, 0));
    if (padded_reference(s, split::train, r).tokens == row_of(valid, 0)) ++collisions_at_attempt_0;
  }
  // The draws did collide (about half of 40), so the regeneration path was exercised.
  CHECK(collisions_at_attempt_0 > 5);

  // A space of 16 items (n = 2, two values: 4 tables x 2 store orders x 2 inquiry orders).
  recall_spec u = hax::data::make_spec(1, 2, 2);
  u.n_values = 2;
  u.items_per_combination[0] = 200;
  u.items_per_combination[1] = 5;
  u.items_per_combination[2] = 5;
  u = hax::data::resolve(u);
  auto const ex2 = hax::data::make_exclusions(space_t{}, u);
  auto const v2 = generate(u, ex2, split::valid, 0, 5);
  auto const t2 = generate(u, ex2, split::test, 0, 5);
  auto const tr2 = generate(u, ex2, split::train, 0, 200);
  CHECK(t2.failures == 0);
  CHECK(tr2.failures == 0);
  std::set<std::vector<int>> valid_items, test_items, train_items;
  for (int r = 0; r < 5; ++r) valid_items.insert(row_of(v2, r));
  for (int r = 0; r < 5; ++r) test_items.insert(row_of(t2, r));
  for (int r = 0; r < 200; ++r) train_items.insert(row_of(tr2, r));
  for (auto const& item : test_items) CHECK(valid_items.count(item) == 0);
  for (auto const& item : train_items) {
    CHECK(valid_items.count(item) == 0);
    CHECK(test_items.count(item) == 0);
  }
  CHECK(train_items.size() + valid_items.size() + test_items.size() <= 16);
}

TEST_CASE("data: impossible disjoint splits are an error, not a hang", "[data]") {
  recall_spec s = hax::data::make_spec(1, 1, 1);
  s.n_values = 2;
  s.items_per_combination[0] = 10;
  s.items_per_combination[1] = 1;
  s.items_per_combination[2] = 1;
  CHECK_THROWS_WITH(hax::data::resolve(s), ContainsSubstring("cannot be disjoint"));
  s.items_per_combination[0] = 0;  // without a training split it is possible
  CHECK_NOTHROW(hax::data::resolve(s));
}

TEST_CASE("data: values are uniform and the first context is a uniform permutation", "[data]") {
  recall_spec const s = small_spec(2, 5, 16, 0, 5);
  hax::data::split_exclusions<mem_t> none{};
  auto const b = generate(s, hax::data::make_exclusions(space_t{}, s), split::valid, 0, 720);
  // Values: one count per (item, leaf) from the store half; chi-square with 15 degrees of
  // freedom. The 0.999 quantile is 37.7; the seed is fixed, so this is a check of the
  // generator's law, not a flaky test.
  std::vector<double> counts(16, 0.0);
  std::vector<double> first_ctx(5, 0.0);  // first context of items with n_c = 5
  double first_total = 0;
  double total = 0;
  for (std::int64_t r = 0; r < b.rows; ++r) {
    auto const n = hax::reference::data::sizes_of(s, r);
    bool after_key = false;
    for (std::int64_t p = 1; b.token(r, p) != s.sep; ++p) {
      int const id = b.token(r, p);
      if (after_key) {
        counts[id - 10] += 1;
        total += 1;
      }
      after_key = id >= 26 && id <= 41;
    }
    if (n[0] == 5) {
      first_ctx[b.token(r, 1) - 42] += 1;
      first_total += 1;
    }
  }
  auto chi2 = [](std::vector<double> const& c, double total) {
    double x = 0;
    double const e = total / static_cast<double>(c.size());
    for (double v : c) x += (v - e) * (v - e) / e;
    return x;
  };
  CHECK(total == 5.0 * 144.0 * 110.25);
  CHECK(chi2(counts, total) < 37.7);
  CHECK(first_total == 60.0);
  CHECK(chi2(first_ctx, first_total) < 18.5);  // 4 dof, 0.999 quantile
}

TEST_CASE("data: shifted view for the trainer", "[data]") {
  recall_spec const s = small_spec(2, 5, 6, 1, 0);
  auto const ex = hax::data::make_exclusions(space_t{}, s);
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem_t> t("t", 3, s.padded_length);  // (B, Lpad)
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> m("m", 3, s.padded_length);   // (B, Lpad)
  Kokkos::View<int, mem_t> failures("failures");
  hax::data::generate_batch(space_t{}, s, ex, split::train, 0, t, m, failures);
  auto const v = hax::data::shift_for_training(t, m);
  REQUIRE(v.inputs.extent(1) == static_cast<std::size_t>(s.padded_length - 1));
  auto ht = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, t);
  auto hm = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, m);
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem_t> in("in", 3, s.padded_length - 1);
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem_t> lab("lab", 3, s.padded_length - 1);
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> lm("lm", 3, s.padded_length - 1);
  Kokkos::deep_copy(in, v.inputs);
  Kokkos::deep_copy(lab, v.labels);
  Kokkos::deep_copy(lm, v.loss_mask);
  auto hin = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, in);
  auto hlab = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, lab);
  auto hlm = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, lm);
  for (int r = 0; r < 3; ++r) {
    for (int p = 0; p + 1 < s.padded_length; ++p) {
      CHECK(hin(r, p) == ht(r, p));
      CHECK(hlab(r, p) == ht(r, p + 1));
      CHECK(hlm(r, p) == hm(r, p));
      if (hm(r, p) == 1) CHECK((hlab(r, p) >= 10 && hlab(r, p) < 26));  // label is a value
    }
  }
}

namespace {

/// hax::data::loss_positions on (B, L) host vectors with R slots, called `calls` times on the
/// same outputs (slots start as garbage; the overflow count accumulates), then compared with
/// hax::reference::data::loss_positions. Returns the reference's result.
hax::reference::data::loss_slots check_loss_positions(std::vector<int> const& loss_mask,
                                                      std::vector<int> const& labels, int B, int L,
                                                      int R, int calls = 1) {
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> m("m", B, L);
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem_t> lab("lab", B, L);
  Kokkos::View<int**, Kokkos::LayoutRight, mem_t> pos("pos", B, R);
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem_t> lab_at("lab_at", B, R);
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> m_at("m_at", B, R);
  Kokkos::View<int, mem_t> overflow("overflow");
  auto hm = Kokkos::create_mirror_view(m);
  auto hlab = Kokkos::create_mirror_view(lab);
  for (std::size_t i = 0; i < loss_mask.size(); ++i) {
    hm.data()[i] = static_cast<std::int8_t>(loss_mask[i]);
    hlab.data()[i] = labels[i];
  }
  Kokkos::deep_copy(m, hm);
  Kokkos::deep_copy(lab, hlab);
  Kokkos::deep_copy(pos, 7);  // garbage: every slot is written
  Kokkos::deep_copy(lab_at, 7);
  Kokkos::deep_copy(m_at, std::int8_t(7));
  for (int c = 0; c < calls; ++c) {
    hax::data::loss_positions(space_t{}, m, lab, pos, lab_at, m_at, overflow);
  }
  space_t{}.fence();
  auto const want = hax::reference::data::loss_positions(loss_mask, labels, B, L, R);
  auto hpos = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, pos);
  auto hlab_at = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, lab_at);
  auto hm_at = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, m_at);
  std::size_t const n = static_cast<std::size_t>(B) * R;
  CHECK(std::vector<int>(hpos.data(), hpos.data() + n) == want.positions);
  CHECK(std::vector<int>(hlab_at.data(), hlab_at.data() + n) == want.labels);
  CHECK(std::vector<int>(hm_at.data(), hm_at.data() + n) == want.mask);
  int got_overflow = 0;
  Kokkos::deep_copy(got_overflow, overflow);
  CHECK(got_overflow == calls * want.overflow);
  return want;
}

}  // namespace

TEST_CASE("data: loss positions gather the scored slots as the reference does", "[data]") {
  // Two and three levels; items of every size in [n_min, n_max], so per-item counts vary.
  for (auto const& [levels, n_min, n_max] : {std::tuple{2, 2, 5}, std::tuple{3, 1, 3}}) {
    recall_spec const s = small_spec(levels, n_min, n_max, 2, 0);
    int const most = hax::data::max_loss_positions(s);
    int expected_most = 1;
    for (int l = 0; l < levels; ++l) expected_most *= n_max;
    REQUIRE(most == expected_most);
    std::int64_t const B = 24;
    auto const ex = hax::data::make_exclusions(space_t{}, s);
    auto const b = generate(s, ex, split::train, 0, B);
    int const L = static_cast<int>(b.lp) - 1;
    std::vector<int> loss_mask, labels;  // the shifted (B, L) view, written out here
    int largest = 0;
    for (std::int64_t r = 0; r < B; ++r) {
      int count = 0;
      for (int p = 0; p < L; ++p) {
        loss_mask.push_back(b.masked(r, p));
        labels.push_back(b.token(r, p + 1));
        count += b.masked(r, p);
      }
      largest = std::max(largest, count);
    }
    REQUIRE(largest <= most);  // the bound holds for every generated item
    REQUIRE(largest >= 2);
    // R = the bound (no overflow) and R = largest - 1 (the largest items overflow).
    for (int R : {most, largest - 1}) {
      INFO("levels " << levels << ", R = " << R);
      auto const want = check_loss_positions(loss_mask, labels, static_cast<int>(B), L, R);
      CHECK((R == most ? want.overflow == 0 : want.overflow >= 1));
    }
  }
  // Bad shapes name the input.
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> m("m", 2, 9);
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem_t> lab("lab", 2, 8), lab9("lab9", 2, 9);
  Kokkos::View<int**, Kokkos::LayoutRight, mem_t> pos("pos", 2, 3);
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem_t> lab_at("lab_at", 2, 3);
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> m_at("m_at", 3, 3);
  Kokkos::View<int, mem_t> overflow("overflow");
  CHECK_THROWS_WITH(hax::data::loss_positions(space_t{}, m, lab, pos, lab_at, m_at, overflow),
                    ContainsSubstring("hax::data::loss_positions") &&
                        ContainsSubstring("labels (2, 8)"));
  CHECK_THROWS_WITH(hax::data::loss_positions(space_t{}, m, lab9, pos, lab_at, m_at, overflow),
                    ContainsSubstring("mask_at (3, 3)"));
}

TEST_CASE("data: loss positions of long sequences with any mask density", "[data]") {
  // L beyond a GPU team's width, so the team scan runs over several chunks of the sequence; one
  // sequence with no loss position, one sparse, one dense, one full.
  int const B = 4, L = 1500;
  std::vector<int> loss_mask(static_cast<std::size_t>(B) * L), labels(loss_mask.size());
  hax::core::RngStream rng(hax::core::stream_key(5, 0, 0));
  double const density[B] = {0.0, 0.05, 0.6, 1.0};
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < L; ++t) {
      std::size_t const i = static_cast<std::size_t>(b) * L + t;
      loss_mask[i] = rng.uniform() < density[b] ? 1 : 0;
      labels[i] = static_cast<int>(rng.uniform_int(100));
    }
  }
  for (int R : {1, 17, 256, L}) {
    INFO("R = " << R);
    auto const want = check_loss_positions(loss_mask, labels, B, L, R, 2);
    CHECK((R == L ? want.overflow == 0 : want.overflow >= 2));
  }
}

TEST_CASE("data: bad parameters name the parameter", "[data]") {
  using hax::data::resolve;
  auto spec = [] { return recall_spec{}; };
  recall_spec s = spec();
  s.levels = 0;
  CHECK_THROWS_WITH(resolve(s), ContainsSubstring("levels (0)"));
  s = spec();
  s.levels = 5;
  CHECK_THROWS_AS(resolve(s), hax::invalid_argument);
  s = spec();
  s.n_min[0] = 0;
  CHECK_THROWS_WITH(resolve(s), ContainsSubstring("n_min of level 0 (0)"));
  s = spec();
  s.n_min[1] = 9;
  s.n_max[1] = 7;
  CHECK_THROWS_WITH(resolve(s), ContainsSubstring("reversed"));
  s = spec();
  s.n_max[0] = 40;
  CHECK_THROWS_WITH(resolve(s), ContainsSubstring("vocabulary too small"));
  s = spec();
  s.n_values = 0;
  CHECK_THROWS_WITH(resolve(s), ContainsSubstring("n_values"));
  s = spec();
  s.padded_length = 1000;
  CHECK_THROWS_WITH(resolve(s), ContainsSubstring("padded_length (1000)"));
  s = spec();
  s.level_capacity = 10;
  CHECK_THROWS_WITH(resolve(s), ContainsSubstring("level_capacity"));
  s = spec();
  s.sep = 20;
  CHECK_THROWS_WITH(resolve(s), ContainsSubstring("special id 20"));
  s = spec();
  s.pad = s.bos;
  CHECK_THROWS_WITH(resolve(s), ContainsSubstring("distinct"));
  s = spec();
  s.items_per_combination[1] = -1;
  CHECK_THROWS_WITH(resolve(s), ContainsSubstring("items_per_combination of valid"));
  CHECK_THROWS_WITH(hax::data::parse_split("training"), ContainsSubstring("unknown split name 'training'"));
  CHECK(hax::data::parse_split("valid") == split::valid);
}

TEST_CASE("data: generate_batch rejects bad shapes, ranges and token types", "[data]") {
  recall_spec const s = small_spec(2, 5, 6, 1, 1);
  auto const ex = hax::data::make_exclusions(space_t{}, s);
  Kokkos::View<int, mem_t> failures("failures");
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem_t> t("t", 4, s.padded_length);
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> m("m", 4, s.padded_length);
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> m_short("m", 4, s.padded_length - 1);
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem_t> t_short("t", 4, s.padded_length - 1);
  space_t space;
  CHECK_THROWS_WITH(hax::data::generate_batch(space, s, ex, split::train, 0, t, m_short, failures),
                    ContainsSubstring("same shape"));
  CHECK_THROWS_WITH(hax::data::generate_batch(space, s, ex, split::train, 0, t_short, m_short, failures),
                    ContainsSubstring("expected padded_length"));
  CHECK_THROWS_WITH(hax::data::generate_batch(space, s, ex, split::valid, 2, t, m, failures),
                    ContainsSubstring("outside the valid split of 4 items"));
  CHECK_THROWS_WITH(hax::data::generate_batch(space, recall_spec{}, ex, split::train, 0, t, m, failures),
                    ContainsSubstring("not resolved"));
  recall_spec big = hax::data::make_spec(2, 5, 6);
  big.vocab_size = 300;
  big = hax::data::resolve(big);
  Kokkos::View<std::uint8_t**, Kokkos::LayoutRight, mem_t> t8("t8", 4, big.padded_length);
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> m8("m8", 4, big.padded_length);
  CHECK_THROWS_WITH(hax::data::generate_batch(space, big, ex, split::valid, 0, t8, m8, failures),
                    ContainsSubstring("cannot hold vocab_size 300"));
  // exclusions made for another spec
  recall_spec const other = small_spec(2, 5, 6, 1, 2);
  CHECK_THROWS_WITH(hax::data::generate_batch(space, other, ex, split::train, 0, t, m, failures),
                    ContainsSubstring("exclusions do not match"));
}
