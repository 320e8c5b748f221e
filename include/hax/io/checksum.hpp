// SPDX-License-Identifier: MIT
/// \file
/// FNV-1a 64-bit checksum (Fowler, Noll, Vo), the checksum of every hax file format: per tensor and
/// over whole files. It is a few lines, has no tables, is defined byte by byte (so it does not
/// depend on the host's endianness or alignment) and can be computed incrementally while a file is
/// streamed. It detects accidental corruption (truncation, flipped bytes); it is not a
/// cryptographic hash and does not protect against deliberate tampering.
///
/// Generic: any hax file format (e.g. the datasets of hax::data) can reuse it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace hax::io {

/// Incremental FNV-1a 64: `Fnv1a64 h; h.update(a); h.update(b); h.digest()` equals
/// `fnv1a64(a ++ b)`. Host only.
class Fnv1a64 {
 public:
  static constexpr std::uint64_t kOffsetBasis = 0xcbf29ce484222325ULL;
  static constexpr std::uint64_t kPrime = 0x100000001b3ULL;

  constexpr void update(std::span<std::byte const> bytes) {
    for (std::byte const b : bytes) {
      state_ = (state_ ^ static_cast<std::uint64_t>(b)) * kPrime;
    }
  }
  constexpr void update(std::string_view text) {
    for (char const c : text) {
      state_ = (state_ ^ static_cast<std::uint64_t>(static_cast<unsigned char>(c))) * kPrime;
    }
  }
  [[nodiscard]] constexpr std::uint64_t digest() const { return state_; }

 private:
  std::uint64_t state_ = kOffsetBasis;
};

/// FNV-1a 64 of a byte range.
[[nodiscard]] constexpr std::uint64_t fnv1a64(std::span<std::byte const> bytes) {
  Fnv1a64 h;
  h.update(bytes);
  return h.digest();
}

/// FNV-1a 64 of the bytes of a string.
[[nodiscard]] constexpr std::uint64_t fnv1a64(std::string_view text) {
  Fnv1a64 h;
  h.update(text);
  return h.digest();
}

// Published test vectors of FNV-1a 64 (from the FNV reference test suite).
static_assert(fnv1a64(std::string_view{}) == 0xcbf29ce484222325ULL);
static_assert(fnv1a64(std::string_view{"a"}) == 0xaf63dc4c8601ec8cULL);
static_assert(fnv1a64(std::string_view{"foobar"}) == 0x85944171f73967e8ULL);

}  // namespace hax::io
