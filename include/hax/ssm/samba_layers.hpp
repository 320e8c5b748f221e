// SPDX-License-Identifier: MIT
/// \file
/// The layers of a Samba block besides the Mamba mixer (semantics.md section 2, samba.json), with
/// the mixer interface of the Mamba mixers so that a model can plug them in the same way:
///   - SambaAttention: multi-head sliding-window softmax attention with RoPE (fla `Attention`:
///     q/k/v/o projections without bias, num_kv_heads = num_heads), the mixer of layers 1 and 3;
///   - SwiGluMlp: the SwiGLU `GatedMLP` every block ends with, down(SiLU(gate(x)) ⊙ up(x));
///   - SambaBlock<Mixer>: fla's SambaBlock, h ← h + mixer(mixer_norm(h)); h ← h + mlp(mlp_norm(h)),
///     for either mixer (the Mamba mixer on even layers, SambaAttention on odd ones).
/// Each registers its weights in an nn::ParameterStore under `<prefix>` (e.g. "layers.1.mixer."),
/// initialised N(0, init_range) like every nn.Linear of the reference, reads them back in
/// forward/backward, and accumulates their gradients into the store (+=). Input gradients are
/// written (=). Everything is asynchronous on the given execution-space instance.
///
/// Configs: the released samba.json (d_model 32, 4 heads × 8, window 64, MLP 256) is the default;
/// samba_paper_attention()/samba_paper_mlp() give the paper's d_model 64 variant (window 64).
/// Math, shapes and what is saved: docs/math/samba.md.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/attention/sliding_window_mha.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/views.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/elementwise.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/nn/rms_norm.hpp>
#include <hax/nn/swiglu_mlp.hpp>

#include <string>
#include <utility>

namespace hax::ssm {

/// The attention mixer of Samba's odd layers. Defaults: samba.json.
struct SambaAttentionConfig {
  int d_model = 32;          ///< D = num_heads · head_dim
  int num_heads = 4;         ///< H (= num_kv_heads)
  int head_dim = 8;          ///< Dh, even (RoPE)
  int window = 64;           ///< keys per query, itself included (flash-attn window (63, 0))
  double rope_theta = 1e4;   ///< RoPE base θ
  double init_range = 0.02;  ///< std of the N(0, ·) projection weights
};

/// The SwiGLU MLP of every Samba block. Defaults: samba.json (d_model 32, intermediate 256).
struct SwiGluConfig {
  int d_model = 32;          ///< D
  int intermediate = 256;    ///< I
  double init_range = 0.02;  ///< std of the N(0, ·) weights
};

/// fla's GatedMLP width for hidden_ratio r: int(D·r·2/3) rounded up to a multiple of 256 (the
/// SwiGLU 2/3 rule). For D = 32 and D = 64 with r = 4 it is 256, as semantics.md states.
constexpr int fla_gated_mlp_intermediate(int d_model, int hidden_ratio = 4) {
  int const raw = d_model * hidden_ratio * 2 / 3;
  return 256 * ((raw + 255) / 256);
}

/// The paper's Samba (d_model 64, window 64): 4 heads of width 16.
constexpr SambaAttentionConfig samba_paper_attention() { return {64, 4, 16, 64, 1e4, 0.02}; }
/// The paper's Samba MLP (d_model 64): intermediate fla_gated_mlp_intermediate(64) = 256.
constexpr SwiGluConfig samba_paper_mlp() { return {64, fla_gated_mlp_intermediate(64), 0.02}; }

namespace impl {

/// "<prefix><name>", with a '.' in between when the prefix is non-empty and lacks one.
inline std::string join_name(std::string const& prefix, char const* name) {
  if (prefix.empty() || prefix.back() == '.') {
    return prefix + name;
  }
  return prefix + "." + name;
}

template <class X>
void require_width(char const* op, X const& x, int d_model) {
  static_assert(X::rank() == 3, "hax::ssm: mixer inputs are rank 3 (B, L, D)");
  core::require(x.extent_int(2) == d_model, op, "x (", x.extent(0), ", ", x.extent(1), ", ",
                x.extent(2), ") must have d_model = ", d_model, " channels");
}

}  // namespace impl

/// Samba's sliding-window attention mixer over a ParameterStore.
/// Parameters (under prefix): q_proj.weight, k_proj.weight, v_proj.weight (H·Dh, D),
/// o_proj.weight (D, H·Dh), all N(0, init_range).
template <execution_space Space, class T = float>
class SambaAttention {
 public:
  using memory_space = typename Space::memory_space;
  using store_type = nn::ParameterStore<Space, T>;

