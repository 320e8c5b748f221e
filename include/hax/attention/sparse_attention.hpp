// SPDX-License-Identifier: MIT
/// \file
/// Truly sparse single-head attention over a sparse_pattern's per-query candidate lists, forward
/// and backward (docs/math/sparse_attention.md):
///   o(b,i,:) = Σ_{k ∈ C(b,i)} softmax_k(scale · q(b,i,:)·k(b,k,:)) v(b,k,:),
/// with C(b,i) the non-negative key(b,i,j) of the pattern (pad keys dropped in causal semantics).
/// Forward is an online softmax per query row and saves lse (B, L) = log Σ exp(logits) (−∞ marks
/// an empty row). Backward recomputes the probabilities from q, k and lse (flash-attention style):
/// D_i = do_i·o_i, dS = P ⊙ (dP − D_i); dq is per row. dk and dv are either gathered per key over
/// transposed candidate lists built by a counting pass (BackwardAlgorithm::gather, O(B·L·k) scratch,
/// no floating-point atomics, the default) or scattered with atomics (atomic_scatter).
/// Cost O(B·L·k·(N + Dv)) time, O(B·L) saved memory (lse); no L×L tensor anywhere.
///
/// Empty rows: Semantics::causal gives o = 0 (the SSM path carries the token); Semantics::reference
/// gives the mean of v over all L positions (pads included, as the released code's uniform softmax
/// over finfo.min scores), with no gradient to q or k. Pad mask (optional, (B, L), non-zero = real
/// token): in causal semantics pad keys are never attended and pad queries output 0; the reference
/// semantics ignores it (the released code attends pads).
///
/// All ops are asynchronous on `space` (no fence, no host copy inside).
#pragma once

#include <hax/attention/impl/sparse_attention_kernels.hpp>
#include <hax/attention/impl/sparse_attention_transpose.hpp>
#include <hax/attention/pattern/concepts.hpp>
#include <hax/core/concepts.hpp>

