// SPDX-License-Identifier: MIT
/// \file
/// Materialising splits on the host and exchanging them as files: `generate_split` (a range of a
/// split, generated in parallel on a Kokkos space and copied to the host), the documented binary
/// format (160-byte header with magic, version, shapes, every layout parameter and an FNV-1a 64
/// checksum, then the payload) and JSON Lines with the reference's field names `inputs` and
/// `mask`. Writes are atomic (temporary file in the same directory, then rename); reads check
/// everything and throw hax::io_error naming the file and the problem. Format: docs/data.md.
#pragma once

#include <hax/core/error.hpp>
#include <hax/data/joint_recall.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <unistd.h>
#include <vector>

namespace hax::data {

/// A range of a split on the host: `count` items of `padded_length` tokens, row-major.
struct host_split {
  recall_spec spec;                 ///< resolved layout the items were generated with
  split which = split::train;       ///< the split they come from
  std::int64_t first_item = 0;      ///< index of row 0 within the split
  std::int64_t count = 0;           ///< B
  std::vector<std::int32_t> tokens;  // (B, Lpad) row-major
  std::vector<std::int8_t> mask;     // (B, Lpad) row-major

  std::int64_t padded_length() const { return spec.padded_length; }
};

/// Generates items [first_item, first_item + count) of split `sp` on `space` (in batches of
/// `batch` rows) and copies them to the host; `progress(done, count)` is called after each batch.
/// Fences `space` (a host value is returned). Throws hax::invalid_argument on bad parameters.
template <class Space>
  requires execution_space<Space>
host_split generate_split(Space const& space, recall_spec const& spec,
                          split_exclusions<typename Space::memory_space> const& exclusions,
                          split sp, std::int64_t first_item, std::int64_t count,
                          std::function<void(std::int64_t, std::int64_t)> const& progress = {},
                          std::int64_t batch = 8192) {
  using mem = typename Space::memory_space;
  constexpr char const* op = "hax::data::generate_split";
  core::require(count >= 1, op, "count (", count, ") must be >= 1");
  core::require(batch >= 1, op, "batch (", batch, ") must be >= 1");
  core::require(first_item >= 0 && first_item + count <= split_size(spec, sp), op, "items [",
                first_item, ", ", first_item + count, ") lie outside the ", split_name(sp),
                " split of ", split_size(spec, sp), " items");
  host_split out;
  out.spec = spec;
  out.which = sp;
  out.first_item = first_item;
  out.count = count;
  std::int64_t const lp = spec.padded_length;
  out.tokens.resize(static_cast<std::size_t>(count * lp));
  out.mask.resize(static_cast<std::size_t>(count * lp));
  std::int64_t const rows = count < batch ? count : batch;
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem> t(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hax::data::split_tokens"), rows, lp);
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem> m(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hax::data::split_mask"), rows, lp);
  Kokkos::View<int, mem> failures(Kokkos::view_alloc(space, "hax::data::failures"));
  for (std::int64_t done = 0; done < count; done += rows) {
    std::int64_t const b = (count - done) < rows ? (count - done) : rows;
    using P = Kokkos::pair<std::int64_t, std::int64_t>;
    auto ts = Kokkos::subview(t, P(0, b), Kokkos::ALL);
    auto ms = Kokkos::subview(m, P(0, b), Kokkos::ALL);
    generate_batch(space, spec, exclusions, sp, first_item + done, ts, ms, failures);
    Kokkos::View<std::int32_t**, Kokkos::LayoutRight, Kokkos::HostSpace,
                 Kokkos::MemoryTraits<Kokkos::Unmanaged>>
        ht(out.tokens.data() + done * lp, b, lp);
    Kokkos::View<std::int8_t**, Kokkos::LayoutRight, Kokkos::HostSpace,
                 Kokkos::MemoryTraits<Kokkos::Unmanaged>>
        hm(out.mask.data() + done * lp, b, lp);
    Kokkos::deep_copy(space, ht, ts);
    Kokkos::deep_copy(space, hm, ms);
    space.fence("hax::data::generate_split");
    if (progress) progress(done + b, count);
  }
  int failed = 0;
  Kokkos::deep_copy(failed, failures);
  core::require(failed == 0, op, failed, " items of the ", split_name(sp),
                " split could not be made disjoint from the eval splits in ", kMaxAttempts,
                " attempts");
  return out;
}

/// FNV-1a 64 over a byte range, continuing from `h`.
inline std::uint64_t fnv1a64(void const* data, std::size_t n,
                             std::uint64_t h = 0xCBF29CE484222325ULL) {
  auto const* p = static_cast<unsigned char const*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001B3ULL;
  }
  return h;
}

/// Binary format constants (docs/data.md, "Binary format").
inline constexpr char kBinaryMagic[8] = {'H', 'A', 'X', 'R', 'E', 'C', 'A', 'L'};
inline constexpr std::uint32_t kBinaryVersion = 1;
inline constexpr std::uint32_t kBinaryHeaderBytes = 160;

namespace impl {

inline void put_u32(std::vector<unsigned char>& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<unsigned char>(v >> (8 * i));
}
inline void put_u64(std::vector<unsigned char>& b, std::size_t at, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = static_cast<unsigned char>(v >> (8 * i));
}
inline std::uint32_t get_u32(std::vector<unsigned char> const& b, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(b[at + i]) << (8 * i);
  return v;
}
inline std::uint64_t get_u64(std::vector<unsigned char> const& b, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(b[at + i]) << (8 * i);
  return v;
}

/// Token width the file uses: the smallest of 1, 2, 4 bytes that holds vocab_size - 1.
inline std::uint32_t token_bytes_for(int vocab_size) {
  if (vocab_size <= 256) return 1;
  if (vocab_size <= 65536) return 2;
  return 4;
}

/// Calls write(stream) on a temporary file next to `path`, then renames it onto `path`; on any
/// failure removes the temporary and throws hax::io_error, so no partial file is ever left.
template <class Write>
void write_atomically(std::string const& path, char const* op, Write&& write) {
  namespace fs = std::filesystem;
  fs::path const target(path);
  fs::path const tmp = target.parent_path() /
                       (target.filename().string() + ".tmp." + std::to_string(::getpid()));
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw io_error(core::concat(op, ": cannot open '", tmp.string(), "' for writing"));
      write(out);
      out.flush();
      if (!out) throw io_error(core::concat(op, ": write to '", tmp.string(), "' failed"));
    }
    std::error_code ec;
    fs::rename(tmp, target, ec);
    if (ec) {
      throw io_error(core::concat(op, ": cannot rename '", tmp.string(), "' to '", path,
                                  "': ", ec.message()));
    }
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

}  // namespace impl

/// Writes `data` to `path` in the binary format (atomically). Throws hax::io_error.
inline void write_binary(std::string const& path, host_split const& data) {
  constexpr char const* op = "hax::data::write_binary";
  recall_spec const& s = data.spec;
  std::uint32_t const tb = impl::token_bytes_for(s.vocab_size);
  std::size_t const cells = static_cast<std::size_t>(data.count) * s.padded_length;
  core::require(data.tokens.size() == cells && data.mask.size() == cells, op,
                "tokens/mask hold ", data.tokens.size(), "/", data.mask.size(),
                " cells, expected count * padded_length = ", cells);
  std::vector<unsigned char> payload(cells * tb + cells);
  for (std::size_t i = 0; i < cells; ++i) {
    auto const v = static_cast<std::uint32_t>(data.tokens[i]);
    for (std::uint32_t k = 0; k < tb; ++k) payload[i * tb + k] = static_cast<unsigned char>(v >> (8 * k));
  }
  for (std::size_t i = 0; i < cells; ++i) payload[cells * tb + i] = static_cast<unsigned char>(data.mask[i]);
  std::vector<unsigned char> h(kBinaryHeaderBytes, 0);
  std::memcpy(h.data(), kBinaryMagic, 8);
  impl::put_u32(h, 8, kBinaryVersion);
  impl::put_u32(h, 12, kBinaryHeaderBytes);
  impl::put_u64(h, 16, static_cast<std::uint64_t>(data.count));
  impl::put_u32(h, 24, static_cast<std::uint32_t>(s.padded_length));
  impl::put_u32(h, 28, tb);
  impl::put_u32(h, 32, static_cast<std::uint32_t>(s.levels));
  for (int l = 0; l < kMaxLevels; ++l) {
    impl::put_u32(h, 36 + 4 * l, static_cast<std::uint32_t>(s.n_min[l]));
    impl::put_u32(h, 52 + 4 * l, static_cast<std::uint32_t>(s.n_max[l]));
  }
  impl::put_u32(h, 68, static_cast<std::uint32_t>(s.n_values));
  impl::put_u32(h, 72, static_cast<std::uint32_t>(s.value_bias));
  impl::put_u32(h, 76, static_cast<std::uint32_t>(s.level_capacity));
  impl::put_u32(h, 80, static_cast<std::uint32_t>(s.vocab_size));
  impl::put_u32(h, 84, static_cast<std::uint32_t>(s.bos));
  impl::put_u32(h, 88, static_cast<std::uint32_t>(s.pad));
  impl::put_u32(h, 92, static_cast<std::uint32_t>(s.sep));
  impl::put_u32(h, 96, static_cast<std::uint32_t>(data.which));
  impl::put_u64(h, 104, s.seed);
  impl::put_u64(h, 112, static_cast<std::uint64_t>(data.first_item));
  for (int k = 0; k < 3; ++k) impl::put_u64(h, 120 + 8 * k, static_cast<std::uint64_t>(s.items_per_combination[k]));
  std::uint64_t const sum = fnv1a64(payload.data(), payload.size(), fnv1a64(h.data(), 144));
  impl::put_u64(h, 144, sum);
  impl::write_atomically(path, op, [&](std::ofstream& out) {
    out.write(reinterpret_cast<char const*>(h.data()), static_cast<std::streamsize>(h.size()));
    out.write(reinterpret_cast<char const*>(payload.data()), static_cast<std::streamsize>(payload.size()));
  });
}

/// Reads a file written by write_binary, checking magic, version, header, layout parameters,
/// size and checksum. Throws hax::io_error("hax::data::read_binary: '<path>': <problem>").
inline host_split read_binary(std::string const& path) {
  auto fail = [&](auto const&... what) {
    throw io_error(core::concat("hax::data::read_binary: '", path, "': ", what...));
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open the file");
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < kBinaryHeaderBytes) fail("truncated header (", bytes.size(), " bytes, need ", kBinaryHeaderBytes, ")");
  if (std::memcmp(bytes.data(), kBinaryMagic, 8) != 0) fail("wrong magic (not a hax joint-recall file)");
  std::uint32_t const version = impl::get_u32(bytes, 8);
  if (version != kBinaryVersion) fail("unsupported format version ", version, " (this build reads ", kBinaryVersion, ")");
  if (impl::get_u32(bytes, 12) != kBinaryHeaderBytes) fail("header size ", impl::get_u32(bytes, 12), " != ", kBinaryHeaderBytes);
  host_split d;
  recall_spec& s = d.spec;
  d.count = static_cast<std::int64_t>(impl::get_u64(bytes, 16));
  s.padded_length = static_cast<int>(impl::get_u32(bytes, 24));
  std::uint32_t const tb = impl::get_u32(bytes, 28);
  s.levels = static_cast<int>(impl::get_u32(bytes, 32));
  for (int l = 0; l < kMaxLevels; ++l) {
    s.n_min[l] = static_cast<int>(impl::get_u32(bytes, 36 + 4 * l));
    s.n_max[l] = static_cast<int>(impl::get_u32(bytes, 52 + 4 * l));
  }
  s.n_values = static_cast<int>(impl::get_u32(bytes, 68));
  s.value_bias = static_cast<int>(impl::get_u32(bytes, 72));
  s.level_capacity = static_cast<int>(impl::get_u32(bytes, 76));
  s.vocab_size = static_cast<int>(impl::get_u32(bytes, 80));
  s.bos = static_cast<int>(impl::get_u32(bytes, 84));
  s.pad = static_cast<int>(impl::get_u32(bytes, 88));
  s.sep = static_cast<int>(impl::get_u32(bytes, 92));
  std::uint32_t const which = impl::get_u32(bytes, 96);
  if (which > 2) fail("split id ", which, " is not 0 (train), 1 (valid) or 2 (test)");
  d.which = static_cast<split>(which);
  s.seed = impl::get_u64(bytes, 104);
  d.first_item = static_cast<std::int64_t>(impl::get_u64(bytes, 112));
  for (int k = 0; k < 3; ++k) s.items_per_combination[k] = static_cast<std::int64_t>(impl::get_u64(bytes, 120 + 8 * k));
  if (tb != 1 && tb != 2 && tb != 4) fail("token width ", tb, " is not 1, 2 or 4 bytes");
  if (d.count < 0 || d.count > (std::int64_t{1} << 40) || s.padded_length < 1) fail("implausible shape (", d.count, " items of ", s.padded_length, " tokens)");
  std::size_t const cells = static_cast<std::size_t>(d.count) * static_cast<std::size_t>(s.padded_length);
  std::size_t const expected = kBinaryHeaderBytes + cells * tb + cells;
  if (bytes.size() < expected) fail("truncated payload (", bytes.size(), " bytes, expected ", expected, ")");
  if (bytes.size() > expected) fail("trailing data (", bytes.size(), " bytes, expected ", expected, ")");
  std::uint64_t const sum = fnv1a64(bytes.data() + kBinaryHeaderBytes, cells * tb + cells, fnv1a64(bytes.data(), 144));
  if (sum != impl::get_u64(bytes, 144)) fail("checksum mismatch (the file is corrupted)");
  try {
    s = resolve(s, "hax::data::read_binary");
  } catch (invalid_argument const& e) {
    fail("inconsistent layout parameters: ", e.what());
  }
  if (impl::token_bytes_for(s.vocab_size) != tb) fail("token width ", tb, " does not match vocab_size ", s.vocab_size);
  d.tokens.resize(cells);
  d.mask.resize(cells);
  unsigned char const* p = bytes.data() + kBinaryHeaderBytes;
  for (std::size_t i = 0; i < cells; ++i) {
    std::uint32_t v = 0;
    for (std::uint32_t k = 0; k < tb; ++k) v |= static_cast<std::uint32_t>(p[i * tb + k]) << (8 * k);
    if (v >= static_cast<std::uint32_t>(s.vocab_size)) fail("token ", v, " at cell ", i, " is outside the vocabulary of ", s.vocab_size);
    d.tokens[i] = static_cast<std::int32_t>(v);
  }
  for (std::size_t i = 0; i < cells; ++i) {
    unsigned char const m = p[cells * tb + i];
    if (m > 1) fail("mask value ", int(m), " at cell ", i, " is not 0 or 1");
    d.mask[i] = static_cast<std::int8_t>(m);
  }
  return d;
}

/// Writes `data` as JSON Lines, one item per line: {"inputs": [ids...], "mask": [0/1...]}, the
/// full padded length, as the reference's HF dataset (atomically). Throws hax::io_error.
inline void write_jsonl(std::string const& path, host_split const& data) {
  std::int64_t const lp = data.spec.padded_length;
  impl::write_atomically(path, "hax::data::write_jsonl", [&](std::ofstream& out) {
    for (std::int64_t r = 0; r < data.count; ++r) {
      nlohmann::json line;
      line["inputs"] = std::vector<int>(data.tokens.begin() + r * lp, data.tokens.begin() + (r + 1) * lp);
      line["mask"] = std::vector<int>(data.mask.begin() + r * lp, data.mask.begin() + (r + 1) * lp);
      out << line.dump() << '\n';
    }
  });
}

/// Reads JSON Lines written by write_jsonl or the reference. Every line must be an object with
/// integer arrays `inputs` (ids in [0, vocab_size)) and `mask` (0/1) of one common length;
/// `spec` supplies vocab_size and is returned with padded_length set to that length (other
/// fields are not stored in the file). Throws hax::io_error naming the file, line and problem.
inline host_split read_jsonl(std::string const& path, recall_spec spec = {}) {
  std::ifstream in(path);
  if (!in) throw io_error(core::concat("hax::data::read_jsonl: '", path, "': cannot open the file"));
  host_split d;
  std::string text;
  std::int64_t line_no = 0;
  std::int64_t length = -1;
  auto fail = [&](auto const&... what) {
    throw io_error(core::concat("hax::data::read_jsonl: '", path, "' line ", line_no, ": ", what...));
  };
  while (std::getline(in, text)) {
    ++line_no;
    if (text.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (nlohmann::json::parse_error const& e) {
      fail("malformed JSON (", e.what(), ")");
    }
    if (!j.is_object()) fail("not a JSON object");
    for (char const* field : {"inputs", "mask"}) {
      if (!j.contains(field) || !j[field].is_array()) fail("missing array field '", field, "'");
    }
    auto const& inputs = j["inputs"];
    auto const& mask = j["mask"];
    if (inputs.size() != mask.size()) fail("'inputs' has ", inputs.size(), " entries but 'mask' has ", mask.size());
    if (length < 0) length = static_cast<std::int64_t>(inputs.size());
    if (static_cast<std::int64_t>(inputs.size()) != length || length < 2) fail("length ", inputs.size(), " differs from the first line's ", length, " (or is < 2)");
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (!inputs[i].is_number_integer()) fail("inputs[", i, "] is not an integer");
      if (!mask[i].is_number_integer()) fail("mask[", i, "] is not an integer");
      auto const v = inputs[i].get<long long>();
      auto const m = mask[i].get<long long>();
      if (v < 0 || v >= spec.vocab_size) fail("inputs[", i, "] = ", v, " is outside the vocabulary of ", spec.vocab_size);
      if (m != 0 && m != 1) fail("mask[", i, "] = ", m, " is not 0 or 1");
      d.tokens.push_back(static_cast<std::int32_t>(v));
      d.mask.push_back(static_cast<std::int8_t>(m));
    }
    ++d.count;
  }
  if (d.count == 0) throw io_error(core::concat("hax::data::read_jsonl: '", path, "': no items"));
  spec.padded_length = static_cast<int>(length);
  d.spec = spec;
  return d;
}

}  // namespace hax::data
