// SPDX-License-Identifier: MIT
/// \file
/// Token embedding y(b, t, :) = E(token(b, t), :) and its backward (scatter-add into dE), the
/// tied output projection logits = h·Eᵀ that reuses the input embedding as the output layer (no
/// bias, as the reference does), and a token-range validation for debugging. The derivations are
/// in docs/math/embedding.md.
///
/// Token contract: every token is in [0, vocab). Tokens are device data, so the hot path does not
/// check them (a check would need a host synchronisation to report); an out-of-range token reads
/// (forward) or writes (backward) outside E. Call count_invalid_tokens / validate_tokens where a
/// check is wanted (data loaders in debug builds, tests).
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/nn/impl/shape.hpp>
#include <hax/nn/linear.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace hax::nn {

namespace impl {

/// Positions (rows of B·L) per team of the gather.
inline constexpr int kEmbeddingRowsPerTeam = 16;

/// y(b, t, :) = E(token(b, t), :): teams take kEmbeddingRowsPerTeam positions, threads one
/// position each, vector lanes the D columns (contiguous: coalesced on GPUs, a simple inner loop
/// on host backends).
template <class Space, class Tok, class E, class Y>
void embedding_gather(Space const& space, Tok tokens, E table, Y y) {
  using policy_type = Kokkos::TeamPolicy<Space>;
  using member_type = typename policy_type::member_type;
  int const L = y.extent_int(1);
  int const D = y.extent_int(2);
  int const rows = y.extent_int(0) * L;
  int const teams = (rows + kEmbeddingRowsPerTeam - 1) / kEmbeddingRowsPerTeam;
  int const lanes = Kokkos::min(32, policy_type::vector_length_max());
  Kokkos::parallel_for(
      "hax::nn::embedding_forward", policy_type(space, teams, Kokkos::AUTO, lanes),
      KOKKOS_LAMBDA(member_type const& team) {
        int const row0 = team.league_rank() * kEmbeddingRowsPerTeam;
        int const row_end = row0 + kEmbeddingRowsPerTeam < rows ? row0 + kEmbeddingRowsPerTeam : rows;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, row0, row_end), [&](int r) {
          int const b = r / L;
          int const t = r - b * L;
          auto const v = static_cast<std::int64_t>(tokens(b, t));
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D),
                               [&](int d) { y(b, t, d) = table(v, d); });
        });
      });
}

/// Columns of dE one team accumulates privately, and the fewest positions (rows of B·L) per team:
/// a team takes max(kEmbeddingGradMinRows, rows / concurrency) positions, so host backends run
/// about one block per thread and flush their private blocks rarely, while GPUs get many teams.
inline constexpr int kEmbeddingGradColumns = 32;
inline constexpr int kEmbeddingGradMinRows = 1024;
/// Largest private block (V × kEmbeddingGradColumns scalars) kept in team scratch; larger
/// vocabularies scatter straight into dE with one atomic per element.
inline constexpr std::size_t kEmbeddingGradScratchBytes = 32 * 1024;