  /// What forward keeps for backward: see attn::SlidingWindowMhaSaved (q, k, v, o (B, L, H, Dh),
  /// lse (H, B, L), the pad mask (B, L) and the input x by reference: the caller keeps it alive
  /// and unchanged until backward).
  struct Saved {
    attn::SlidingWindowMhaSaved<T, memory_space> attention;
  };

  /// Validates the config; throws hax::invalid_argument naming the field (d_model vs
  /// num_heads × head_dim, odd head_dim, window < 1, ...).
  explicit SambaAttention(SambaAttentionConfig cfg) : cfg_(cfg) {
    constexpr char const* op = "hax::ssm::SambaAttention";
    core::require(cfg.d_model >= 1, op, "d_model (", cfg.d_model, ") must be >= 1");
    attn::validate(shape(), cfg.d_model, op);
    core::require(cfg.init_range >= 0.0, op, "init_range (", cfg.init_range, ") must be >= 0");
  }

  SambaAttentionConfig const& config() const { return cfg_; }

  /// Registers the four projection weights under `prefix` (before store.finalize()).
  void register_parameters(store_type& store, std::string const& prefix) const {
    auto const D = static_cast<std::size_t>(cfg_.d_model);
    auto const inner = static_cast<std::size_t>(cfg_.num_heads * cfg_.head_dim);
    nn::init::Normal const init{0.0, cfg_.init_range};
    store.add(impl::join_name(prefix, "q_proj.weight"), {inner, D}, init);
    store.add(impl::join_name(prefix, "k_proj.weight"), {inner, D}, init);
    store.add(impl::join_name(prefix, "v_proj.weight"), {inner, D}, init);
    store.add(impl::join_name(prefix, "o_proj.weight"), {D, inner}, init);
  }

  /// y = o_proj(SlidingWindowAttention(RoPE(q_proj x), RoPE(k_proj x), v_proj x)).
  /// \param x [in] (B, L, D) contiguous LayoutRight (the mixer_norm output); kept by reference.
  /// \param pad_mask [in] (B, L), non-zero = real token, or an empty View.
  /// \param y [out] (B, L, D), overwritten.
  /// \param gate_loss [in] untouched: this mixer has no ranking loss.
  /// \param ctx [in] the step context; unused (nothing random, same in training and evaluation).
  template <class X, class Mask, class Y, class Loss, class Ctx>
  Saved forward(Space const& space, store_type const& store, std::string const& prefix,
                X const& x, Mask const& pad_mask, Y const& y, Loss const& /*gate_loss*/,
                Ctx const& /*ctx*/) const {
    impl::require_width("hax::ssm::SambaAttention::forward", x, cfg_.d_model);
    return Saved{attn::sliding_window_mha_forward(
        space, shape(), x, store.template value<2>(impl::join_name(prefix, "q_proj.weight")),
        store.template value<2>(impl::join_name(prefix, "k_proj.weight")),
        store.template value<2>(impl::join_name(prefix, "v_proj.weight")),
        store.template value<2>(impl::join_name(prefix, "o_proj.weight")), pad_mask, y)};
  }

