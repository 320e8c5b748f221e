// SPDX-License-Identifier: MIT
/// \file
/// hax::models::Model: the language model of joint recall assembled from a ModelConfig
/// (semantics.md sections 2, 4, 9): embedding (vocab, d_model) ~ N(0, initializer_range),
/// num_hidden_layers pre-norm residual blocks h ← h + mixer(RMSNorm(h)), a final RMSNorm
/// (norm_f) and logits = h·Eᵀ with the embedding matrix (tied, no bias). Parameter names are the
/// reference's (embeddings.weight, layers.{i}.norm.weight, layers.{i}.mixer.*, norm_f.weight).
/// Forward and hand-written backward over a Workspace of per-layer activations; nothing here
/// synchronises with the host. The output head (norm_f and the logits) runs either at every
/// position or, with a workspace made for R output rows, only at R chosen positions per sequence
/// (the positions a loss reads: nn/rows.hpp, docs/math/output_rows.md).
///
/// The mixer is a template parameter; MixerFactory<Mixer>::make(config, layer) builds one per
/// layer. Provided: LinearMixer (stand-in), hax::ssm::MambaMixer / Mamba2Mixer (with the HAX
/// sparse branch when the config has a sparse_arch), and the tag SambaMixer (samba.hpp), whose
/// layers are Samba blocks (layers.{i}.mixer_norm, mixer, mlp_norm, mlp) instead of Block.
#pragma once

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/scratch.hpp>
#include <hax/core/policies.hpp>
#include <hax/models/block.hpp>
#include <hax/models/config.hpp>
#include <hax/models/linear_mixer.hpp>
#include <hax/models/step_context.hpp>
#include <hax/nn/embedding.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/linear.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/nn/rms_norm.hpp>
#include <hax/nn/rows.hpp>

#include <cstdint>
#include <string>
#include <vector>

#if __has_include(<hax/ssm/mamba_mixer.hpp>)
#include <hax/ssm/mamba_mixer.hpp>
#define HAX_MODELS_HAS_MAMBA 1
#else
#define HAX_MODELS_HAS_MAMBA 0
#endif
#if HAX_MODELS_HAS_MAMBA && __has_include(<hax/ssm/samba_layers.hpp>)
#include <hax/models/samba.hpp>
#define HAX_MODELS_HAS_SAMBA 1
#else
#define HAX_MODELS_HAS_SAMBA 0
#endif
#if __has_include(<hax/ssm/mamba2_mixer.hpp>)
#include <hax/ssm/mamba2_mixer.hpp>
#define HAX_MODELS_HAS_MAMBA2 1
#else
#define HAX_MODELS_HAS_MAMBA2 0
#endif

