// SPDX-License-Identifier: MIT
// Host-only property tests of the hashing policies and the LSH / top-k' plans: run on the default
// host space over many lengths, budgets and bucket counts against brute-force definitions.
#include <hax/attention/hash/argmax_hash.hpp>
#include <hax/attention/hash/sign_bit_hash.hpp>
#include <hax/attention/key_selection/topk.hpp>
#include <hax/attention/lsh/bucketing.hpp>
#include <hax/attention/pattern/candidate_list.hpp>

#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

namespace {

using Host = Kokkos::DefaultHostExecutionSpace;
template <class T>
using h1 = Kokkos::View<T*, Kokkos::LayoutRight, Kokkos::HostSpace>;
template <class T>
using h2 = Kokkos::View<T**, Kokkos::LayoutRight, Kokkos::HostSpace>;
template <class T>
using h3 = Kokkos::View<T***, Kokkos::LayoutRight, Kokkos::HostSpace>;

}  // namespace

TEST_CASE("hash policies: range, identical rows collide, negation never collides under sign-bit",
          "[attention][hash][host]") {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> normal;
  for (int h : {1, 3, 8, 12}) {
    for (int N : {2, 16, 33}) {
      CAPTURE(h, N);
      h2<double> w("w", N, h);
      hax::attn::draw_random_projection(Host{}, w, 5, h, N);
      Host{}.fence();
      auto const sb = hax::attn::make_sign_bit_hash(w);
      auto const am = hax::attn::make_argmax_hash(w);
      REQUIRE(sb.num_buckets() == (1 << h));
      REQUIRE(am.num_buckets() == 2 * h);
      h1<double> x("x", N), y("y", N), neg("neg", N);
      for (int trial = 0; trial < 200; ++trial) {
        for (int n = 0; n < N; ++n) {
          x(n) = normal(rng);
          y(n) = x(n);
          neg(n) = -x(n);
        }
        int const bx = sb.bucket(x), ax = am.bucket(x);
        CHECK((bx >= 0 && bx < sb.num_buckets()));
        CHECK((ax >= 0 && ax < am.num_buckets()));
        CHECK(sb.bucket(y) == bx);
        CHECK(am.bucket(y) == ax);
        CHECK(sb.bucket(neg) != bx);
        CHECK(sb.bucket(neg) == (sb.num_buckets() - 1 - bx));
        CHECK(am.bucket(neg) == (ax + h) % (2 * h));
      }
    }
  }
}

TEST_CASE("LSH candidate lists equal the brute-force definition over many shapes",
          "[attention][lsh][host]") {
  std::mt19937_64 rng(2);
  for (int L : {1, 2, 7, 64, 129}) {
    for (int kprime : {1, 3, 16, 64}) {
      if (kprime > L) { continue; }
      for (int nb : {1, 2, 5, 300}) {
        CAPTURE(L, kprime, nb);
        int const B = 2;
        std::uniform_int_distribution<int> dist(0, nb - 1);
        h2<int> bq("bq", B, L), bk("bk", B, L);
        for (int b = 0; b < B; ++b) {
          for (int i = 0; i < L; ++i) {
            bq(b, i) = dist(rng);
            bk(b, i) = dist(rng);
          }
        }
        h3<int> by_sort("by_sort", B, L, kprime), by_count("by_count", B, L, kprime);
        hax::attn::lsh_bucketing(Host{}, hax::attn::BucketSort{}, bq, bk, nb, by_sort);
        hax::attn::lsh_bucketing(Host{}, hax::attn::BucketCount{}, bq, bk, nb, by_count);
        Host{}.fence();
        for (int b = 0; b < B; ++b) {
          for (int i = 0; i < L; ++i) {
            // Brute force: the dense mask {j <= i : same bucket}, then its k' largest j.
            std::vector<int> allowed;
            for (int j = i; j >= 0; --j) {
              if (bk(b, j) == bq(b, i)) { allowed.push_back(j); }
            }
            std::set<int> seen;
            for (int t = 0; t < kprime; ++t) {
              int const want = t < static_cast<int>(allowed.size()) ? allowed[t] : -1;
              REQUIRE(by_sort(b, i, t) == want);
              REQUIRE(by_count(b, i, t) == want);
              if (want >= 0) { REQUIRE(seen.insert(want).second); }  // no key twice
            }
          }
        }
      }
    }
  }
}

