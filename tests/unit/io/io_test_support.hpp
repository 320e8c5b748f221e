// SPDX-License-Identifier: MIT
/// \file
/// Helpers shared by the io tests (unit and host): a scratch directory removed at the end of the
/// test, raw file access, and Views filled with random bytes.
#pragma once

#include <hax/io/checksum.hpp>

#include <Kokkos_Core.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

namespace hax::test::io {

/// A fresh directory under the system temporary directory, removed with its content on scope exit.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("hax_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(TempDir const&) = delete;
  TempDir& operator=(TempDir const&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] std::filesystem::path const& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(std::string const& name) const { return path_ / name; }

  /// Names of the entries in the directory (to check that no temporary is left behind).
  [[nodiscard]] std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (auto const& e : std::filesystem::directory_iterator(path_)) {
      out.push_back(e.path().filename().string());
    }
    return out;
  }

 private:
  std::filesystem::path path_;
};

inline std::vector<std::byte> read_bytes(std::filesystem::path const& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

inline void write_bytes(std::filesystem::path const& path, std::vector<std::byte> const& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<char const*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline std::vector<std::byte> to_bytes(std::string const& text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

/// Little-endian u64 appended to `out`.
inline void append_u64(std::vector<std::byte>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<std::byte>(v >> (8 * i)));
  }
}

/// Little-endian u64 read at `offset`.
inline std::uint64_t load_u64(std::vector<std::byte> const& b, std::size_t offset) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v |= static_cast<std::uint64_t>(b[offset + i]) << (8 * i);
  }
  return v;
}

/// Stores FNV-1a 64 of bytes [0, size - 8) in the last 8 bytes: a checkpoint edited on purpose
/// then passes the whole-file check, so the test reaches the check it targets.
inline void fix_checkpoint_checksum(std::vector<std::byte>& b) {
  std::uint64_t const sum = hax::io::fnv1a64(std::span<std::byte const>(b.data(), b.size() - 8));
  for (int i = 0; i < 8; ++i) {
    b[b.size() - 8 + i] = static_cast<std::byte>(sum >> (8 * i));
  }
}

/// Fills a contiguous View (any memory space, any trivially copyable element) with random bytes.
template <class V>
void fill_random_bytes(V const& v, std::uint64_t seed) {
  auto host = Kokkos::create_mirror_view(Kokkos::HostSpace{}, v);
  std::mt19937_64 rng(seed);
  auto* p = reinterpret_cast<unsigned char*>(host.data());
  std::size_t const n = host.span() * sizeof(typename V::value_type);
  for (std::size_t i = 0; i < n; ++i) {
    p[i] = static_cast<unsigned char>(rng());
  }
  Kokkos::deep_copy(v, host);
}

/// The bytes of a contiguous View (any memory space), for exact comparisons.
template <class V>
std::vector<std::byte> view_bytes(V const& v) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, v);
  std::vector<std::byte> out(host.span() * sizeof(typename V::value_type));
  if (!out.empty()) {
    std::memcpy(out.data(), host.data(), out.size());
  }
  return out;
}

}  // namespace hax::test::io
