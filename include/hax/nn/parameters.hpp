// SPDX-License-Identifier: MIT
/// \file
/// The parameter store: named parameters with shapes (rank 1..3) and init policies, laid out in
/// one contiguous device buffer for the values and one each for the gradients and AdamW's two
/// moments, with unmanaged LayoutRight Views of each parameter pointing into them (llm.c's
/// malloc_and_point_parameters). AdamW, zero_grad, the gradient norm and a future gradient
/// all-reduce are then single passes over flat buffers. See docs/parameters.md.
///
/// Lifecycle: add(...) every parameter (and exclude_from_weight_decay(...) if wanted), then
/// finalize(space) allocates the buffers (gradients and moments zeroed), then initialize(space,
/// seed) writes the initial values. entries() is in registration order, which checkpoints rely on.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/finite.hpp>
#include <hax/nn/init.hpp>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace hax::nn {

/// Named parameters of scalar type T in one flat allocation per role (values, grads, m, v).
///
/// Layout: parameters that get weight decay come first, then those excluded from it; within each
/// group, registration order, with no gaps. With no exclusions (the reference's default: decay on
/// everything) the layout is exactly registration order. Elements [0, decay_count()) are decayed.
template <execution_space Space, class T = float>
class ParameterStore {
 public:
  using execution_space = Space;
  using memory_space = typename Space::memory_space;
  using value_type = T;
  /// A flat buffer over all parameters.
  using flat_view = Kokkos::View<T*, Kokkos::LayoutRight, memory_space>;  // (count())
  /// A parameter's View into a flat buffer (the store keeps the memory alive).
  template <class DataType>
  using unmanaged_view =
      Kokkos::View<DataType, Kokkos::LayoutRight, memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

  /// One registered parameter.
  struct Entry {
    std::string name;
    std::vector<std::size_t> shape;  // rank 1..3, row-major (LayoutRight)
    init::Policy init;
    bool weight_decay = true;
    std::size_t offset = 0;  // element offset into the flat buffers (valid after finalize)

    std::size_t size() const {
      std::size_t n = 1;
      for (auto e : shape) {
        n *= e;
      }
      return n;
    }
  };

  /// Registers a parameter; returns its index (registration order). Names must be unique and
  /// non-empty; shapes rank 1..3 with every extent ≥ 1. Throws hax::invalid_argument otherwise,
  /// or after finalize().
  std::size_t add(std::string name, std::vector<std::size_t> shape, init::Policy init) {
    constexpr char const* op = "hax::nn::ParameterStore::add";
    core::require(!finalized_, op, "cannot add \"", name, "\" after finalize()");
    core::require(!name.empty(), op, "parameter names must be non-empty");
    if (auto const it = index_.find(name); it != index_.end()) {
      throw invalid_argument(core::concat(op, ": duplicate parameter name \"", name, "\" (shape ",
                                          shape_string(entries_[it->second].shape),
                                          " already registered, new shape ", shape_string(shape),
                                          ")"));
    }
    core::require(!shape.empty() && shape.size() <= 3, op, "parameter \"", name,
                  "\" must have rank 1..3, got rank ", shape.size(), " ", shape_string(shape));
    for (auto e : shape) {
      core::require(e >= 1, op, "parameter \"", name, "\" has an empty extent in shape ",
                    shape_string(shape));
    }
    index_.emplace(name, entries_.size());
    entries_.push_back(Entry{std::move(name), std::move(shape), init, true, 0});
    return entries_.size() - 1;
  }

  /// Excludes a registered parameter from weight decay (before finalize()).
  void exclude_from_weight_decay(std::string_view name) {
    constexpr char const* op = "hax::nn::ParameterStore::exclude_from_weight_decay";
    core::require(!finalized_, op, "cannot change \"", name, "\" after finalize()");
    entries_[index_of(name)].weight_decay = false;
  }

  /// Assigns offsets and allocates the four flat buffers on `space` (grads, m and v zeroed;
  /// values left for initialize()). Asynchronous on `space`. Throws if empty or called twice.
  void finalize(Space const& space) {
    constexpr char const* op = "hax::nn::ParameterStore::finalize";
    core::require(!finalized_, op, "finalize() called twice");
    core::require(!entries_.empty(), op, "no parameters registered");
    std::size_t offset = 0;
    for (bool decayed : {true, false}) {
      for (auto& e : entries_) {
        if (e.weight_decay == decayed) {
          e.offset = offset;
          offset += e.size();
        }
      }
      if (decayed) {
        decay_count_ = offset;
      }
    }
    count_ = offset;
    values_ = flat_view(Kokkos::view_alloc(space, Kokkos::WithoutInitializing,
                                           std::string("hax::nn::parameters::values")),
                        count_);
    grads_ = flat_view(Kokkos::view_alloc(space, std::string("hax::nn::parameters::grads")), count_);
    m_ = flat_view(Kokkos::view_alloc(space, std::string("hax::nn::parameters::adam_m")), count_);
    v_ = flat_view(Kokkos::view_alloc(space, std::string("hax::nn::parameters::adam_v")), count_);
    finalized_ = true;
  }

