// SPDX-License-Identifier: MIT
/// \file
/// The hashing-policy concept of LSH attention (`hash_policy_for`), the two statistics semantics
/// of the data-dependent plans (`PlanSemantics` = hax::attn::Semantics, semantics.md section 9),
/// and the largest number of hash bits the bucket index type can hold.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/attention/pattern/concepts.hpp>

#include <concepts>

namespace hax::attn {

/// Which statistics the data-dependent plans use (semantics.md section 9); the same enum as the
/// kernels' hax::attn::Semantics, so one setting drives a whole layer.
///  - causal:    per-row centring/normalisation; everything at position i depends on rows <= i.
///  - reference: sequence-axis statistics over the full padded length, as the released code.
using PlanSemantics = Semantics;

/// Buckets are `int`; sign-bit binning uses 2^h buckets, so h <= kMaxHashBits keeps 2^h and the
/// composite sort key bucket * L + j representable (the latter in 64 bits).
inline constexpr int kMaxHashBits = 30;

/// A hash policy sends one row (a query or key vector) to a bucket in [0, num_buckets()).
/// Row: any rank-1 view-like type with extent(0) and operator()(i).
template <class H, class Row>
concept hash_policy_for = std::copy_constructible<H> && requires(H const h, Row const row) {
  { h.num_buckets() } -> std::convertible_to<int>;
  { h.bucket(row) } -> std::convertible_to<int>;
};

}  // namespace hax::attn
