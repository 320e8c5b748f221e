// SPDX-License-Identifier: MIT
/// \file
/// hax::models::LinearMixer: a stand-in token mixer y = x·Wᵀ (W (d_model, d_model), no bias) with
/// exactly the interface of hax::ssm::MambaMixer / Mamba2Mixer (register_parameters, forward,
/// backward, Saved). It lets the model, the trainer, checkpoints and the CLI be built and tested
/// independently of the real mixers, and is the tiny `--base linear` smoke-test model of the CLI.
/// It mixes channels only (no sequence mixing), so it cannot solve joint recall; it adds nothing
/// to the gate loss.
#pragma once

#include <hax/core/concepts.hpp>
#include <hax/models/step_context.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/linear.hpp>
#include <hax/nn/parameters.hpp>

#include <string>

namespace hax::models {

/// Configuration of the stand-in mixer.
struct LinearMixerConfig {
  int d_model = 64;
  double init_range = 0.1;
};

template <execution_space Space, class T = float>
class LinearMixer {
 public:
  explicit LinearMixer(LinearMixerConfig config) : config_(config) {}

  /// Registers "<prefix>weight" (d_model, d_model) ~ N(0, init_range).
  void register_parameters(nn::ParameterStore<Space, T>& store, std::string const& prefix) const {
    auto const d = static_cast<std::size_t>(config_.d_model);
    store.add(prefix + "weight", {d, d}, nn::init::Normal{0.0, config_.init_range});
  }

  /// What the backward needs: the input x (B, L, d_model), kept alive by the caller's buffer.
  struct Saved {
    Kokkos::View<T***, Kokkos::LayoutRight, typename Space::memory_space> x;  // (B, L, d_model)
  };

  /// y = x·Wᵀ (written). pad_mask and gate_loss are unused (no sparse branch).
  template <class X, class Mask, class Y, class Loss>
  Saved forward(Space const& space, nn::ParameterStore<Space, T> const& store,
                std::string const& prefix, X const& x, Mask const&, Y const& y, Loss const&,
                StepContext const&) const {
    nn::linear_forward(space, nn::as_rows(x), store.template value<2>(prefix + "weight"),
                       Kokkos::View<T*, typename Space::memory_space>(), nn::as_rows(y));
    return Saved{x};
  }

  /// dx = dy·W (written), dW += dyᵀ·x.
  template <class DY, class DX>
  void backward(Space const& space, nn::ParameterStore<Space, T> const& store,
                std::string const& prefix, Saved const& saved, DY const& dy, DX const& dx,
                StepContext const&) const {
    nn::linear_backward(space, nn::as_rows(dy), nn::as_rows(saved.x),
                        store.template value<2>(prefix + "weight"), nn::as_rows(dx),
                        store.template grad<2>(prefix + "weight"),
                        Kokkos::View<T*, typename Space::memory_space>());
  }

 private:
  LinearMixerConfig config_;
};

}  // namespace hax::models
