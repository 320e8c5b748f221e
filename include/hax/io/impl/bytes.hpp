// SPDX-License-Identifier: MIT
/// \file
/// Internals of hax::io: reading a whole file, and bounds-checked little-endian encoding and
/// decoding of integers in byte buffers. Not included by users.
#pragma once

#include <hax/core/error.hpp>

#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hax::io::impl {

// Every hax file format is little-endian; the raw tensor bytes are copied as they are in memory,
// so a big-endian host would need byte swapping, which is not implemented.
static_assert(std::endian::native == std::endian::little,
              "hax::io: the file formats are little-endian; big-endian hosts are not supported");

/// The whole content of a file. Throws hax::io_error naming `op`, the path and the reason.
inline std::vector<std::byte> read_file(std::filesystem::path const& path, std::string_view op) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw io_error(core::concat(op, ": cannot read \"", path.string(), "\": ",
                                std::filesystem::exists(path, ec) ? "not a regular file"
                                                                  : "no such file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw io_error(core::concat(op, ": cannot open \"", path.string(), "\": ",
                                std::strerror(errno)));
  }
  in.seekg(0, std::ios::end);
  auto const size = static_cast<std::size_t>(in.tellg());
  in.seekg(0, std::ios::beg);
  std::vector<std::byte> bytes(size);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (!in || static_cast<std::size_t>(in.gcount()) != size) {
    throw io_error(core::concat(op, ": cannot read \"", path.string(), "\": read ", in.gcount(),
                                " of ", size, " bytes"));
  }
  return bytes;
}

/// Appends the little-endian bytes of an unsigned integer.
template <class U>
void put(std::vector<std::byte>& out, U value) {
  static_assert(std::is_unsigned_v<U>);
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    out.push_back(static_cast<std::byte>(value >> (8 * i)));
  }
}

/// Appends raw bytes.
inline void put_bytes(std::vector<std::byte>& out, void const* data, std::size_t n) {
  auto const* p = static_cast<std::byte const*>(data);
  out.insert(out.end(), p, p + n);
}

/// Sequential, bounds-checked reader of a byte range; every overrun throws hax::io_error
/// "<op>: \"<path>\" is truncated or corrupt: <what> ...", never reads out of bounds.
class Cursor {
 public:
  Cursor(std::span<std::byte const> bytes, std::string_view op, std::string path)
      : bytes_(bytes), op_(op), path_(std::move(path)) {}

  [[nodiscard]] std::size_t position() const { return pos_; }
  [[nodiscard]] std::size_t remaining() const { return bytes_.size() - pos_; }

  template <class U>
  U get(std::string_view what) {
    static_assert(std::is_unsigned_v<U>);
    need(sizeof(U), what);
    U value = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) {
      value |= static_cast<U>(static_cast<U>(bytes_[pos_ + i]) << (8 * i));
    }
    pos_ += sizeof(U);
    return value;
  }

  std::span<std::byte const> take(std::size_t n, std::string_view what) {
    need(n, what);
    auto const out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

 private:
  void need(std::size_t n, std::string_view what) const {
    if (n > remaining()) {
      throw io_error(core::concat(op_, ": \"", path_, "\" is truncated or corrupt: ", what,
                                  " needs ", n, " bytes at offset ", pos_, " but only ",
                                  remaining(), " remain"));
    }
  }

  std::span<std::byte const> bytes_;
  std::size_t pos_ = 0;
  std::string_view op_;
  std::string path_;
};

/// Little-endian unsigned integer at `offset` of `bytes` (caller checked the bounds).
template <class U>
U load(std::span<std::byte const> bytes, std::size_t offset) {
  U value = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    value |= static_cast<U>(static_cast<U>(bytes[offset + i]) << (8 * i));
  }
  return value;
}

/// Rounds n up to a multiple of `alignment` (a power of two).
constexpr std::uint64_t align_up(std::uint64_t n, std::uint64_t alignment) {
  return (n + alignment - 1) & ~(alignment - 1);
}

}  // namespace hax::io::impl