  /// dx = ∂loss/∂x (written); the weight gradients are accumulated into store.grad (+=).
  /// \param dy [in] (B, L, D). \param dx [out] (B, L, D), must not alias dy or the saved x.
  template <class DY, class DX, class Ctx>
  void backward(Space const& space, store_type const& store, std::string const& prefix,
                Saved const& saved, DY const& dy, DX const& dx, Ctx const& /*ctx*/) const {
    auto name = [&](char const* n) { return impl::join_name(prefix, n); };
    attn::sliding_window_mha_backward(
        space, shape(), saved.attention, store.template value<2>(name("q_proj.weight")),
        store.template value<2>(name("k_proj.weight")), store.template value<2>(name("v_proj.weight")),
        store.template value<2>(name("o_proj.weight")), dy, dx,
        store.template grad<2>(name("q_proj.weight")), store.template grad<2>(name("k_proj.weight")),
        store.template grad<2>(name("v_proj.weight")), store.template grad<2>(name("o_proj.weight")));
  }

 private:
  attn::SlidingWindowMhaConfig shape() const {
    return {cfg_.num_heads, cfg_.head_dim, cfg_.window, cfg_.rope_theta};
  }

  SambaAttentionConfig cfg_;
};

/// Samba's SwiGLU MLP over a ParameterStore, with the mixer interface (the pad mask is unused:
/// the MLP is per token, and pad rows never reach a real one).
/// Parameters (under prefix): gate_proj.weight, up_proj.weight (I, D), down_proj.weight (D, I),
/// all N(0, init_range).
template <execution_space Space, class T = float>
class SwiGluMlp {
 public:
  using memory_space = typename Space::memory_space;
  using store_type = nn::ParameterStore<Space, T>;

  /// What forward keeps for backward.
  struct Saved {
    Kokkos::View<T const***, Kokkos::LayoutRight, memory_space> x;  // (B, L, D) by reference
    Kokkos::View<T***, Kokkos::LayoutRight, memory_space> gate;     // (B, L, I) x·W_gateᵀ
    Kokkos::View<T***, Kokkos::LayoutRight, memory_space> up;       // (B, L, I) x·W_upᵀ
  };

  /// Validates the config; throws hax::invalid_argument naming the field.
  explicit SwiGluMlp(SwiGluConfig cfg) : cfg_(cfg) {
    constexpr char const* op = "hax::ssm::SwiGluMlp";
    core::require(cfg.d_model >= 1, op, "d_model (", cfg.d_model, ") must be >= 1");
    core::require(cfg.intermediate >= 1, op, "intermediate (", cfg.intermediate, ") must be >= 1");
    core::require(cfg.init_range >= 0.0, op, "init_range (", cfg.init_range, ") must be >= 0");
  }

  SwiGluConfig const& config() const { return cfg_; }

  /// Registers gate_proj, up_proj and down_proj weights under `prefix`.
  void register_parameters(store_type& store, std::string const& prefix) const {
    auto const D = static_cast<std::size_t>(cfg_.d_model);
    auto const I = static_cast<std::size_t>(cfg_.intermediate);
    nn::init::Normal const init{0.0, cfg_.init_range};
    store.add(impl::join_name(prefix, "gate_proj.weight"), {I, D}, init);
    store.add(impl::join_name(prefix, "up_proj.weight"), {I, D}, init);
    store.add(impl::join_name(prefix, "down_proj.weight"), {D, I}, init);
  }

  /// y = down(SiLU(gate(x)) ⊙ up(x)). x (B, L, D) is kept by reference; y (B, L, D) overwritten.
  template <class X, class Mask, class Y, class Loss, class Ctx>
  Saved forward(Space const& space, store_type const& store, std::string const& prefix,
                X const& x, Mask const& /*pad_mask*/, Y const& y, Loss const& /*gate_loss*/,
                Ctx const& /*ctx*/) const {
    impl::require_width("hax::ssm::SwiGluMlp::forward", x, cfg_.d_model);
    auto const B = x.extent(0), L = x.extent(1), I = static_cast<std::size_t>(cfg_.intermediate);
    Saved s;
    s.x = x;
    s.gate = uninitialized_view<decltype(s.gate)>(space, "hax::ssm::swiglu::gate", B, L, I);
    s.up = uninitialized_view<decltype(s.up)>(space, "hax::ssm::swiglu::up", B, L, I);
    nn::swiglu_mlp_forward(space, x, store.template value<2>(impl::join_name(prefix, "gate_proj.weight")),
                           store.template value<2>(impl::join_name(prefix, "up_proj.weight")),
                           store.template value<2>(impl::join_name(prefix, "down_proj.weight")),
                           s.gate, s.up, y);
    return s;
  }

