// SPDX-License-Identifier: MIT
/// \file
/// hax::core::ScratchArena, ScratchScope and ScratchFrame: per-step scratch memory without per-step
/// allocation, released piece by piece within a step.
///
/// Why: on CUDA, Kokkos allocates every managed View with cudaMalloc and frees it with cudaFree,
/// and fences the device around both. The ops allocate their temporaries and saved activations
/// afresh in every forward/backward, so without an arena a training step holds about a hundred
/// hidden device synchronisations (and cannot be captured in a graph). An arena hands out Views
/// carved from one persistent buffer instead, and is reset at the start of every step.
///
/// How: a ScratchScope makes an arena the current one for its memory space; while it is active,
/// hax's allocation helpers (hax::uninitialized_view, hax::zeroed_view in core/views.hpp) take
/// their memory from that arena and return unmanaged Views of the same type as a managed
/// allocation would have. Without an active scope they allocate as before.
///
/// Lifetime rule: a View taken from an arena is valid until the arena's next reset(), that is
/// until the next ScratchScope on that arena begins (the next step or evaluation batch). Never keep
/// one across steps: anything read after the step (metrics, logits, the gate loss) must live in a
/// persistent buffer. Parameters, optimiser moments, model workspaces and trainer buffers are
/// persistent and never come from an arena (allocate them with Kokkos::view_alloc directly).
///
/// Ordering: reuse of the arena's memory by the next step is ordered after the previous step's
/// kernels only when both run on the same in-order execution-space instance (one CUDA stream),
/// which is how hax::train::Trainer runs; code that mixes instances must fence between steps.
#pragma once

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace hax::core {

/// Every View taken from an arena starts on this boundary (a GPU cache line pair; coalesced
/// and vectorised accesses need no more).
inline constexpr std::size_t kScratchAlignment = 256;
/// Smallest block an arena allocates, so that the first steps do not allocate once per View.
inline constexpr std::size_t kScratchMinBlock = std::size_t{1} << 20;

/// A bump allocator over one or more blocks of `MemorySpace` memory. Blocks are allocated only
/// while the arena is still growing (the first, warm-up steps); reset() then merges them into one
/// block of the high-water size, after which a step of the same shapes allocates nothing.
/// Not thread-safe: one host thread drives one arena (as one thread drives a Kokkos instance).
template <class MemorySpace>
class ScratchArena {
 public:
  using memory_space = MemorySpace;

  explicit ScratchArena(std::string label = "hax::core::scratch_arena")
      : label_(std::move(label)) {}
  // Copies would share blocks and hand out the same memory twice; a move keeps the blocks (and
  // the Views into them) as they are. Do not move an arena while a ScratchScope uses it.
  ScratchArena(ScratchArena const&) = delete;
  ScratchArena& operator=(ScratchArena const&) = delete;
  ScratchArena(ScratchArena&&) = default;
  ScratchArena& operator=(ScratchArena&&) = default;

  /// `bytes` of uninitialised memory aligned to kScratchAlignment, valid until the next reset().
  /// Allocates a new block (max(bytes, 2 × last block, 1 MiB)) when the current one is full.
  void* take(std::size_t bytes) {
    // Every take consumes a multiple of the alignment (at least one), so that one block of the
    // summed sizes holds the same sequence of takes (consolidation relies on it), and so that an
    // empty View still gets a distinct, non-null pointer.
    std::size_t const size = round_up(std::max<std::size_t>(bytes, 1));
    if (blocks_.empty() || blocks_.back().size - offset_ < size) {
      std::size_t const last = blocks_.empty() ? 0 : blocks_.back().size;
      add_block(std::max({size, 2 * last, kScratchMinBlock}));
    }
    std::byte* const p = blocks_.back().base + offset_;
    offset_ += size;
    used_ += size;
    taken_ += size;
    high_water_ = std::max(high_water_, used_);
    return p;
  }

  /// A point to release back to: everything taken after it is freed by release(mark).
  struct Mark {
    std::size_t blocks = 0;  // blocks held when the mark was taken
    std::size_t offset = 0;  // bytes taken from the last of them
    std::size_t used = 0;    // bytes taken since the last reset
  };
  Mark mark() const { return Mark{blocks_.size(), offset_, used_}; }

  /// Frees everything taken since `m` (marks are released last in, first out): the next takes
  /// reuse that memory. Safe for memory still read or written by queued kernels as long as the
  /// next users run on the same in-order execution-space instance (the arena's ordering rule
  /// above). While the arena is still growing (a block was added since `m`) only the accounting
  /// goes back; the memory is reused from the next step on, once reset() has merged the blocks into
  /// one of the high-water size, which counts live bytes, so a step of the same shapes then fits.
  void release(Mark const& m) {
    if (m.used > used_) {
      throw std::logic_error("hax::core::ScratchArena::release: the mark is newer than the arena's "
                             "state (marks must be released last in, first out, within one step)");
    }
    used_ = m.used;
    if (blocks_.size() == m.blocks) offset_ = m.offset;
  }

  /// Starts a new step: every View taken so far becomes invalid. If the last step needed more than
  /// one block, they are replaced by one block of the high-water size (fencing first, as the old
  /// blocks may still be in use by queued kernels; this happens only while the arena grows).
  void reset() {
    if (blocks_.size() > 1) {
      Kokkos::fence("hax::core::ScratchArena::reset (consolidating blocks)");
      blocks_.clear();
      add_block(high_water_);
    }
    offset_ = 0;
    used_ = 0;
    taken_ = 0;
  }

  /// Usable bytes of the blocks held now.
  std::size_t capacity() const {
    std::size_t c = 0;
    for (auto const& b : blocks_) c += b.size;
    return c;
  }
  /// Bytes taken since the last reset and not released (alignment included).
  std::size_t used() const { return used_; }
  /// Bytes taken since the last reset, released ones included: what the step would hold at its
  /// end without releases (compare with high_water() to see what the frames reuse).
  std::size_t taken() const { return taken_; }
  /// The most bytes live at once between two resets so far (alignment included): takes minus
  /// releases, at their peak.
  std::size_t high_water() const { return high_water_; }
  /// Blocks ever allocated; stops growing once the arena has warmed up.
  std::size_t block_allocations() const { return block_allocations_; }
  std::string const& label() const { return label_; }

 private:
  struct Block {
    Kokkos::View<std::byte*, MemorySpace> storage;  // owns the memory
    std::byte* base = nullptr;                       // storage.data() rounded up to the alignment
    std::size_t size = 0;                            // usable bytes from base
  };

  static std::size_t round_up(std::size_t n) {
    return (n + kScratchAlignment - 1) / kScratchAlignment * kScratchAlignment;
  }

  void add_block(std::size_t size) {
    // Kokkos aligns allocations to less than kScratchAlignment (its allocation header sits in
    // front of the data), so the block carries the slack to align its base itself.
    Kokkos::View<std::byte*, MemorySpace> storage(
        Kokkos::view_alloc(Kokkos::WithoutInitializing, label_), size + kScratchAlignment);
    auto const addr = reinterpret_cast<std::uintptr_t>(storage.data());
    auto const aligned = (addr + kScratchAlignment - 1) / kScratchAlignment * kScratchAlignment;
    blocks_.push_back(Block{storage, storage.data() + (aligned - addr), size});
    offset_ = 0;
    ++block_allocations_;
  }

  std::string label_;
  std::vector<Block> blocks_;  // takes come from the last one
  std::size_t offset_ = 0;     // bytes taken from the last block
  std::size_t used_ = 0;       // bytes taken from all blocks since the last reset, not released
  std::size_t taken_ = 0;      // bytes taken since the last reset, released ones included
  std::size_t high_water_ = 0;
  std::size_t block_allocations_ = 0;
};

namespace impl {
/// The current arena of each memory space, per host thread (nullptr: allocate normally).
template <class MemorySpace>
struct current_arena {
  static inline thread_local ScratchArena<MemorySpace>* arena = nullptr;
};
}  // namespace impl

/// The arena the allocation helpers use for `MemorySpace` on this thread, or nullptr.
template <class MemorySpace>
ScratchArena<MemorySpace>* active_arena() {
  return impl::current_arena<MemorySpace>::arena;
}

/// Makes `arena` the current arena of its memory space for the scope's lifetime and resets it on
/// entry (so every scope on an arena starts a new step). Nestable: the previous arena is restored
/// on destruction. A null arena suspends any outer one (helpers allocate normally inside). A nested
/// scope must not reuse the outer scope's arena: its reset would invalidate the outer step's Views.
template <class MemorySpace>
class ScratchScope {
 public:
  explicit ScratchScope(ScratchArena<MemorySpace>& arena) : ScratchScope(&arena) {}
  explicit ScratchScope(ScratchArena<MemorySpace>* arena)
      : previous_(impl::current_arena<MemorySpace>::arena) {
    if (arena != nullptr) arena->reset();
    impl::current_arena<MemorySpace>::arena = arena;
  }
  ~ScratchScope() { impl::current_arena<MemorySpace>::arena = previous_; }
  ScratchScope(ScratchScope const&) = delete;
  ScratchScope& operator=(ScratchScope const&) = delete;

 private:
  ScratchArena<MemorySpace>* previous_;
};

/// Frees, when it goes out of scope, everything taken since its construction from the arena that
/// was active for `MemorySpace` then (nothing without an active arena): the temporaries of one
/// piece of a step, such as one layer's backward, so that the next piece reuses their memory and
/// the step's peak is the largest piece rather than the sum. Only for Views that die inside the
/// frame: anything the caller or a later backward reads must be taken before the frame begins.
/// Frames nest (last in, first out) and live inside one ScratchScope.
template <class MemorySpace>
class ScratchFrame {
 public:
  ScratchFrame() : arena_(active_arena<MemorySpace>()) {
    if (arena_ != nullptr) mark_ = arena_->mark();
  }
  // Never throws (a destructor may run during unwinding): a frame whose arena was reset inside it,
  // which a nested ScratchScope on the same arena would do (not allowed), releases nothing.
  ~ScratchFrame() {
    if (arena_ != nullptr && arena_ == active_arena<MemorySpace>() && arena_->used() >= mark_.used) {
      arena_->release(mark_);
    }
  }
  ScratchFrame(ScratchFrame const&) = delete;
  ScratchFrame& operator=(ScratchFrame const&) = delete;

 private:
  ScratchArena<MemorySpace>* arena_;
  typename ScratchArena<MemorySpace>::Mark mark_{};
};

}  // namespace hax::core
