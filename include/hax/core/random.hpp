// SPDX-License-Identifier: MIT
/// \file
/// Counter-based random numbers: draw i of a stream is a pure function of (stream key, i), so
/// results do not depend on the backend, the thread count or the order work items run in.
///
/// A stream is SplitMix64 (Steele, Lea, Flood 2014) started at a key derived from a seed and the
/// indices that name the stream (e.g. split, item). SplitMix64 output passes BigCrush per stream;
/// keys are themselves mixed, so neighbouring streams are decorrelated.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace hax::core {

/// SplitMix64's output function (a bijective 64-bit mixer).
KOKKOS_INLINE_FUNCTION constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// The key of the stream named by (seed, a, b, c): e.g. (seed, split, item index, attempt).
KOKKOS_INLINE_FUNCTION constexpr std::uint64_t stream_key(std::uint64_t seed, std::uint64_t a = 0,
                                                          std::uint64_t b = 0,
                                                          std::uint64_t c = 0) {
  std::uint64_t k = mix64(seed + 0x9E3779B97F4A7C15ULL);
  k = mix64(k ^ (a + 0x632BE59BD9B4E019ULL));
  k = mix64(k ^ (b + 0x8CB92BA72F3D8DD7ULL));
  k = mix64(k ^ (c + 0xD1B54A32D192ED03ULL));
  return k;
}

/// Sequential draws from one counter-based stream, for one work item (cheap to copy, no state
/// shared between threads). Draw number n is mix64(key + (n + 1) * golden), as in SplitMix64.
class RngStream {
 public:
  KOKKOS_INLINE_FUNCTION constexpr explicit RngStream(std::uint64_t key, std::uint64_t start = 0)
      : key_(key), counter_(start) {}

  /// The next 64 random bits.
  KOKKOS_INLINE_FUNCTION constexpr std::uint64_t next_bits() {
    ++counter_;
    return mix64(key_ + counter_ * 0x9E3779B97F4A7C15ULL);
  }

  /// Uniform integer in [0, n), n >= 1, without modulo bias (Lemire's multiply-shift with
  /// rejection; the rejection loop runs more than once with probability < n / 2^32).
  KOKKOS_INLINE_FUNCTION constexpr std::uint32_t uniform_int(std::uint32_t n) {
    std::uint64_t m = static_cast<std::uint64_t>(static_cast<std::uint32_t>(next_bits() >> 32)) * n;
    auto low = static_cast<std::uint32_t>(m);
    if (low < n) {
      std::uint32_t const threshold = static_cast<std::uint32_t>(-n) % n;
      while (low < threshold) {
        m = static_cast<std::uint64_t>(static_cast<std::uint32_t>(next_bits() >> 32)) * n;
        low = static_cast<std::uint32_t>(m);
      }
    }
    return static_cast<std::uint32_t>(m >> 32);
  }

  /// Uniform double in [0, 1) with 53 random bits.
  KOKKOS_INLINE_FUNCTION constexpr double uniform() {
    return static_cast<double>(next_bits() >> 11) * 0x1.0p-53;
  }

  /// Standard normal (Box-Muller; uses two draws and returns one value, so every draw of the
  /// stream maps to a fixed position regardless of what was drawn before).
  KOKKOS_INLINE_FUNCTION double normal() {
    double const u1 = 1.0 - uniform();  // (0, 1]: log stays finite
    double const u2 = uniform();
    return Kokkos::sqrt(-2.0 * Kokkos::log(u1)) * Kokkos::cos(2.0 * Kokkos::numbers::pi * u2);
  }

  /// Draws consumed so far.
  KOKKOS_INLINE_FUNCTION constexpr std::uint64_t position() const { return counter_; }

 private:
  std::uint64_t key_;
  std::uint64_t counter_;
};

}  // namespace hax::core
