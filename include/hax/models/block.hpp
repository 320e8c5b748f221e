// SPDX-License-Identifier: MIT
/// \file
/// hax::models::Block: the pre-norm residual block of every model, h_out = h + mixer(RMSNorm(h)),
/// with its hand-written backward. The mixer is a template parameter with the interface of
/// hax::ssm::MambaMixer (register_parameters / forward / backward / Saved), so Mamba, Mamba2, the
/// stand-in LinearMixer slot in unchanged (Samba's two-sublayer block is models::SambaLayer, with
/// the same interface).
#pragma once

#include <hax/core/concepts.hpp>
#include <hax/models/step_context.hpp>
#include <hax/nn/elementwise.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/nn/rms_norm.hpp>

#include <string>
#include <utility>

namespace hax::models {

template <execution_space Space, class T, class Mixer>
class Block {
 public:
  using memory_space = typename Space::memory_space;
  using act_view = Kokkos::View<T***, Kokkos::LayoutRight, memory_space>;  // (B, L, D)
  using row_view = Kokkos::View<T**, Kokkos::LayoutRight, memory_space>;   // (B, L)
  using Saved = typename Mixer::Saved;

  /// `prefix` is "layers.<i>." (the reference's names: <prefix>norm.weight, <prefix>mixer.*).
  Block(Mixer mixer, std::string prefix, int d_model, double eps)
      : mixer_(std::move(mixer)), prefix_(std::move(prefix)), d_model_(d_model), eps_(eps) {}

  void register_parameters(nn::ParameterStore<Space, T>& store) const {
    store.add(prefix_ + "norm.weight", {static_cast<std::size_t>(d_model_)}, nn::init::Ones{});
    mixer_.register_parameters(store, prefix_ + "mixer.");
  }

  /// Forward: normed = RMSNorm(h_in) (rstd saved), h_out = h_in + mixer(normed).
  /// \param h_in [in] (B, L, D). \param pad_mask [in] (B, L) int8, nonzero = real token.
  /// \param normed [out] (B, L, D) kept for the backward. \param rstd [out] (B, L).
  /// \param h_out [out] (B, L, D). \param gate_loss [in,out] rank-0 (+=, by sparse mixers).
  /// Asynchronous on `space`.
  template <class Mask, class Loss>
  typename Mixer::Saved forward(Space const& space, nn::ParameterStore<Space, T> const& store,
                                act_view const& h_in, Mask const& pad_mask, act_view const& normed,
                                row_view const& rstd, act_view const& h_out,
                                Loss const& gate_loss, StepContext const& ctx) const {
    nn::rms_norm_forward(space, h_in, store.template value<1>(prefix_ + "norm.weight"), normed,
                         rstd, eps_);
    auto saved = mixer_.forward(space, store, prefix_ + "mixer.", normed, pad_mask, h_out,
                                gate_loss, ctx);
    nn::add_forward(space, h_in, h_out, h_out);
    return saved;
  }

  /// Backward: dh (B, L, D) holds dL/dh_out on entry and dL/dh_in on exit (the residual passes
  /// it through; the norm's input gradient is added). `scratch` (B, L, D) is overwritten.
  /// Parameter gradients accumulate (+=).
  void backward(Space const& space, nn::ParameterStore<Space, T> const& store,
                typename Mixer::Saved const& saved, act_view const& h_in, row_view const& rstd,
                act_view const& dh, act_view const& scratch, StepContext const& ctx) const {
    mixer_.backward(space, store, prefix_ + "mixer.", saved, dh, scratch, ctx);
    nn::rms_norm_backward(space, scratch, h_in, store.template value<1>(prefix_ + "norm.weight"),
                          rstd, scratch, store.template grad<1>(prefix_ + "norm.weight"));
    nn::add_backward(space, scratch, dh);
  }

  Mixer const& mixer() const { return mixer_; }

 private:
  Mixer mixer_;
  std::string prefix_;
  int d_model_;
  double eps_;
};

}  // namespace hax::models
