// SPDX-License-Identifier: MIT
/// \file
/// Parameter initialisers (hax::nn::init): the policies the reference models use (semantics.md
/// section 2, "Initialisation"), as plain structs in one std::variant, and `fill`, which writes a
/// policy's values into a contiguous View on the device.
///
/// Reproducibility: element i of a parameter is a pure function of (seed, parameter name, i):
/// its draws come from the counter-based stream hax::core::RngStream(param_key(seed, name), 2·i),
/// so the values are identical on every backend, thread count and registration order.
/// Each element owns two draws (Box-Muller needs two; the uniform policies use the first).
/// See docs/parameters.md.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/random.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace hax::nn::init {

/// All zeros (biases, the reference's zero-initialised Linear biases).
struct Zeros {};
/// All ones (RMSNorm weights, D, the sparse branch's E).
struct Ones {};
/// Every element equal to `value`.
struct Constant {
  double value;
};
/// N(mean, std²) (Linear and embedding weights: N(0, init_range)).
struct Normal {
  double mean = 0.0;
  double std = 1.0;
};
/// U(low, high).
struct Uniform {
  double low;
  double high;
};
/// PyTorch's default Linear/Conv1d reset_parameters: kaiming_uniform_(a = √5) for the weight,
/// i.e. U(±bound) with bound = gain·√3/√fan_in = 1/√fan_in (gain = √(2/(1+a²)) = √(1/3)); the
/// bias uses the same bound 1/√fan_in of the weight's fan_in. fan_in = 0 derives it from the
/// shape: the product of all extents but the first ((out, in) → in; (C, 1, 4) or (C, 4) → 4);
/// rank-1 parameters (biases) must give it. `scale` multiplies the bound (Mamba-2's out_proj
/// uses 1/√num_layers).
struct KaimingUniform {
  std::int64_t fan_in = 0;
  double scale = 1.0;
};
/// Mamba's dt bias: dt = exp(U(log dt_min, log dt_max)), clamped to ≥ dt_floor, stored as
/// softplus⁻¹(dt) = dt + log(−expm1(−dt)) so that softplus(bias) = dt.
struct DtBias {
  double dt_min = 1e-3;
  double dt_max = 0.1;
  double dt_floor = 1e-4;
};
/// A_log: element i is log(1 + (i mod last extent)). For Mamba-1's (d_inner, N) every row is
/// log(1..N); for Mamba-2's (H) it is log(1..H).
struct ALog {};

/// One of the initialisers above.
using Policy = std::variant<Zeros, Ones, Constant, Normal, Uniform, KaimingUniform, DtBias, ALog>;

/// A short name of a policy, for messages and docs ("normal", "kaiming_uniform", ...).
inline char const* policy_name(Policy const& p) {
  constexpr char const* names[] = {"zeros",   "ones",            "constant", "normal",
                                   "uniform", "kaiming_uniform", "dt_bias",  "a_log"};
  return names[p.index()];
}

/// FNV-1a 64-bit hash of a name (stable across platforms and compilers).
constexpr std::uint64_t name_hash(std::string_view name) {
  std::uint64_t h = 0xCBF29CE484222325ULL;
  for (char c : name) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 0x100000001B3ULL;
  }
  return h;
}

/// Domain tag that keeps init streams apart from other users of stream_key with the same seed.
inline constexpr std::uint64_t kInitDomain = 0x1A17'0000'0000'0001ULL;

/// The stream key of a parameter's initial values.
constexpr std::uint64_t param_key(std::uint64_t seed, std::string_view name) {
  return core::stream_key(seed, kInitDomain, name_hash(name));
}

/// softplus⁻¹(y) = log(exp(y) − 1) = y + log(−expm1(−y)) for y > 0 (stable for small and large y).
KOKKOS_INLINE_FUNCTION double softplus_inverse(double y) {
  return y + Kokkos::log(-Kokkos::expm1(-y));
}

/// The stream element i draws from.
KOKKOS_INLINE_FUNCTION core::RngStream element_stream(std::uint64_t key, std::int64_t i) {
  return core::RngStream(key, 2 * static_cast<std::uint64_t>(i));
}

