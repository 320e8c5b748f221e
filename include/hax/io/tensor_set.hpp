// SPDX-License-Identifier: MIT
/// \file
/// The in-memory side of hax's tensor files: element types (`dtype`), host copies of tensors
/// (`HostTensor`, row-major bytes) and `TensorSet`, a named collection of tensors plus a JSON
/// metadata object. A TensorSet is filled from Kokkos Views in any memory space, written with
/// hax::io::write_checkpoint or hax::io::write_safetensors, read back with read_checkpoint or
/// read_safetensors, and copied into caller-provided Views of the right dtype and shape.
///
/// Everything here is host code that synchronises (it copies to and from the host): it belongs
/// to checkpointing and export, outside the training step.
#pragma once

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>

#include <Kokkos_Core.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace hax::io {

/// Element types a tensor file can hold. The numeric codes are part of the checkpoint format
/// (docs/checkpoint_format.md): never renumber, only append.
enum class dtype : std::uint8_t {
  f32 = 1,
  f64 = 2,
  bf16 = 3,  // raw 16-bit bfloat16 (the upper half of an IEEE binary32), see bfloat16_bits
  i32 = 4,
  i64 = 5,
  u8 = 6,
  i8 = 7,
  u64 = 8,
};

/// The largest tensor rank hax files hold (rank 0 = scalar).
inline constexpr int kMaxRank = 4;

/// A bfloat16 value as its raw 16 bits; hax does not compute in bf16, it only stores and moves it.
struct bfloat16_bits {
  std::uint16_t bits;  // sign, 8 exponent bits, 7 mantissa bits
  friend constexpr bool operator==(bfloat16_bits, bfloat16_bits) = default;
};

/// Bytes per element of `t`.
constexpr std::size_t dtype_size(dtype t) {
  switch (t) {
    case dtype::u8:
    case dtype::i8: return 1;
    case dtype::bf16: return 2;
    case dtype::f32:
    case dtype::i32: return 4;
    case dtype::f64:
    case dtype::i64:
    case dtype::u64: return 8;
  }
  return 0;
}

/// Lower-case name of `t` ("f32", "bf16", ...), for messages and docs.
constexpr std::string_view dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f64: return "f64";
    case dtype::bf16: return "bf16";
    case dtype::i32: return "i32";
    case dtype::i64: return "i64";
    case dtype::u8: return "u8";
    case dtype::i8: return "i8";
    case dtype::u64: return "u64";
  }
  return "unknown";
}

/// The dtype with numeric code `code`, or nothing for an unknown code.
constexpr std::optional<dtype> dtype_from_code(std::uint8_t code) {
  if (code >= 1 && code <= 8) {
    return static_cast<dtype>(code);
  }
  return std::nullopt;
}

/// dtype_of<T>::value: the dtype that stores C++ element type T (absent for other types).
template <class T>
struct dtype_of {};
template <> struct dtype_of<float> { static constexpr dtype value = dtype::f32; };
template <> struct dtype_of<double> { static constexpr dtype value = dtype::f64; };
template <> struct dtype_of<bfloat16_bits> { static constexpr dtype value = dtype::bf16; };
template <> struct dtype_of<std::int32_t> { static constexpr dtype value = dtype::i32; };
template <> struct dtype_of<std::int64_t> { static constexpr dtype value = dtype::i64; };
template <> struct dtype_of<std::uint8_t> { static constexpr dtype value = dtype::u8; };
template <> struct dtype_of<std::int8_t> { static constexpr dtype value = dtype::i8; };
template <> struct dtype_of<std::uint64_t> { static constexpr dtype value = dtype::u64; };

/// An element type a tensor file can store.
template <class T>
concept storable = requires { dtype_of<std::remove_cv_t<T>>::value; };

/// "(2, 3)" for shape {2, 3}, "()" for a scalar.
inline std::string format_shape(std::vector<std::uint64_t> const& shape) {
  std::ostringstream out;
  out << '(';
  for (std::size_t i = 0; i < shape.size(); ++i) {
    out << (i ? ", " : "") << shape[i];
  }
  out << ')';
  return out.str();
}

/// Number of elements of `shape`, or nothing if the product overflows 64 bits.
inline std::optional<std::uint64_t> checked_numel(std::vector<std::uint64_t> const& shape) {
  std::uint64_t n = 1;
  for (std::uint64_t const d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) {
      return std::nullopt;
    }
  }
  return n;
}

/// A tensor copied to the host: elements in row-major (C) order, little-endian.
struct HostTensor {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::uint64_t> shape;  // (rank), rank <= kMaxRank
  std::vector<std::byte> bytes;      // (numel * dtype_size(type))

  [[nodiscard]] std::uint64_t numel() const { return checked_numel(shape).value_or(0); }
};