  /// Writes every parameter's initial values from its policy (see init.hpp: element i of
  /// parameter `name` depends only on (seed, name, i)). Asynchronous on `space`.
  void initialize(Space const& space, std::uint64_t seed) const {
    require_finalized("hax::nn::ParameterStore::initialize");
    for (auto const& e : entries_) {
      auto const slice = Kokkos::subview(values_, Kokkos::pair<std::size_t, std::size_t>(
                                                      e.offset, e.offset + e.size()));
      init::fill(space, e.init, slice, seed, e.name, e.shape);
    }
  }

  /// grads = 0, one pass (asynchronous on `space`).
  void zero_grad(Space const& space) const {
    require_finalized("hax::nn::ParameterStore::zero_grad");
    Kokkos::deep_copy(space, grads_, T(0));
  }

  /// Σ g² over all gradients and the count of non-finite gradients in one reduction, into the
  /// rank-0 device View `stats` (global L2 norm = sqrt(stats().sum_squares)). Asynchronous.
  template <class Stats>
  void grad_stats(Space const& space, Stats const& stats) const {
    require_finalized("hax::nn::ParameterStore::grad_stats");
    core::sum_squares_and_count_nonfinite(space, grads_, stats);
  }

  bool finalized() const { return finalized_; }
  /// Number of registered parameters (tensors).
  std::size_t size() const { return entries_.size(); }
  /// Total number of scalar parameters.
  std::size_t count() const {
    std::size_t n = 0;
    for (auto const& e : entries_) {
      n += e.size();
    }
    return n;
  }
  /// Elements [0, decay_count()) of the flat buffers get weight decay (valid after finalize).
  std::size_t decay_count() const { return decay_count_; }
  /// All parameters in registration order.
  std::vector<Entry> const& entries() const { return entries_; }
  bool contains(std::string_view name) const { return index_.contains(std::string(name)); }

  /// Index of a parameter in registration order; throws hax::invalid_argument for unknown names.
  std::size_t index_of(std::string_view name) const {
    auto const it = index_.find(std::string(name));
    if (it == index_.end()) {
      std::ostringstream known;
      for (std::size_t i = 0; i < entries_.size() && i < 8; ++i) {
        known << (i ? ", " : "") << entries_[i].name;
      }
      if (entries_.size() > 8) {
        known << ", ...";
      }
      throw invalid_argument(core::concat("hax::nn::ParameterStore: unknown parameter \"", name,
                                          "\" (", entries_.size(), " registered: ", known.str(),
                                          ")"));
    }
    return it->second;
  }
  Entry const& entry(std::string_view name) const { return entries_[index_of(name)]; }

  /// Flat buffers (count()); valid after finalize().
  flat_view const& values() const { return values_; }
  flat_view const& grads() const { return grads_; }
  flat_view const& adam_m() const { return m_; }
  flat_view const& adam_v() const { return v_; }

  /// The parameter `name` as a Rank-dimensional View into values() (Rank must equal its rank).
  template <int Rank>
  auto value(std::string_view name) const {
    return view_into<Rank>(values_, name, "hax::nn::ParameterStore::value");
  }
  /// The gradient of `name` as a Rank-dimensional View into grads().
  template <int Rank>
  auto grad(std::string_view name) const {
    return view_into<Rank>(grads_, name, "hax::nn::ParameterStore::grad");
  }

  /// "(a, b, c)".
  static std::string shape_string(std::vector<std::size_t> const& shape) {
    std::ostringstream out;
    out << '(';
    for (std::size_t i = 0; i < shape.size(); ++i) {
      out << (i ? ", " : "") << shape[i];
    }
    out << ')';
    return out.str();
  }

 private:
  void require_finalized(char const* op) const {
    core::require(finalized_, op, "the store must be finalize()d first");
  }

  template <int Rank>
  auto view_into(flat_view const& buffer, std::string_view name, char const* op) const {
    static_assert(Rank >= 1 && Rank <= 3,
                  "hax::nn::ParameterStore::value/grad: parameters have rank 1..3");
    require_finalized(op);
    auto const& e = entries_[index_of(name)];
    core::require(e.shape.size() == static_cast<std::size_t>(Rank), op, "parameter \"", name,
                  "\" has rank ", e.shape.size(), " ", shape_string(e.shape),
                  ", requested as rank ", Rank);
    T* const data = buffer.data() + e.offset;
    if constexpr (Rank == 1) {
      return unmanaged_view<T*>(data, e.shape[0]);
    } else if constexpr (Rank == 2) {
      return unmanaged_view<T**>(data, e.shape[0], e.shape[1]);
    } else {
      return unmanaged_view<T***>(data, e.shape[0], e.shape[1], e.shape[2]);
    }
  }

  std::vector<Entry> entries_;                         // registration order
  std::unordered_map<std::string, std::size_t> index_;  // name -> index into entries_
  bool finalized_ = false;
  std::size_t count_ = 0;
  std::size_t decay_count_ = 0;
  flat_view values_;  // (count_)
  flat_view grads_;   // (count_)
  flat_view m_;       // (count_) AdamW first moment
  flat_view v_;       // (count_) AdamW second moment
};

}  // namespace hax::nn