/// dE += scatter(dy), privatised: each team takes a block of positions and
/// kEmbeddingGradColumns columns, sums its positions into a private (V, columns) block in team
/// scratch, then adds the block to dE with one atomic per nonzero entry. With a small vocabulary
/// (joint recall: V = 100) this replaces one contended atomic per element of dy by one per
/// element of the block, ~(positions per team) times fewer.
template <class Space, class Tok, class DY, class DE>
void embedding_backward_privatised(Space const& space, Tok tokens, DY dy, DE dtable) {
  using T = typename DE::non_const_value_type;
  using policy_type = Kokkos::TeamPolicy<Space>;
  using member_type = typename policy_type::member_type;
  using block_view = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::scratch_memory_space,
                                  Kokkos::MemoryTraits<Kokkos::Unmanaged>>;  // (V, columns)
  int const L = dy.extent_int(1);
  int const D = dy.extent_int(2);
  int const V = dtable.extent_int(0);
  int const rows = dy.extent_int(0) * L;
  int const concurrency = space.concurrency() > 0 ? space.concurrency() : 1;
  int const per_team = Kokkos::max(kEmbeddingGradMinRows, (rows + concurrency - 1) / concurrency);
  int const row_blocks = (rows + per_team - 1) / per_team;
  int const col_blocks = (D + kEmbeddingGradColumns - 1) / kEmbeddingGradColumns;
  std::size_t const scratch = block_view::shmem_size(V, kEmbeddingGradColumns);
  // Host backends: one lane, and a team of one thread owns its block (no atomics, see below).
  constexpr bool kHost =
      Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename Space::memory_space>::accessible;
  int const lanes = kHost ? 1 : Kokkos::min(kEmbeddingGradColumns, policy_type::vector_length_max());
  policy_type policy(space, row_blocks * col_blocks, Kokkos::AUTO, lanes);
  Kokkos::parallel_for(
      "hax::nn::embedding_backward", policy.set_scratch_size(0, Kokkos::PerTeam(scratch)),
      KOKKOS_LAMBDA(member_type const& team) {
        int const row0 = (team.league_rank() / col_blocks) * per_team;
        int const col0 = (team.league_rank() % col_blocks) * kEmbeddingGradColumns;
        int const row_end = row0 + per_team < rows ? row0 + per_team : rows;
        int const cols = col0 + kEmbeddingGradColumns < D ? kEmbeddingGradColumns : D - col0;
        block_view block(team.team_scratch(0), V, kEmbeddingGradColumns);
        Kokkos::parallel_for(Kokkos::TeamVectorRange(team, V * kEmbeddingGradColumns),
                             [&](int i) { block.data()[i] = T(0); });
        team.team_barrier();
        // A team of one thread (host backends) owns its block: plain adds, no atomics.
        if (kHost && team.team_size() == 1) {  // one thread, one lane: it owns its block
          for (int r = row0; r < row_end; ++r) {
            int const b = r / L;
            int const t = r - b * L;
            auto const v = static_cast<std::int64_t>(tokens(b, t));
            for (int c = 0; c < cols; ++c) {
              block(v, c) += dy(b, t, col0 + c);
            }
          }
        } else {
          // Threads take positions, vector lanes the columns: a row's columns are read together
          // (coalesced) and land on distinct entries of the block.
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, row0, row_end), [&](int r) {
            int const b = r / L;
            int const t = r - b * L;
            auto const v = static_cast<std::int64_t>(tokens(b, t));
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, cols), [&](int c) {
              Kokkos::atomic_add(&block(v, c), static_cast<T>(dy(b, t, col0 + c)));
            });
          });
        }
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamVectorRange(team, V * cols), [&](int i) {
          int const v = i / cols;
          int const c = i - v * cols;
          T const sum = block(v, c);
          if (sum != T(0)) {  // tokens absent from this block of positions add nothing
            Kokkos::atomic_add(&dtable(v, col0 + c), sum);
          }
        });
      });
}

/// dE += scatter(dy) with one atomic per element of dy: for vocabularies too large to privatise.
template <class Space, class Tok, class DY, class DE>
void embedding_backward_atomic(Space const& space, Tok tokens, DY dy, DE dtable) {
  int const B = dy.extent_int(0);
  int const L = dy.extent_int(1);
  int const D = dy.extent_int(2);
  Kokkos::parallel_for(
      "hax::nn::embedding_backward",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<3, Kokkos::Iterate::Right, Kokkos::Iterate::Right>>(space, {0, 0, 0}, {B, L, D}),
      KOKKOS_LAMBDA(int b, int t, int d) {
        auto const v = static_cast<std::int64_t>(tokens(b, t));
        Kokkos::atomic_add(&dtable(v, d), dy(b, t, d));
      });
}

}  // namespace impl

/// Forward of the embedding lookup: y(b, t, d) = E(token(b, t), d).
///
/// \param space [in] execution-space instance; asynchronous on it.
/// \param tokens [in] (B, L) token ids of any integral type (uint8, int32, ...), each in [0, V).
/// \param table [in] (V, D) embedding matrix E.
/// \param y [out] (B, L, D) overwritten.
/// Saved for backward: tokens. Throws hax::invalid_argument on mismatched shapes.
template <execution_space Space, class Tok, class E, class Y>
  requires(view_accessible_from<Tok, Space> && view_accessible_from<E, Space> &&
           view_accessible_from<Y, Space>)
