// SPDX-License-Identifier: MIT
/// \file
/// The hax checkpoint format (".haxckpt"): a versioned, checksummed file holding a JSON metadata
/// object and named tensors (parameters, optimiser moments, RNG states...), written atomically.
/// The byte layout, checksum and versioning rules are in docs/checkpoint_format.md:
///
///     header (64 B) | metadata JSON | tensor table | payload (tensors at 64-B boundaries) | trailer (16 B)
///
/// write_checkpoint writes a TensorSet; read_checkpoint validates the whole file (sizes, magic,
/// version, checksums, table) before returning a TensorSet, and reports every problem as
/// hax::io_error naming the path and the problem. Host code that synchronises: call it between
/// training steps, not inside one.
#pragma once

#include <hax/core/error.hpp>
#include <hax/io/atomic_file.hpp>
#include <hax/io/checksum.hpp>
#include <hax/io/impl/bytes.hpp>
#include <hax/io/tensor_set.hpp>
#include <hax/version.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace hax::io {

/// The checkpoint format version this build writes; it reads every version from 1 up to this.
inline constexpr std::uint32_t kCheckpointFormatVersion = 1;

/// The eight bytes every checkpoint starts with.
inline constexpr std::array<char, 8> kCheckpointMagic = {'H', 'A', 'X', 'C', 'K', 'P', 'T', '\0'};
/// The eight bytes that open the trailer.
inline constexpr std::array<char, 8> kCheckpointTrailerMagic = {'H', 'A', 'X', 'C', 'K', 'E', 'N', 'D'};
/// Written as a little-endian u32; a reader on a host of the other byte order sees 0x04030201.
inline constexpr std::uint32_t kCheckpointEndianMarker = 0x01020304;

inline constexpr std::size_t kCheckpointHeaderSize = 64;
inline constexpr std::size_t kCheckpointTrailerSize = 16;
inline constexpr std::size_t kCheckpointAlignment = 64;  // payload of every tensor starts here
inline constexpr std::size_t kCheckpointMaxNameLength = 4096;

/// What the header of a checkpoint says about who wrote it.
struct CheckpointHeader {
  std::uint32_t format_version = 0;  // 1 .. kCheckpointFormatVersion
  std::string hax_version;           // hax::version_string of the writer, e.g. "0.1.0"
};

namespace impl {

/// Where each tensor lands in the file, computed once by the writer.
struct CheckpointLayout {
  std::vector<std::byte> head;        // header + metadata + table (file bytes [0, head.size()))
  std::vector<std::uint64_t> offset;  // (tensors) absolute payload offset of each tensor
  std::uint64_t trailer_offset = 0;   // == file size - kCheckpointTrailerSize
};

inline CheckpointLayout plan_checkpoint(TensorSet const& set, std::string const& path) {
  constexpr char const* op = "hax::io::write_checkpoint";
  core::require(set.metadata().is_object(), op, "the metadata of \"", path,
                "\" must be a JSON object, not ", set.metadata().type_name());
  std::string meta;
  try {
    meta = set.metadata().dump();
  } catch (nlohmann::json::exception const& e) {  // e.g. a string that is not UTF-8
    throw invalid_argument(core::concat(op, ": the metadata of \"", path,
                                        "\" cannot be serialised: ", e.what()));
  }

  std::vector<std::byte> table;
  for (HostTensor const& t : set.tensors()) {
    core::require(t.name.size() <= kCheckpointMaxNameLength, op, "tensor name of ",
                  t.name.size(), " bytes exceeds ", kCheckpointMaxNameLength);
    put(table, static_cast<std::uint32_t>(t.name.size()));
    put_bytes(table, t.name.data(), t.name.size());
    put(table, static_cast<std::uint8_t>(t.type));
    put(table, static_cast<std::uint8_t>(t.shape.size()));
    put(table, std::uint16_t{0});  // reserved
    for (std::uint64_t const d : t.shape) { put(table, d); }
    // offset, size and checksum follow; offsets are known once the table size is.
    put(table, std::uint64_t{0});
    put(table, static_cast<std::uint64_t>(t.bytes.size()));
    put(table, fnv1a64(t.bytes));
  }

  CheckpointLayout layout;
  std::uint64_t cursor = align_up(kCheckpointHeaderSize + meta.size() + table.size(),
                                  kCheckpointAlignment);
  for (HostTensor const& t : set.tensors()) {
    layout.offset.push_back(cursor);
    cursor = align_up(cursor + t.bytes.size(), kCheckpointAlignment);
  }
  layout.trailer_offset = cursor;

  // Patch the offsets into the table: each entry's offset sits 24 bytes before its end.
  std::size_t pos = 0;
  for (std::size_t i = 0; i < set.size(); ++i) {
    HostTensor const& t = set.tensors()[i];
    pos += 4 + t.name.size() + 4 + 8 * t.shape.size();
    for (std::size_t b = 0; b < 8; ++b) {
      table[pos + b] = static_cast<std::byte>(layout.offset[i] >> (8 * b));
    }
    pos += 24;
  }

  auto& h = layout.head;
  put_bytes(h, kCheckpointMagic.data(), kCheckpointMagic.size());
  put(h, kCheckpointFormatVersion);
  put(h, kCheckpointEndianMarker);
  std::array<char, 16> version{};  // NUL-padded
  std::memcpy(version.data(), hax::version_string,
              std::min(sizeof(hax::version_string), version.size() - 1));
  put_bytes(h, version.data(), version.size());
  put(h, static_cast<std::uint64_t>(layout.trailer_offset + kCheckpointTrailerSize));
  put(h, static_cast<std::uint64_t>(meta.size()));
  put(h, static_cast<std::uint64_t>(set.size()));
  put(h, static_cast<std::uint64_t>(table.size()));
  put_bytes(h, meta.data(), meta.size());
  h.insert(h.end(), table.begin(), table.end());
  return layout;
}

}  // namespace impl