namespace hax::models {

/// Builds the mixer of layer `layer` from a model config. Specialised per mixer type.
template <class Mixer>
struct MixerFactory;

template <execution_space Space, class T>
struct MixerFactory<LinearMixer<Space, T>> {
  static LinearMixer<Space, T> make(ModelConfig const& c, int /*layer*/) {
    return LinearMixer<Space, T>(LinearMixerConfig{c.hidden_size, c.initializer_range});
  }
};

#if HAX_MODELS_HAS_SPARSE_BRANCH
/// The sparse branch of a config (empty when sparse_arch is empty).
inline std::optional<attn::SparseBranchConfig> sparse_branch_config(ModelConfig const& c) {
  if (!c.has_sparse()) return std::nullopt;
  attn::SparseBranchConfig s;
  s.arch = c.sparse_arch;
  s.keys = c.sparse_keys;
  s.num_hash = c.num_hash;
  s.state_size = c.state_size;
  s.d_inner = c.intermediate_size;
  s.semantics = c.semantics == "reference" ? attn::Semantics::reference : attn::Semantics::causal;
  s.max_length = c.data_max_length;
  return s;
}
#endif

#if HAX_MODELS_HAS_MAMBA && HAX_MODELS_HAS_SPARSE_BRANCH
template <execution_space Space, class T>
struct MixerFactory<ssm::MambaMixer<Space, T>> {
  static ssm::MambaMixer<Space, T> make(ModelConfig const& c, int /*layer*/) {
    core::require(c.base == Base::mamba, "hax::models::Model", "a Mamba model needs base mamba, "
                  "the config says \"", base_name(c.base), "\"");
    ssm::MambaConfig m;
    m.d_model = c.hidden_size;
    m.d_inner = c.intermediate_size;
    m.state_size = c.state_size;
    m.dt_rank = c.time_step_rank;
    m.conv_kernel = c.conv_kernel;
    m.init_range = c.initializer_range;
    m.sparse = sparse_branch_config(c);
    m.e_init = c.e_init;
    m.skip_padding = true;  // exact: the scan's output at pads is 0 either way (MambaConfig)
    return ssm::MambaMixer<Space, T>(m);
  }
};
#endif

#if HAX_MODELS_HAS_MAMBA2 && HAX_MODELS_HAS_SPARSE_BRANCH
template <execution_space Space, class T>
struct MixerFactory<ssm::Mamba2Mixer<Space, T>> {
  static ssm::Mamba2Mixer<Space, T> make(ModelConfig const& c, int /*layer*/) {
    core::require(c.base == Base::mamba2, "hax::models::Model", "a Mamba-2 model needs base "
                  "mamba2, the config says \"", base_name(c.base), "\"");
    ssm::Mamba2Config m;
    m.d_model = c.hidden_size;
    m.d_inner = c.intermediate_size;
    m.state_size = c.state_size;
    m.num_heads = c.num_heads;
    m.head_dim = c.head_dim;
    m.conv_kernel = c.conv_kernel;
    m.chunk_size = c.chunk_size;
    m.num_layers = c.num_hidden_layers;
    m.init_range = c.initializer_range;
    m.norm_eps = c.norm_eps;
    m.sparse = sparse_branch_config(c);
    m.e_init = c.e_init;
    m.skip_padding = true;  // exact: the SSD's output at pads is 0 either way (Mamba2Config)
    return ssm::Mamba2Mixer<Space, T>(m);
  }
};
#endif

/// The layer type Model stacks for a mixer type, and how layer `layer` is built: the pre-norm
/// Block around MixerFactory's mixer, or (samba.hpp) a Samba layer.
template <execution_space Space, class T, class Mixer>
struct BlockTraits {
  using type = Block<Space, T, Mixer>;
  static type make(ModelConfig const& c, int layer) {
    core::require(c.base != Base::samba, "hax::models::Model",
                  "a samba config needs the Samba model (Mixer = SambaMixer)");
    return type(MixerFactory<Mixer>::make(c, layer), "layers." + std::to_string(layer) + ".",
                c.hidden_size, c.norm_eps);
  }
};

#if HAX_MODELS_HAS_SAMBA
template <execution_space Space, class T>
struct BlockTraits<Space, T, SambaMixer<Space, T>> {
  using type = SambaLayer<Space, T>;
  static type make(ModelConfig const& c, int layer) { return type(c, layer); }
};
#endif

template <execution_space Space, class T = float, class Mixer = LinearMixer<Space, T>>
class Model {
 public:
  using execution_space = Space;
  using memory_space = typename Space::memory_space;
  using block_type = typename BlockTraits<Space, T, Mixer>::type;
  using act_view = Kokkos::View<T***, Kokkos::LayoutRight, memory_space>;  // (B, L, D) or (B, L, V)
  using row_view = Kokkos::View<T**, Kokkos::LayoutRight, memory_space>;   // (B, L)
  using mask_view = Kokkos::View<std::int8_t**, Kokkos::LayoutRight, memory_space>;  // (B, L)
  using scalar_view = Kokkos::View<T, memory_space>;                        // rank 0

