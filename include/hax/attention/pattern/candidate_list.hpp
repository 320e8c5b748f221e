// SPDX-License-Identifier: MIT
/// \file
/// CandidateList: a data-dependent sparse pattern given explicitly as per-query candidate keys
/// idx (B, L, k') of int. It is the form the LSH bucketing and the key-selection top-k plan steps
/// produce (hax/attention/lsh/bucketing.hpp, hax/attention/key_selection/topk.hpp), and what the
/// sparse attention kernels consume, alone or in a union with static patterns.
///
/// Contract on idx (the producers guarantee it; kernels do not re-check it in device code):
///  - idx(b, q, j) is a key position in [0, q] or -1 for an empty slot;
///  - the non-negative entries of a row are distinct;
///  - order inside a row is free (LSH writes most recent first, top-k writes by score): no kernel
///    relies on it, and empty slots may sit anywhere in the row.
/// allows(b, q, k) is a linear scan of the row, O(k'): fine for tests and for unions, where it
/// is only evaluated for the candidates of a later part.
#pragma once

#include <hax/attention/pattern/concepts.hpp>

#include <hax/core/error.hpp>

#include <Kokkos_Core.hpp>

namespace hax::attn {

/// Per-query candidate keys held in a View; see the file comment for the contract on idx.
template <class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
struct CandidateList {
  Kokkos::View<const int***, Kokkos::LayoutRight, MemorySpace> idx;  // (B, L, k'), -1 = empty

  CandidateList() = default;
  template <class Idx>
  explicit CandidateList(Idx const& idx_) : idx(idx_) {}

  /// Host check, called by the kernels before launch: idx must be (B, L, k') for their (B, L).
  void check(int B, int L) const {
    core::require(idx.extent_int(0) == B && idx.extent_int(1) == L, "hax::attn::CandidateList",
                  "idx (", idx.extent(0), ", ", idx.extent(1), ", ", idx.extent(2),
                  ") must be (B, L, k') with (B, L) = (", B, ", ", L, ")");
  }
  KOKKOS_FUNCTION bool allows(int b, int q, int k) const {
    if (k < 0 || k > q) { return false; }
    int const kmax = static_cast<int>(idx.extent(2));
    for (int j = 0; j < kmax; ++j) {
      if (idx(b, q, j) == k) { return true; }
    }
    return false;
  }
  KOKKOS_FUNCTION int max_keys_per_query() const { return static_cast<int>(idx.extent(2)); }
  KOKKOS_FUNCTION int key(int b, int q, int j) const { return idx(b, q, j); }
};

/// Deduces the memory space: CandidateList list(idx) for any rank-3 int View idx.
template <class Idx>
CandidateList(Idx const&) -> CandidateList<typename Idx::memory_space>;

static_assert(sparse_pattern<CandidateList<Kokkos::HostSpace>>);

}  // namespace hax::attn