void embedding_forward(Space const& space, Tok const& tokens, E const& table, Y const& y) {
  static_assert(std::is_integral_v<typename Tok::value_type>,
                "hax::nn::embedding_forward: tokens must hold an integral type");
  static_assert(Tok::rank() == 2 && E::rank() == 2 && Y::rank() == 3,
                "hax::nn::embedding_forward: tokens (B, L), table (V, D), y (B, L, D)");
  core::require(y.extent(0) == tokens.extent(0) && y.extent(1) == tokens.extent(1) &&
                    y.extent(2) == table.extent(1),
                "hax::nn::embedding_forward", "y ", impl::shape_of(y),
                " must be (B, L, D) for tokens ", impl::shape_of(tokens), " and table ",
                impl::shape_of(table));
  if (y.size() == 0) {
    return;
  }
  impl::embedding_gather(space, tokens, table, y);
}

/// Overload on the default instance of y's execution space.
template <class Tok, class E, class Y>
void embedding_forward(Tok const& tokens, E const& table, Y const& y) {
  embedding_forward(typename Y::execution_space{}, tokens, table, y);
}

/// Backward of the embedding lookup: dE(token(b, t), d) += dy(b, t, d) for every (b, t).
///
/// Several positions can carry the same token, so partial sums meet in atomics. Their order is
/// unspecified: in float, dE can differ in the last bits between runs on GPUs (and across thread
/// counts on OpenMP). A deterministic variant (sort positions by token, then segment-sum) is a
/// later optimisation. For small vocabularies (V · 32 scalars within 32 KiB of team scratch) the
/// sums are privatised per block of positions first; see impl::embedding_backward_privatised.
///
/// \param tokens [in] (B, L) the forward's tokens, each in [0, V).
/// \param dy [in] (B, L, D) gradient of the loss with respect to y.
/// \param dtable [in,out] (V, D) accumulated (+=).
template <execution_space Space, class Tok, class DY, class DE>
  requires(view_accessible_from<Tok, Space> && view_accessible_from<DY, Space> &&
           view_accessible_from<DE, Space>)
void embedding_backward(Space const& space, Tok const& tokens, DY const& dy, DE const& dtable) {
  static_assert(std::is_integral_v<typename Tok::value_type>,
                "hax::nn::embedding_backward: tokens must hold an integral type");
  static_assert(Tok::rank() == 2 && DY::rank() == 3 && DE::rank() == 2,
                "hax::nn::embedding_backward: tokens (B, L), dy (B, L, D), dtable (V, D)");
  core::require(dy.extent(0) == tokens.extent(0) && dy.extent(1) == tokens.extent(1) &&
                    dy.extent(2) == dtable.extent(1),
                "hax::nn::embedding_backward", "dy ", impl::shape_of(dy),
                " must be (B, L, D) for tokens ", impl::shape_of(tokens), " and dtable ",
                impl::shape_of(dtable));
  if (dy.size() == 0) {
    return;
  }
  using T = typename DE::non_const_value_type;
  std::size_t const block_bytes = dtable.extent(0) * impl::kEmbeddingGradColumns * sizeof(T);
  if (block_bytes <= impl::kEmbeddingGradScratchBytes) {
    impl::embedding_backward_privatised(space, tokens, dy, dtable);
  } else {
    impl::embedding_backward_atomic(space, tokens, dy, dtable);
  }
}

/// Overload on the default instance of dtable's execution space.
template <class Tok, class DY, class DE>
void embedding_backward(Tok const& tokens, DY const& dy, DE const& dtable) {
  embedding_backward(typename DE::execution_space{}, tokens, dy, dtable);
}

/// Counts the tokens outside [0, vocab) into `count` (a rank-0 device View, overwritten), as one
/// device reduction; asynchronous on `space` (no host synchronisation).
template <execution_space Space, class Tok, class Count>
  requires(view_accessible_from<Tok, Space> && view_accessible_from<Count, Space>)
void count_invalid_tokens(Space const& space, Tok const& tokens, std::int64_t vocab,
                          Count const& count) {
  static_assert(std::is_integral_v<typename Tok::value_type>,
                "hax::nn::count_invalid_tokens: tokens must hold an integral type");
  static_assert(Tok::rank() == 2 && Count::rank() == 0,
                "hax::nn::count_invalid_tokens: tokens (B, L), count rank 0");
  int const B = tokens.extent_int(0);
  int const L = tokens.extent_int(1);
  Kokkos::parallel_reduce(
      "hax::nn::count_invalid_tokens",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<2, Kokkos::Iterate::Right, Kokkos::Iterate::Right>>(space, {0, 0}, {B, L}),
      KOKKOS_LAMBDA(int b, int t, typename Count::non_const_value_type& bad) {
        auto const v = static_cast<std::int64_t>(tokens(b, t));
        bad += (v < 0 || v >= vocab) ? 1 : 0;
      },
      count);
}