  /// dx written (=); weight gradients accumulated into store.grad (+=).
  template <class DY, class DX, class Ctx>
  void backward(Space const& space, store_type const& store, std::string const& prefix,
                Saved const& saved, DY const& dy, DX const& dx, Ctx const& /*ctx*/) const {
    auto name = [&](char const* n) { return impl::join_name(prefix, n); };
    nn::swiglu_mlp_backward(space, dy, saved.x, store.template value<2>(name("gate_proj.weight")),
                            store.template value<2>(name("up_proj.weight")),
                            store.template value<2>(name("down_proj.weight")), saved.gate, saved.up,
                            dx, store.template grad<2>(name("gate_proj.weight")),
                            store.template grad<2>(name("up_proj.weight")),
                            store.template grad<2>(name("down_proj.weight")));
  }

 private:
  SwiGluConfig cfg_;
};

/// One Samba block (fla SambaBlock, pre-norm, RMSNorm eps 1e-5):
///   m = h_in + mixer(RMSNorm_mixer(h_in));   h_out = m + mlp(RMSNorm_mlp(m)).
/// Parameters under prefix ("layers.<i>."): mixer_norm.weight (D, ones), mixer.*, mlp_norm.weight
/// (D, ones), mlp.*. `Mixer` has the mixer interface (SambaAttention, or the Mamba mixer).
template <execution_space Space, class T, class Mixer>
class SambaBlock {
 public:
  using memory_space = typename Space::memory_space;
  using store_type = nn::ParameterStore<Space, T>;
  using act_view = Kokkos::View<T***, Kokkos::LayoutRight, memory_space>;  // (B, L, D)
  using row_view = Kokkos::View<T**, Kokkos::LayoutRight, memory_space>;   // (B, L)

  /// What forward keeps for backward (h_in by reference: the caller keeps it until backward).
  struct Saved {
    typename Mixer::Saved mixer;
    typename SwiGluMlp<Space, T>::Saved mlp;
    Kokkos::View<T const***, Kokkos::LayoutRight, memory_space> h_in;  // (B, L, D)
    act_view normed_mixer;  // (B, L, D) RMSNorm_mixer(h_in), the mixer's input
    row_view rstd_mixer;    // (B, L)
    act_view mid;           // (B, L, D) m = h_in + mixer(...)
    act_view normed_mlp;    // (B, L, D) RMSNorm_mlp(m), the MLP's input
    row_view rstd_mlp;      // (B, L)
  };

  SambaBlock(Mixer mixer, SwiGluMlp<Space, T> mlp, double eps = nn::kRmsNormEps)
      : mixer_(std::move(mixer)), mlp_(std::move(mlp)), eps_(eps) {
    core::require(eps > 0.0, "hax::ssm::SambaBlock", "eps (", eps, ") must be > 0");
  }

  /// Registers mixer_norm.weight, the mixer's, mlp_norm.weight and the MLP's parameters.
  void register_parameters(store_type& store, std::string const& prefix) const {
    auto const D = static_cast<std::size_t>(mlp_.config().d_model);
    store.add(impl::join_name(prefix, "mixer_norm.weight"), {D}, nn::init::Ones{});
    mixer_.register_parameters(store, impl::join_name(prefix, "mixer."));
    store.add(impl::join_name(prefix, "mlp_norm.weight"), {D}, nn::init::Ones{});
    mlp_.register_parameters(store, impl::join_name(prefix, "mlp."));
  }

