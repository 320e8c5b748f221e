// SPDX-License-Identifier: MIT
/// \file
/// Row lengths as the joint-recall training batches have them, for the benchmarks of kernels
/// that skip each row's padding.
#pragma once

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

namespace hax::bench {

/// Item lengths 2 + 2·n_c·(2·n_k + 1) for (n_c, n_k) uniform in 5..16 (semantics.md), less the one
/// token the model's input drops, so each row is present up to its last real token (what
/// core::real_extent gives for a right-padded row). Fixed seed.
inline std::vector<int> joint_recall_lengths(int B, int L) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> n(5, 16);
  std::vector<int> lengths(B);
  for (int& len : lengths) {
    int const n_c = n(rng), n_k = n(rng);
    len = std::min(L, 2 + 2 * n_c * (2 * n_k + 1) - 1);
  }
  return lengths;
}

/// The joint-recall row lengths as a device View (B), and the share of the B·L positions they keep.
template <class Space>
std::pair<Kokkos::View<int*, Kokkos::LayoutRight, typename Space::memory_space>, double> padded_lengths(int B, int L) {
  auto const lengths = joint_recall_lengths(B, L);
  Kokkos::View<int*, Kokkos::LayoutRight, typename Space::memory_space> lv("lengths", B);
  auto const host = Kokkos::create_mirror_view(lv);
  double sum = 0;
  for (int b = 0; b < B; ++b) {
    host(b) = lengths[b];
    sum += lengths[b];
  }
  Kokkos::deep_copy(lv, host);
  return {lv, sum / (double(B) * L)};
}

}  // namespace hax::bench