namespace impl {

/// Calls f(element) for every element of a host-accessible View of rank <= 4, in row-major order,
/// whatever the View's layout.
template <class HostView, class F>
void for_each_row_major(HostView const& h, F&& f) {
  constexpr int r = HostView::rank();
  static_assert(r <= kMaxRank, "hax::io: tensor files hold ranks 0..4");
  if constexpr (r == 0) {
    f(h());
  } else if constexpr (r == 1) {
    for (std::size_t i = 0; i < h.extent(0); ++i) { f(h(i)); }
  } else if constexpr (r == 2) {
    for (std::size_t i = 0; i < h.extent(0); ++i) {
      for (std::size_t j = 0; j < h.extent(1); ++j) { f(h(i, j)); }
    }
  } else if constexpr (r == 3) {
    for (std::size_t i = 0; i < h.extent(0); ++i) {
      for (std::size_t j = 0; j < h.extent(1); ++j) {
        for (std::size_t k = 0; k < h.extent(2); ++k) { f(h(i, j, k)); }
      }
    }
  } else {
    for (std::size_t i = 0; i < h.extent(0); ++i) {
      for (std::size_t j = 0; j < h.extent(1); ++j) {
        for (std::size_t k = 0; k < h.extent(2); ++k) {
          for (std::size_t l = 0; l < h.extent(3); ++l) { f(h(i, j, k, l)); }
        }
      }
    }
  }
}

/// True when the View's elements already sit in row-major order without gaps.
template <class V>
bool is_row_major_contiguous(V const& v) {
  return V::rank() <= 1 ? v.span_is_contiguous()
                        : (std::is_same_v<typename V::array_layout, Kokkos::LayoutRight> &&
                           v.span_is_contiguous());
}

/// A row-major contiguous copy of `v` in v's own memory space, made on `space`. Kokkos copies
/// between memory spaces only contiguous spans, so a strided device View (a subview) goes to and
/// from the host through this staging copy.
template <class Space, class V>
auto row_major_copy(Space const& space, V const& v) {
  using Contiguous = Kokkos::View<typename V::non_const_data_type, Kokkos::LayoutRight,
                                  typename V::memory_space>;
  Kokkos::LayoutRight layout;
  for (std::size_t r = 0; r < V::rank(); ++r) {
    layout.dimension[r] = v.extent(r);
  }
  Contiguous c(Kokkos::view_alloc(space, Kokkos::WithoutInitializing,
                                  std::string("hax::io::staging")),
               layout);
  Kokkos::deep_copy(space, c, v);
  return c;
}

/// True when `v` lives where the host cannot read it and its span has gaps: then it needs the
/// staging copy above to cross to the host.
template <class V>
bool needs_device_staging(V const& v) {
  return !Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename V::memory_space>::accessible &&
         !v.span_is_contiguous();
}

template <class V>
std::vector<std::uint64_t> shape_of(V const& v) {
  std::vector<std::uint64_t> shape(V::rank());
  for (std::size_t r = 0; r < V::rank(); ++r) {
    shape[r] = v.extent(r);
  }
  return shape;
}

}  // namespace impl

/// Named tensors (kept in insertion order) plus a free-form JSON metadata object.
///
/// Adding a View copies it to the host at once (later changes to the View are not seen); copying
/// out checks dtype and shape and writes into the caller's View. Both fence the execution space.
class TensorSet {
 public:
  TensorSet() = default;

  /// The metadata (a JSON object the trainer fills: config, step, RNG states, data position...).
  [[nodiscard]] nlohmann::json& metadata() { return metadata_; }
  [[nodiscard]] nlohmann::json const& metadata() const { return metadata_; }

