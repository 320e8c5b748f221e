// SPDX-License-Identifier: MIT
/// \file
/// Internals shared by the Mamba and Mamba2 mixers: column split/place kernels between a packed
/// projection output (M, C_total) and its (M, C) parts, pad masking, A = −exp(A_log) and its
/// chain rule, the prefix convention, the one-token conv step, and (through
/// hax/attention/sparse_branch.hpp) the sparse-branch types the mixer configs and calls name.
#pragma once

#include <Kokkos_Core.hpp>
#include <hax/attention/sparse_branch.hpp>  // StepContext, SparseBranchConfig (mixer API)
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/masks.hpp>  // real_extent (the mixers' skip_padding)
#include <hax/core/policies.hpp>
#include <hax/nn/activation.hpp>
#include <hax/ssm/impl/common.hpp>  // shape_of, const_view

#include <cstddef>
#include <cstdint>
#include <string>

namespace hax::ssm::impl {

/// "layers.0.mixer" and "layers.0.mixer." both name the prefix "layers.0.mixer.".
inline std::string mixer_prefix(std::string const& prefix) {
  if (prefix.empty() || prefix.back() == '.') {
    return prefix;
  }
  return prefix + ".";
}

/// dst(m, c) = src(m, offset + c) for the C = dst.extent(1) columns of one part.
template <class Space, class Src, class Dst>
void split_columns(Space const& space, Src const& src, int offset, Dst const& dst) {
  int const M = dst.extent_int(0), C = dst.extent_int(1);
  core::for_each_row_major(
      "hax::ssm::mixer_split", space, M, C,
      KOKKOS_LAMBDA(int m, int c) { dst(m, c) = src(m, offset + c); });
}

/// dst(m, offset + c) = src(m, c) (· mask(m) when the mask is allocated): the inverse of
/// split_columns, used to assemble the gradient of a packed projection output.
template <class Space, class Src, class Dst, class M>
void place_columns(Space const& space, Src const& src, int offset, Dst const& dst,
                   M const& maybe_mask) {
  int const Mr = src.extent_int(0), C = src.extent_int(1);
  bool const masked = maybe_mask.is_allocated();
  core::for_each_row_major(
      "hax::ssm::mixer_place", space, Mr, C,
      KOKKOS_LAMBDA(int m, int c) {
        typename Dst::non_const_value_type v = src(m, c);
        if (masked && maybe_mask(m) == 0) {
          v = 0;
        }
        dst(m, offset + c) = v;
      });
}

/// x(m, c) ·= mask(m) in place, rows m = b·L + t of a (B·L, C) view; mask is (B·L) flattened.
template <class Space, class X, class M>
void mask_rows(Space const& space, X const& x, M const& mask) {
  int const Mr = x.extent_int(0), C = x.extent_int(1);
  core::for_each_row_major(
      "hax::ssm::mixer_mask", space, Mr, C,
      KOKKOS_LAMBDA(int m, int c) {
        if (mask(m) == 0) {
          x(m, c) = 0;
        }
      });
}

/// y(m, c) = x(m, c) · mask(m) (a masked copy).
template <class Space, class X, class M, class Y>
void masked_copy(Space const& space, X const& x, M const& mask, Y const& y) {
  int const Mr = x.extent_int(0), C = x.extent_int(1);
  core::for_each_row_major(
      "hax::ssm::mixer_masked_copy", space, Mr, C,
      KOKKOS_LAMBDA(int m, int c) {
        using V = typename Y::non_const_value_type;
        y(m, c) = mask(m) == 0 ? V(0) : V(x(m, c));
      });
}

/// A = −exp(A_log), elementwise over a flat (contiguous) view.
template <class Space, class ALog, class A>
void negative_exp(Space const& space, ALog const& a_log, A const& a) {
  Kokkos::parallel_for(
      "hax::ssm::mixer_A", Kokkos::RangePolicy<Space>(space, 0, a.span()),
      KOKKOS_LAMBDA(std::size_t i) { a.data()[i] = -Kokkos::exp(a_log.data()[i]); });
}

/// dA_log += dA ⊙ A, since dA/dA_log = −exp(A_log) = A.
template <class Space, class DA, class A, class DALog>
void negative_exp_backward(Space const& space, DA const& dA, A const& a, DALog const& da_log) {
  Kokkos::parallel_for(
      "hax::ssm::mixer_dA_log", Kokkos::RangePolicy<Space>(space, 0, a.span()),
      KOKKOS_LAMBDA(std::size_t i) { da_log.data()[i] += dA.data()[i] * a.data()[i]; });
}

/// mask_copy(b, t) = (maybe_mask(b, t) != 0), or 1 everywhere when maybe_mask is empty: the
/// mixers keep their own int8 copy so that Saved has one type whatever mask type came in.
template <class Space, class M, class Out>
void copy_mask(Space const& space, M const& maybe_mask, Out const& out) {
  int const B = out.extent_int(0), L = out.extent_int(1);
  bool const has = maybe_mask.is_allocated();
  core::for_each_row_major(
      "hax::ssm::mixer_copy_mask", space, B, L,
      KOKKOS_LAMBDA(int b, int t) { out(b, t) = (!has || maybe_mask(b, t) != 0) ? 1 : 0; });
}

/// One token of the causal depthwise conv + SiLU (inference): window (B, K−1, C) holds the
/// previous K−1 inputs, oldest first; y(b, c) = silu(bias(c) + Σ_k w(c, k) [window; x](k)),
/// then the window shifts by one and takes x. w is (C, K).
template <class Space, class X, class W, class Bias, class Win, class Y>
void conv_silu_step(Space const& space, X const& x, W const& w, Bias const& bias, Win const& window,
                    Y const& y) {
  int const B = x.extent_int(0), C = x.extent_int(1), K = w.extent_int(1);
  core::for_each_row_major(
      "hax::ssm::mixer_conv_step", space, B, C,
      KOKKOS_LAMBDA(int b, int c) {
        using V = typename Y::non_const_value_type;
        V pre = bias(c) + w(c, K - 1) * x(b, c);
        for (int k = 0; k + 1 < K; ++k) {
          pre += w(c, k) * window(b, k, c);
        }
        for (int k = 0; k + 2 < K; ++k) {
          window(b, k, c) = window(b, k + 1, c);
        }
        if (K > 1) {
          window(b, K - 2, c) = x(b, c);
        }
        y(b, c) = nn::silu(pre);
      });
}

/// Flattens a (B, L) pad mask to (B·L) without a copy (LayoutRight, contiguous).
template <class Mask>
auto flat_mask(Mask const& mask) {
  using V = Kokkos::View<typename Mask::value_type*, typename Mask::memory_space,
                         Kokkos::MemoryUnmanaged>;
  if (!mask.is_allocated()) {
    return V();
  }
  return V(mask.data(), mask.extent(0) * mask.extent(1));
}

/// The (C, 1, K) conv1d weight as the (C, K) View the conv ops take (same data).
template <class W3>
auto as_conv_2d(W3 const& w) {
  return Kokkos::View<typename W3::value_type**, Kokkos::LayoutRight, typename W3::memory_space,
                      Kokkos::MemoryUnmanaged>(w.data(), w.extent(0), w.extent(2));
}

/// The shape checks of a mixer's forward/backward: x (B, L, d_model), y (or dy, dx) of x's shape,
/// the pad mask empty or (B, L).
template <class X, class Mask, class Y>
void check_mixer_io(char const* op, int d_model, X const& x, Mask const& mask, Y const& y,
                    char const* y_name) {
  core::require(x.extent_int(2) == d_model, op, "x ", shape_of(x), " must be (B, L, d_model = ",
                d_model, ")");
  core::require(y.extent(0) == x.extent(0) && y.extent(1) == x.extent(1) &&
                    y.extent_int(2) == d_model,
                op, y_name, " ", shape_of(y), " must match x ", shape_of(x));
  core::require(!mask.is_allocated() ||
                    (mask.extent(0) == x.extent(0) && mask.extent(1) == x.extent(1)),
                op, "pad_mask ", shape_of(mask), " must be empty or (B, L) of x ", shape_of(x));
}

}  // namespace hax::ssm::impl
