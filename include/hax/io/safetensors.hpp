// SPDX-License-Identifier: MIT
/// \file
/// safetensors export and import, for interchange with PyTorch (safetensors.torch.load_file /
/// save_file). The format (https://huggingface.co/docs/safetensors):
///
///     N (u64, little-endian) | header: N bytes of JSON | byte buffer
///
/// The header maps each tensor name to {"dtype": "F32", "shape": [...], "data_offsets": [begin,
/// end]} (offsets relative to the buffer start) plus an optional "__metadata__" object of string
/// values. hax writes F32, F64, BF16 (raw bits), I32, I64, U8, I8 and U64, and a name-mapping hook
/// renames tensors on the way out and in (hax parameter names <-> the reference's names).
/// Written atomically like checkpoints; every read is validated (header length within the file,
/// known dtypes, offsets in bounds and non-overlapping, dtype x shape = byte size, unique names).
#pragma once

#include <hax/core/error.hpp>
#include <hax/io/atomic_file.hpp>
#include <hax/io/impl/bytes.hpp>
#include <hax/io/tensor_set.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace hax::io {

/// Renames a tensor on export or import; an empty function keeps names as they are.
using NameMap = std::function<std::string(std::string const&)>;

/// The largest header hax reads (as the reference implementation does, 100 MB).
inline constexpr std::uint64_t kSafetensorsMaxHeaderSize = 100'000'000;

/// safetensors' name of a dtype ("F32", "BF16", ...).
constexpr std::string_view safetensors_dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "F32";
    case dtype::f64: return "F64";
    case dtype::bf16: return "BF16";
    case dtype::i32: return "I32";
    case dtype::i64: return "I64";
    case dtype::u8: return "U8";
    case dtype::i8: return "I8";
    case dtype::u64: return "U64";
  }
  return "?";
}

/// The dtype of a safetensors dtype name, or nothing for names hax does not handle (F16, BOOL...).
inline std::optional<dtype> dtype_from_safetensors_name(std::string_view name) {
  for (std::uint8_t code = 1; code <= 8; ++code) {
    auto const t = static_cast<dtype>(code);
    if (safetensors_dtype_name(t) == name) {
      return t;
    }
  }
  return std::nullopt;
}

