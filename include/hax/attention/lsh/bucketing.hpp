// SPDX-License-Identifier: MIT
/// \file
/// The LSH plan step: hash every (transformed) query and key row to a bucket, then build each
/// query's candidate list: the k' most recent keys j <= i with bucket(k_j) == bucket(q_i).
///
/// Two algorithms give the same lists (tags `BucketSort` and `BucketCount`):
///  - BucketSort:  per sequence, sort the keys by (bucket, position) (one team sort per
///                 sequence); a query binary-searches its bucket's run for the last j <= i and
///                 walks back k' entries. O(B·L·(log² L + k')) time, O(B·L) extra memory.
///  - BucketCount: per sequence, a bucket histogram, its exclusive scan and per-bucket position
///                 lists (a stable counting sort); then the same search inside the bucket's list.
///                 O(B·L·(log L + k') + B·2^h) time, O(B·(L + 2^h)) extra memory.
/// Neither forms an L×L object. Slot j of a query's list holds its (j+1)-th most recent
/// candidate (positions strictly decreasing along the slots), then -1 for empty slots.
#pragma once

#include <Kokkos_Core.hpp>
#include <Kokkos_NestedSort.hpp>

#include <hax/attention/hash/concepts.hpp>
#include <hax/attention/lsh/transform.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/views.hpp>

#include <cstddef>
#include <cstdint>

namespace hax::attn {

/// Bucketing by a per-sequence sort of (bucket, position).
struct BucketSort {
  static constexpr char const* name() { return "sort"; }
};
/// Bucketing by per-sequence bucket histograms and per-bucket position lists.
struct BucketCount {
  static constexpr char const* name() { return "count"; }
};

template <class A>
concept bucketing_algorithm = std::same_as<A, BucketSort> || std::same_as<A, BucketCount>;

/// buckets (B, L) = hash.bucket(x(b, i, :)) for rows x (B, L, N) already transformed.
/// Asynchronous on `space`.
template <execution_space Space, class Hash, class X, class Buckets>
  requires(view_accessible_from<X, Space> && view_accessible_from<Buckets, Space>)
void lsh_hash_rows(Space const& space, Hash const& hash, X const& x, Buckets const& buckets) {
  static_assert(X::rank() == 3 && Buckets::rank() == 2,
                "hax::attn::lsh_hash_rows: x must be (B, L, N) and buckets (B, L)");
  int const B = x.extent_int(0), L = x.extent_int(1);
  core::require(buckets.extent_int(0) == B && buckets.extent_int(1) == L, "hax::attn::lsh_hash_rows",
                "buckets (", buckets.extent(0), ", ", buckets.extent(1), ") must be (B, L) = (", B,
                ", ", L, ") of x");
  core::require(x.extent_int(2) == hash.proj.dim(), "hax::attn::lsh_hash_rows", "x (", B, ", ", L,
                ", ", x.extent(2), ") has N different from the projection's ", hash.proj.dim());
  Kokkos::parallel_for(
      "hax::attn::lsh_hash_rows", Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {B, L}),
      KOKKOS_LAMBDA(int b, int i) { buckets(b, i) = hash.bucket(Kokkos::subview(x, b, i, Kokkos::ALL)); });
}

namespace impl {

/// Row i of x as the causal pre-hash transform sees it: (x(n) - mean) · inv, formed on the fly
/// with the same arithmetic as lsh_prehash_transform, so the hash reads the same values.
template <class Row, class T>
struct CenteredRow {
  Row x;
  T mean;
  T inv;
  KOKKOS_INLINE_FUNCTION std::size_t extent(int) const { return x.extent(0); }
  KOKKOS_INLINE_FUNCTION T operator()(int n) const { return (x(n) - mean) * inv; }
};

/// A transformed row held in a thread's registers: its width is a compile-time constant, so the
/// hash's loops over it unroll and index registers rather than a local-memory array.
template <class T, int kN>
struct RegisterRow {
  T v[kN];
  KOKKOS_INLINE_FUNCTION static constexpr std::size_t extent(int) { return kN; }
  KOKKOS_INLINE_FUNCTION T operator()(int n) const { return v[n]; }
};

/// The causal bucket kernel for rows of kN = N entries: each thread loads its row once, centres
/// and normalises it in registers with the arithmetic of CenteredRow (same order, so the same
/// buckets) and hashes it. The general form re-reads the row from memory for the mean, the norm
/// and each of the h projections (2N + hN strided loads per thread): 112 µs per call on an H100
/// at B·L = 67 648, N = 16, h = 8, a latency-bound kernel at 6 % of the GPU's warp slots.
template <int kN, class Space, class Hash, class X, class Buckets>
void lsh_buckets_causal_fixed(Space const& space, Hash const& hash, X const& x, Buckets const& buckets) {
  using value_type = typename X::non_const_value_type;
  int const L = x.extent_int(1), rows = x.extent_int(0) * L;
  Kokkos::parallel_for(
      "hax::attn::lsh_buckets[causal,registers]", Kokkos::RangePolicy<Space>(space, 0, rows),
      KOKKOS_LAMBDA(int r) {
        int const b = r / L, i = r % L;
        RegisterRow<value_type, kN> row;
        value_type mean = 0;
        for (int n = 0; n < kN; ++n) {
          row.v[n] = x(b, i, n);
          mean += row.v[n];
        }
        mean /= value_type(kN);
        value_type sq = 0;
        for (int n = 0; n < kN; ++n) {
          value_type const c = row.v[n] - mean;
          sq += c * c;
        }
        value_type const inv = value_type(1) / Kokkos::max(Kokkos::sqrt(sq), value_type(kNormalizeEps));
        for (int n = 0; n < kN; ++n) { row.v[n] = (row.v[n] - mean) * inv; }
        buckets(b, i) = hash.bucket(row);
      });
}

}  // namespace impl

