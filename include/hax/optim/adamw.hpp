// SPDX-License-Identifier: MIT
/// \file
/// AdamW with torch.optim.AdamW's exact semantics (single-tensor path, amsgrad off, maximize
/// off), as one fused kernel over flat buffers of parameters, gradients and the two moments:
///
///   p ← p·(1 − lr·wd)                       (decoupled weight decay, only for decayed entries)
///   m ← m + (1 − β1)·(g − m)                (torch's lerp; = β1·m + (1 − β1)·g)
///   v ← β2·v + (1 − β2)·g²
///   p ← p − (lr / (1 − β1ᵗ)) · m / (sqrt(v) / sqrt(1 − β2ᵗ) + eps)
///
/// Two ways to drive it: with the lr and the update number t given from the host
/// (`adamw_update`), or from device memory (`AdamW::update`): a one-thread kernel increments a
/// device step counter, evaluates the schedule there and writes the per-step coefficients into a
/// device View the main kernel reads. The second form never synchronises with the host, so the
/// same two launches can be captured once into a CUDA graph and replayed. See docs/math/adamw.md.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/optim/schedule.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace hax::optim {

/// AdamW hyper-parameters; the defaults are PyTorch's (the learning rate comes from a schedule).
struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;

  /// Throws hax::invalid_argument for betas outside [0, 1), eps < 0 or weight_decay < 0.
  void validate() const {
    constexpr char const* op = "hax::optim::AdamWConfig";
    core::require(beta1 >= 0.0 && beta1 < 1.0, op, "beta1 must be in [0, 1), got ", beta1);
    core::require(beta2 >= 0.0 && beta2 < 1.0, op, "beta2 must be in [0, 1), got ", beta2);
    core::require(eps >= 0.0, op, "eps must be >= 0, got ", eps);
    core::require(weight_decay >= 0.0, op, "weight_decay must be >= 0, got ", weight_decay);
  }
};

/// The per-step scalars of one update, computed once (in double) rather than per element.
struct AdamWCoefficients {
  double decay_factor;  // 1 − lr·wd
  double step_size;     // lr / (1 − β1ᵗ)
  double bc2_sqrt;      // sqrt(1 − β2ᵗ)
};

/// The coefficients of update t (1-based) with learning rate lr; host and device callable.
KOKKOS_INLINE_FUNCTION AdamWCoefficients adamw_coefficients(AdamWConfig const& cfg, double lr,
                                                            std::int64_t t) {
  double const td = static_cast<double>(t);
  double const bc1 = 1.0 - Kokkos::pow(cfg.beta1, td);
  double const bc2 = 1.0 - Kokkos::pow(cfg.beta2, td);
  return AdamWCoefficients{1.0 - lr * cfg.weight_decay, lr / bc1, Kokkos::sqrt(bc2)};
}

namespace impl {

/// Coefficients passed by value from the host.
struct CoefficientsByValue {
  AdamWCoefficients c;
  KOKKOS_INLINE_FUNCTION AdamWCoefficients operator()() const { return c; }
};

/// Coefficients read from a device View written earlier on the same execution-space instance.
template <class MemorySpace>
struct CoefficientsFromView {
  Kokkos::View<AdamWCoefficients const, MemorySpace> c;  // rank 0
  KOKKOS_INLINE_FUNCTION AdamWCoefficients operator()() const { return c(); }
};

template <class P, class G, class M, class V>
void check_adamw_buffers(P const& p, G const& g, M const& m, V const& v, std::size_t decay_count) {
  static_assert(P::rank() == 1 && G::rank() == 1 && M::rank() == 1 && V::rank() == 1,
                "hax::optim::adamw_update: params, grads, m and v must be flat rank-1 Views");
  constexpr char const* op = "hax::optim::adamw_update";
  std::size_t const n = p.extent(0);
  core::require(g.extent(0) == n && m.extent(0) == n && v.extent(0) == n, op,
                "params (", n, "), grads (", g.extent(0), "), m (", m.extent(0), ") and v (",
                v.extent(0), ") must have the same length");
  core::require(decay_count <= n, op, "decay_count (", decay_count,
                ") exceeds the number of parameters (", n, ")");
}

/// The fused update over [0, n): elements [0, decay_count) get weight decay, the rest do not
/// (the parameter store places decayed parameters first for this reason).
template <class Space, class Coefficients, class P, class G, class M, class V>
void adamw_kernel(Space const& space, AdamWConfig const& cfg, Coefficients const& coefficients,
                  P const& p, G const& g, M const& m, V const& v, std::size_t decay_count) {
  using T = typename P::non_const_value_type;
  T const one_minus_beta1 = static_cast<T>(1.0 - cfg.beta1);
  T const beta2 = static_cast<T>(cfg.beta2);
  T const one_minus_beta2 = static_cast<T>(1.0 - cfg.beta2);
  T const eps = static_cast<T>(cfg.eps);
  auto const n_decay = static_cast<std::int64_t>(decay_count);
  Kokkos::parallel_for(
      "hax::optim::adamw_update",
      Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(
          space, 0, static_cast<std::int64_t>(p.extent(0))),
      KOKKOS_LAMBDA(std::int64_t i) {
        AdamWCoefficients const c = coefficients();
        T const gi = g(i);
        T pi = p(i);
        if (i < n_decay) {
          pi *= static_cast<T>(c.decay_factor);  // torch: param.mul_(1 - lr * weight_decay)
        }
        T const mi = m(i) + one_minus_beta1 * (gi - m(i));  // torch: exp_avg.lerp_(grad, 1 - β1)
        T const vi = beta2 * v(i) + one_minus_beta2 * gi * gi;
        T const denom = Kokkos::sqrt(vi) / static_cast<T>(c.bc2_sqrt) + eps;
        p(i) = pi - static_cast<T>(c.step_size) * mi / denom;
        m(i) = mi;
        v(i) = vi;
      });
}

}  // namespace impl