  /// Activations of one forward/backward at batch shape (B, L).
  struct Workspace {
    int batch = 0;
    int length = 0;
    std::vector<act_view> h;       // (layers + 1) x (B, L, D): residual stream before each block
    std::vector<act_view> normed;  // (layers) x (B, L, D): RMSNorm(h[i]), the mixer's input
    std::vector<row_view> rstd;    // (layers) x (B, L)
    std::vector<typename block_type::Saved> saved;  // (layers)
    int output_rows = 0;           // R: the head runs at R positions per sequence; 0: at all L
    act_view h_rows;               // (B, R, D) the last residual stream at the positions (R > 0)
    act_view dh_rows;              // (B, R, D) its gradient (R > 0)
    act_view dhf;                  // (B, R, D) the gradient of hf (R > 0)
    act_view hf;                   // (B, R, D) norm_f output; R = L when output_rows = 0
    row_view rstd_f;               // (B, R)
    act_view logits;               // (B, R, V)
    act_view dlogits;              // (B, R, V) set by the loss before backward
    act_view dh;                   // (B, L, D) running gradient of the residual stream
    act_view scratch;              // (B, L, D)
    mask_view pad_mask;            // (B, L) nonzero = real token
    scalar_view gate_loss;         // rank 0: Σ_layers gate loss of the last forward
  };

  /// Builds the blocks and registers, finalizes and initialises the parameters (seed `seed`).
  Model(ModelConfig const& config, std::uint64_t seed, Space const& space = Space{})
      : config_(config) {
    config_.validate();
    auto const d = static_cast<std::size_t>(config_.hidden_size);
    store_.add("embeddings.weight", {static_cast<std::size_t>(config_.vocab_size), d},
               nn::init::Normal{0.0, config_.initializer_range});
    for (int i = 0; i < config_.num_hidden_layers; ++i) {
      blocks_.push_back(BlockTraits<Space, T, Mixer>::make(config_, i));
      blocks_.back().register_parameters(store_);
    }
    store_.add("norm_f.weight", {d}, nn::init::Ones{});
    store_.finalize(space);
    store_.initialize(space, seed);
  }

  ModelConfig const& config() const { return config_; }
  nn::ParameterStore<Space, T>& store() { return store_; }
  nn::ParameterStore<Space, T> const& store() const { return store_; }
  std::size_t parameter_count() const { return store_.count(); }
  int num_layers() const { return static_cast<int>(blocks_.size()); }

  /// Allocates the activations for batch shape (B, L) on `space`. With `output_rows` R >= 1 the
  /// output head's activations (the final norm, the logits and their gradients) are (B, R, ·):
  /// such a workspace is used with the forward and backward that take positions (B, R). With 0
  /// (the default) they are (B, L, ·), the logits at every position.
  Workspace make_workspace(Space const& space, int batch, int length, int output_rows = 0) const {
    constexpr char const* op = "hax::models::Model::make_workspace";
    core::require(batch >= 1 && length >= 1, op, "batch (", batch, ") and length (", length,
                  ") must be >= 1");
    core::require(output_rows >= 0 && output_rows <= length, op, "output_rows (", output_rows,
                  ") must be in [0, length = ", length, "] (0: logits at every position)");
    Workspace ws;
    ws.batch = batch;
    ws.length = length;
    ws.output_rows = output_rows;
    std::size_t const b = batch, l = length, d = config_.hidden_size, v = config_.vocab_size;
    std::size_t const r = output_rows > 0 ? output_rows : length;
    auto act = [&](char const* name, std::size_t last, std::size_t len) {
      return act_view(Kokkos::view_alloc(space, Kokkos::WithoutInitializing,
                                         std::string("hax::models::") + name),
                      b, len, last);
    };
    auto rows = [&](char const* name, std::size_t len) {
      return row_view(Kokkos::view_alloc(space, Kokkos::WithoutInitializing,
                                         std::string("hax::models::") + name),
                      b, len);
    };
    for (int i = 0; i <= num_layers(); ++i) ws.h.push_back(act("h", d, l));
    for (int i = 0; i < num_layers(); ++i) {
      ws.normed.push_back(act("normed", d, l));
      ws.rstd.push_back(rows("rstd", l));
    }
    ws.saved.resize(num_layers());
    if (output_rows > 0) {
      ws.h_rows = act("h_rows", d, r);
      ws.dh_rows = act("dh_rows", d, r);
      ws.dhf = act("dhf", d, r);
    }
    ws.hf = act("hf", d, r);
    ws.rstd_f = rows("rstd_f", r);
    ws.logits = act("logits", v, r);
    ws.dlogits = act("dlogits", v, r);
    ws.dh = act("dh", d, l);
    ws.scratch = act("scratch", d, l);
    ws.pad_mask = mask_view(Kokkos::view_alloc(space, std::string("hax::models::pad_mask")), b, l);
    ws.gate_loss = scalar_view(Kokkos::view_alloc(space, std::string("hax::models::gate_loss")));
    return ws;
  }