/// buckets (B, L) of raw rows x (B, L, N): the pre-hash transform under `semantics`, then the hash.
/// Under causal semantics the row statistics are local, so one kernel (a thread per row) centres,
/// normalises and hashes each row without writing it back: the two-pass form (transform into a
/// (B, L, N) temporary, then hash) cost 59 + 82 µs per call on an H100 at B·L = 67 648, N = 32.
/// Reference semantics needs statistics over the sequence axis first, so it keeps the two passes
/// and one (B, L, N) temporary. Asynchronous on `space`.
template <execution_space Space, class Hash, class X, class Buckets>
  requires(view_accessible_from<X, Space> && view_accessible_from<Buckets, Space>)
void lsh_buckets(Space const& space, PlanSemantics semantics, Hash const& hash, X const& x,
                 Buckets const& buckets) {
  using T = typename X::non_const_value_type;
  int const B = x.extent_int(0), L = x.extent_int(1), N = x.extent_int(2);
  if (semantics == PlanSemantics::reference) {
    auto const xt = uninitialized_view<T***>(space, "hax::attn::lsh_transformed", x.extent(0),
                                             x.extent(1), x.extent(2));  // (B, L, N)
    lsh_prehash_transform(space, semantics, x, xt);
    lsh_hash_rows(space, hash, xt, buckets);
    return;
  }
  core::require(buckets.extent_int(0) == B && buckets.extent_int(1) == L, "hax::attn::lsh_buckets",
                "buckets (", buckets.extent(0), ", ", buckets.extent(1), ") must be (B, L) = (", B,
                ", ", L, ") of x");
  core::require(N == hash.proj.dim(), "hax::attn::lsh_buckets", "x (", B, ", ", L, ", ", N,
                ") has N different from the projection's ", hash.proj.dim());
  switch (N) {  // the common widths in registers (impl::lsh_buckets_causal_fixed)
    case 8: impl::lsh_buckets_causal_fixed<8>(space, hash, x, buckets); return;
    case 16: impl::lsh_buckets_causal_fixed<16>(space, hash, x, buckets); return;
    case 32: impl::lsh_buckets_causal_fixed<32>(space, hash, x, buckets); return;
    default: break;
  }
  using value_type = typename X::non_const_value_type;
  Kokkos::parallel_for(
      "hax::attn::lsh_buckets[causal]", Kokkos::RangePolicy<Space>(space, 0, B * L), KOKKOS_LAMBDA(int r) {
        int const b = r / L, i = r % L;
        auto const row = Kokkos::subview(x, b, i, Kokkos::ALL);
        value_type mean = 0;
        for (int n = 0; n < N; ++n) { mean += row(n); }
        mean /= value_type(N);
        value_type sq = 0;
        for (int n = 0; n < N; ++n) {
          value_type const c = row(n) - mean;
          sq += c * c;
        }
        value_type const inv = value_type(1) / Kokkos::max(Kokkos::sqrt(sq), value_type(kNormalizeEps));
        buckets(b, i) = hash.bucket(impl::CenteredRow<decltype(row), value_type>{row, mean, inv});
      });
}

