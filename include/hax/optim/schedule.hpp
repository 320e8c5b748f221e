// SPDX-License-Identifier: MIT
/// \file
/// Learning-rate schedules as pure functions of the 1-based update number t, callable on the host
/// and on the device (so an optimiser step can compute its lr on the device from a step counter
/// held in device memory, without host synchronisation). See docs/math/adamw.md.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/error.hpp>

#include <cstdint>

namespace hax::optim {

/// A schedule: `s(t)` is the learning rate of update t (t = 1, 2, ...), host and device callable.
template <class S>
concept schedule = std::copy_constructible<S> && requires(S const s, std::int64_t t) {
  { s(t) } -> std::convertible_to<double>;
};

/// The constant learning rate lr for every update.
struct ConstantLr {
  double lr;

  KOKKOS_INLINE_FUNCTION double operator()(std::int64_t /*t*/) const { return lr; }
};

/// The reference's schedule (torch LambdaLR with factor = s / warmup for s < warmup, else 1, where
/// s = t - 1 is the scheduler's count when update t runs), with an optional cosine decay:
///
///   t ≤ warmup:            lr · (t − 1) / warmup      (the first update has lr 0)
///   no decay (decay_steps = 0), t > warmup:  lr
///   with decay, t > warmup: p = min(1, (t − 1 − warmup) / decay_steps),
///                           min_lr + (lr − min_lr) · (1 + cos(π p)) / 2
///
/// so update warmup + 1 uses lr, and updates from warmup + 1 + decay_steps on use min_lr.
/// warmup = 0 means no warm-up (every update uses the post-warm-up rule).
struct WarmupCosine {
  double lr;                      // peak learning rate
  std::int64_t warmup = 0;        // warm-up updates (reference: 5 000)
  std::int64_t decay_steps = 0;   // cosine horizon after warm-up, in updates; 0: constant after
  double min_lr = 0.0;            // floor reached at the end of the cosine

  KOKKOS_INLINE_FUNCTION double operator()(std::int64_t t) const {
    if (t <= warmup) {
      return lr * static_cast<double>(t - 1) / static_cast<double>(warmup);
    }
    if (decay_steps <= 0) {
      return lr;
    }
    double p = static_cast<double>(t - 1 - warmup) / static_cast<double>(decay_steps);
    p = p < 1.0 ? p : 1.0;
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + Kokkos::cos(Kokkos::numbers::pi * p));
  }

  /// Throws hax::invalid_argument for negative counts or a floor above the peak.
  void validate() const {
    constexpr char const* op = "hax::optim::WarmupCosine";
    core::require(warmup >= 0, op, "warmup must be >= 0, got ", warmup);
    core::require(decay_steps >= 0, op, "decay_steps must be >= 0, got ", decay_steps);
    core::require(lr >= 0.0, op, "lr must be >= 0, got ", lr);
    core::require(min_lr >= 0.0 && min_lr <= lr, op, "min_lr must be in [0, lr = ", lr, "], got ",
                  min_lr);
  }
};

/// A "schedule" whose lr lives in a device View (rank 0), set by someone else on the device.
template <class MemorySpace>
struct LrFromView {
  Kokkos::View<double const, MemorySpace> lr;  // rank 0

  KOKKOS_INLINE_FUNCTION double operator()(std::int64_t /*t*/) const { return lr(); }
};

static_assert(schedule<ConstantLr> && schedule<WarmupCosine> &&
              schedule<LrFromView<Kokkos::HostSpace>>);

}  // namespace hax::optim