  /// Forward: ws.logits (B, L, V) = model(tokens), ws.gate_loss = Σ_layers gate loss (0 without
  /// key selection or outside training). `tokens` (B, L) integral in [0, vocab); ws.pad_mask must
  /// hold the pad mask (nonzero = real token; see set_pad_mask). The workspace must be made
  /// without output rows. Asynchronous on `space`.
  template <class Tokens>
  void forward(Space const& space, Workspace& ws, Tokens const& tokens,
               StepContext const& ctx) const {
    constexpr char const* op = "hax::models::Model::forward";
    core::require(ws.output_rows == 0, op, "the workspace was made for ", ws.output_rows,
                  " output rows per sequence: pass their positions (B, R)");
    trunk_forward(op, space, ws, tokens, ctx);
    auto const emb = store_.template value<2>("embeddings.weight");
    nn::rms_norm_forward(space, ws.h[num_layers()], store_.template value<1>("norm_f.weight"),
                         ws.hf, ws.rstd_f, config_.norm_eps);
    nn::tied_output_forward(space, nn::as_rows(ws.hf), emb, nn::as_rows(ws.logits));
  }

  /// Forward with the output head at chosen positions only: ws.logits (B, R, V) holds the logits
  /// of position positions(b, r) of sequence b, and zero-input logits (those of a zero row, all 0)
  /// where positions(b, r) < 0. The trunk (embedding and blocks) runs as in forward; ws must be
  /// made with output_rows = R. Asynchronous on `space`.
  template <class Tokens, class Positions>
  void forward(Space const& space, Workspace& ws, Tokens const& tokens,
               Positions const& positions, StepContext const& ctx) const {
    constexpr char const* op = "hax::models::Model::forward";
    check_positions(op, ws, positions);
    trunk_forward(op, space, ws, tokens, ctx);
    auto const emb = store_.template value<2>("embeddings.weight");
    nn::gather_rows(space, ws.h[num_layers()], positions, ws.h_rows);
    nn::rms_norm_forward(space, ws.h_rows, store_.template value<1>("norm_f.weight"), ws.hf,
                         ws.rstd_f, config_.norm_eps);
    nn::tied_output_forward(space, nn::as_rows(ws.hf), emb, nn::as_rows(ws.logits));
  }

  /// Backward from ws.dlogits (B, L, V) (and, inside sparse mixers, ctx.gate_loss_weight · the
  /// gate loss): parameter gradients accumulate into store().grads(). For a workspace made
  /// without output rows. Asynchronous on `space`.
  template <class Tokens>
  void backward(Space const& space, Workspace& ws, Tokens const& tokens,
                StepContext const& ctx) const {
    core::require(ws.output_rows == 0, "hax::models::Model::backward", "the workspace was made for ",
                  ws.output_rows, " output rows per sequence: pass their positions (B, R)");
    auto const emb = store_.template value<2>("embeddings.weight");
    auto const demb = store_.template grad<2>("embeddings.weight");
    nn::tied_output_backward(space, nn::as_rows(ws.dlogits), nn::as_rows(ws.hf), emb,
                             nn::as_rows(ws.scratch), demb);
    nn::rms_norm_backward(space, ws.scratch, ws.h[num_layers()],
                          store_.template value<1>("norm_f.weight"), ws.rstd_f, ws.dh,
                          store_.template grad<1>("norm_f.weight"));
    trunk_backward(space, ws, tokens, ctx);
  }

