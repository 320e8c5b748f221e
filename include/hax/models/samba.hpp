// SPDX-License-Identifier: MIT
/// \file
/// Samba in hax::models::Model (semantics.md section 2, samba.json): the tag type SambaMixer
/// selects, for Model<Space, T, SambaMixer<Space, T>>, a stack of hax::ssm::SambaBlock layers,
/// each h ← h + mixer(mixer_norm(h)); h ← h + mlp(mlp_norm(h)), whose mixer is the Mamba mixer
/// on the layers not listed in the config's attn.layers and SambaAttention (sliding-window
/// softmax attention with RoPE) on those listed; every block ends with the SwiGLU MLP. Parameter
/// names are the reference's: layers.{i}.mixer_norm.weight, layers.{i}.mixer.*,
/// layers.{i}.mlp_norm.weight, layers.{i}.mlp.{gate,up,down}_proj.weight.
///
/// SambaLayer adapts one such block to the block interface Model drives (forward into h_out,
/// backward in place on dh); the two mixer kinds differ in type, so a layer holds one block of
/// each kind's type and uses the one its index selects. Samba has no sparse branch (the
/// reference raises for a sparse_arch with samba; ModelConfig::validate does too).
#pragma once

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/models/config.hpp>
#include <hax/models/step_context.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/ssm/mamba_mixer.hpp>
#include <hax/ssm/samba_layers.hpp>

#include <optional>
#include <string>
#include <utility>

namespace hax::models {

/// Tag type: Model<Space, T, SambaMixer<Space, T>> is a Samba model. Never instantiated as a
/// mixer; its Saved is what one Samba layer keeps for the backward.
template <execution_space Space, class T = float>
struct SambaMixer {
  using mamba_block = ssm::SambaBlock<Space, T, ssm::MambaMixer<Space, T>>;
  using attention_block = ssm::SambaBlock<Space, T, ssm::SambaAttention<Space, T>>;
  /// One of the two is filled, as the layer's kind.
  struct Saved {
    typename mamba_block::Saved mamba;
    typename attention_block::Saved attention;
  };
};

/// The Mamba mixer of a Samba config's Mamba layers (samba.json: d_inner 64, N 16, dt_rank 8,
/// init_range 0.02).
inline ssm::MambaConfig samba_mamba_config(ModelConfig const& c) {
  ssm::MambaConfig m;
  m.d_model = c.hidden_size;
  m.d_inner = c.intermediate_size;
  m.state_size = c.state_size;
  m.dt_rank = c.time_step_rank;
  m.conv_kernel = c.conv_kernel;
  m.init_range = c.initializer_range;
  m.skip_padding = true;  // exact: the scan's output at pads is 0 either way (MambaConfig)
  return m;
}

/// The attention mixer of a Samba config's attention layers.
inline ssm::SambaAttentionConfig samba_attention_config(ModelConfig const& c) {
  ssm::SambaAttentionConfig a;
  a.d_model = c.hidden_size;
  a.num_heads = c.attn_num_heads;
  a.head_dim = c.hidden_size / c.attn_num_heads;
  a.window = c.attn_window;
  a.rope_theta = c.rope_theta;
  a.init_range = c.initializer_range;
  return a;
}

/// One Samba layer in Model's block interface (see hax::models::Block).
template <execution_space Space, class T>
class SambaLayer {
 public:
  using tag = SambaMixer<Space, T>;
  using Saved = typename tag::Saved;
  using act_view = Kokkos::View<T***, Kokkos::LayoutRight, typename Space::memory_space>;
  using row_view = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::memory_space>;

  /// Layer `layer` of config `c` (c.base must be samba), registered under "layers.<layer>.".
  SambaLayer(ModelConfig const& c, int layer) : prefix_("layers." + std::to_string(layer) + ".") {
    core::require(c.base == Base::samba, "hax::models::SambaLayer", "the config's base is \"",
                  base_name(c.base), "\", not samba");
    ssm::SwiGluMlp<Space, T> mlp(
        ssm::SwiGluConfig{c.hidden_size, samba_mlp_width(c), c.initializer_range});
    if (samba_is_attention_layer(c, layer)) {
      attention_.emplace(ssm::SambaAttention<Space, T>(samba_attention_config(c)), mlp,
                         c.norm_eps);
    } else {
      mamba_.emplace(ssm::MambaMixer<Space, T>(samba_mamba_config(c)), mlp, c.norm_eps);
    }
  }

  bool is_attention() const { return attention_.has_value(); }

  void register_parameters(nn::ParameterStore<Space, T>& store) const {
    if (mamba_) mamba_->register_parameters(store, prefix_);
    if (attention_) attention_->register_parameters(store, prefix_);
  }

  /// h_out (B, L, D) from h_in (B, L, D); `normed` and `rstd` (Model's per-layer buffers) are
  /// unused: the block keeps its own. Asynchronous on `space`.
  template <class Mask, class Loss>
  Saved forward(Space const& space, nn::ParameterStore<Space, T> const& store,
                act_view const& h_in, Mask const& pad_mask, act_view const& /*normed*/,
                row_view const& /*rstd*/, act_view const& h_out, Loss const& gate_loss,
                StepContext const& ctx) const {
    Saved s;
    if (mamba_) s.mamba = mamba_->forward(space, store, prefix_, h_in, pad_mask, h_out, gate_loss, ctx);
    if (attention_) {
      s.attention =
          attention_->forward(space, store, prefix_, h_in, pad_mask, h_out, gate_loss, ctx);
    }
    return s;
  }

  /// dh (B, L, D): dL/dh_out on entry, dL/dh_in on exit; `scratch` (B, L, D) overwritten.
  /// Parameter gradients accumulate (+=). Asynchronous on `space`.
  void backward(Space const& space, nn::ParameterStore<Space, T> const& store, Saved const& saved,
                act_view const& /*h_in*/, row_view const& /*rstd*/, act_view const& dh,
                act_view const& scratch, StepContext const& ctx) const {
    // SambaBlock::backward needs distinct dh_out and dh_in.
    if (mamba_) mamba_->backward(space, store, prefix_, saved.mamba, dh, scratch, ctx);
    if (attention_) attention_->backward(space, store, prefix_, saved.attention, dh, scratch, ctx);
    Kokkos::deep_copy(space, dh, scratch);
  }

 private:
  std::string prefix_;
  std::optional<typename tag::mamba_block> mamba_;
  std::optional<typename tag::attention_block> attention_;
};

}  // namespace hax::models