/// Writes `set` (metadata + tensors) to `path` as a checkpoint, atomically: the file at `path` is
/// either the previous one or the complete new one, never a partial file.
///
/// Throws hax::invalid_argument for metadata that is not a JSON object or cannot be serialised;
/// hax::io_error (naming the path and the reason) for any write failure, e.g. a directory that
/// does not exist, a full disk or a file-size limit; the temporary file is removed first.
inline void write_checkpoint(std::filesystem::path const& path, TensorSet const& set) {
  auto const layout = impl::plan_checkpoint(set, path.string());
  AtomicFileWriter out(path);
  Fnv1a64 sum;  // over every byte before the trailer's checksum field
  static constexpr std::array<std::byte, kCheckpointAlignment> zeros{};
  auto emit = [&](std::span<std::byte const> bytes) {
    sum.update(bytes);
    out.write(bytes);
  };
  emit(layout.head);
  for (std::size_t i = 0; i < set.size(); ++i) {
    emit(std::span(zeros).first(layout.offset[i] - out.size()));
    emit(set.tensors()[i].bytes);
  }
  emit(std::span(zeros).first(layout.trailer_offset - out.size()));
  std::vector<std::byte> trailer;
  impl::put_bytes(trailer, kCheckpointTrailerMagic.data(), kCheckpointTrailerMagic.size());
  emit(trailer);
  impl::put(trailer, sum.digest());
  out.write(std::span(trailer).subspan(8));
  out.commit();
}