  /// h_out (B, L, D, overwritten, must not alias h_in) from h_in (B, L, D); gate_loss and ctx go
  /// to the mixer. Allocates the saved tensors on `space`; asynchronous.
  template <class HIn, class Mask, class HOut, class Loss, class Ctx>
  Saved forward(Space const& space, store_type const& store, std::string const& prefix,
                HIn const& h_in, Mask const& pad_mask, HOut const& h_out, Loss const& gate_loss,
                Ctx const& ctx) const {
    impl::require_width("hax::ssm::SambaBlock::forward", h_in, mlp_.config().d_model);
    auto const B = h_in.extent(0), L = h_in.extent(1), D = h_in.extent(2);
    auto act = [&](char const* label) {
      return uninitialized_view<act_view>(space, label, B, L, D);
    };
    auto row = [&](char const* label) { return uninitialized_view<row_view>(space, label, B, L); };
    Saved s;
    s.h_in = h_in;
    s.normed_mixer = act("hax::ssm::samba_block::normed_mixer");
    s.rstd_mixer = row("hax::ssm::samba_block::rstd_mixer");
    s.mid = act("hax::ssm::samba_block::mid");
    s.normed_mlp = act("hax::ssm::samba_block::normed_mlp");
    s.rstd_mlp = row("hax::ssm::samba_block::rstd_mlp");
    nn::rms_norm_forward(space, h_in, store.template value<1>(impl::join_name(prefix, "mixer_norm.weight")),
                         s.normed_mixer, s.rstd_mixer, eps_);
    s.mixer = mixer_.forward(space, store, impl::join_name(prefix, "mixer."), s.normed_mixer,
                             pad_mask, s.mid, gate_loss, ctx);
    nn::add_forward(space, h_in, s.mid, s.mid);  // residual
    nn::rms_norm_forward(space, s.mid, store.template value<1>(impl::join_name(prefix, "mlp_norm.weight")),
                         s.normed_mlp, s.rstd_mlp, eps_);
    s.mlp = mlp_.forward(space, store, impl::join_name(prefix, "mlp."), s.normed_mlp, pad_mask, h_out,
                         gate_loss, ctx);
    nn::add_forward(space, s.mid, h_out, h_out);  // residual
    return s;
  }

  /// dh_in = ∂loss/∂h_in (written) from dh_out (B, L, D); parameter gradients accumulate (+=).
  /// dh_in must not alias dh_out. One (B, L, D) temporary on `space`.
  template <class DOut, class DIn, class Ctx>
  void backward(Space const& space, store_type const& store, std::string const& prefix,
                Saved const& saved, DOut const& dh_out, DIn const& dh_in, Ctx const& ctx) const {
    auto const mixer_norm = impl::join_name(prefix, "mixer_norm.weight");
    auto const mlp_norm = impl::join_name(prefix, "mlp_norm.weight");
    auto const scratch =
        uninitialized_view<act_view>(space, "hax::ssm::samba_block::scratch", dh_out.extent(0),
                                     dh_out.extent(1), dh_out.extent(2));
    // MLP half: dm = dh_out + RMSNorm_mlpᵀ(mlpᵀ(dh_out)); dm is built in dh_in.
    mlp_.backward(space, store, impl::join_name(prefix, "mlp."), saved.mlp, dh_out, scratch, ctx);
    nn::rms_norm_backward(space, scratch, saved.mid, store.template value<1>(mlp_norm),
                          saved.rstd_mlp, scratch, store.template grad<1>(mlp_norm));
    nn::add_forward(space, dh_out, scratch, dh_in);
    // Mixer half: dh_in = dm + RMSNorm_mixerᵀ(mixerᵀ(dm)).
    mixer_.backward(space, store, impl::join_name(prefix, "mixer."), saved.mixer, dh_in, scratch, ctx);
    nn::rms_norm_backward(space, scratch, saved.h_in, store.template value<1>(mixer_norm),
                          saved.rstd_mixer, scratch, store.template grad<1>(mixer_norm));
    nn::add_backward(space, scratch, dh_in);
  }

  Mixer const& mixer() const { return mixer_; }
  SwiGluMlp<Space, T> const& mlp() const { return mlp_; }

 private:
  Mixer mixer_;
  SwiGluMlp<Space, T> mlp_;
  double eps_;
};

}  // namespace hax::ssm