namespace impl {

/// The complete header (length prefix included) and the order in which tensors fill the buffer.
struct SafetensorsLayout {
  std::vector<std::byte> head;      // u64 N + N bytes of JSON, padded with spaces to 8 bytes
  std::vector<std::size_t> order;   // tensor indices in buffer order
};

inline SafetensorsLayout plan_safetensors(TensorSet const& set, NameMap const& rename,
                                          std::string const& path) {
  constexpr char const* op = "hax::io::write_safetensors";
  nlohmann::json header = nlohmann::json::object();
  auto const& meta = set.metadata();
  core::require(meta.is_object(), op, "the metadata for \"", path, "\" must be a JSON object");
  for (auto const& [key, value] : meta.items()) {
    core::require(value.is_string(), op, "safetensors metadata values must be strings; \"", key,
                  "\" in the metadata for \"", path, "\" is a JSON ", value.type_name());
  }
  if (!meta.empty()) {
    header["__metadata__"] = meta;
  }

  // Larger elements first (stable, so ties keep the set's order): every tensor then starts at a
  // multiple of its element size, as in the reference implementation.
  SafetensorsLayout layout;
  layout.order.resize(set.size());
  std::iota(layout.order.begin(), layout.order.end(), std::size_t{0});
  std::stable_sort(layout.order.begin(), layout.order.end(), [&](std::size_t a, std::size_t b) {
    return dtype_size(set.tensors()[a].type) > dtype_size(set.tensors()[b].type);
  });
  std::uint64_t offset = 0;
  for (std::size_t const i : layout.order) {
    HostTensor const& t = set.tensors()[i];
    std::string const name = rename ? rename(t.name) : t.name;
    core::require(!name.empty() && name != "__metadata__", op, "tensor \"", t.name,
                  "\" is exported under the invalid name \"", name, "\"");
    core::require(!header.contains(name), op, "tensors map to the same name \"", name,
                  "\" (the last was \"", t.name, "\")");
    header[name] = {{"dtype", safetensors_dtype_name(t.type)},
                    {"shape", t.shape},
                    {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (nlohmann::json::exception const& e) {
    throw invalid_argument(core::concat(op, ": the header of \"", path,
                                        "\" cannot be serialised: ", e.what()));
  }
  text.resize(align_up(text.size(), 8), ' ');  // the reference pads with spaces to 8 bytes
  put(layout.head, static_cast<std::uint64_t>(text.size()));
  put_bytes(layout.head, text.data(), text.size());
  return layout;
}

}  // namespace impl

/// Writes `set` to `path` as safetensors, atomically. Tensor names pass through `rename` (if
/// set); the metadata must be a JSON object of strings (it becomes "__metadata__"; omitted when
/// empty). Throws hax::invalid_argument for bad names or metadata, hax::io_error for write
/// failures (the destination is then unchanged).
inline void write_safetensors(std::filesystem::path const& path, TensorSet const& set,
                              NameMap const& rename = {}) {
  auto const layout = impl::plan_safetensors(set, rename, path.string());
  AtomicFileWriter out(path);
  out.write(layout.head);
  for (std::size_t const i : layout.order) {
    out.write(set.tensors()[i].bytes);
  }
  out.commit();
}

/// Reads and validates the safetensors file at `path`. Tensor names pass through `rename` (if
/// set); "__metadata__" becomes the set's metadata (an object of strings, empty if absent).
/// Tensors come in buffer order. Throws hax::io_error "hax::io::read_safetensors: \"<path>\":
/// <problem>" for a missing, truncated or invalid file; never reads out of bounds.
inline TensorSet read_safetensors(std::filesystem::path const& path, NameMap const& rename = {}) {
  constexpr std::string_view op = "hax::io::read_safetensors";
  std::string const p = path.string();
  std::vector<std::byte> const file = impl::read_file(path, op);
  std::span<std::byte const> const bytes(file);
  auto fail = [&](auto const&... what) -> void {
    throw io_error(core::concat(op, ": \"", p, "\": ", what...));
  };

  if (bytes.size() < 8) {
    fail("truncated: ", bytes.size(), " bytes, fewer than the 8-byte header length");
  }
  auto const n = impl::load<std::uint64_t>(bytes, 0);
  if (n > bytes.size() - 8 || n > kSafetensorsMaxHeaderSize) {
    fail("the header length ", n, " exceeds the ", bytes.size() - 8,
         " bytes after the length field (or the ", kSafetensorsMaxHeaderSize, "-byte limit)");
  }
  std::string_view const text(reinterpret_cast<char const*>(bytes.data()) + 8, n);
  auto const buffer = bytes.subspan(8 + n);

  // nlohmann keeps the last of duplicate keys silently; the parser callback sees every key.
  std::unordered_set<std::string> keys;
  std::string duplicate;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, [&](int depth, nlohmann::json::parse_event_t event,
                                             nlohmann::json& parsed) {
      if (event == nlohmann::json::parse_event_t::key && depth == 1 &&
          !keys.insert(parsed.get<std::string>()).second && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
      return true;
    });
  } catch (nlohmann::json::exception const& e) {
    fail("the header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) {
    fail("the header is a JSON ", header.type_name(), ", not an object");
  }
  if (!duplicate.empty()) {
    fail("duplicate tensor name \"", duplicate, "\"");
  }

  struct Entry {
    HostTensor tensor;
    std::uint64_t begin = 0, end = 0;
  };
  std::vector<Entry> entries;
  TensorSet set;
  for (auto const& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) {
        fail("__metadata__ is a JSON ", value.type_name(), ", not an object");
      }
      for (auto const& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          fail("__metadata__ value \"", mk, "\" is a JSON ", mv.type_name(), ", not a string");
        }
      }
      set.metadata() = value;
      continue;
    }
    if (key.empty()) {
      fail("a tensor has an empty name");
    }
    if (!value.is_object() || value.size() != 3 || !value.contains("dtype") ||
        !value.contains("shape") || !value.contains("data_offsets")) {
      fail("tensor \"", key, "\": expected an object with exactly dtype, shape and data_offsets");
    }
    auto const& jd = value["dtype"];
    auto const& js = value["shape"];
    auto const& jo = value["data_offsets"];
    Entry e;
    e.tensor.name = key;
    std::optional<dtype> type;
    if (jd.is_string()) {
      type = dtype_from_safetensors_name(jd.get<std::string>());
    }
    if (!type) {
      fail("tensor \"", key, "\" has unsupported dtype ", jd.dump(),
           " (hax reads F32, F64, BF16, I32, I64, U8, I8, U64)");
    }
    e.tensor.type = *type;
    if (!js.is_array() || js.size() > static_cast<std::size_t>(kMaxRank) ||
        !std::all_of(js.begin(), js.end(), [](auto const& d) { return d.is_number_unsigned(); })) {
      fail("tensor \"", key, "\": shape ", js.dump(), " is not a list of at most ", kMaxRank,
           " non-negative integers");
    }
    for (auto const& d : js) {
      e.tensor.shape.push_back(d.template get<std::uint64_t>());
    }
    if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() ||
        !jo[1].is_number_unsigned()) {
      fail("tensor \"", key, "\": data_offsets ", jo.dump(), " is not [begin, end]");
    }
    e.begin = jo[0].get<std::uint64_t>();
    e.end = jo[1].get<std::uint64_t>();
    if (e.begin > e.end || e.end > buffer.size()) {
      fail("tensor \"", key, "\": data_offsets [", e.begin, ", ", e.end,
           "] lie outside the ", buffer.size(), "-byte buffer (truncated file?)");
    }
    auto const numel = checked_numel(e.tensor.shape);
    if (!numel || *numel > e.end - e.begin ||
        *numel * dtype_size(e.tensor.type) != e.end - e.begin) {
      fail("tensor \"", key, "\": ", e.end - e.begin, " bytes do not match dtype ",
           jd.get<std::string>(), " and shape ", format_shape(e.tensor.shape));
    }
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(),
            [](Entry const& a, Entry const& b) { return a.begin < b.begin; });
  // Empty tensors occupy no bytes and overlap nothing; the others must not share a byte.
  Entry const* previous = nullptr;
  for (Entry const& e : entries) {
    if (e.begin == e.end) {
      continue;
    }
    if (previous != nullptr && e.begin < previous->end) {
      fail("tensors \"", previous->tensor.name, "\" and \"", e.tensor.name,
           "\" overlap in the buffer");
    }
    previous = &e;
  }
  std::unordered_set<std::string> mapped;
  for (Entry& e : entries) {
    auto const payload = buffer.subspan(e.begin, e.end - e.begin);
    e.tensor.bytes.assign(payload.begin(), payload.end());
    if (rename) {
      std::string const original = e.tensor.name;
      e.tensor.name = rename(original);
      if (e.tensor.name.empty() || !mapped.insert(e.tensor.name).second) {
        fail("tensor \"", original, "\" maps to an empty or already used name \"",
             e.tensor.name, "\"");
      }
    }
    set.add(std::move(e.tensor));
  }
  return set;
}

}  // namespace hax::io