namespace impl {

inline void check_bucketing_shapes(char const* op, int qb0, int qb1, int kb0, int kb1, int i0,
                                   int i1, int kprime, int num_buckets) {
  core::require(qb0 == kb0 && qb1 == kb1, op, "bucket_q (", qb0, ", ", qb1, ") and bucket_k (",
                kb0, ", ", kb1, ") must have the same shape (B, L)");
  core::require(i0 == qb0 && i1 == qb1, op, "idx (", i0, ", ", i1, ", ", kprime,
                ") must be (B, L, k') with (B, L) = (", qb0, ", ", qb1, ")");
  core::require(kprime >= 1 && kprime <= qb1, op, "k' = ", kprime,
                " (idx extent 2) must be in [1, L] with L = ", qb1);
  core::require(num_buckets >= 1, op, "num_buckets = ", num_buckets, " must be >= 1");
}

/// Writes idx(b, i, :) from the ascending run [lo, hi) of key positions of query i's bucket:
/// the last entries <= i, most recent first. `pos(p)` returns the position stored at p.
template <class Pos, class Idx>
KOKKOS_INLINE_FUNCTION void take_most_recent(Pos const& pos, int lo, int hi, int i, Idx const& idx,
                                             int b, int kprime) {
  // upper_bound: first p in [lo, hi) with pos(p) > i
  int a = lo, e = hi;
  while (a < e) {
    int const mid = a + (e - a) / 2;
    if (pos(mid) <= i) {
      a = mid + 1;
    } else {
      e = mid;
    }
  }
  int slot = 0;
  for (int p = a - 1; p >= lo && slot < kprime; --p, ++slot) { idx(b, i, slot) = pos(p); }
  for (; slot < kprime; ++slot) { idx(b, i, slot) = -1; }
}

}  // namespace impl

/// The LSH candidate lists by a per-sequence sort (see the file comment).
/// \param bucket_q, bucket_k [in] (B, L) int buckets in [0, num_buckets).
/// \param idx [out] (B, L, k') int: most recent same-bucket keys j <= i first, then -1.
/// Asynchronous on `space`. Throws hax::invalid_argument on mismatched shapes or k' > L.
template <execution_space Space, class BQ, class BK, class Idx>
  requires(view_accessible_from<BQ, Space> && view_accessible_from<BK, Space> &&
           view_accessible_from<Idx, Space>)
void lsh_bucketing(Space const& space, BucketSort, BQ const& bucket_q, BK const& bucket_k,
                   int num_buckets, Idx const& idx) {
  static_assert(BQ::rank() == 2 && BK::rank() == 2 && Idx::rank() == 3,
                "hax::attn::lsh_bucketing: buckets must be (B, L) and idx (B, L, k')");
  int const B = bucket_q.extent_int(0), L = bucket_q.extent_int(1), kprime = idx.extent_int(2);
  impl::check_bucketing_shapes("hax::attn::lsh_bucketing[sort]", B, L, bucket_k.extent_int(0),
                               bucket_k.extent_int(1), idx.extent_int(0), idx.extent_int(1), kprime,
                               num_buckets);
  // Composite key bucket * L + position: sorting it sorts by (bucket, position).
  auto const keys = uninitialized_view<std::int64_t**>(space, "hax::attn::lsh_sort_keys", B, L);  // (B, L)
  std::int64_t const LL = L;
  Kokkos::parallel_for(
      "hax::attn::lsh_bucketing[sort]::keys",
      Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {B, L}),
      KOKKOS_LAMBDA(int b, int j) { keys(b, j) = static_cast<std::int64_t>(bucket_k(b, j)) * LL + j; });
  using team_policy = Kokkos::TeamPolicy<Space>;
  Kokkos::parallel_for(
      "hax::attn::lsh_bucketing[sort]::sort", team_policy(space, B, Kokkos::AUTO),
      KOKKOS_LAMBDA(typename team_policy::member_type const& team) {
        Kokkos::Experimental::sort_team(team, Kokkos::subview(keys, team.league_rank(), Kokkos::ALL));
      });
  Kokkos::parallel_for(
      "hax::attn::lsh_bucketing[sort]::select",
      Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {B, L}),
      KOKKOS_LAMBDA(int b, int i) {
        std::int64_t const bq = bucket_q(b, i);
        // The run of bucket bq is [lower_bound(bq*L), lower_bound((bq+1)*L)).
        auto lower_bound = [&](std::int64_t v) {
          int a = 0, e = L;
          while (a < e) {
            int const mid = a + (e - a) / 2;
            if (keys(b, mid) < v) {
              a = mid + 1;
            } else {
              e = mid;
            }
          }
          return a;
        };
        int const lo = lower_bound(bq * LL);
        int const hi = lower_bound((bq + 1) * LL);
        auto pos = [&](int p) { return static_cast<int>(keys(b, p) - bq * LL); };
        impl::take_most_recent(pos, lo, hi, i, idx, b, kprime);
      });
}

/// The LSH candidate lists by per-sequence bucket histograms (a stable counting sort).
/// Same contract as the BucketSort overload; extra memory O(B·(L + num_buckets)).
template <execution_space Space, class BQ, class BK, class Idx>
  requires(view_accessible_from<BQ, Space> && view_accessible_from<BK, Space> &&
           view_accessible_from<Idx, Space>)
