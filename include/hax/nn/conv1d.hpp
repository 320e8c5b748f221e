// SPDX-License-Identifier: MIT
/// \file
/// Causal depthwise conv1d over (B, L, C) LayoutRight activations, as Mamba's conv1d:
/// y(b,t,c) = bias(c) + Σ_{k<K} w(c,k) · x(b, t−K+1+k, c), zeros before t = 0 (PyTorch
/// Conv1d(groups=C, padding=K−1) truncated to L; its weight (C, 1, K) is stored here as (C, K)).
/// An optional pad mask (B, L) zeroes x before the conv (x ·= mask, as the reference does), and
/// the conv1d_silu_* variants fuse the SiLU the models always apply after the conv (the backward
/// recomputes the pre-activation instead of saving it). Derivation: docs/math/conv1d.md.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/dispatch.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/nn/activation.hpp>
#include <hax/nn/impl/shape.hpp>

namespace hax::nn {

/// Largest conv width the kernels support (the window lives in registers); the models use 4.
inline constexpr int kMaxConvWidth = 8;

namespace impl {

// Inside KOKKOS_LAMBDA the compile-time flags are tested with a plain `if`, not `if constexpr`:
// nvcc rejects an extended lambda that first captures a View inside an `if constexpr` branch.
// The flag is a constant, so the dead branch is still folded away; both branches compile for
// every instantiation.

/// Positions per work item: each (batch, chunk, channel) work item slides its window of K inputs
/// along conv_chunk<Space>() positions, so every input is read about once (plus K−1 halo reads
/// per chunk). Host backends take long chunks (few, cache-friendly work items); GPUs take short
/// ones, so that B · L / chunk · C work items fill the device (B = 64, L = 1058, C = 192: 400 000
/// threads at 32 positions, 100 000 at 128), for 3 halo reads per 32 positions at K = 4.
inline constexpr int kConvChunk = 128;
inline constexpr int kConvChunkGpu = 32;
template <class Space>
constexpr int conv_chunk() {
  if constexpr (Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible) {
    return kConvChunk;
  } else {
    return kConvChunkGpu;
  }
}

/// Checks shared by the forward and the backward; `act` names the activation tensor (y or dy).
template <class X, class W, class Bias, class M, class Y>
void conv1d_check(char const* op, X const& x, W const& w, Bias const& bias, M const& maybe_mask,
                  char const* act_name, Y const& act) {
  require_same_shape(op, "x", x, act_name, act);
  core::require(w.extent(0) == x.extent(2), op, "w ", shape_of(w),
                " must be (C, K) with C the channels of x ", shape_of(x));
  core::require(w.extent(1) >= 1 && w.extent_int(1) <= kMaxConvWidth, op, "w ", shape_of(w),
                ": the width K must be in [1, ", kMaxConvWidth, "]");
  core::require(bias.extent(0) == x.extent(2), op, "bias ", shape_of(bias),
                " needs one entry per channel of x ", shape_of(x));
  core::require(!maybe_mask.is_allocated() ||
                    (maybe_mask.extent(0) == x.extent(0) && maybe_mask.extent(1) == x.extent(1)),
                op, "maybe_mask ", shape_of(maybe_mask), " must be empty or (B, L) of x ",
                shape_of(x));
}

/// x(b, t, c), zeroed at pad positions when kMask (nonzero mask = real token).
template <bool kMask, class X, class M>
KOKKOS_INLINE_FUNCTION typename X::non_const_value_type masked_input(X const& x, M const& mask,
                                                                     int b, int t, int c) {
  if constexpr (kMask) {
    return mask(b, t) != 0 ? x(b, t, c) : typename X::non_const_value_type(0);
  } else {
    return x(b, t, c);
  }
}

/// Three (B, L, C_i) Views seen as one (B, L, C0 + C1 + C2) array: element (b, t, c) lives in the
/// block whose column range holds c. The conv kernels write (or read) it as they would one View,
/// so a conv whose output the caller splits into column blocks (Mamba2's x, B, C) writes the
/// blocks directly instead of a packed tensor and a copy.
template <class V0, class V1, class V2>
struct ColumnBlocks3 {
  using non_const_value_type = typename V0::non_const_value_type;
  V0 v0;
  V1 v1;
  V2 v2;
  int c0 = 0;   // columns of v0
  int c01 = 0;  // columns of v0 and v1
  KOKKOS_INLINE_FUNCTION typename V0::reference_type operator()(int b, int t, int c) const {
    if (c < c0) { return v0(b, t, c); }
    if (c < c01) { return v1(b, t, c - c0); }
    return v2(b, t, c - c01);
  }
};

/// Forward: work item (b, chunk, c) slides the window win[k] = xm(b, t−K+1+k, c) along t. With
/// kMaskOut (only with kMask) the output is zero at pad positions too.
template <bool kSilu, bool kMask, int kFixedK, bool kMaskOut, class Space, class X, class W,
          class Bias, class M, class Y>
void conv1d_forward_kernel_k(Space const& space, X const& x, W const& w, Bias const& bias,
                           M const& mask, Y const& y) {
  using value_type = typename Y::non_const_value_type;
  int const L = x.extent_int(1);
  int const C = x.extent_int(2);
  int const K = w.extent_int(1);
  int const chunk_len = conv_chunk<Space>();
  int const chunks = (L + chunk_len - 1) / chunk_len;
  // Channels fastest (core::for_each_row_major): a warp reads 32 consecutive channels of a row.
  core::for_each_row_major(
      kSilu ? "hax::nn::conv1d_silu_forward" : "hax::nn::conv1d_forward", space, x.extent_int(0),
      chunks, C, KOKKOS_LAMBDA(int b, int ch, int c) {
        // Kc is a compile-time constant when kFixedK > 0: the window loops unroll and the
        // K-wide arrays stay in registers instead of local memory.
        int const Kc = kFixedK > 0 ? kFixedK : K;
        int const begin = ch * chunk_len;
        int const end = begin + chunk_len < L ? begin + chunk_len : L;
        value_type wc[kMaxConvWidth];   // (Kc) this channel's taps
        value_type win[kMaxConvWidth];  // (Kc) xm(t−Kc+1 .. t)
        for (int k = 0; k < Kc; ++k) {
          wc[k] = w(c, k);
        }
        for (int k = 0; k + 1 < Kc; ++k) {  // the causal halo; zeros before t = 0
          int const s = begin - Kc + 1 + k;
          win[k] = s >= 0 ? masked_input<kMask>(x, mask, b, s, c) : value_type(0);
        }
        value_type const bc = bias(c);
        for (int t = begin; t < end; ++t) {
          win[Kc - 1] = masked_input<kMask>(x, mask, b, t, c);
          value_type pre = bc;
          for (int k = 0; k < Kc; ++k) {
            pre += wc[k] * win[k];
          }
          value_type const out = kSilu ? silu(pre) : pre;
          if (kMaskOut) {
            y(b, t, c) = mask(b, t) != 0 ? out : value_type(0);
          } else {
            y(b, t, c) = out;
          }
          for (int k = 0; k + 1 < Kc; ++k) {
            win[k] = win[k + 1];
          }
        }
      });
}

/// Backward: work item (b, chunk, c) owns dx(b, s, c) for s in its chunk. Walking t upward from
/// the chunk start, g(t) = dy(t) (· silu'(pre(t)) when kSilu, pre recomputed from the window)
/// is scattered to dx(t−K+1 .. t) through a window of K partial sums; the oldest one is complete
/// once t has passed it by K−1 (dx(s) = Σ_k w(k) g(s+K−1−k)), and is written then. t runs K−1
/// past the chunk end to finish its last positions; dw and dbias take only t inside the chunk,
/// summed in registers and added with one atomic per tap and chunk. With kMaskOut (only with
/// kMask) dy is taken as zero at pad positions (the forward's output mask).
template <bool kSilu, bool kMask, int kFixedK, bool kMaskOut, class Space, class DY, class X,
          class W, class Bias, class M, class DX, class DW, class DB>
void conv1d_backward_kernel_k(Space const& space, DY const& dy, X const& x, W const& w,
                            Bias const& bias, M const& mask, DX const& dx, DW const& dw,
                            DB const& dbias) {
  using value_type = typename DX::non_const_value_type;
  int const L = x.extent_int(1);
  int const C = x.extent_int(2);
  int const K = w.extent_int(1);
  int const chunk_len = conv_chunk<Space>();
  int const chunks = (L + chunk_len - 1) / chunk_len;
  core::for_each_row_major(
      kSilu ? "hax::nn::conv1d_silu_backward" : "hax::nn::conv1d_backward", space,
      x.extent_int(0), chunks, C, KOKKOS_LAMBDA(int b, int ch, int c) {
        // Kc is a compile-time constant when kFixedK > 0: the window loops unroll and the
        // K-wide arrays stay in registers instead of local memory.
        int const Kc = kFixedK > 0 ? kFixedK : K;
        int const begin = ch * chunk_len;
        int const end = begin + chunk_len < L ? begin + chunk_len : L;
        int const stop = end + Kc - 1 < L ? end + Kc - 1 : L;  // one past the last t needed
        value_type wc[kMaxConvWidth];      // (Kc) taps
        value_type win[kMaxConvWidth];     // (Kc) xm(t−Kc+1 .. t)
        value_type part[kMaxConvWidth];    // (Kc) partial dx(t−Kc+1 .. t)
        value_type dw_acc[kMaxConvWidth];  // (Kc) this chunk's share of dw(c, :)
        value_type db_acc = 0;
        for (int k = 0; k < Kc; ++k) {
          wc[k] = w(c, k);
          part[k] = 0;
          dw_acc[k] = 0;
        }
        for (int k = 0; k + 1 < Kc; ++k) {
          int const s = begin - Kc + 1 + k;
          win[k] = s >= 0 ? masked_input<kMask>(x, mask, b, s, c) : value_type(0);
        }
        value_type const bc = bias(c);
        auto write_dx = [&](int s, value_type v) {
          if (s >= begin && s < end) {
            if (kMask) {
              dx(b, s, c) = mask(b, s) != 0 ? v : value_type(0);  // ∂xm/∂x = mask
            } else {
              dx(b, s, c) = v;
            }
          }
        };
        for (int t = begin; t < stop; ++t) {
          win[Kc - 1] = masked_input<kMask>(x, mask, b, t, c);
          value_type g = dy(b, t, c);
          if (kMaskOut && mask(b, t) == 0) { g = value_type(0); }
          if (kSilu) {
            value_type pre = bc;
            for (int k = 0; k < Kc; ++k) {
              pre += wc[k] * win[k];
            }
            g *= silu_derivative(pre);
          }
          // part[k] holds dx(t−Kc+k) before this step: shift it out (complete) and open t.
          write_dx(t - Kc, part[0]);
          for (int k = 0; k + 1 < Kc; ++k) {
            part[k] = part[k + 1];
          }
          part[Kc - 1] = 0;
          for (int k = 0; k < Kc; ++k) {
            part[k] += wc[k] * g;  // y(t) reads xm(t−Kc+1+k) through w(k)
          }
          if (t < end) {
            db_acc += g;
            for (int k = 0; k < Kc; ++k) {
              dw_acc[k] += g * win[k];
            }
          }
          for (int k = 0; k + 1 < Kc; ++k) {
            win[k] = win[k + 1];
          }
        }
        for (int k = 0; k < Kc; ++k) {  // positions stop−Kc .. stop−1 have all their terms now
          write_dx(stop - Kc + k, part[k]);
        }
        for (int k = 0; k < Kc; ++k) {
          Kokkos::atomic_add(&dw(c, k), dw_acc[k]);
        }
        Kokkos::atomic_add(&dbias(c), db_acc);
      });
}

/// The kernels with the width fixed at compile time for Mamba's K = 4, else read at run time.
template <bool kSilu, bool kMask, bool kMaskOut = false, class Space, class X, class W, class Bias,
          class M, class Y>
void conv1d_forward_kernel(Space const& space, X const& x, W const& w, Bias const& bias,
                           M const& mask, Y const& y) {
  static_assert(kMask || !kMaskOut, "hax::nn: the output mask needs the pad mask");
  if (w.extent_int(1) == 4) {
    conv1d_forward_kernel_k<kSilu, kMask, 4, kMaskOut>(space, x, w, bias, mask, y);
  } else {
    conv1d_forward_kernel_k<kSilu, kMask, 0, kMaskOut>(space, x, w, bias, mask, y);
  }
}

template <bool kSilu, bool kMask, bool kMaskOut = false, class Space, class DY, class X, class W,
          class Bias, class M, class DX, class DW, class DB>
void conv1d_backward_kernel(Space const& space, DY const& dy, X const& x, W const& w,
                            Bias const& bias, M const& mask, DX const& dx, DW const& dw,
                            DB const& dbias) {
  static_assert(kMask || !kMaskOut, "hax::nn: the output mask needs the pad mask");
  if (w.extent_int(1) == 4) {
    conv1d_backward_kernel_k<kSilu, kMask, 4, kMaskOut>(space, dy, x, w, bias, mask, dx, dw, dbias);
  } else {
    conv1d_backward_kernel_k<kSilu, kMask, 0, kMaskOut>(space, dy, x, w, bias, mask, dx, dw, dbias);
  }
}

/// Checks the column blocks y0, y1, y2 of a (B, L, C) conv output against x: each (B, L, C_i),
/// the widths adding up to C. `names` are the blocks' names in messages.
template <class X, class Y0, class Y1, class Y2>
void check_column_blocks(char const* op, X const& x, char const* const (&names)[3], Y0 const& y0,
                         Y1 const& y1, Y2 const& y2) {
  auto check = [&](char const* name, auto const& y) {
    core::require(y.extent(0) == x.extent(0) && y.extent(1) == x.extent(1), op, name, " ",
                  shape_of(y), " must be (B, L, ·) with (B, L) of x ", shape_of(x));
  };
  check(names[0], y0);
  check(names[1], y1);
  check(names[2], y2);
  core::require(y0.extent(2) + y1.extent(2) + y2.extent(2) == x.extent(2), op, names[0], " ",
                shape_of(y0), ", ", names[1], " ", shape_of(y1), " and ", names[2], " ",
                shape_of(y2), ": their widths must add up to the channels of x ", shape_of(x));
}

template <class Y0, class Y1, class Y2>
ColumnBlocks3<Y0, Y1, Y2> column_blocks(Y0 const& y0, Y1 const& y1, Y2 const& y2) {
  return {y0, y1, y2, y0.extent_int(2), y0.extent_int(2) + y1.extent_int(2)};
}

}  // namespace impl

/// Causal depthwise conv1d forward (no activation).
/// \param space [in] execution-space instance; asynchronous on it.
/// \param x [in] (B, L, C). \param w [in] (C, K), K ≤ kMaxConvWidth. \param bias [in] (C).
/// \param maybe_mask [in] (B, L) pad mask (nonzero = real token; any arithmetic type) or an
///        empty View. Pad positions' inputs are zeroed before the conv; their outputs are still
///        written (bias plus earlier real inputs), as in the reference.
/// \param y [out] (B, L, C), overwritten; must not alias x.
/// Saved for backward: x (and the mask).
template <execution_space Space, class X, class W, class Bias, class M, class Y>
  requires(view_accessible_from<X, Space> && view_accessible_from<W, Space> &&
           view_accessible_from<Bias, Space> && view_accessible_from<M, Space> &&
           view_accessible_from<Y, Space>)
void conv1d_forward(Space const& space, X const& x, W const& w, Bias const& bias,
                    M const& maybe_mask, Y const& y) {
  static_assert(X::rank() == 3 && Y::rank() == 3 && W::rank() == 2 && Bias::rank() == 1 &&
                    M::rank() == 2,
                "hax::nn::conv1d_forward: x, y (B, L, C), w (C, K), bias (C), maybe_mask (B, L)");
  impl::conv1d_check("hax::nn::conv1d_forward", x, w, bias, maybe_mask, "y", y);
  core::dispatch_bool(maybe_mask.is_allocated(), [&]<bool kMask>() {
    impl::conv1d_forward_kernel<false, kMask>(space, x, w, bias, maybe_mask, y);
  });
}

/// Overload on the default instance of y's execution space.
template <class X, class W, class Bias, class M, class Y>
void conv1d_forward(X const& x, W const& w, Bias const& bias, M const& maybe_mask, Y const& y) {
  conv1d_forward(typename Y::execution_space{}, x, w, bias, maybe_mask, y);
}

/// Causal depthwise conv1d backward: dx written (zero at pad positions), dw and dbias
/// accumulated (+=, one atomic per tap, channel and chunk of 128 positions: unspecified float
/// sum order).
/// \param dy, x [in] (B, L, C). \param w [in] (C, K). \param bias [in] (C), only for its shape.
/// \param maybe_mask [in] (B, L) or empty, as in the forward.
/// \param dx [out] (B, L, C), must not alias dy or x. \param dw [in,out] (C, K).
/// \param dbias [in,out] (C).
template <execution_space Space, class DY, class X, class W, class Bias, class M, class DX,
          class DW, class DB>
  requires(view_accessible_from<DY, Space> && view_accessible_from<X, Space> &&
           view_accessible_from<W, Space> && view_accessible_from<Bias, Space> &&
           view_accessible_from<M, Space> && view_accessible_from<DX, Space> &&
           view_accessible_from<DW, Space> && view_accessible_from<DB, Space>)
void conv1d_backward(Space const& space, DY const& dy, X const& x, W const& w, Bias const& bias,
                     M const& maybe_mask, DX const& dx, DW const& dw, DB const& dbias) {
  static_assert(DY::rank() == 3 && X::rank() == 3 && DX::rank() == 3 && W::rank() == 2 &&
                    DW::rank() == 2 && Bias::rank() == 1 && DB::rank() == 1 && M::rank() == 2,
                "hax::nn::conv1d_backward: dy, x, dx (B, L, C), w, dw (C, K), bias, dbias (C), "
                "maybe_mask (B, L)");
  constexpr char const* op = "hax::nn::conv1d_backward";
  impl::conv1d_check(op, x, w, bias, maybe_mask, "dy", dy);
  impl::require_same_shape(op, "x", x, "dx", dx);
  impl::require_same_shape(op, "w", w, "dw", dw);
  impl::require_same_shape(op, "bias", bias, "dbias", dbias);
  core::dispatch_bool(maybe_mask.is_allocated(), [&]<bool kMask>() {
    impl::conv1d_backward_kernel<false, kMask>(space, dy, x, w, bias, maybe_mask, dx, dw, dbias);
  });
}

/// Overload on the default instance of dx's execution space.
template <class DY, class X, class W, class Bias, class M, class DX, class DW, class DB>
void conv1d_backward(DY const& dy, X const& x, W const& w, Bias const& bias, M const& maybe_mask,
                     DX const& dx, DW const& dw, DB const& dbias) {
  conv1d_backward(typename DX::execution_space{}, dy, x, w, bias, maybe_mask, dx, dw, dbias);
}

/// Fused causal depthwise conv1d + SiLU forward: y = silu(conv1d(x)). Same arguments as
/// conv1d_forward. Saved for backward: x only; the pre-activation is recomputed there (K
/// multiply-adds per element, cheaper than writing and re-reading a (B, L, C) tensor).
template <execution_space Space, class X, class W, class Bias, class M, class Y>
  requires(view_accessible_from<X, Space> && view_accessible_from<W, Space> &&
           view_accessible_from<Bias, Space> && view_accessible_from<M, Space> &&
           view_accessible_from<Y, Space>)
void conv1d_silu_forward(Space const& space, X const& x, W const& w, Bias const& bias,
                         M const& maybe_mask, Y const& y) {
  static_assert(X::rank() == 3 && Y::rank() == 3 && W::rank() == 2 && Bias::rank() == 1 &&
                    M::rank() == 2,
                "hax::nn::conv1d_silu_forward: x, y (B, L, C), w (C, K), bias (C), "
                "maybe_mask (B, L)");
  impl::conv1d_check("hax::nn::conv1d_silu_forward", x, w, bias, maybe_mask, "y", y);
  core::dispatch_bool(maybe_mask.is_allocated(), [&]<bool kMask>() {
    impl::conv1d_forward_kernel<true, kMask>(space, x, w, bias, maybe_mask, y);
  });
}

/// Overload on the default instance of y's execution space.
template <class X, class W, class Bias, class M, class Y>
void conv1d_silu_forward(X const& x, W const& w, Bias const& bias, M const& maybe_mask,
                         Y const& y) {
  conv1d_silu_forward(typename Y::execution_space{}, x, w, bias, maybe_mask, y);
}

/// Backward of the fused conv1d + SiLU: dx written (zero at pad positions), dw and dbias
/// accumulated (+=). Needs bias (unlike conv1d_backward) to recompute the pre-activation.
/// Arguments as conv1d_backward.
template <execution_space Space, class DY, class X, class W, class Bias, class M, class DX,
          class DW, class DB>
  requires(view_accessible_from<DY, Space> && view_accessible_from<X, Space> &&
           view_accessible_from<W, Space> && view_accessible_from<Bias, Space> &&
           view_accessible_from<M, Space> && view_accessible_from<DX, Space> &&
           view_accessible_from<DW, Space> && view_accessible_from<DB, Space>)
void conv1d_silu_backward(Space const& space, DY const& dy, X const& x, W const& w,
                          Bias const& bias, M const& maybe_mask, DX const& dx, DW const& dw,
                          DB const& dbias) {
  static_assert(DY::rank() == 3 && X::rank() == 3 && DX::rank() == 3 && W::rank() == 2 &&
                    DW::rank() == 2 && Bias::rank() == 1 && DB::rank() == 1 && M::rank() == 2,
                "hax::nn::conv1d_silu_backward: dy, x, dx (B, L, C), w, dw (C, K), bias, dbias "
                "(C), maybe_mask (B, L)");
  constexpr char const* op = "hax::nn::conv1d_silu_backward";
  impl::conv1d_check(op, x, w, bias, maybe_mask, "dy", dy);
  impl::require_same_shape(op, "x", x, "dx", dx);
  impl::require_same_shape(op, "w", w, "dw", dw);
  impl::require_same_shape(op, "bias", bias, "dbias", dbias);
  core::dispatch_bool(maybe_mask.is_allocated(), [&]<bool kMask>() {
    impl::conv1d_backward_kernel<true, kMask>(space, dy, x, w, bias, maybe_mask, dx, dw, dbias);
  });
}

/// Overload on the default instance of dx's execution space.
template <class DY, class X, class W, class Bias, class M, class DX, class DW, class DB>
void conv1d_silu_backward(DY const& dy, X const& x, W const& w, Bias const& bias,
                          M const& maybe_mask, DX const& dx, DW const& dw, DB const& dbias) {
  conv1d_silu_backward(typename DX::execution_space{}, dy, x, w, bias, maybe_mask, dx, dw, dbias);
}

/// Fused conv1d + SiLU whose output goes straight into three column blocks, masked:
/// [y0 | y1 | y2] = silu(conv1d(x ⊙ m)) ⊙ m (Mamba2's x, B and C after its conv). The same as
/// conv1d_silu_forward into a (B, L, C) tensor, multiplying its rows by the mask and copying
/// its columns out, in one pass. Without a mask (empty maybe_mask) nothing is masked.
/// \param y0, y1, y2 [out] (B, L, C0), (B, L, C1), (B, L, C2) with C0 + C1 + C2 = C, written.
/// Other arguments as conv1d_silu_forward.
template <execution_space Space, class X, class W, class Bias, class M, class Y0, class Y1,
          class Y2>
  requires(view_accessible_from<X, Space> && view_accessible_from<W, Space> &&
           view_accessible_from<Bias, Space> && view_accessible_from<M, Space> &&
           view_accessible_from<Y0, Space> && view_accessible_from<Y1, Space> &&
           view_accessible_from<Y2, Space>)
void conv1d_silu_forward_columns(Space const& space, X const& x, W const& w, Bias const& bias,
                                 M const& maybe_mask, Y0 const& y0, Y1 const& y1, Y2 const& y2) {
  static_assert(X::rank() == 3 && Y0::rank() == 3 && Y1::rank() == 3 && Y2::rank() == 3 &&
                    W::rank() == 2 && Bias::rank() == 1 && M::rank() == 2,
                "hax::nn::conv1d_silu_forward_columns: x, y0, y1, y2 (B, L, ·), w (C, K), "
                "bias (C), maybe_mask (B, L)");
  constexpr char const* op = "hax::nn::conv1d_silu_forward_columns";
  impl::conv1d_check(op, x, w, bias, maybe_mask, "x", x);
  impl::check_column_blocks(op, x, {"y0", "y1", "y2"}, y0, y1, y2);
  auto const y = impl::column_blocks(y0, y1, y2);
  core::dispatch_bool(maybe_mask.is_allocated(), [&]<bool kMask>() {
    impl::conv1d_forward_kernel<true, kMask, kMask>(space, x, w, bias, maybe_mask, y);
  });
}

/// Backward of conv1d_silu_forward_columns: the output gradient is read from the three blocks
/// dy0, dy1, dy2 and masked, dy = [dy0 | dy1 | dy2] ⊙ m; dx written (zero at pad positions), dw
/// and dbias accumulated (+=). Other arguments as conv1d_silu_backward.
template <execution_space Space, class DY0, class DY1, class DY2, class X, class W, class Bias,
          class M, class DX, class DW, class DB>
  requires(view_accessible_from<DY0, Space> && view_accessible_from<DY1, Space> &&
           view_accessible_from<DY2, Space> && view_accessible_from<X, Space> &&
           view_accessible_from<W, Space> && view_accessible_from<Bias, Space> &&
           view_accessible_from<M, Space> && view_accessible_from<DX, Space> &&
           view_accessible_from<DW, Space> && view_accessible_from<DB, Space>)
void conv1d_silu_backward_columns(Space const& space, DY0 const& dy0, DY1 const& dy1,
                                  DY2 const& dy2, X const& x, W const& w, Bias const& bias,
                                  M const& maybe_mask, DX const& dx, DW const& dw,
                                  DB const& dbias) {
  static_assert(DY0::rank() == 3 && DY1::rank() == 3 && DY2::rank() == 3 && X::rank() == 3 &&
                    DX::rank() == 3 && W::rank() == 2 && DW::rank() == 2 && Bias::rank() == 1 &&
                    DB::rank() == 1 && M::rank() == 2,
                "hax::nn::conv1d_silu_backward_columns: dy0, dy1, dy2, x, dx (B, L, ·), w, dw "
                "(C, K), bias, dbias (C), maybe_mask (B, L)");
  constexpr char const* op = "hax::nn::conv1d_silu_backward_columns";
  impl::conv1d_check(op, x, w, bias, maybe_mask, "dx", dx);
  impl::check_column_blocks(op, x, {"dy0", "dy1", "dy2"}, dy0, dy1, dy2);
  impl::require_same_shape(op, "w", w, "dw", dw);
  impl::require_same_shape(op, "bias", bias, "dbias", dbias);
  auto const dy = impl::column_blocks(dy0, dy1, dy2);
  core::dispatch_bool(maybe_mask.is_allocated(), [&]<bool kMask>() {
    impl::conv1d_backward_kernel<true, kMask, kMask>(space, dy, x, w, bias, maybe_mask, dx, dw,
                                                     dbias);
  });
}

/// Overloads on the default instance of the outputs' execution space.
template <class X, class W, class Bias, class M, class Y0, class Y1, class Y2>
void conv1d_silu_forward_columns(X const& x, W const& w, Bias const& bias, M const& maybe_mask,
                                 Y0 const& y0, Y1 const& y1, Y2 const& y2) {
  conv1d_silu_forward_columns(typename Y0::execution_space{}, x, w, bias, maybe_mask, y0, y1, y2);
}
template <class DY0, class DY1, class DY2, class X, class W, class Bias, class M, class DX,
          class DW, class DB>
void conv1d_silu_backward_columns(DY0 const& dy0, DY1 const& dy1, DY2 const& dy2, X const& x,
                                  W const& w, Bias const& bias, M const& maybe_mask, DX const& dx,
                                  DW const& dw, DB const& dbias) {
  conv1d_silu_backward_columns(typename DX::execution_space{}, dy0, dy1, dy2, x, w, bias,
                               maybe_mask, dx, dw, dbias);
}

}  // namespace hax::nn
