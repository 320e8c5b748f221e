// SPDX-License-Identifier: MIT
/// \file
/// The sparse-attention pattern concept: every pattern describes itself twice, as a dense mask
/// (`allows`, used only by reference code and tests) and as per-query candidate lists (`key`,
/// used by the kernels of hax/attention/sparse_attention.hpp). The two descriptions must agree:
/// for every (b, q), the set of non-negative key(b, q, j), j < max_keys_per_query(), equals
/// {k : allows(b, q, k)}, without duplicates, and every candidate satisfies k <= q (causal).
/// The batch index b exists because data-dependent patterns (LSH buckets, key selection) differ
/// per sequence; static patterns ignore it. See docs/attention_patterns.md.
#pragma once

#include <Kokkos_Core.hpp>

#include <concepts>

namespace hax::attn {

/// A causal sparse-attention pattern over sequences of a batch.
///  - allows(b, q, k): the dense mask (reference code and tests only; may cost O(k') per call);
///  - max_keys_per_query(): the number of candidate slots j of every query;
///  - key(b, q, j): the j-th candidate key of query q in sequence b, or -1 for an empty slot.
/// All three must be callable in device code (KOKKOS_FUNCTION) on a copy of the pattern.
template <class P>
concept sparse_pattern = std::copy_constructible<P> && requires(P const p, int b, int q, int k, int j) {
  { p.allows(b, q, k) } -> std::same_as<bool>;
  { p.max_keys_per_query() } -> std::convertible_to<int>;
  { p.key(b, q, j) } -> std::convertible_to<int>;
};

/// The two semantics of docs/attention_patterns.md (semantics.md section 9) where the kernels
/// differ: what a query row with no candidate key outputs, and whether pad keys are skipped.
enum class Semantics {
  causal,    ///< empty rows output 0; keys at pad positions are never attended (the default)
  reference  ///< empty rows attend uniformly over all L positions, pads included (released code)
};

}  // namespace hax::attn