/// Throws hax::invalid_argument naming `op` if any token is outside [0, vocab).
/// Synchronises: it fences `space` to read the count on the host. For debugging and tests, not for
/// the training step.
template <execution_space Space, class Tok>
  requires view_accessible_from<Tok, Space>
void validate_tokens(Space const& space, Tok const& tokens, std::int64_t vocab,
                     char const* op = "hax::nn::validate_tokens") {
  Kokkos::View<std::int64_t, typename Space::memory_space> count(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hax::nn::invalid_token_count"));
  count_invalid_tokens(space, tokens, vocab, count);
  std::int64_t bad = 0;
  Kokkos::deep_copy(space, bad, count);
  space.fence();
  core::require(bad == 0, op, bad, " of the tokens ", impl::shape_of(tokens),
                " are outside [0, ", vocab, ")");
}

/// Tied output projection: logits = h·Eᵀ, logits(m, v) = Σ_d h(m, d) E(v, d), no bias: the
/// reference uses the input embedding matrix as the output layer. A linear layer with W = E.
///
/// \param h [in] (M, D) final hidden rows (as_rows of (B, L, D)).
/// \param table [in] (V, D) the embedding matrix.
/// \param logits [out] (M, V) overwritten.
template <execution_space Space, class H, class E, class Logits>
  requires(view_accessible_from<H, Space> && view_accessible_from<E, Space> &&
           view_accessible_from<Logits, Space>)
void tied_output_forward(Space const& space, H const& h, E const& table, Logits const& logits) {
  core::require(h.extent(1) == table.extent(1) && logits.extent(0) == h.extent(0) &&
                    logits.extent(1) == table.extent(0),
                "hax::nn::tied_output_forward", "h ", impl::shape_of(h), " vs table ",
                impl::shape_of(table), " and logits ", impl::shape_of(logits),
                ": expected h (M, D), table (V, D), logits (M, V)");
  using no_bias = Kokkos::View<typename Logits::non_const_value_type*,
                               typename Logits::device_type>;
  linear_forward(space, h, table, no_bias(), logits);
}

/// Overload on the default instance of logits' execution space.
template <class H, class E, class Logits>
void tied_output_forward(H const& h, E const& table, Logits const& logits) {
  tied_output_forward(typename Logits::execution_space{}, h, table, logits);
}

/// Backward of the tied output projection: dh = dlogits·E (written), dE += dlogitsᵀ·h
/// (accumulated, on top of the embedding lookup's scatter into the same dE).
///
/// \param dlogits [in] (M, V); \param h [in] (M, D) saved; \param table [in] (V, D);
/// \param dh [out] (M, D); \param dtable [in,out] (V, D).
template <execution_space Space, class DL, class H, class E, class DH, class DE>
  requires(view_accessible_from<DL, Space> && view_accessible_from<H, Space> &&
           view_accessible_from<E, Space> && view_accessible_from<DH, Space> &&
           view_accessible_from<DE, Space>)
void tied_output_backward(Space const& space, DL const& dlogits, H const& h, E const& table,
                          DH const& dh, DE const& dtable) {
  core::require(h.extent(1) == table.extent(1) && dlogits.extent(0) == h.extent(0) &&
                    dlogits.extent(1) == table.extent(0) && dtable.extent(0) == table.extent(0) &&
                    dtable.extent(1) == table.extent(1),
                "hax::nn::tied_output_backward", "dlogits ", impl::shape_of(dlogits), ", h ",
                impl::shape_of(h), ", table ", impl::shape_of(table), ", dtable ",
                impl::shape_of(dtable), ": expected (M, V), (M, D), (V, D), (V, D)");
  using no_bias = Kokkos::View<typename DE::non_const_value_type*, typename DE::device_type>;
  linear_backward(space, dlogits, h, table, dh, dtable, no_bias());
}

/// Overload on the default instance of dtable's execution space.
template <class DL, class H, class E, class DH, class DE>
void tied_output_backward(DL const& dlogits, H const& h, E const& table, DH const& dh,
                          DE const& dtable) {
  tied_output_backward(typename DE::execution_space{}, dlogits, h, table, dh, dtable);
}

}  // namespace hax::nn