  /// Copies View `v` (any memory space, any layout, rank <= 4, storable element type) to the host
  /// under `name`. Fences `space`. Throws hax::invalid_argument for an empty or duplicate name.
  template <execution_space Space, class V>
    requires Kokkos::is_view_v<V>
  void add(Space const& space, std::string name, V const& v) {
    using T = typename V::non_const_value_type;
    static_assert(storable<T>,
                  "hax::io::TensorSet::add: the View's element type has no dtype (use float, "
                  "double, bfloat16_bits, int32_t, int64_t, uint8_t, int8_t or uint64_t)");
    static_assert(V::rank() <= kMaxRank, "hax::io::TensorSet::add: tensor files hold ranks 0..4");
    check_new_name(name, "hax::io::TensorSet::add");
    if (impl::needs_device_staging(v)) {  // a strided device View: stage it contiguously first
      add(space, std::move(name), impl::row_major_copy(space, v));
      return;
    }
    space.fence("hax::io::TensorSet::add");  // pending kernels on `space` may still write v
    auto const host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, v);
    HostTensor t;
    t.name = std::move(name);
    t.type = dtype_of<T>::value;
    t.shape = impl::shape_of(host);
    t.bytes.resize(host.size() * sizeof(T));
    if (impl::is_row_major_contiguous(host)) {
      if (!t.bytes.empty()) {
        std::memcpy(t.bytes.data(), host.data(), t.bytes.size());
      }
    } else {
      std::byte* out = t.bytes.data();
      impl::for_each_row_major(host, [&out](T const& x) {
        std::memcpy(out, &x, sizeof(T));
        out += sizeof(T);
      });
    }
    insert(std::move(t));
  }

  /// Overload on the default instance of the View's execution space.
  template <class V>
    requires Kokkos::is_view_v<V>
  void add(std::string name, V const& v) {
    add(typename V::execution_space{}, std::move(name), v);
  }

  /// Adds a tensor already on the host (e.g. one read from another file). Checks that the byte
  /// size matches dtype and shape; throws hax::invalid_argument otherwise or for a duplicate name.
  void add(HostTensor t) {
    check_new_name(t.name, "hax::io::TensorSet::add");
    core::require(t.shape.size() <= static_cast<std::size_t>(kMaxRank), "hax::io::TensorSet::add",
                  "tensor \"", t.name, "\" has rank ", t.shape.size(), " > ", kMaxRank);
    auto const n = checked_numel(t.shape);
    core::require(n && *n <= t.bytes.size() && *n * dtype_size(t.type) == t.bytes.size(),
                  "hax::io::TensorSet::add", "tensor \"", t.name, "\" of dtype ",
                  dtype_name(t.type), " and shape ", format_shape(t.shape), " has ",
                  t.bytes.size(), " bytes");
    insert(std::move(t));
  }

  [[nodiscard]] bool contains(std::string_view name) const {
    return index_.find(std::string(name)) != index_.end();
  }

  /// The tensor called `name`; throws hax::invalid_argument naming it if absent.
  [[nodiscard]] HostTensor const& at(std::string_view name) const {
    auto const it = index_.find(std::string(name));
    core::require(it != index_.end(), "hax::io::TensorSet::at", "no tensor named \"", name,
                  "\" (the set holds ", tensors_.size(), " tensors)");
    return tensors_[it->second];
  }

  /// All tensors, in insertion (or file) order.
  [[nodiscard]] std::vector<HostTensor> const& tensors() const { return tensors_; }
  [[nodiscard]] std::size_t size() const { return tensors_.size(); }

  /// Copies tensor `name` into View `v` (any memory space and layout). The View must have the
  /// tensor's dtype and shape: otherwise hax::invalid_argument names the tensor and both
  /// dtypes/shapes. Fences `space` (the copy is complete on return).
  template <execution_space Space, class V>
    requires Kokkos::is_view_v<V>
  void copy_to(Space const& space, std::string_view name, V const& v) const {
    using T = typename V::non_const_value_type;
    static_assert(!std::is_const_v<typename V::value_type>,
                  "hax::io::TensorSet::copy_to: the destination View must not be const");
    static_assert(storable<T>, "hax::io::TensorSet::copy_to: the View's element type has no dtype");
    static_assert(V::rank() <= kMaxRank, "hax::io::TensorSet::copy_to: tensor files hold ranks 0..4");
    HostTensor const& t = at(name);
    auto const view_shape = impl::shape_of(v);
    core::require(t.type == dtype_of<T>::value && t.shape == view_shape,
                  "hax::io::TensorSet::copy_to", "tensor \"", name, "\" is ", dtype_name(t.type),
                  ' ', format_shape(t.shape), " in the file but the View \"", v.label(), "\" is ",
                  dtype_name(dtype_of<T>::value), ' ', format_shape(view_shape));
    if (impl::needs_device_staging(v)) {  // a strided device View: fill a contiguous copy first
      auto const staging = impl::row_major_copy(space, v);
      copy_to(space, name, staging);
      Kokkos::deep_copy(space, v, staging);
      space.fence("hax::io::TensorSet::copy_to");  // `staging` is released on return
      return;
    }
    auto host = Kokkos::create_mirror_view(Kokkos::HostSpace{}, v);
    space.fence("hax::io::TensorSet::copy_to");  // host may alias v: no kernel may still use it
    if (impl::is_row_major_contiguous(host)) {
      if (!t.bytes.empty()) {
        std::memcpy(host.data(), t.bytes.data(), t.bytes.size());
      }
    } else {
      std::byte const* in = t.bytes.data();
      impl::for_each_row_major(host, [&in](T& x) {
        std::memcpy(&x, in, sizeof(T));
        in += sizeof(T);
      });
    }
    Kokkos::deep_copy(space, v, host);
    space.fence("hax::io::TensorSet::copy_to");  // `host` is released on return
  }

  /// Overload on the default instance of the View's execution space.
  template <class V>
    requires Kokkos::is_view_v<V>
  void copy_to(std::string_view name, V const& v) const {
    copy_to(typename V::execution_space{}, name, v);
  }

 private:
  void check_new_name(std::string const& name, std::string_view op) const {
    core::require(!name.empty(), op, "a tensor name must not be empty");
    core::require(!contains(name), op, "duplicate tensor name \"", name, "\"");
  }
  void insert(HostTensor t) {
    index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  nlohmann::json metadata_ = nlohmann::json::object();  // free-form object
  std::vector<HostTensor> tensors_;                      // (size()) in insertion order
  std::unordered_map<std::string, std::size_t> index_;   // name -> position in tensors_
};

}  // namespace hax::io
