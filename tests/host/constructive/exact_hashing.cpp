// SPDX-License-Identifier: MIT
// Host-only property test of the constructive model's hashing: with the model's ±1 codes and its
// hand-set identity projection, sign-bit hashing is exact. Every (path, is_value) row gets its own
// bucket, equal rows share it, the bucket is the binary number the code spells, and the dot
// product q·k is maximal (= N) exactly on equal rows.
#include <hax/attention/hash/sign_bit_hash.hpp>
#include <hax/constructive/joint_recall_solver.hpp>
#include <hax/data/joint_recall.hpp>

#include <catch2/catch_test_macros.hpp>

#include <set>
#include <vector>

namespace {

using Host = Kokkos::DefaultHostExecutionSpace;

/// A resolved spec with level sizes n (n_min = n_max) and only a validation split.
hax::data::recall_spec fixed_spec(std::vector<int> const& n) {
  hax::data::recall_spec s;
  s.levels = static_cast<int>(n.size());
  for (int l = 0; l < s.levels; ++l) s.n_min[l] = s.n_max[l] = n[static_cast<std::size_t>(l)];
  s.vocab_size = 128;
  s.items_per_combination[0] = 0;
  s.items_per_combination[1] = 1;
  s.items_per_combination[2] = 0;
  return hax::data::resolve(s);
}

}  // namespace

TEST_CASE("constructive: sign-bit hashing of the path codes is exact", "[constructive][host]") {
  for (auto const& n : {std::vector<int>{7}, std::vector<int>{5, 12}, std::vector<int>{3, 5, 7}}) {
    auto const spec = fixed_spec(n);
    hax::constructive::JointRecallSolver<Host, double> const solver(spec);
    auto const& lay = solver.layout();
    int const N = lay.key_width;
    auto const hash = hax::attn::make_sign_bit_hash(solver.weights().hash_projection);
    REQUIRE(hash.num_buckets() == (1 << N));
    // Every (path, is_value) row as the model lays it out: level codes, then the is_value entry.
    std::vector<std::vector<int>> symbols;  // path symbols + is_value bit
    std::vector<int> path(n.size(), 0);
    bool done = false;
    while (!done) {
      for (int is_value : {0, 1}) {
        auto row = path;
        row.push_back(is_value);
        symbols.push_back(row);
      }
      done = true;
      for (std::size_t l = n.size(); l-- > 0;) {
        if (++path[l] < n[l]) {
          done = false;
          break;
        }
        path[l] = 0;
      }
    }
    int const R = static_cast<int>(symbols.size());
    Kokkos::View<double**, Kokkos::LayoutRight, Kokkos::HostSpace> rows("rows", R, N);  // (R, N)
    for (int r = 0; r < R; ++r) {
      for (int l = 0; l < lay.levels; ++l) {
        for (int t = 0; t < lay.level_bits[l]; ++t) {
          rows(r, lay.level_offset[l] + t) = hax::constructive::code_entry(symbols[r][l], t);
        }
      }
      rows(r, N - 1) = symbols[r][n.size()] ? 1.0 : -1.0;
    }
    std::set<int> buckets;
    for (int r = 0; r < R; ++r) {
      int const b = hash.bucket(Kokkos::subview(rows, r, Kokkos::ALL));
      // The bucket spells the symbols in binary, level by level, then the is_value bit.
      int expected = 0;
      for (int l = 0; l < lay.levels; ++l) expected |= symbols[r][l] << lay.level_offset[l];
      expected |= symbols[r][n.size()] << (N - 1);
      CHECK(b == expected);
      buckets.insert(b);
      int wrong_dots = 0;
      for (int s = 0; s < R; ++s) {
        double dot = 0;
        for (int c = 0; c < N; ++c) dot += rows(r, c) * rows(s, c);
        wrong_dots += ((dot == N) != (r == s)) ? 1 : 0;
      }
      CHECK(wrong_dots == 0);
    }
    CHECK(static_cast<int>(buckets.size()) == R);  // distinct rows never collide
  }
}
