// SPDX-License-Identifier: MIT
/// \file
/// Union of two sparse patterns, `a | b`: the candidates of a, then those of b that a does not
/// allow, so no key is visited twice. Works for any mix of static patterns and CandidateLists
/// (a CandidateList on the left costs an O(k') scan per candidate of the right part).
#pragma once

#include <hax/attention/pattern/candidate_list.hpp>
#include <hax/attention/pattern/concepts.hpp>
#include <hax/attention/pattern/sink.hpp>
#include <hax/attention/pattern/sliding_window.hpp>

namespace hax::attn {

/// Union<A, B>: allows(b, q, k) = A ∨ B; slots 0..ka-1 are A's, then B's with A's keys skipped
/// (written as -1, so max_keys_per_query() = ka + kb is an upper bound on the row size).
template <sparse_pattern A, sparse_pattern B>
struct Union {
  A first;   // visited first, in full
  B second;  // its keys that `first` allows are skipped

  /// Host check of both parts' data against (B, L), for the parts that hold data.
  void check(int batch, int length) const {
    if constexpr (requires { first.check(batch, length); }) { first.check(batch, length); }
    if constexpr (requires { second.check(batch, length); }) { second.check(batch, length); }
  }
  KOKKOS_FUNCTION bool allows(int b, int q, int k) const {
    return first.allows(b, q, k) || second.allows(b, q, k);
  }
  KOKKOS_FUNCTION int max_keys_per_query() const {
    return static_cast<int>(first.max_keys_per_query()) + static_cast<int>(second.max_keys_per_query());
  }
  KOKKOS_FUNCTION int key(int b, int q, int j) const {
    int const na = static_cast<int>(first.max_keys_per_query());
    if (j < na) { return static_cast<int>(first.key(b, q, j)); }
    int const k = static_cast<int>(second.key(b, q, j - na));
    return (k >= 0 && !first.allows(b, q, k)) ? k : -1;
  }
};

/// Constrained so that it cannot hijack operator| for unrelated types.
template <sparse_pattern A, sparse_pattern B>
constexpr Union<A, B> operator|(A const& a, B const& b) {
  return Union<A, B>{a, b};
}

static_assert(sparse_pattern<Union<SlidingWindow, Sink>>);
static_assert(sparse_pattern<Union<SlidingWindow, CandidateList<Kokkos::HostSpace>>>);

}  // namespace hax::attn
