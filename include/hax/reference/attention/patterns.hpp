// SPDX-License-Identifier: MIT
/// \file
/// Serial references for sparse patterns: the dense mask of one query row by brute force over
/// allows(b, q, k), and the row's candidate list as a sorted set. The property tests compare the
/// two for every query; written to be read, O(L) per row.
#pragma once

#include <algorithm>
#include <vector>

namespace hax::reference::attn {

/// {k in [0, L) : pattern.allows(b, q, k)}, ascending.
template <class P>
std::vector<int> allowed_keys(P const& pattern, int b, int q, int L) {
  std::vector<int> keys;
  for (int k = 0; k < L; ++k) {
    if (pattern.allows(b, q, k)) { keys.push_back(k); }
  }
  return keys;
}

/// The non-negative key(b, q, j), j < max_keys_per_query(), in slot order (duplicates kept, so
/// that a test can detect them).
template <class P>
std::vector<int> candidate_keys(P const& pattern, int b, int q) {
  std::vector<int> keys;
  int const kmax = static_cast<int>(pattern.max_keys_per_query());
  for (int j = 0; j < kmax; ++j) {
    int const k = static_cast<int>(pattern.key(b, q, j));
    if (k >= 0) { keys.push_back(k); }
  }
  return keys;
}

}  // namespace hax::reference::attn