  /// Backward of the forward with positions, from ws.dlogits (B, R, V): the head's gradient goes
  /// back to the chosen positions of the residual stream, every other position gets none from
  /// it. `positions` must be those of the forward. Asynchronous on `space`.
  template <class Tokens, class Positions>
  void backward(Space const& space, Workspace& ws, Tokens const& tokens,
                Positions const& positions, StepContext const& ctx) const {
    check_positions("hax::models::Model::backward", ws, positions);
    auto const emb = store_.template value<2>("embeddings.weight");
    auto const demb = store_.template grad<2>("embeddings.weight");
    nn::tied_output_backward(space, nn::as_rows(ws.dlogits), nn::as_rows(ws.hf), emb,
                             nn::as_rows(ws.dhf), demb);
    nn::rms_norm_backward(space, ws.dhf, ws.h_rows, store_.template value<1>("norm_f.weight"),
                          ws.rstd_f, ws.dh_rows, store_.template grad<1>("norm_f.weight"));
    nn::scatter_rows(space, ws.dh_rows, positions, ws.dh);
    trunk_backward(space, ws, tokens, ctx);
  }

  /// ws.pad_mask(b, t) = (tokens(b, t) != pad_id). Asynchronous on `space`.
  template <class Tokens>
  static void set_pad_mask(Space const& space, Workspace& ws, Tokens const& tokens, int pad_id) {
    auto const mask = ws.pad_mask;
    Kokkos::parallel_for(
        "hax::models::set_pad_mask",
        Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0},
                                                      {tokens.extent(0), tokens.extent(1)}),
        KOKKOS_LAMBDA(std::size_t b, std::size_t t) {
          mask(b, t) = static_cast<int>(tokens(b, t)) != pad_id ? 1 : 0;
        });
  }

 private:
  template <class Positions>
  static void check_positions(char const* op, Workspace const& ws, Positions const& positions) {
    static_assert(Positions::rank() == 2, "hax::models::Model: positions must be (B, R)");
    core::require(ws.output_rows > 0, op, "the workspace was made without output rows: make it "
                  "with output_rows = R to pass positions");
    core::require(static_cast<int>(positions.extent(0)) == ws.batch &&
                      static_cast<int>(positions.extent(1)) == ws.output_rows,
                  op, "positions (", positions.extent(0), ", ", positions.extent(1),
                  ") must be (B, R) = (", ws.batch, ", ", ws.output_rows, ") of the workspace");
  }

  /// The embedding and the blocks: ws.h[num_layers()] is the last residual stream.
  template <class Tokens>
  void trunk_forward(char const* op, Space const& space, Workspace& ws, Tokens const& tokens,
                     StepContext const& ctx) const {
    core::require(static_cast<int>(tokens.extent(0)) == ws.batch &&
                      static_cast<int>(tokens.extent(1)) == ws.length,
                  op, "tokens (", tokens.extent(0), ", ", tokens.extent(1),
                  ") do not match the workspace (", ws.batch, ", ", ws.length, ")");
    Kokkos::deep_copy(space, ws.gate_loss, T(0));
    auto const emb = store_.template value<2>("embeddings.weight");
    nn::embedding_forward(space, tokens, emb, ws.h[0]);
    for (int i = 0; i < num_layers(); ++i) {
      StepContext c = ctx;
      c.layer = i;
      ws.saved[i] = blocks_[i].forward(space, store_, ws.h[i], ws.pad_mask, ws.normed[i],
                                       ws.rstd[i], ws.h[i + 1], ws.gate_loss, c);
    }
  }

  /// The blocks' and the embedding's backward from ws.dh, the gradient of the last residual
  /// stream (parameter gradients accumulate).
  template <class Tokens>
  void trunk_backward(Space const& space, Workspace& ws, Tokens const& tokens,
                      StepContext const& ctx) const {
    auto const demb = store_.template grad<2>("embeddings.weight");
    for (int i = num_layers() - 1; i >= 0; --i) {
      StepContext c = ctx;
      c.layer = i;
      // One layer's backward temporaries are dead once it returns: the next layer reuses them.
      core::ScratchFrame<typename Space::memory_space> frame;
      blocks_[i].backward(space, store_, ws.saved[i], ws.h[i], ws.rstd[i], ws.dh, ws.scratch, c);
    }
    nn::embedding_backward(space, tokens, ws.dh, demb);
  }

  ModelConfig config_;
  std::vector<block_type> blocks_;
  nn::ParameterStore<Space, T> store_;
};

}  // namespace hax::models
