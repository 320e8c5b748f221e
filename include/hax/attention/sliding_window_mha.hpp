// SPDX-License-Identifier: MIT
/// \file
/// Multi-head causal sliding-window softmax attention with rotary position embeddings, as the
/// attention layers of Samba (fla's `Attention` with window_size 64, num_kv_heads = num_heads, no
/// qkv bias, o_proj without bias), forward and hand-written backward:
///   q, k, v = x·W_qᵀ, x·W_kᵀ, x·W_vᵀ             (B, L, H, Dh), heads = contiguous Dh slices;
///   q, k   ← RoPE(q), RoPE(k)                     (θ = rope_theta, rotate-half layout);
///   o_h(i) = Σ_{j ∈ W(i)} softmax_j(q_h(i)·k_h(j) / √Dh) v_h(j),  W(i) = {i−window+1 .. i} ∩ [0, L);
///   y      = o·W_oᵀ                               (B, L, D).
/// The attention itself is hax::attn::sparse_attention_{forward,backward} with SlidingWindow{window},
/// one call per head on strided per-head Views (no copies), so time is O(B·L·window·D) and no L×L
/// tensor exists. With a pad mask (causal semantics) pad keys are never attended and pad queries
/// output 0; with right padding the window of a real token never reaches a pad anyway.
/// Derivation and what is saved: docs/math/samba.md.
#pragma once

#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>

#include <hax/attention/pattern/sliding_window.hpp>
#include <hax/attention/sparse_attention.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/views.hpp>
#include <hax/nn/activation.hpp>
#include <hax/nn/impl/shape.hpp>
#include <hax/nn/linear.hpp>
#include <hax/nn/rope.hpp>

#include <cmath>
#include <string>

