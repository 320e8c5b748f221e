// SPDX-License-Identifier: MIT
/// \file
/// Tests of hax::core::ScratchArena / ScratchScope and of the allocation helpers under a scope:
/// alignment, non-overlapping takes, growth then consolidation into one block (after which the
/// arena allocates nothing), zeroed_view zeroing memory that held an earlier step's values, the
/// helpers' View types, nesting (a null scope suspends an outer one), and releases back to a mark
/// (ScratchArena::release, ScratchFrame) with the high water counting live bytes.
#include <hax/core/scratch.hpp>
#include <hax/core/views.hpp>

#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/compare.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;
using arena_type = hax::core::ScratchArena<test_memory_space>;
using scope_type = hax::core::ScratchScope<test_memory_space>;

std::uintptr_t address(void const* p) { return reinterpret_cast<std::uintptr_t>(p); }

}  // namespace

TEST_CASE("scratch arena: takes are aligned and do not overlap", "[core][scratch]") {
  arena_type arena;
  arena.reset();
  std::vector<std::pair<std::uintptr_t, std::size_t>> ranges;
  for (std::size_t bytes : {std::size_t{1}, std::size_t{0}, std::size_t{255}, std::size_t{256},
                            std::size_t{257}, std::size_t{1000}, std::size_t{3}}) {
    void* const p = arena.take(bytes);
    REQUIRE(p != nullptr);
    CHECK(address(p) % hax::core::kScratchAlignment == 0);
    ranges.emplace_back(address(p), std::max<std::size_t>(bytes, 1));
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    INFO("take " << i);
    CHECK(ranges[i - 1].first + ranges[i - 1].second <= ranges[i].first);
  }
  CHECK(arena.block_allocations() == 1);  // all of it fits the first 1 MiB block
  CHECK(arena.used() == 256 * 2 + 256 * 2 + 512 + 1024 + 256);
}

TEST_CASE("scratch arena: helpers give consecutive, non-overlapping Views of the usual types",
          "[core][scratch]") {
  test_space space;
  arena_type arena;
  scope_type scope(arena);
  auto a = hax::uninitialized_view<float**>(space, "a", 3, 5);              // (3, 5)
  auto b = hax::zeroed_view<std::int8_t***>(space, "b", 2, 3, 7);           // (2, 3, 7)
  auto c = hax::uninitialized_view<double>(space, "c");                     // rank 0
  auto d = hax::uninitialized_view<Kokkos::View<int*, Kokkos::LayoutLeft, test_memory_space>>(
      space, "d", 11);                                                      // (11)
  static_assert(std::is_same_v<decltype(a), hax::view<float**, test_space>>);
  static_assert(std::is_same_v<decltype(b), hax::view<std::int8_t***, test_space>>);
  static_assert(std::is_same_v<decltype(c), hax::view<double, test_space>>);
  static_assert(std::is_same_v<decltype(d), Kokkos::View<int*, Kokkos::LayoutLeft, test_memory_space>>);
  CHECK(a.extent(0) == 3);
  CHECK(a.extent(1) == 5);
  CHECK(b.extent(2) == 7);
  CHECK(d.extent(0) == 11);
  // Unmanaged: carved from the arena, not allocated.
  CHECK(a.use_count() == 0);
  CHECK(d.use_count() == 0);
  std::vector<std::pair<std::uintptr_t, std::size_t>> ranges{
      {address(a.data()), a.span() * sizeof(float)},
      {address(b.data()), b.span()},
      {address(c.data()), sizeof(double)},
      {address(d.data()), d.span() * sizeof(int)}};
  for (auto const& r : ranges) CHECK(r.first % hax::core::kScratchAlignment == 0);
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    CHECK(ranges[i - 1].first + ranges[i - 1].second <= ranges[i].first);
  }
  CHECK(arena.used() == 4 * hax::core::kScratchAlignment);
  space.fence();
  CHECK(hax::test::max_abs(hax::test::to_vector(b)) == 0.0);
}

TEST_CASE("scratch arena: grows in the first steps, then one block and no more allocations",
          "[core][scratch]") {
  arena_type arena;
  std::size_t const mib = std::size_t{1} << 20;
  // One step's takes: 3.5 MiB in pieces, more than the first 1 MiB block.
  auto step = [&] {
    arena.reset();
    for (int i = 0; i < 7; ++i) arena.take(mib / 2);
  };
  step();
  std::size_t const grown = arena.block_allocations();
  CHECK(grown >= 2);  // 1 MiB, then 2 MiB, ... while growing
  step();             // the reset merged the blocks into one of the high-water size
  CHECK(arena.block_allocations() == grown + 1);
  CHECK(arena.capacity() == arena.high_water());
  CHECK(arena.high_water() == 7 * (mib / 2));
  for (int i = 0; i < 5; ++i) step();
  CHECK(arena.block_allocations() == grown + 1);  // warmed up: nothing is allocated any more
  CHECK(arena.capacity() == 7 * (mib / 2));
  // A larger step grows again, once.
  arena.reset();
  for (int i = 0; i < 9; ++i) arena.take(mib / 2);
  arena.reset();
  std::size_t const regrown = arena.block_allocations();
  CHECK(regrown == grown + 3);  // one new block during the step, one merged block at the reset
  for (int i = 0; i < 9; ++i) arena.take(mib / 2);
  arena.reset();
  CHECK(arena.block_allocations() == regrown);
}