/// Reads and validates the checkpoint at `path`: size, magic, byte order, format version, the
/// whole-file checksum, the metadata JSON, the tensor table (known dtypes, rank <= 4, unique
/// names, aligned and non-overlapping payloads that match dtype x shape) and every tensor's
/// checksum. Returns metadata and tensors; fills `*header` if given.
///
/// Throws hax::io_error "hax::io::read_checkpoint: \"<path>\" ...: <problem>" for a missing file
/// and for any invalid, truncated or corrupt content; never reads out of bounds.
inline TensorSet read_checkpoint(std::filesystem::path const& path,
                                 CheckpointHeader* header = nullptr) {
  constexpr std::string_view op = "hax::io::read_checkpoint";
  std::string const p = path.string();
  std::vector<std::byte> const file = impl::read_file(path, op);
  std::span<std::byte const> const bytes(file);
  auto fail = [&](auto const&... what) -> void {
    throw io_error(core::concat(op, ": \"", p, "\": ", what...));
  };

  if (bytes.size() < kCheckpointHeaderSize) {
    fail("truncated: the file has ", bytes.size(), " bytes, fewer than the ",
         kCheckpointHeaderSize, "-byte header");
  }
  if (std::memcmp(bytes.data(), kCheckpointMagic.data(), kCheckpointMagic.size()) != 0) {
    fail("not a hax checkpoint (wrong magic; expected \"HAXCKPT\\0\")");
  }
  auto const version = impl::load<std::uint32_t>(bytes, 8);
  auto const marker = impl::load<std::uint32_t>(bytes, 12);
  if (marker != kCheckpointEndianMarker) {
    fail("written with another byte order or corrupt (endianness marker 0x", std::hex, marker,
         ")");
  }
  if (version == 0 || version > kCheckpointFormatVersion) {
    fail("format version ", version, " is not supported: this build of hax (",
         hax::version_string, ") reads versions 1 to ", kCheckpointFormatVersion);
  }
  std::string hax_version(reinterpret_cast<char const*>(bytes.data() + 16), 16);
  hax_version.resize(std::min(hax_version.find('\0'), hax_version.size()));
  auto const file_size = impl::load<std::uint64_t>(bytes, 32);
  auto const meta_size = impl::load<std::uint64_t>(bytes, 40);
  auto const count = impl::load<std::uint64_t>(bytes, 48);
  auto const table_size = impl::load<std::uint64_t>(bytes, 56);
  if (file_size != bytes.size()) {
    fail(file_size > bytes.size() ? "truncated" : "has trailing bytes", ": the header says ",
         file_size, " bytes, the file has ", bytes.size());
  }
  if (file_size < kCheckpointHeaderSize + kCheckpointTrailerSize) {
    fail("corrupt header: file size ", file_size, " leaves no room for the trailer");
  }
  std::uint64_t const trailer_offset = file_size - kCheckpointTrailerSize;
  if (std::memcmp(bytes.data() + trailer_offset, kCheckpointTrailerMagic.data(), 8) != 0) {
    fail("corrupt or truncated: no trailer at offset ", trailer_offset);
  }
  auto const stored_sum = impl::load<std::uint64_t>(bytes, trailer_offset + 8);
  auto const actual_sum = fnv1a64(bytes.first(trailer_offset + 8));
  if (stored_sum != actual_sum) {
    fail("checksum mismatch (stored 0x", std::hex, stored_sum, ", computed 0x", actual_sum,
         "): the file is corrupt");
  }

  // Sections: sizes are untrusted until checked against the trailer offset (no overflow: each
  // is compared before being added).
  if (meta_size > trailer_offset - kCheckpointHeaderSize ||
      table_size > trailer_offset - kCheckpointHeaderSize - meta_size) {
    fail("corrupt header: metadata (", meta_size, " bytes) and table (", table_size,
         " bytes) do not fit before the trailer at ", trailer_offset);
  }
  std::uint64_t const payload_begin =
      impl::align_up(kCheckpointHeaderSize + meta_size + table_size, kCheckpointAlignment);

  TensorSet set;
  std::string_view const meta_text(reinterpret_cast<char const*>(bytes.data()) +
                                       kCheckpointHeaderSize,
                                   meta_size);
  try {
    set.metadata() = nlohmann::json::parse(meta_text);
  } catch (nlohmann::json::exception const& e) {
    fail("the metadata is not valid JSON: ", e.what());
  }
  if (!set.metadata().is_object()) {
    fail("the metadata is a JSON ", set.metadata().type_name(), ", not an object");
  }

  impl::Cursor table(bytes.subspan(kCheckpointHeaderSize + meta_size, table_size), op, p);
  std::unordered_set<std::string> names;
  std::uint64_t previous_end = payload_begin;
  if (count > table_size / 32) {  // an entry has at least 32 bytes
    fail("corrupt header: ", count, " tensors cannot fit in a ", table_size, "-byte table");
  }
  for (std::uint64_t i = 0; i < count; ++i) {
    HostTensor t;
    auto const name_length = table.get<std::uint32_t>("a tensor name length");
    if (name_length == 0 || name_length > kCheckpointMaxNameLength) {
      fail("tensor ", i, " has an invalid name length ", name_length);
    }
    auto const name = table.take(name_length, "a tensor name");
    t.name.assign(reinterpret_cast<char const*>(name.data()), name.size());
    auto const code = table.get<std::uint8_t>("a dtype");
    auto const rank = table.get<std::uint8_t>("a rank");
    auto const reserved = table.get<std::uint16_t>("reserved bytes");
    auto const type = dtype_from_code(code);
    if (reserved != 0) {  // kept zero so that a later version can give them a meaning
      fail("tensor \"", t.name, "\" has nonzero reserved bytes ", reserved);
    }
    if (!type) {
      fail("tensor \"", t.name, "\" has unknown dtype code ", int(code));
    }
    t.type = *type;
    if (rank > kMaxRank) {
      fail("tensor \"", t.name, "\" has rank ", int(rank), " > ", kMaxRank);
    }
    for (int r = 0; r < rank; ++r) {
      t.shape.push_back(table.get<std::uint64_t>("a dimension"));
    }
    auto const offset = table.get<std::uint64_t>("a tensor offset");
    auto const size = table.get<std::uint64_t>("a tensor size");
    auto const sum = table.get<std::uint64_t>("a tensor checksum");
    if (!names.insert(t.name).second) {
      fail("duplicate tensor name \"", t.name, "\"");
    }
    auto const numel = checked_numel(t.shape);
    if (!numel || *numel > size || *numel * dtype_size(t.type) != size) {
      fail("tensor \"", t.name, "\": ", size, " bytes do not match dtype ", dtype_name(t.type),
           " and shape ", format_shape(t.shape));
    }
    if (offset % kCheckpointAlignment != 0 || offset < previous_end || offset > trailer_offset ||
        size > trailer_offset - offset) {
      fail("tensor \"", t.name, "\": payload [", offset, ", +", size,
           ") is misaligned, overlaps another tensor or lies outside the payload [",
           previous_end, ", ", trailer_offset, ")");
    }
    previous_end = offset + size;
    auto const payload = bytes.subspan(offset, size);
    if (fnv1a64(payload) != sum) {
      fail("tensor \"", t.name, "\": checksum mismatch, its payload is corrupt");
    }
    t.bytes.assign(payload.begin(), payload.end());
    set.add(std::move(t));
  }
  if (table.remaining() != 0) {
    fail("corrupt table: ", table.remaining(), " bytes left after ", count, " tensors");
  }
  if (header != nullptr) {
    header->format_version = version;
    header->hax_version = std::move(hax_version);
  }
  return set;
}

}  // namespace hax::io