TEST_CASE("causal top-k' is causal, never empty and agrees with a sort over many shapes",
          "[attention][key_selection][host]") {
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int> few(0, 3);
  for (int L : {1, 5, 40, 100}) {
    for (int kprime : {1, 2, 8, 32}) {
      if (kprime > L) { continue; }
      CAPTURE(L, kprime);
      h2<float> s("s", 1, L);
      for (int i = 0; i < L; ++i) { s(0, i) = static_cast<float>(few(rng)); }  // many ties
      h3<int> idx("idx", 1, L, kprime);
      hax::attn::causal_topk(Host{}, s, idx);
      Host{}.fence();
      for (int i = 0; i < L; ++i) {
        std::vector<int> order;
        for (int j = 0; j <= i; ++j) { order.push_back(j); }
        std::sort(order.begin(), order.end(), [&](int a, int b) {
          return s(0, a) > s(0, b) || (s(0, a) == s(0, b) && a > b);
        });
        for (int t = 0; t < kprime; ++t) {
          int const want = t <= i ? order[t] : -1;
          REQUIRE(idx(0, i, t) == want);
        }
      }
    }
  }
}

TEST_CASE("plan outputs are valid CandidateList patterns: key and allows agree with the dense mask",
          "[attention][lsh][key_selection][host]") {
  std::mt19937_64 rng(4);
  int const B = 2, L = 50, kprime = 6, nb = 4;
  std::uniform_int_distribution<int> bucket(0, nb - 1);
  std::uniform_real_distribution<float> score(-1.f, 1.f);
  h2<int> bq("bq", B, L), bk("bk", B, L);
  h2<float> s("s", B, L);
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < L; ++i) {
      bq(b, i) = bucket(rng);
      bk(b, i) = bucket(rng);
      s(b, i) = score(rng);
    }
  }
  h3<int> lsh_idx("lsh_idx", B, L, kprime), ks_idx("ks_idx", B, L, kprime);
  hax::attn::lsh_bucketing(Host{}, hax::attn::BucketCount{}, bq, bk, nb, lsh_idx);
  hax::attn::causal_topk(Host{}, s, ks_idx);
  Host{}.fence();
  hax::attn::CandidateList const lsh(lsh_idx), ks(ks_idx);
  static_assert(hax::attn::sparse_pattern<decltype(lsh)>);
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < L; ++i) {
      // Dense masks from the definitions: LSH = the k' largest same-bucket j <= i;
      // KS = the k' best (score, then position) j <= i.
      std::vector<int> same;
      for (int j = i; j >= 0; --j) {
        if (bk(b, j) == bq(b, i)) { same.push_back(j); }
      }
      std::vector<int> order;
      for (int j = 0; j <= i; ++j) { order.push_back(j); }
      std::sort(order.begin(), order.end(), [&](int x, int y) {
        return s(b, x) > s(b, y) || (s(b, x) == s(b, y) && x > y);
      });
      for (int j = 0; j < L; ++j) {
        bool const in_lsh =
            std::find(same.begin(), same.begin() + std::min<int>(kprime, same.size()), j) !=
            same.begin() + std::min<int>(kprime, same.size());
        bool const in_ks =
            std::find(order.begin(), order.begin() + std::min<int>(kprime, order.size()), j) !=
            order.begin() + std::min<int>(kprime, order.size());
        REQUIRE(lsh.allows(b, i, j) == in_lsh);
        REQUIRE(ks.allows(b, i, j) == in_ks);
      }
      int n_lsh = 0, n_ks = 0;
      for (int t = 0; t < kprime; ++t) {
        n_lsh += lsh.key(b, i, t) >= 0;
        n_ks += ks.key(b, i, t) >= 0;
      }
      REQUIRE(n_lsh == std::min<int>(kprime, same.size()));
      REQUIRE(n_ks == std::min(kprime, i + 1));
    }
  }
}