TEST_CASE("scratch arena: a release frees what was taken after its mark, last in first out",
          "[core][scratch]") {
  arena_type arena;
  std::size_t const a = hax::core::kScratchAlignment;
  arena.reset();
  void* const kept = arena.take(3 * a);
  auto const outer = arena.mark();
  void* const first = arena.take(5 * a);
  auto const inner = arena.mark();
  arena.take(2 * a);
  arena.release(inner);
  CHECK(arena.used() == 8 * a);
  CHECK(arena.take(a) == static_cast<std::byte*>(first) + 5 * a);  // the freed memory again
  arena.release(outer);
  CHECK(arena.used() == 3 * a);
  CHECK(arena.take(a) == first);  // reused from the outer mark on
  CHECK(static_cast<std::byte*>(kept) + 3 * a == first);
  CHECK(arena.high_water() == 10 * a);  // the peak of live bytes (3 + 5 + 2), not the sum taken (12)
  CHECK(arena.taken() == 12 * a);
  CHECK_THROWS_AS(arena.release(inner), std::logic_error);  // a mark newer than the arena's state
}

TEST_CASE("scratch arena: released memory counts once, so the merged block of a warm-up step "
          "holds the same step",
          "[core][scratch]") {
  arena_type arena;
  std::size_t const mib = std::size_t{1} << 20;
  // Per step: 1 MiB kept, then three pieces of 2 MiB each released before the next: the live peak
  // is 3 MiB, the sum taken 7 MiB.
  auto step = [&] {
    arena.reset();
    arena.take(mib);
    for (int i = 0; i < 3; ++i) {
      auto const m = arena.mark();
      arena.take(2 * mib);
      arena.release(m);
    }
  };
  step();  // growing: blocks are added (the accounting goes back, the memory not yet)
  CHECK(arena.high_water() == 3 * mib);
  step();  // merged into one block of the peak
  std::size_t const warmed = arena.block_allocations();
  CHECK(arena.capacity() == 3 * mib);
  for (int i = 0; i < 4; ++i) step();
  CHECK(arena.block_allocations() == warmed);  // it fits: nothing more is allocated
  CHECK(arena.high_water() == 3 * mib);
}

TEST_CASE("scratch frame: the helpers' Views of a frame are freed at its end; without an arena "
          "it does nothing",
          "[core][scratch]") {
  test_space space;
  using frame_type = hax::core::ScratchFrame<test_memory_space>;
  {
    frame_type frame;  // no active arena: a no-op
    auto v = hax::uninitialized_view<float*>(space, "managed", 4);
    CHECK(v.use_count() == 1);
  }
  arena_type arena;
  scope_type scope(arena);
  auto kept = hax::uninitialized_view<float*>(space, "kept", 100);  // (100)
  float* inside = nullptr;
  {
    frame_type frame;
    auto t = hax::uninitialized_view<float*>(space, "temporary", 1000);  // (1000)
    inside = t.data();
    {
      frame_type nested;
      hax::uninitialized_view<double*>(space, "nested", 10);  // (10)
    }
    CHECK(hax::uninitialized_view<float*>(space, "after nested", 1).data() != inside);
  }
  auto next = hax::uninitialized_view<float*>(space, "next", 1000);  // (1000)
  CHECK(next.data() == inside);  // the frame's memory, reused
  CHECK(next.data() != kept.data());
  CHECK(arena.used() == 512 + 4096);  // kept (400 B) and next (4000 B), each rounded up
}

TEST_CASE("scratch arena: zeroed_view zeroes memory that held the previous step's values",
          "[core][scratch]") {
  test_space space;
  arena_type arena;
  int const n = 1000;
  float* first = nullptr;
  {
    scope_type scope(arena);
    auto garbage = hax::uninitialized_view<float*>(space, "garbage", n);
    Kokkos::deep_copy(space, garbage, 7.5f);
    space.fence();
    first = garbage.data();
  }
  {
    scope_type scope(arena);  // a new step: the same memory again, still holding 7.5
    auto again = hax::uninitialized_view<float*>(space, "again", n);
    REQUIRE(again.data() == first);
    space.fence();
    CHECK(hax::test::to_vector(again)[n - 1] == 7.5);
  }
  {
    scope_type scope(arena);
    auto zeros = hax::zeroed_view<float*>(space, "zeros", n);
    REQUIRE(zeros.data() == first);
    space.fence();
    CHECK(hax::test::max_abs(hax::test::to_vector(zeros)) == 0.0);
  }
}

TEST_CASE("scratch scope: nesting, and a null scope allocates as without an arena",
          "[core][scratch]") {
  test_space space;
  arena_type outer, inner;
  CHECK(hax::core::active_arena<test_memory_space>() == nullptr);
  auto managed = hax::uninitialized_view<float*>(space, "managed", 4);
  CHECK(managed.use_count() == 1);  // no scope: a managed allocation, with its label
  CHECK(managed.label() == "managed");
  {
    scope_type a(outer);
    CHECK(hax::core::active_arena<test_memory_space>() == &outer);
    {
      scope_type b(inner);
      CHECK(hax::core::active_arena<test_memory_space>() == &inner);
      hax::uninitialized_view<float*>(space, "x", 4);
      CHECK(inner.used() > 0);
      CHECK(outer.used() == 0);
      {
        scope_type none(nullptr);
        CHECK(hax::core::active_arena<test_memory_space>() == nullptr);
        auto z = hax::zeroed_view<int*>(space, "z", 3);
        CHECK(z.use_count() == 1);
        space.fence();
        CHECK(hax::test::max_abs(hax::test::to_vector(z)) == 0.0);
      }
      CHECK(hax::core::active_arena<test_memory_space>() == &inner);
    }
    CHECK(hax::core::active_arena<test_memory_space>() == &outer);
  }
  CHECK(hax::core::active_arena<test_memory_space>() == nullptr);
}
