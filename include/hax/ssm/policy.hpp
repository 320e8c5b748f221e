// SPDX-License-Identifier: MIT
/// \file
/// Checkpoint policies of the state-space kernels (selective scan, SSD): how much of the state
/// the forward keeps for the backward. Memory and the chunked algorithms are in
/// docs/math/selective_scan.md and docs/math/ssd.md.
#pragma once

namespace hax::ssm {

/// Keep the state only at the start of every chunk of `chunk` time steps; the backward walks the
/// chunks in reverse and recomputes the states inside each chunk from its saved boundary state.
/// Saved memory: O(B·D·N·ceil(L / chunk)) for the scan, O(B·H·P·N·ceil(L / chunk)) for SSD.
/// For SSD the chunk is also the block size Q of the state-space-dual algorithm.
/// Any chunk >= 1 works, also one that does not divide L or exceeds it.
struct ChunkBoundaries {
  int chunk = 64;  // time steps per chunk
  static constexpr char const* name() { return "ChunkBoundaries"; }
};

/// Keep every state: ChunkBoundaries with chunk 1 (for tests: the backward then recomputes
/// nothing). Saved memory O(B·D·N·L); not for training runs.
struct All {
  static constexpr char const* name() { return "All"; }
  constexpr operator ChunkBoundaries() const { return ChunkBoundaries{1}; }  // NOLINT: implicit
};

}  // namespace hax::ssm