namespace hax::attn {

/// Sparse attention forward. q, k (B, L, N), v (B, L, Dv) -> o (B, L, Dv), lse (B, L) (written).
/// Asynchronous on `space`. Throws hax::invalid_argument on mismatched shapes or pattern data.
template <execution_space Space, sparse_pattern P, class Q, class K, class V, class O, class LSE>
  requires view_accessible_from<O, Space> && (O::rank == 3)
void sparse_attention_forward(Space const& space, P const& pattern, Q const& q, K const& k, V const& v,
                              O const& o, LSE const& lse, AttentionOptions const& opts = {}) {
  impl::check_forward_shapes("hax::attn::sparse_attention_forward", q, k, v, o, lse);
  impl::check_pattern_data(pattern, q.extent_int(0), q.extent_int(1));
  impl::forward(space, pattern, q, k, v, impl::NoPadMask{}, o, lse, opts);
}

/// As above with a pad mask pad_mask (B, L) (non-zero = real token).
template <execution_space Space, sparse_pattern P, class Q, class K, class V, class M, class O, class LSE>
  requires view_accessible_from<O, Space> && (M::rank == 2) && (O::rank == 3)
void sparse_attention_forward(Space const& space, P const& pattern, Q const& q, K const& k, V const& v,
                              M const& pad_mask, O const& o, LSE const& lse,
                              AttentionOptions const& opts = {}) {
  constexpr auto op = "hax::attn::sparse_attention_forward";
  impl::check_forward_shapes(op, q, k, v, o, lse);
  impl::check_mask_shape(op, pad_mask, q.extent_int(0), q.extent_int(1));
  impl::check_pattern_data(pattern, q.extent_int(0), q.extent_int(1));
  impl::forward(space, pattern, q, k, v, impl::PadMask<M>{pad_mask}, o, lse, opts);
}

/// Overload on the default instance of o's execution space.
template <sparse_pattern P, class Q, class K, class V, class O, class LSE>
  requires Kokkos::is_view_v<O> && (O::rank == 3)
void sparse_attention_forward(P const& pattern, Q const& q, K const& k, V const& v, O const& o,
                              LSE const& lse, AttentionOptions const& opts = {}) {
  sparse_attention_forward(typename O::execution_space{}, pattern, q, k, v, o, lse, opts);
}

/// Overload with a pad mask on the default instance of o's execution space.
template <sparse_pattern P, class Q, class K, class V, class M, class O, class LSE>
  requires Kokkos::is_view_v<O> && Kokkos::is_view_v<M> && (M::rank == 2) && (O::rank == 3)
void sparse_attention_forward(P const& pattern, Q const& q, K const& k, V const& v, M const& pad_mask,
                              O const& o, LSE const& lse, AttentionOptions const& opts = {}) {
  sparse_attention_forward(typename O::execution_space{}, pattern, q, k, v, pad_mask, o, lse, opts);
}

namespace impl {
template <class Q, class V, class DO, class DQ, class DK, class DV>
void check_backward_shapes(Q const& q, V const& v, DO const& dout, DQ const& dq, DK const& dk, DV const& dv) {
  constexpr auto op = "hax::attn::sparse_attention_backward";
  auto same = [](auto const& a, auto const& b) {
    return a.extent(0) == b.extent(0) && a.extent(1) == b.extent(1) && a.extent(2) == b.extent(2);
  };
  core::require(same(dout, v), op, "do (", dout.extent(0), ", ", dout.extent(1), ", ", dout.extent(2),
                ") must match v (", v.extent(0), ", ", v.extent(1), ", ", v.extent(2), ")");
  core::require(same(dv, v), op, "dv (", dv.extent(0), ", ", dv.extent(1), ", ", dv.extent(2),
                ") must match v (", v.extent(0), ", ", v.extent(1), ", ", v.extent(2), ")");
  core::require(same(dq, q) && same(dk, q), op, "dq (", dq.extent(0), ", ", dq.extent(1), ", ",
                dq.extent(2), ") and dk (", dk.extent(0), ", ", dk.extent(1), ", ", dk.extent(2),
                ") must match q (", q.extent(0), ", ", q.extent(1), ", ", q.extent(2), ")");
}
}  // namespace impl

/// Sparse attention backward: from q, k, v, the forward's o and lse, and do (B, L, Dv), writes
/// dq, dk (B, L, N) and dv (B, L, Dv) (input gradients: =). Same pattern and options as forward.
/// Asynchronous on `space`; opts.backward picks the dk/dv algorithm (both write dk, dv; the gather
/// allocates its transposed lists, O(B·L·k') ints, on `space`).
template <execution_space Space, sparse_pattern P, class Q, class K, class V, class O, class LSE,
          class DO, class DQ, class DK, class DV>
  requires view_accessible_from<DQ, Space> && (O::rank == 3)
void sparse_attention_backward(Space const& space, P const& pattern, Q const& q, K const& k, V const& v,
                               O const& o, LSE const& lse, DO const& dout, DQ const& dq, DK const& dk,
                               DV const& dv, AttentionOptions const& opts = {}) {
  impl::check_forward_shapes("hax::attn::sparse_attention_backward", q, k, v, o, lse);
  impl::check_backward_shapes(q, v, dout, dq, dk, dv);
  impl::check_pattern_data(pattern, q.extent_int(0), q.extent_int(1));
  impl::backward(space, pattern, q, k, v, impl::NoPadMask{}, o, lse, dout, dq, dk, dv, opts);
}

/// As above with the forward's pad mask (B, L).
template <execution_space Space, sparse_pattern P, class Q, class K, class V, class M, class O, class LSE,
          class DO, class DQ, class DK, class DV>
  requires view_accessible_from<DQ, Space> && (M::rank == 2) && (O::rank == 3)
void sparse_attention_backward(Space const& space, P const& pattern, Q const& q, K const& k, V const& v,
                               M const& pad_mask, O const& o, LSE const& lse, DO const& dout, DQ const& dq,
                               DK const& dk, DV const& dv, AttentionOptions const& opts = {}) {
  constexpr auto op = "hax::attn::sparse_attention_backward";
  impl::check_forward_shapes(op, q, k, v, o, lse);
  impl::check_backward_shapes(q, v, dout, dq, dk, dv);
  impl::check_mask_shape(op, pad_mask, q.extent_int(0), q.extent_int(1));
  impl::check_pattern_data(pattern, q.extent_int(0), q.extent_int(1));
  impl::backward(space, pattern, q, k, v, impl::PadMask<M>{pad_mask}, o, lse, dout, dq, dk, dv, opts);
}

/// Overload on the default instance of dq's execution space.
template <sparse_pattern P, class Q, class K, class V, class O, class LSE, class DO, class DQ, class DK, class DV>
  requires Kokkos::is_view_v<DQ> && (O::rank == 3)
void sparse_attention_backward(P const& pattern, Q const& q, K const& k, V const& v, O const& o,
                               LSE const& lse, DO const& dout, DQ const& dq, DK const& dk, DV const& dv,
                               AttentionOptions const& opts = {}) {
  sparse_attention_backward(typename DQ::execution_space{}, pattern, q, k, v, o, lse, dout, dq, dk, dv, opts);
}

/// Overload with a pad mask on the default instance of dq's execution space.
template <sparse_pattern P, class Q, class K, class V, class M, class O, class LSE, class DO, class DQ,
          class DK, class DV>
  requires Kokkos::is_view_v<DQ> && Kokkos::is_view_v<M> && (M::rank == 2) && (O::rank == 3)
void sparse_attention_backward(P const& pattern, Q const& q, K const& k, V const& v, M const& pad_mask,
                               O const& o, LSE const& lse, DO const& dout, DQ const& dq, DK const& dk,
                               DV const& dv, AttentionOptions const& opts = {}) {
  sparse_attention_backward(typename DQ::execution_space{}, pattern, q, k, v, pad_mask, o, lse, dout, dq,
                            dk, dv, opts);
}

}  // namespace hax::attn