/// One AdamW update with the learning rate and the update number given by the host.
///
/// \param space [in] execution-space instance; asynchronous on it.
/// \param cfg [in] betas, eps, weight decay.
/// \param lr [in] learning rate of this update (e.g. schedule(t)).
/// \param t [in] 1-based update number (bias correction uses βᵗ).
/// \param params, grads, m, v [in,out] flat (n) Views; grads is only read.
/// \param decay_count [in] elements [0, decay_count) get weight decay, the rest none.
/// Throws hax::invalid_argument for mismatched lengths, t < 1 or decay_count > n.
template <execution_space Space, class P, class G, class M, class V>
  requires(view_accessible_from<P, Space> && view_accessible_from<G, Space> &&
           view_accessible_from<M, Space> && view_accessible_from<V, Space>)
void adamw_update(Space const& space, AdamWConfig const& cfg, double lr, std::int64_t t,
                  P const& params, G const& grads, M const& m, V const& v,
                  std::size_t decay_count) {
  impl::check_adamw_buffers(params, grads, m, v, decay_count);
  core::require(t >= 1, "hax::optim::adamw_update", "the update number t is 1-based, got ", t);
  impl::adamw_kernel(space, cfg, impl::CoefficientsByValue{adamw_coefficients(cfg, lr, t)}, params,
                     grads, m, v, decay_count);
}

/// Overload on the default instance of params' execution space.
template <class P, class G, class M, class V>
void adamw_update(AdamWConfig const& cfg, double lr, std::int64_t t, P const& params,
                  G const& grads, M const& m, V const& v, std::size_t decay_count) {
  adamw_update(typename P::execution_space{}, cfg, lr, t, params, grads, m, v, decay_count);
}

/// AdamW driven from device memory: holds the step counter (number of completed updates) and
/// the per-step coefficients in device Views. `update` launches two kernels and never touches
/// the host, so it can be captured into a CUDA graph; the counter advances on the device.
template <execution_space Space>
class AdamW {
 public:
  using memory_space = typename Space::memory_space;

  explicit AdamW(AdamWConfig const& cfg = {}, Space const& space = Space{})
      : cfg_(cfg),
        step_(Kokkos::view_alloc(space, std::string("hax::optim::adamw_step"))),
        coefficients_(Kokkos::view_alloc(space, Kokkos::WithoutInitializing,
                                         std::string("hax::optim::adamw_coefficients"))) {
    cfg_.validate();
  }

  AdamWConfig const& config() const { return cfg_; }

  /// Rank-0 device View: the number of completed updates (0 before the first). Writable, e.g.
  /// to restore a checkpoint.
  Kokkos::View<std::int64_t, memory_space> step_count() const { return step_; }

  /// One update: on the device, t = ++step, lr = sched(t), then the fused kernel.
  /// \param sched [in] a schedule (WarmupCosine, ConstantLr, LrFromView, ...).
  /// \param params, grads, m, v, decay_count as in adamw_update.
  template <schedule Schedule, class P, class G, class M, class V>
    requires(view_accessible_from<P, Space> && view_accessible_from<G, Space> &&
             view_accessible_from<M, Space> && view_accessible_from<V, Space>)
  void update(Space const& space, Schedule const& sched, P const& params, G const& grads,
              M const& m, V const& v, std::size_t decay_count) const {
    impl::check_adamw_buffers(params, grads, m, v, decay_count);
    auto const step = step_;
    auto const coefficients = coefficients_;
    AdamWConfig const cfg = cfg_;
    Kokkos::parallel_for(
        "hax::optim::adamw_prepare", Kokkos::RangePolicy<Space>(space, 0, 1),
        KOKKOS_LAMBDA(int) {
          std::int64_t const t = step() + 1;
          step() = t;
          coefficients() = adamw_coefficients(cfg, static_cast<double>(sched(t)), t);
        });
    impl::adamw_kernel(space, cfg, impl::CoefficientsFromView<memory_space>{coefficients},
                       params, grads, m, v, decay_count);
  }

  /// Convenience for a parameter store (anything with values(), grads(), adam_m(), adam_v() and
  /// decay_count(), e.g. hax::nn::ParameterStore).
  template <schedule Schedule, class Store>
  void update(Space const& space, Schedule const& sched, Store const& store) const {
    update(space, sched, store.values(), store.grads(), store.adam_m(), store.adam_v(),
           store.decay_count());
  }

 private:
  AdamWConfig cfg_;
  Kokkos::View<std::int64_t, memory_space> step_;                // rank 0: completed updates
  Kokkos::View<AdamWCoefficients, memory_space> coefficients_;  // rank 0: of the last update
};

}  // namespace hax::optim
