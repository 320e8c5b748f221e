// SPDX-License-Identifier: MIT
/// \file
/// The first layer of the constructive model of Propositions 3.2 / C.1 (semantics.md section 8,
/// docs/math/constructive.md): a generalized (selective, diagonal) state-space layer whose update
/// overwrites the state slots that the current token's embedding fills,
///   h_t = (1 - m(x_t)) ⊙ h_{t-1} + m(x_t) ⊙ e(x_t),   h_{-1} = h0,   y_t = h_t,
/// with a per-token write mask m (V, D) and write value e (V, D). This is a linear recurrence
/// h_t = a_t ⊙ h_{t-1} + u_t, so it runs as a chunked parallel scan over the sequence axis:
/// each chunk composes its own (a, u), a short carry pass links the chunks, and each chunk is
/// replayed from its carry. O(B·L·D) work, O(L/C + C) depth for chunk length C, and
/// O(B·(L/C)·D) extra memory.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/views.hpp>

#include <type_traits>

namespace hax::constructive {

/// Tokens per chunk of the scan: long enough that the carry pass is short, short enough that a
/// sequence of a few thousand tokens still gives many parallel work items.
inline constexpr int kScanChunk = 64;

namespace impl {

/// The (a, u) of token `tok`: a = 1 - m, u = m ⊙ e, slot d. A token id outside [0, V) writes
/// nothing (a = 1, u = 0), so such a token leaves the state unchanged.
template <class WV, class WM, class T>
KOKKOS_INLINE_FUNCTION void token_update(WV const& write_value, WM const& write_mask, int tok,
                                         int d, T& a, T& u) {
  if (tok < 0 || tok >= static_cast<int>(write_mask.extent(0))) {
    a = T(1);
    u = T(0);
    return;
  }
  T const m = write_mask(tok, d);
  a = T(1) - m;
  u = m * write_value(tok, d);
}

}  // namespace impl

/// The overwrite SSM: state (B, L, D) = h_t for tokens (B, L) (see the file comment).
/// \param[in] tokens       (B, L) integral ids (strided Views such as the trainer's shifted
///                          inputs are fine); ids outside [0, V) leave the state unchanged.
/// \param[in] write_value  (V, D) e: the value each token writes into the slots it fills.
/// \param[in] write_mask   (V, D) m: 1 where the token overwrites the slot, 0 where it keeps it
///                          (any value in [0, 1] gives the corresponding convex gate).
/// \param[in] initial      (D) h0, the state before the first token.
/// \param[out] state       (B, L, D) h_t, written.
/// Asynchronous on `space`; allocates one (B, ceil(L / kScanChunk), D) pair of carries on it.
/// Throws hax::invalid_argument on mismatched shapes.
template <execution_space Space, class Tokens, class WV, class WM, class H0, class State>
  requires(view_accessible_from<Tokens, Space> && view_accessible_from<WV, Space> &&
           view_accessible_from<WM, Space> && view_accessible_from<H0, Space> &&
           view_accessible_from<State, Space>)
void overwrite_scan(Space const& space, Tokens const& tokens, WV const& write_value,
                    WM const& write_mask, H0 const& initial, State const& state) {
  static_assert(Tokens::rank() == 2 && WV::rank() == 2 && WM::rank() == 2 && H0::rank() == 1 &&
                    State::rank() == 3,
                "hax::constructive::overwrite_scan: tokens (B, L), write_value and write_mask "
                "(V, D), initial (D) and state (B, L, D)");
  static_assert(std::is_integral_v<typename Tokens::non_const_value_type>,
                "hax::constructive::overwrite_scan: tokens must hold an integral type");
  constexpr char const* op = "hax::constructive::overwrite_scan";
  int const B = tokens.extent_int(0), L = tokens.extent_int(1);
  int const V = write_value.extent_int(0), D = write_value.extent_int(1);
  core::require(write_mask.extent_int(0) == V && write_mask.extent_int(1) == D, op, "write_mask (",
                write_mask.extent(0), ", ", write_mask.extent(1), ") must match write_value (", V,
                ", ", D, ")");
  core::require(initial.extent_int(0) == D, op, "initial (", initial.extent(0),
                ") must have the state width D = ", D, " of write_value (", V, ", ", D, ")");
  core::require(state.extent_int(0) == B && state.extent_int(1) == L && state.extent_int(2) == D,
                op, "state (", state.extent(0), ", ", state.extent(1), ", ", state.extent(2),
                ") must be (B, L, D) = (", B, ", ", L, ", ", D, ")");
  if (B == 0 || L == 0 || D == 0) return;
  using T = typename State::non_const_value_type;
  int const C = kScanChunk;
  int const nchunks = (L + C - 1) / C;
  // chunk_a: product of a over the chunk; chunk_u: the chunk's own final state from h = 0, then
  // (after the carry pass) the state entering the chunk.
  auto const chunk_a = uninitialized_view<T***>(space, "hax::constructive::scan_chunk_a", B, nchunks, D);  // (B, L/C, D)
  auto const chunk_u = uninitialized_view<T***>(space, "hax::constructive::scan_chunk_u", B, nchunks, D);  // (B, L/C, D)
  using policy3 = Kokkos::MDRangePolicy<Space, core::rank_right<3>>;
  Kokkos::parallel_for(
      "hax::constructive::overwrite_scan[chunks]", policy3(space, {0, 0, 0}, {B, nchunks, D}),
      KOKKOS_LAMBDA(int b, int c, int d) {
        // Composition of h -> a h + u over the chunk, started from (a, u) = (1, 0).
        T a_acc = T(1), h = T(0);
        int const end = Kokkos::min(L, (c + 1) * C);
        for (int t = c * C; t < end; ++t) {
          T a, u;
          impl::token_update(write_value, write_mask, static_cast<int>(tokens(b, t)), d, a, u);
          h = a * h + u;
          a_acc *= a;
        }
        chunk_a(b, c, d) = a_acc;
        chunk_u(b, c, d) = h;
      });
  Kokkos::parallel_for(
      "hax::constructive::overwrite_scan[carry]",
      Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {B, D}),
      KOKKOS_LAMBDA(int b, int d) {
        T h = initial(d);
        for (int c = 0; c < nchunks; ++c) {
          T const next = chunk_a(b, c, d) * h + chunk_u(b, c, d);
          chunk_u(b, c, d) = h;  // the state entering chunk c
          h = next;
        }
      });
  Kokkos::parallel_for(
      "hax::constructive::overwrite_scan[replay]", policy3(space, {0, 0, 0}, {B, nchunks, D}),
      KOKKOS_LAMBDA(int b, int c, int d) {
        T h = chunk_u(b, c, d);
        int const end = Kokkos::min(L, (c + 1) * C);
        for (int t = c * C; t < end; ++t) {
          T a, u;
          impl::token_update(write_value, write_mask, static_cast<int>(tokens(b, t)), d, a, u);
          h = a * h + u;
          state(b, t, d) = h;
        }
      });
}

/// Overload on the default instance of state's execution space.
template <class Tokens, class WV, class WM, class H0, class State>
  requires Kokkos::is_view_v<State>
void overwrite_scan(Tokens const& tokens, WV const& write_value, WM const& write_mask,
                    H0 const& initial, State const& state) {
  overwrite_scan(typename State::execution_space{}, tokens, write_value, write_mask, initial, state);
}

}  // namespace hax::constructive
