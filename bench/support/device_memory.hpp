// SPDX-License-Identifier: MIT
/// \file
/// Peak bytes allocated through Kokkos in one memory space, measured in-process with Kokkos'
/// tools callbacks (every View allocation and deallocation reports its space, pointer and size).
/// On CUDA this is the GPU memory a benchmark's Views hold at their peak: parameters, optimiser
/// moments, the scratch arena, the batch and workspaces. It does not count the CUDA context or
/// memory that libraries (cuBLAS workspaces) allocate outside Kokkos.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace hax::bench {

/// One tracker at a time (the callbacks are process-wide); it replaces any allocation callback a
/// Kokkos Tools library loaded with KOKKOS_TOOLS_LIBS set, for its lifetime.
class DeviceMemoryTracker {
 public:
  /// Tracks allocations in `MemorySpace` from now on; `live()` starts at zero.
  template <class MemorySpace>
  static DeviceMemoryTracker track() {
    return DeviceMemoryTracker(MemorySpace::name());
  }

  DeviceMemoryTracker(DeviceMemoryTracker const&) = delete;
  DeviceMemoryTracker& operator=(DeviceMemoryTracker const&) = delete;
  DeviceMemoryTracker(DeviceMemoryTracker&& other) noexcept = delete;

  ~DeviceMemoryTracker() {
    Kokkos::Tools::Experimental::set_allocate_data_callback(nullptr);
    Kokkos::Tools::Experimental::set_deallocate_data_callback(nullptr);
    std::lock_guard lock(state().mutex);
    state().sizes.clear();
  }

  /// Bytes allocated in the space and not yet freed, counting only allocations made while tracking.
  [[nodiscard]] std::int64_t live() const {
    std::lock_guard lock(state().mutex);
    return state().live;
  }
  /// The largest `live()` seen since tracking started or `reset_peak()`.
  [[nodiscard]] std::int64_t peak() const {
    std::lock_guard lock(state().mutex);
    return state().peak;
  }
  void reset_peak() {
    std::lock_guard lock(state().mutex);
    state().peak = state().live;
  }

 private:
  struct State {
    std::mutex mutex;
    char space[64] = {};
    std::unordered_map<void const*, std::uint64_t> sizes;
    std::int64_t live = 0;
    std::int64_t peak = 0;
  };
  static State& state() {
    static State s;
    return s;
  }
  static bool in_space(Kokkos::Tools::SpaceHandle handle) {
    return std::strncmp(handle.name, state().space, sizeof(state().space)) == 0;
  }
  static void on_allocate(Kokkos::Tools::SpaceHandle handle, char const*, void const* ptr,
                          std::uint64_t size) {
    std::lock_guard lock(state().mutex);
    if (!in_space(handle)) return;
    state().sizes[ptr] = size;
    state().live += static_cast<std::int64_t>(size);
    if (state().live > state().peak) state().peak = state().live;
  }
  static void on_deallocate(Kokkos::Tools::SpaceHandle handle, char const*, void const* ptr,
                            std::uint64_t) {
    std::lock_guard lock(state().mutex);
    if (!in_space(handle)) return;
    // Allocations made before tracking started are not counted, so their release is not either.
    auto const it = state().sizes.find(ptr);
    if (it == state().sizes.end()) return;
    state().live -= static_cast<std::int64_t>(it->second);
    state().sizes.erase(it);
  }

  explicit DeviceMemoryTracker(char const* space_name) {
    {
      std::lock_guard lock(state().mutex);
      std::strncpy(state().space, space_name, sizeof(state().space) - 1);
      state().sizes.clear();
      state().live = 0;
      state().peak = 0;
    }
    Kokkos::Tools::Experimental::set_allocate_data_callback(&on_allocate);
    Kokkos::Tools::Experimental::set_deallocate_data_callback(&on_deallocate);
  }
};

}  // namespace hax::bench