void lsh_bucketing(Space const& space, BucketCount, BQ const& bucket_q, BK const& bucket_k,
                   int num_buckets, Idx const& idx) {
  static_assert(BQ::rank() == 2 && BK::rank() == 2 && Idx::rank() == 3,
                "hax::attn::lsh_bucketing: buckets must be (B, L) and idx (B, L, k')");
  int const B = bucket_q.extent_int(0), L = bucket_q.extent_int(1), kprime = idx.extent_int(2);
  impl::check_bucketing_shapes("hax::attn::lsh_bucketing[count]", B, L, bucket_k.extent_int(0),
                               bucket_k.extent_int(1), idx.extent_int(0), idx.extent_int(1), kprime,
                               num_buckets);
  int const nb = num_buckets;
  auto const start = uninitialized_view<int**>(space, "hax::attn::lsh_bucket_start", B, nb + 1);  // (B, 2^h + 1)
  auto const cursor = uninitialized_view<int**>(space, "hax::attn::lsh_bucket_cursor", B, nb);    // (B, 2^h)
  auto const positions = uninitialized_view<int**>(space, "hax::attn::lsh_positions", B, L);      // (B, L)
  // One sequence per work item: histogram, exclusive scan, then a stable fill in position order,
  // so each bucket's list is ascending. O(L + 2^h) per sequence.
  Kokkos::parallel_for(
      "hax::attn::lsh_bucketing[count]::lists", Kokkos::RangePolicy<Space>(space, 0, B),
      KOKKOS_LAMBDA(int b) {
        for (int c = 0; c <= nb; ++c) { start(b, c) = 0; }
        for (int j = 0; j < L; ++j) { ++start(b, bucket_k(b, j) + 1); }
        for (int c = 0; c < nb; ++c) {
          start(b, c + 1) += start(b, c);
          cursor(b, c) = start(b, c);
        }
        for (int j = 0; j < L; ++j) { positions(b, cursor(b, bucket_k(b, j))++) = j; }
      });
  Kokkos::parallel_for(
      "hax::attn::lsh_bucketing[count]::select",
      Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {B, L}),
      KOKKOS_LAMBDA(int b, int i) {
        int const bq = bucket_q(b, i);
        auto pos = [&](int p) { return positions(b, p); };
        impl::take_most_recent(pos, start(b, bq), start(b, bq + 1), i, idx, b, kprime);
      });
}

/// The whole LSH plan step of one layer: buckets of q and k (B, L, N) under `semantics` and
/// `hash`, then the candidate lists idx (B, L, k') by `algo` (BucketSort or BucketCount).
/// Allocates (B, L, N) and 2·(B, L) temporaries on `space`. Asynchronous on `space`.
template <execution_space Space, bucketing_algorithm Algo, class Hash, class Q, class K, class Idx>
  requires(view_accessible_from<Q, Space> && view_accessible_from<K, Space> &&
           view_accessible_from<Idx, Space>)
void lsh_plan(Space const& space, PlanSemantics semantics, Hash const& hash, Algo algo, Q const& q,
              K const& k, Idx const& idx) {
  static_assert(Q::rank() == 3 && K::rank() == 3 && Idx::rank() == 3,
                "hax::attn::lsh_plan: q, k must be (B, L, N) and idx (B, L, k')");
  core::require(q.extent(0) == k.extent(0) && q.extent(1) == k.extent(1) &&
                    q.extent(2) == k.extent(2),
                "hax::attn::lsh_plan", "q (", q.extent(0), ", ", q.extent(1), ", ", q.extent(2),
                ") and k (", k.extent(0), ", ", k.extent(1), ", ", k.extent(2),
                ") must have the same shape");
  auto const bq = uninitialized_view<int**>(space, "hax::attn::lsh_bucket_q", q.extent(0), q.extent(1));  // (B, L)
  auto const bk = uninitialized_view<int**>(space, "hax::attn::lsh_bucket_k", k.extent(0), k.extent(1));  // (B, L)
  lsh_buckets(space, semantics, hash, q, bq);
  lsh_buckets(space, semantics, hash, k, bk);
  lsh_bucketing(space, algo, bq, bk, hash.num_buckets(), idx);
}

/// Overload on the default instance of idx's execution space.
template <bucketing_algorithm Algo, class BQ, class BK, class Idx>
void lsh_bucketing(Algo algo, BQ const& bucket_q, BK const& bucket_k, int num_buckets,
                   Idx const& idx) {
  lsh_bucketing(typename Idx::execution_space{}, algo, bucket_q, bucket_k, num_buckets, idx);
}

}  // namespace hax::attn