namespace hax::attn {

/// Shape of one sliding-window attention layer (the heads; the model width is the input's).
struct SlidingWindowMhaConfig {
  int num_heads = 4;         ///< H (Samba: 4; kv heads = H, no grouped-query sharing)
  int head_dim = 8;          ///< Dh, even (RoPE rotates channel pairs)
  int window = 64;           ///< keys per query, the query itself included (flash-attn (63, 0))
  double rope_theta = 1e4;   ///< RoPE base θ
};

/// Throws hax::invalid_argument (message "<op>: <field> ...") unless `cfg` is usable with model
/// width d_model: num_heads, head_dim, window ≥ 1, head_dim even, num_heads·head_dim = d_model,
/// rope_theta > 1.
inline void validate(SlidingWindowMhaConfig const& cfg, int d_model, char const* op) {
  core::require(cfg.num_heads >= 1, op, "num_heads (", cfg.num_heads, ") must be >= 1");
  core::require(cfg.head_dim >= 1, op, "head_dim (", cfg.head_dim, ") must be >= 1");
  core::require(cfg.head_dim % 2 == 0, op, "head_dim (", cfg.head_dim,
                ") must be even: RoPE rotates channel pairs (i, i + head_dim/2)");
  core::require(cfg.num_heads * cfg.head_dim == d_model, op, "d_model (", d_model,
                ") must equal num_heads × head_dim (", cfg.num_heads, " × ", cfg.head_dim, " = ",
                cfg.num_heads * cfg.head_dim, ")");
  core::require(cfg.window >= 1, op, "window (", cfg.window,
                ") must be >= 1 (the number of keys per query, the query itself included)");
  core::require(cfg.rope_theta > 1.0, op, "rope_theta (", cfg.rope_theta, ") must be > 1");
}

/// What the forward keeps for the backward. Activations are (B, L, H, Dh) LayoutRight, so that
/// seen as rows they are the (B·L, H·Dh) outputs of the projections.
template <class T, class MemorySpace>
struct SlidingWindowMhaSaved {
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, MemorySpace>;
  view<T const***> x;  // (B, L, D) the input, by reference: the caller keeps it alive and unchanged
  view<T****> q;       // (B, L, H, Dh) after RoPE
  view<T****> k;       // (B, L, H, Dh) after RoPE
  view<T****> v;       // (B, L, H, Dh)
  view<T****> o;       // (B, L, H, Dh) attention output, the input of o_proj
  view<T***> lse;      // (H, B, L) log Σ exp(logits) per query row (−∞: pad query)
  view<int**> valid;   // (B, L) 1 = real token, 0 = pad; empty when there was no pad mask
};

namespace impl {

template <class V>
auto heads_as_rows(V const& v) {  // (B, L, H, Dh) -> (B·L, H·Dh), same memory
  return Kokkos::View<typename V::value_type**, Kokkos::LayoutRight, typename V::device_type,
                      Kokkos::MemoryTraits<Kokkos::Unmanaged>>(
      v.data(), v.extent(0) * v.extent(1), v.extent(2) * v.extent(3));
}

template <class V>
auto head(V const& v, int h) {  // (B, L, H, Dh) -> (B, L, Dh) of head h, strided
  return Kokkos::subview(v, Kokkos::ALL, Kokkos::ALL, h, Kokkos::ALL);
}

template <class X, class WQ, class WK, class WV, class WO>
void mha_check(char const* op, SlidingWindowMhaConfig const& cfg, X const& x, WQ const& wq,
               WK const& wk, WV const& wv, WO const& wo) {
  static_assert(X::rank() == 3, "hax::attn::sliding_window_mha: x must be rank 3 (B, L, D)");
  static_assert(WQ::rank() == 2 && WK::rank() == 2 && WV::rank() == 2 && WO::rank() == 2,
                "hax::attn::sliding_window_mha: the weights must be rank 2");
  int const D = x.extent_int(2);
  validate(cfg, D, op);
  auto const inner = static_cast<std::size_t>(cfg.num_heads * cfg.head_dim);
  auto const d = static_cast<std::size_t>(D);
  auto is = [](auto const& w, std::size_t r, std::size_t c) {
    return w.extent(0) == r && w.extent(1) == c;
  };
  core::require(is(wq, inner, d) && is(wk, inner, d) && is(wv, inner, d), op, "w_q ",
                nn::impl::shape_of(wq), ", w_k ", nn::impl::shape_of(wk), ", w_v ",
                nn::impl::shape_of(wv), " must be (H·Dh, D) = (", inner, ", ", d, ")");
  core::require(is(wo, d, inner), op, "w_o ", nn::impl::shape_of(wo), " must be (D, H·Dh) = (", d,
                ", ", inner, ")");
}

}  // namespace impl

/// Sliding-window multi-head attention forward (see the file comment for the math).
///
/// \param space [in] execution-space instance; asynchronous on it (allocates the saved tensors).
/// \param cfg [in] heads, head_dim, window, θ; validated against x's width.
/// \param x [in] (B, L, D) contiguous LayoutRight; kept by reference in the result.
/// \param w_q, w_k, w_v [in] (H·Dh, D).  \param w_o [in] (D, H·Dh).
/// \param maybe_pad_mask [in] (B, L), non-zero = real token, or an empty View (no padding).
/// \param y [out] (B, L, D), overwritten; must not alias x.
/// \return the tensors the backward needs.
/// Throws hax::invalid_argument for a bad config (naming the field) or mismatched shapes.
template <execution_space Space, class X, class WQ, class WK, class WV, class WO, class Mask, class Y>
  requires(view_accessible_from<X, Space> && view_accessible_from<WQ, Space> &&
           view_accessible_from<WK, Space> && view_accessible_from<WV, Space> &&
           view_accessible_from<WO, Space> && view_accessible_from<Mask, Space> &&
           view_accessible_from<Y, Space>)
SlidingWindowMhaSaved<typename Y::non_const_value_type, typename Space::memory_space>
sliding_window_mha_forward(Space const& space, SlidingWindowMhaConfig const& cfg, X const& x,
                           WQ const& w_q, WK const& w_k, WV const& w_v, WO const& w_o,
                           Mask const& maybe_pad_mask, Y const& y) {
  constexpr char const* op = "hax::attn::sliding_window_mha_forward";
  static_assert(Mask::rank() == 2, "hax::attn::sliding_window_mha_forward: the pad mask is (B, L)");
  using T = typename Y::non_const_value_type;
  using memory_space = typename Space::memory_space;
  using saved_type = SlidingWindowMhaSaved<T, memory_space>;
  impl::mha_check(op, cfg, x, w_q, w_k, w_v, w_o);
  nn::impl::require_same_shape(op, "x", x, "y", y);
  int const B = x.extent_int(0), L = x.extent_int(1), H = cfg.num_heads, Dh = cfg.head_dim;
  bool const has_mask = maybe_pad_mask.is_allocated();
  core::require(!has_mask || (maybe_pad_mask.extent_int(0) == B && maybe_pad_mask.extent_int(1) == L),
                op, "pad_mask ", nn::impl::shape_of(maybe_pad_mask), " must be (B, L) = (", B, ", ",
                L, ")");

  auto alloc4 = [&](char const* name) {
    return uninitialized_view<typename saved_type::template view<T****>>(space, name, B, L, H, Dh);
  };
  saved_type s;
  s.x = x;
  s.q = alloc4("hax::attn::sliding_window_mha::q");
  s.k = alloc4("hax::attn::sliding_window_mha::k");
  s.v = alloc4("hax::attn::sliding_window_mha::v");
  s.o = alloc4("hax::attn::sliding_window_mha::o");
  s.lse = uninitialized_view<typename saved_type::template view<T***>>(
      space, "hax::attn::sliding_window_mha::lse", H, B, L);
  if (has_mask) {
    // A private 0/1 copy: the backward needs the mask, and the caller's View type is not ours.
    s.valid = uninitialized_view<typename saved_type::template view<int**>>(
        space, "hax::attn::sliding_window_mha::valid", B, L);
    auto const valid = s.valid;
    Kokkos::parallel_for(
        "hax::attn::sliding_window_mha_forward::mask",
        Kokkos::MDRangePolicy<Space, Kokkos::Rank<2, Kokkos::Iterate::Right, Kokkos::Iterate::Right>>(
            space, {0, 0}, {B, L}),
        KOKKOS_LAMBDA(int b, int t) { valid(b, t) = maybe_pad_mask(b, t) != 0 ? 1 : 0; });
  }

  Kokkos::View<T*, memory_space> no_bias;
  auto const x_rows = nn::as_rows(x);
  nn::linear_forward(space, x_rows, w_q, no_bias, impl::heads_as_rows(s.q));
  nn::linear_forward(space, x_rows, w_k, no_bias, impl::heads_as_rows(s.k));
  nn::linear_forward(space, x_rows, w_v, no_bias, impl::heads_as_rows(s.v));
  nn::rope_forward(space, s.q, s.q, cfg.rope_theta);
  nn::rope_forward(space, s.k, s.k, cfg.rope_theta);

  AttentionOptions const opts{1.0 / std::sqrt(static_cast<double>(Dh)), Semantics::causal};
  SlidingWindow const pattern{cfg.window};
  for (int h = 0; h < H; ++h) {
    auto const lse_h = Kokkos::subview(s.lse, h, Kokkos::ALL, Kokkos::ALL);  // (B, L)
    if (has_mask) {
      sparse_attention_forward(space, pattern, impl::head(s.q, h), impl::head(s.k, h),
                               impl::head(s.v, h), s.valid, impl::head(s.o, h), lse_h, opts);
    } else {
      sparse_attention_forward(space, pattern, impl::head(s.q, h), impl::head(s.k, h),
                               impl::head(s.v, h), impl::head(s.o, h), lse_h, opts);
    }
  }
  nn::linear_forward(space, impl::heads_as_rows(s.o), w_o, no_bias, nn::as_rows(y));
  return s;
}

/// Overload on the default instance of y's execution space.
template <class X, class WQ, class WK, class WV, class WO, class Mask, class Y>
  requires(Kokkos::is_view_v<Y>)
auto sliding_window_mha_forward(SlidingWindowMhaConfig const& cfg, X const& x, WQ const& w_q,
                                WK const& w_k, WV const& w_v, WO const& w_o,
                                Mask const& maybe_pad_mask, Y const& y) {
  return sliding_window_mha_forward(typename Y::execution_space{}, cfg, x, w_q, w_k, w_v, w_o,
                                    maybe_pad_mask, y);
}

/// Sliding-window multi-head attention backward. dx is written (=); dw_q, dw_k, dw_v, dw_o are
/// accumulated (+=):
///   do = dy·W_o, dW_o += dyᵀ·o;  per head: (dq, dk, dv) from sparse_attention_backward;
///   dq, dk ← RoPEᵀ(dq), RoPEᵀ(dk);  dx = dq·W_q + dk·W_k + dv·W_v;  dW_• += d•ᵀ·x.
///
/// \param space [in] execution-space instance; asynchronous on it (allocates 4 (B, L, H, Dh)
///   temporaries).
/// \param saved [in] the forward's result (its x must still hold the forward's input).
/// \param dy [in] (B, L, D). \param dx [out] (B, L, D); must not alias dy or saved.x.
template <execution_space Space, class Saved, class WQ, class WK, class WV, class WO, class DY,
          class DX, class DWQ, class DWK, class DWV, class DWO>
  requires(view_accessible_from<DY, Space> && view_accessible_from<DX, Space> &&
           view_accessible_from<DWQ, Space> && view_accessible_from<DWK, Space> &&
           view_accessible_from<DWV, Space> && view_accessible_from<DWO, Space>)
void sliding_window_mha_backward(Space const& space, SlidingWindowMhaConfig const& cfg,
                                 Saved const& saved, WQ const& w_q, WK const& w_k, WV const& w_v,
                                 WO const& w_o, DY const& dy, DX const& dx, DWQ const& dw_q,
                                 DWK const& dw_k, DWV const& dw_v, DWO const& dw_o) {
  constexpr char const* op = "hax::attn::sliding_window_mha_backward";
  using T = typename DX::non_const_value_type;
  using memory_space = typename Space::memory_space;
  impl::mha_check(op, cfg, saved.x, w_q, w_k, w_v, w_o);
  nn::impl::require_same_shape(op, "x", saved.x, "dy", dy);
  nn::impl::require_same_shape(op, "x", saved.x, "dx", dx);
  core::require(nn::impl::same_shape(dw_q, w_q) && nn::impl::same_shape(dw_k, w_k) &&
                    nn::impl::same_shape(dw_v, w_v) && nn::impl::same_shape(dw_o, w_o),
                op, "dw_q, dw_k, dw_v, dw_o must match the shapes of their weights");
  int const B = dy.extent_int(0), L = dy.extent_int(1), H = cfg.num_heads, Dh = cfg.head_dim;
  core::require(saved.q.extent_int(2) == H && saved.q.extent_int(3) == Dh, op,
                "the saved tensors (H, Dh) = (", saved.q.extent(2), ", ", saved.q.extent(3),
                ") do not match the config (", H, ", ", Dh, ")");
  auto alloc4 = [&](char const* name) {
    return uninitialized_view<Kokkos::View<T****, Kokkos::LayoutRight, memory_space>>(space, name,
                                                                                      B, L, H, Dh);
  };
  auto const d_o = alloc4("hax::attn::sliding_window_mha::do");  // (B, L, H, Dh)
  auto const dq = alloc4("hax::attn::sliding_window_mha::dq");   // (B, L, H, Dh)
  auto const dk = alloc4("hax::attn::sliding_window_mha::dk");   // (B, L, H, Dh)
  auto const dv = alloc4("hax::attn::sliding_window_mha::dv");   // (B, L, H, Dh)
  Kokkos::View<T*, memory_space> no_bias;
  Kokkos::View<T**, Kokkos::LayoutRight, memory_space> no_dx;
  auto const dy_rows = nn::as_rows(dy);
  nn::linear_backward(space, dy_rows, impl::heads_as_rows(saved.o), w_o,
                      impl::heads_as_rows(d_o), dw_o, no_bias);

  AttentionOptions const opts{1.0 / std::sqrt(static_cast<double>(Dh)), Semantics::causal};
  SlidingWindow const pattern{cfg.window};
  bool const has_mask = saved.valid.is_allocated();
  for (int h = 0; h < H; ++h) {
    auto const lse_h = Kokkos::subview(saved.lse, h, Kokkos::ALL, Kokkos::ALL);  // (B, L)
    if (has_mask) {
      sparse_attention_backward(space, pattern, impl::head(saved.q, h), impl::head(saved.k, h),
                                impl::head(saved.v, h), saved.valid, impl::head(saved.o, h), lse_h,
                                impl::head(d_o, h), impl::head(dq, h), impl::head(dk, h),
                                impl::head(dv, h), opts);
    } else {
      sparse_attention_backward(space, pattern, impl::head(saved.q, h), impl::head(saved.k, h),
                                impl::head(saved.v, h), impl::head(saved.o, h), lse_h,
                                impl::head(d_o, h), impl::head(dq, h), impl::head(dk, h),
                                impl::head(dv, h), opts);
    }
  }
  // q = R·(x W_qᵀ) and R is orthogonal: the gradient before the rotation is Rᵀ·dq.
  nn::rope_backward(space, dq, dq, cfg.rope_theta);
  nn::rope_backward(space, dk, dk, cfg.rope_theta);

  auto const x_rows = nn::as_rows(saved.x);
  auto const dx_rows = nn::as_rows(dx);
  auto const dk_rows = impl::heads_as_rows(dk);
  auto const dv_rows = impl::heads_as_rows(dv);
  nn::linear_backward(space, impl::heads_as_rows(dq), x_rows, w_q, dx_rows, dw_q, no_bias);
  nn::linear_backward(space, dk_rows, x_rows, w_k, no_dx, dw_k, no_bias);
  nn::linear_backward(space, dv_rows, x_rows, w_v, no_dx, dw_v, no_bias);
  KokkosBlas::gemm(space, "N", "N", T(1), dk_rows, w_k, T(1), dx_rows);  // dx += dk·W_k
  KokkosBlas::gemm(space, "N", "N", T(1), dv_rows, w_v, T(1), dx_rows);  // dx += dv·W_v
}

/// Overload on the default instance of dx's execution space.
template <class Saved, class WQ, class WK, class WV, class WO, class DY, class DX, class DWQ,
          class DWK, class DWV, class DWO>
  requires(Kokkos::is_view_v<DX>)
void sliding_window_mha_backward(SlidingWindowMhaConfig const& cfg, Saved const& saved,
                                 WQ const& w_q, WK const& w_k, WV const& w_v, WO const& w_o,
                                 DY const& dy, DX const& dx, DWQ const& dw_q, DWK const& dw_k,
                                 DWV const& dw_v, DWO const& dw_o) {
  sliding_window_mha_backward(typename DX::execution_space{}, cfg, saved, w_q, w_k, w_v, w_o, dy,
                              dx, dw_q, dw_k, dw_v, dw_o);
}

}  // namespace hax::attn