namespace impl {

/// What a device kernel evaluates: every policy reduced to one of these, with the shape resolved
/// on the host (KaimingUniform becomes Uniform, Zeros/Ones become Constant).
KOKKOS_INLINE_FUNCTION double sample(Constant const& p, std::uint64_t, std::int64_t,
                                     std::int64_t) {
  return p.value;
}
KOKKOS_INLINE_FUNCTION double sample(Normal const& p, std::uint64_t key, std::int64_t i,
                                     std::int64_t) {
  auto rng = element_stream(key, i);
  return p.mean + p.std * rng.normal();
}
KOKKOS_INLINE_FUNCTION double sample(Uniform const& p, std::uint64_t key, std::int64_t i,
                                     std::int64_t) {
  auto rng = element_stream(key, i);
  return p.low + (p.high - p.low) * rng.uniform();
}
KOKKOS_INLINE_FUNCTION double sample(DtBias const& p, std::uint64_t key, std::int64_t i,
                                     std::int64_t) {
  auto rng = element_stream(key, i);
  double const log_min = Kokkos::log(p.dt_min);
  double const log_max = Kokkos::log(p.dt_max);
  double dt = Kokkos::exp(log_min + (log_max - log_min) * rng.uniform());
  dt = Kokkos::max(dt, p.dt_floor);
  return softplus_inverse(dt);
}
KOKKOS_INLINE_FUNCTION double sample(ALog const&, std::uint64_t, std::int64_t i,
                                     std::int64_t last_extent) {
  return Kokkos::log(static_cast<double>(1 + i % last_extent));
}

/// The device-evaluable form of `p` for a parameter of this shape (validates the policy).
inline std::variant<Constant, Normal, Uniform, DtBias, ALog> resolve(
    Policy const& p, std::vector<std::size_t> const& shape, std::string_view name) {
  constexpr char const* op = "hax::nn::init::fill";
  return std::visit(
      [&](auto const& q) -> std::variant<Constant, Normal, Uniform, DtBias, ALog> {
        using Q = std::decay_t<decltype(q)>;
        if constexpr (std::is_same_v<Q, Zeros>) {
          return Constant{0.0};
        } else if constexpr (std::is_same_v<Q, Ones>) {
          return Constant{1.0};
        } else if constexpr (std::is_same_v<Q, KaimingUniform>) {
          std::int64_t fan_in = q.fan_in;
          if (fan_in == 0) {
            core::require(shape.size() >= 2, op, "parameter \"", name,
                          "\": kaiming_uniform on a rank-1 parameter needs an explicit fan_in "
                          "(the weight's), got shape rank ",
                          shape.size());
            fan_in = 1;
            for (std::size_t d = 1; d < shape.size(); ++d) {
              fan_in *= static_cast<std::int64_t>(shape[d]);
            }
          }
          core::require(fan_in > 0, op, "parameter \"", name, "\": fan_in must be > 0, got ",
                        fan_in);
          double const bound = q.scale / std::sqrt(static_cast<double>(fan_in));
          return Uniform{-bound, bound};
        } else {
          if constexpr (std::is_same_v<Q, Normal>) {
            core::require(q.std >= 0.0, op, "parameter \"", name, "\": normal std must be >= 0, got ",
                          q.std);
          } else if constexpr (std::is_same_v<Q, Uniform>) {
            core::require(q.low <= q.high, op, "parameter \"", name, "\": uniform low (", q.low,
                          ") > high (", q.high, ")");
          } else if constexpr (std::is_same_v<Q, DtBias>) {
            core::require(q.dt_min > 0.0 && q.dt_min <= q.dt_max && q.dt_floor > 0.0, op,
                          "parameter \"", name, "\": dt_bias needs 0 < dt_min <= dt_max and ",
                          "dt_floor > 0, got dt_min ", q.dt_min, ", dt_max ", q.dt_max,
                          ", dt_floor ", q.dt_floor);
          }
          return q;
        }
      },
      p);
}

template <class Space, class Resolved, class Flat>
void fill_kernel(Space const& space, Resolved const& policy, Flat const& flat, std::uint64_t key,
                 std::int64_t last_extent) {
  using T = typename Flat::non_const_value_type;
  Kokkos::parallel_for(
      "hax::nn::init::fill",
      Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(
          space, 0, static_cast<std::int64_t>(flat.extent(0))),
      KOKKOS_LAMBDA(std::int64_t i) {
        flat(i) = static_cast<T>(sample(policy, key, i, last_extent));
      });
}

}  // namespace impl

/// Writes the initial values of the parameter `name` (with the given shape, rank 1..3) into the
/// contiguous View `x` (x.span() == product of shape). Element i is drawn from
/// RngStream(param_key(seed, name), 2·i): identical on every backend.
///
/// \param space [in] execution-space instance; asynchronous on it.
/// Throws hax::invalid_argument for a size mismatch or an invalid policy.
template <execution_space Space, class X>
  requires(view_accessible_from<X, Space>)
void fill(Space const& space, Policy const& policy, X const& x, std::uint64_t seed,
          std::string_view name, std::vector<std::size_t> const& shape) {
  constexpr char const* op = "hax::nn::init::fill";
  std::size_t n = shape.empty() ? 0 : 1;
  for (auto e : shape) {
    n *= e;
  }
  core::require(x.span_is_contiguous() && x.span() == n, op, "parameter \"", name,
                "\": the View must be contiguous with ", n, " elements, got span ", x.span());
  core::require(n > 0, op, "parameter \"", name, "\": empty shape");
  using value_type = typename X::value_type;
  Kokkos::View<value_type*, typename X::device_type, Kokkos::MemoryTraits<Kokkos::Unmanaged>> flat(
      x.data(), n);
  auto const resolved = impl::resolve(policy, shape, name);
  auto const key = param_key(seed, name);
  auto const last = static_cast<std::int64_t>(shape.back());
  std::visit([&](auto const& q) { impl::fill_kernel(space, q, flat, key, last); }, resolved);
}

}  // namespace hax::nn::init
