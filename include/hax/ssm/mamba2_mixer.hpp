// SPDX-License-Identifier: MIT
/// \file
/// hax::ssm::Mamba2Mixer: the Mamba-2 mixer of the joint-recall models (semantics.md sections 2
/// and 4, fla's Mamba2 mixer in its training path), forward and hand-written backward over the
/// existing ops, plus a one-token recurrent step mode. Math and what is saved:
/// docs/math/mamba2_mixer.md.
///
///   u              = u ⊙ m                                 (B, L, D) pad-masked input
///   [z, xBC, dt]   = in_proj(u)                            (B, L, 2E + 2N + H), no bias
///   xBC            = SiLU(conv1d(xBC)) ⊙ m                  causal depthwise, width K, bias
///   [x, B, C]      = xBC                                   x viewed as (B, L, H, P), E = H·P
///   scan           = SSD(x, dt, dt_bias, −exp(A_log), B, C, D; chunk Q)   one group
///   y              = out_proj(RMSNorm(scan ⊙ SiLU(z)) · norm.weight)      norm_before_gate False
/// With `sparse` (the HAX hybrid, semantics.md section 4), from the x part of the activated xBC:
///   attn           = SparseBranch(x)                       (B, L, E), V = x, Q/K from xx_proj(x)
///   y              = out_proj(RMSNorm((scan + attn ⊙ E) ⊙ SiLU(z)) · norm.weight)
/// and the branch's ranking loss (training with key selection) is added to gate_loss.
#pragma once

#include <Kokkos_Core.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/scratch.hpp>
#include <hax/core/views.hpp>
#include <hax/nn/conv1d.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/linear.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/nn/rms_norm.hpp>
#include <hax/ssm/impl/mixer_common.hpp>
#include <hax/ssm/impl/mixer_hybrid.hpp>
#include <hax/ssm/policy.hpp>
#include <hax/ssm/ssd.hpp>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace hax::ssm {

/// Configuration of the Mamba-2 mixer; defaults: mamba2.json (d_model 64, 8 heads × 16, N 32).
struct Mamba2Config {
  int d_model = 64;         ///< D
  int d_inner = 128;        ///< E = num_heads · head_dim
  int state_size = 32;      ///< N
  int num_heads = 8;        ///< H
  int head_dim = 16;        ///< P
  int conv_kernel = 4;      ///< K (≤ nn::kMaxConvWidth)
  int chunk_size = 256;     ///< SSD chunk Q (the reference's 256)
  int num_layers = 2;       ///< for out_proj's 1/√num_layers init rescale
  double init_range = 0.1;  ///< std of the N(0, ·) Linear and Conv1d weights
  double norm_eps = 1e-5;   ///< gated RMSNorm epsilon
  /// The HAX branch, if any; its d_inner and state_size must be the mixer's (0 = take them).
  std::optional<attn::SparseBranchConfig> sparse;
  double e_init = 1.0;      ///< initial value of E (the released code: 1; the paper's NL runs: 0)
  /// With a pad mask, the SSD skips the steps after each row's last real token
  /// (SsdInputs::lengths). The mixer zeroes x, B and C at pads, so the full scan's output there
  /// is exactly 0 as well and nothing changes but the cost: every output and gradient is the
  /// same, in both semantics, with or without the branch (which reads x, not the scan; tested).
  /// The models set it; off by default so that the plain mixer scans what it is given.
  bool skip_padding = false;
};

/// The Mamba-2 mixer (stateless: parameters live in an nn::ParameterStore under a prefix).
template <execution_space Space, class T = float>
class Mamba2Mixer {
 public:
  using memory_space = typename Space::memory_space;
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, memory_space>;

  /// Validates the config; throws hax::invalid_argument naming the bad field.
  explicit Mamba2Mixer(Mamba2Config config) : config_(std::move(config)) {
    char const* op = "hax::ssm::Mamba2Mixer";
    core::require(config_.d_model >= 1, op, "d_model must be >= 1, got ", config_.d_model);
    core::require(config_.num_heads >= 1, op, "num_heads must be >= 1, got ", config_.num_heads);
    core::require(config_.head_dim >= 1, op, "head_dim must be >= 1, got ", config_.head_dim);
    core::require(config_.d_inner == config_.num_heads * config_.head_dim, op, "d_inner (",
                  config_.d_inner, ") must equal num_heads · head_dim (", config_.num_heads,
                  " · ", config_.head_dim, ")");
    core::require(config_.state_size >= 1, op, "state_size must be >= 1, got ",
                  config_.state_size);
    core::require(config_.conv_kernel >= 1 && config_.conv_kernel <= nn::kMaxConvWidth, op,
                  "conv_kernel must be in [1, ", nn::kMaxConvWidth, "], got ",
                  config_.conv_kernel);
    core::require(config_.chunk_size >= 1, op, "chunk_size must be >= 1, got ",
                  config_.chunk_size);
    core::require(config_.num_layers >= 1, op, "num_layers must be >= 1, got ",
                  config_.num_layers);
    core::require(config_.init_range > 0.0, op, "init_range must be > 0, got ",
                  config_.init_range);
    core::require(config_.norm_eps > 0.0, op, "norm_eps must be > 0, got ", config_.norm_eps);
    hybrid_ = impl::HybridBranch<Space, T>(config_.sparse, config_.d_inner, config_.state_size,
                                           config_.e_init, op);
  }

  Mamba2Config const& config() const { return config_; }
  /// Whether the HAX sparse branch is on (config().sparse was given).
  bool has_sparse_branch() const { return hybrid_.enabled(); }
  /// The branch (only when has_sparse_branch()); its config has the mixer's widths filled in.
  attn::SparseBranch<Space, T> const& sparse_branch() const { return hybrid_.branch(); }

  /// Width of in_proj's output: [z (E), xBC (E + 2N), dt (H)].
  int proj_width() const {
    return 2 * config_.d_inner + 2 * config_.state_size + config_.num_heads;
  }
  /// Channels of the conv: xBC.
  int conv_width() const { return config_.d_inner + 2 * config_.state_size; }

  /// Registers the reference's parameters (names and initialisation of semantics.md section 2,
  /// "Mamba-2") under `prefix` ("layers.0.mixer" or "layers.0.mixer."); with the branch also
  /// E (E) = e_init, xx_proj.weight (2N, E) and, with key selection, ks_mlp.*.
  void register_parameters(nn::ParameterStore<Space, T>& store, std::string const& prefix) const {
    auto const p = impl::mixer_prefix(prefix);
    auto const D = std::size_t(config_.d_model), E = std::size_t(config_.d_inner);
    auto const H = std::size_t(config_.num_heads), K = std::size_t(config_.conv_kernel);
    nn::init::Normal const normal{0.0, config_.init_range};
    store.add(p + "in_proj.weight", {std::size_t(proj_width()), D}, normal);
    store.add(p + "conv1d.weight", {std::size_t(conv_width()), 1, K}, normal);  // N(0, 0.1) too
    store.add(p + "conv1d.bias", {std::size_t(conv_width())}, nn::init::Zeros{});
    store.add(p + "dt_bias", {H}, nn::init::DtBias{});
    store.add(p + "A_log", {H}, nn::init::ALog{});
    store.add(p + "D", {H}, nn::init::Ones{});
    store.add(p + "norm.weight", {E}, nn::init::Ones{});
    // kaiming_uniform(a = √5) / √num_layers: U(±1/√E/√num_layers)
    store.add(p + "out_proj.weight", {D, E},
              nn::init::KaimingUniform{0, 1.0 / std::sqrt(double(config_.num_layers))});
    hybrid_.register_parameters(store, p);
  }

  /// What the backward needs.
  struct Saved {
    view<T const***> xm;        // (B, L, d_model) the (masked) input of in_proj
    view<std::int8_t**> mask;   // (B, L) 1 = real token (all ones without a pad mask)
    bool has_mask = false;      // whether a pad mask was given (the input gradient is masked)
    view<T***> z;               // (B, L, E)
    view<T***> xbc;             // (B, L, E + 2N) before the conv
    view<T***> dt;              // (B, L, H) before dt_bias and softplus
    view<T***> xs;              // (B, L, E) = (B, L, H, P) the SSD input x
    view<T***> Bm;              // (B, L, N)
    view<T***> Cm;              // (B, L, N)
    view<T*> A;                 // (H) −exp(A_log)
    view<T***> scan;            // (B, L, E) the SSD output (+ attn ⊙ E with the branch)
    view<T**> rstd;             // (B, L) of the gated RMSNorm (out_proj's input is recomputed)
    SsdSaved<T, memory_space> ssd_saved;  // (B, H, n_chunks, P, N) chunk states
    view<int*> lengths;         // (B) steps the SSD computes (skip_padding), else empty
    typename impl::HybridBranch<Space, T>::Saved hybrid;  // the branch's (only with `sparse`)
  };

  /// Forward. \param x [in] (B, L, d_model). \param pad_mask [in] (B, L) nonzero = real, or
  /// empty. \param y [out] (B, L, d_model), written. \param gate_loss [in,out] 0-d device View:
  /// the branch's ranking loss is added (+=) in training (ctx.training) with key selection, else
  /// untouched (and may be empty). \param ctx seeds, step and layer of the branch's random draws
  /// (unused without the branch). Asynchronous on `space`: no host synchronisation.
  template <class X, class Mask, class Y, class Loss>
  Saved forward(Space const& space, nn::ParameterStore<Space, T> const& store,
                std::string const& prefix, X const& x, Mask const& pad_mask, Y const& y,
                Loss const& gate_loss, attn::StepContext const& ctx) const {
    static_assert(X::rank() == 3 && Y::rank() == 3 && Mask::rank() == 2,
                  "hax::ssm::Mamba2Mixer::forward: x, y (B, L, d_model), pad_mask (B, L)");
    char const* op = "hax::ssm::Mamba2Mixer::forward";
    check_io(op, x, pad_mask, y, "y");
    auto const p = impl::mixer_prefix(prefix);
    int const B = x.extent_int(0), L = x.extent_int(1);
    int const E = config_.d_inner, N = config_.state_size, H = config_.num_heads;
    int const P = config_.head_dim, Dm = config_.d_model;
    Saved s;
    s.mask = uninitialized_view<std::int8_t**>(space, "hax::ssm::mamba2_mask", B, L);
    impl::copy_mask(space, pad_mask, s.mask);
    s.has_mask = pad_mask.is_allocated();
    auto const mflat = impl::flat_mask(s.mask);
    if (s.has_mask) {  // apply_mask_to_padding_states: in_proj sees zeros at pads
      auto const xm = uninitialized_view<T***>(space, "hax::ssm::mamba2_xm", B, L, Dm);
      impl::masked_copy(space, nn::as_rows(x), mflat, nn::as_rows(xm));
      s.xm = xm;
    } else {
      s.xm = x;
    }
    // in_proj as three GEMMs, one per row block of its weight ([z | xBC | dt], each block a
    // contiguous (out, in) matrix), each straight into its own output: no packed (B, L, 2E + 2N + H)
    // projection and no column split (a copy of 89 MB per layer at the joint-recall shape).
    s.z = uninitialized_view<T***>(space, "hax::ssm::mamba2_z", B, L, E);
    s.xbc = uninitialized_view<T***>(space, "hax::ssm::mamba2_xbc", B, L, conv_width());
    s.dt = uninitialized_view<T***>(space, "hax::ssm::mamba2_dt", B, L, H);
    {
      auto const w_in = store.template value<2>(p + "in_proj.weight");
      auto const xm_rows = nn::as_rows(s.xm);
      nn::linear_forward(space, xm_rows, nn::output_rows(w_in, 0, E), view<T*>(), nn::as_rows(s.z));
      nn::linear_forward(space, xm_rows, nn::output_rows(w_in, E, E + conv_width()), view<T*>(),
                         nn::as_rows(s.xbc));
      nn::linear_forward(space, xm_rows, nn::output_rows(w_in, E + conv_width(), proj_width()), view<T*>(),
                         nn::as_rows(s.dt));
    }

    s.xs = uninitialized_view<T***>(space, "hax::ssm::mamba2_x", B, L, E);
    s.Bm = uninitialized_view<T***>(space, "hax::ssm::mamba2_B", B, L, N);
    s.Cm = uninitialized_view<T***>(space, "hax::ssm::mamba2_C", B, L, N);
    // SiLU(conv1d(xBC)) ⊙ m, written straight into x, B and C (no packed (B, L, E + 2N) output)
    nn::conv1d_silu_forward_columns(space, s.xbc, conv_weight(store, p),
                                    store.template value<1>(p + "conv1d.bias"), s.mask, s.xs, s.Bm,
                                    s.Cm);

    s.A = uninitialized_view<T*>(space, "hax::ssm::mamba2_A", H);
    impl::negative_exp(space, store.template value<1>(p + "A_log"), s.A);
    s.scan = uninitialized_view<T***>(space, "hax::ssm::mamba2_scan", B, L, E);
    if (config_.skip_padding && s.has_mask) {
      s.lengths = uninitialized_view<int*>(space, "hax::ssm::mamba2_lengths", B);
      core::real_extent(space, s.mask, s.lengths);
    }
    s.ssd_saved = ssd_forward(space, ssd_inputs(store, p, s), heads(s.scan, P),
                              ChunkBoundaries{config_.chunk_size});
    if (hybrid_.enabled()) {  // scan += attn ⊙ E, attn from the SSD's own input x
      s.hybrid = hybrid_.forward(space, store, p, s.xs, s.has_mask ? s.mask : view<std::int8_t**>(),
                                 s.scan, gate_loss, ctx);
    }

    s.rstd = uninitialized_view<T**>(space, "hax::ssm::mamba2_rstd", B, L);
    {
      // out_proj's input is not kept: the backward recomputes it (one elementwise pass) rather
      // than hold a (B, L, E) activation per layer for the whole step.
      core::ScratchFrame<memory_space> frame;
      auto const normed = uninitialized_view<T***>(space, "hax::ssm::mamba2_normed", B, L, E);
      nn::gated_rms_norm_forward(space, s.scan, s.z, store.template value<1>(p + "norm.weight"),
                                 normed, s.rstd, config_.norm_eps);
      nn::linear_forward(space, nn::as_rows(normed),
                         store.template value<2>(p + "out_proj.weight"), view<T*>(),
                         nn::as_rows(y));
    }
    return s;
  }

  /// Backward. \param dy [in] (B, L, d_model). \param dx [out] (B, L, d_model), written (=),
  /// zero at pad positions. Parameter gradients accumulate (+=); with key selection in training
  /// the MLP's come from ctx.gate_loss_weight (α) × the ranking loss only. \param ctx the
  /// forward's. Asynchronous on `space`.
  template <class DY, class DX>
  void backward(Space const& space, nn::ParameterStore<Space, T> const& store,
                std::string const& prefix, Saved const& s, DY const& dy, DX const& dx,
                attn::StepContext const& ctx) const {
    static_assert(DY::rank() == 3 && DX::rank() == 3,
                  "hax::ssm::Mamba2Mixer::backward: dy, dx (B, L, d_model)");
    char const* op = "hax::ssm::Mamba2Mixer::backward";
    check_io(op, s.xm, s.mask, dy, "dy");
    check_io(op, s.xm, s.mask, dx, "dx");
    auto const p = impl::mixer_prefix(prefix);
    int const B = s.xm.extent_int(0), L = s.xm.extent_int(1);
    int const E = config_.d_inner, N = config_.state_size, H = config_.num_heads;
    int const P = config_.head_dim;
    auto const mflat = impl::flat_mask(s.mask);
    Kokkos::View<std::int8_t*, memory_space> no_mask;

    // in_proj's output gradient [dz | dxbc | ddt]: the norm writes dz and the conv writes dxbc
    // straight into its columns (no copies). Taken first, as it lives until in_proj's backward;
    // the temporaries after it are released as soon as they are consumed (scratch frames).
    auto const dzxbcdt =
        uninitialized_view<T***>(space, "hax::ssm::mamba2_dzxbcdt", B, L, proj_width());
    auto const dz = Kokkos::subview(dzxbcdt, Kokkos::ALL, Kokkos::ALL, Kokkos::pair<int, int>(0, E));
    auto const dxbc = Kokkos::subview(dzxbcdt, Kokkos::ALL, Kokkos::ALL,
                                      Kokkos::pair<int, int>(E, E + conv_width()));
    auto const dscan = uninitialized_view<T***>(space, "hax::ssm::mamba2_dscan", B, L, E);
    {
      core::ScratchFrame<memory_space> frame;  // out_proj's input, recomputed, and its gradient
      auto const normed = uninitialized_view<T***>(space, "hax::ssm::mamba2_normed", B, L, E);
      auto const rstd = uninitialized_view<T**>(space, "hax::ssm::mamba2_rstd_again", B, L);
      nn::gated_rms_norm_forward(space, s.scan, s.z, store.template value<1>(p + "norm.weight"),
                                 normed, rstd, config_.norm_eps);
      auto const dnormed = uninitialized_view<T***>(space, "hax::ssm::mamba2_dnormed", B, L, E);
      nn::linear_backward(space, nn::as_rows(dy), nn::as_rows(normed),
                          store.template value<2>(p + "out_proj.weight"), nn::as_rows(dnormed),
                          store.template grad<2>(p + "out_proj.weight"), view<T*>());
      nn::gated_rms_norm_backward(space, dnormed, s.scan, s.z,
                                  store.template value<1>(p + "norm.weight"), s.rstd, dscan, dz,
                                  store.template grad<1>(p + "norm.weight"));
    }

    SsdGrads<T, memory_space> g;
    auto const dxs = uninitialized_view<T***>(space, "hax::ssm::mamba2_dx", B, L, E);
    g.dx = heads(dxs, P);
    g.ddt = uninitialized_view<T***>(space, "hax::ssm::mamba2_ddt", B, L, H);
    g.ddt_bias = store.template grad<1>(p + "dt_bias");
    g.dA = zeroed_view<T*>(space, "hax::ssm::mamba2_dA", H);
    g.dB = uninitialized_view<T***>(space, "hax::ssm::mamba2_dB", B, L, N);
    g.dC = uninitialized_view<T***>(space, "hax::ssm::mamba2_dC", B, L, N);
    g.dD = store.template grad<1>(p + "D");
    {
      core::ScratchFrame<memory_space> frame;  // the SSD's own temporaries
      ssd_backward(space, ssd_inputs(store, p, s), s.ssd_saved,
                   impl::const_view<T const****, memory_space>(heads(dscan, P)), g);
    }
    impl::negative_exp_backward(space, g.dA, s.A, store.template grad<1>(p + "A_log"));
    if (hybrid_.enabled()) {  // dscan is also d(scan + attn ⊙ E): dE, and the branch's dx into dxs
      core::ScratchFrame<memory_space> frame;  // the branch's temporaries
      hybrid_.backward(space, store, p, s.hybrid, dscan, dxs, ctx);
    }

    // conv + SiLU backward from [dx, dB, dC] ⊙ m (the post-conv mask), read where they are,
    // into dzxbcdt's columns
    nn::conv1d_silu_backward_columns(space, dxs, g.dB, g.dC, s.xbc, conv_weight(store, p),
                                     store.template value<1>(p + "conv1d.bias"), s.mask, dxbc,
                                     impl::as_conv_2d(store.template grad<3>(p + "conv1d.weight")),
                                     store.template grad<1>(p + "conv1d.bias"));
    impl::place_columns(space, nn::as_rows(g.ddt), E + conv_width(), nn::as_rows(dzxbcdt),
                        no_mask);
    nn::linear_backward(space, nn::as_rows(dzxbcdt), nn::as_rows(s.xm),
                        store.template value<2>(p + "in_proj.weight"), nn::as_rows(dx),
                        store.template grad<2>(p + "in_proj.weight"), view<T*>());
    if (s.has_mask) {  // the input was multiplied by the mask
      impl::mask_rows(space, nn::as_rows(dx), mflat);
    }
  }

  /// Recurrent state of the step mode: zeros before the first token.
  struct StepState {
    view<T***> conv;  // (B, K − 1, E + 2N) the last K − 1 conv inputs, oldest first
    view<T****> ssm;  // (B, H, P, N)       the SSD state
  };

  /// A zeroed step state for `batch` sequences (asynchronous on `space`).
  StepState make_step_state(Space const& space, int batch) const {
    return StepState{
        view<T***>(Kokkos::view_alloc(space, std::string("hax::ssm::mamba2_conv_state")), batch,
                   config_.conv_kernel - 1, conv_width()),
        view<T****>(Kokkos::view_alloc(space, std::string("hax::ssm::mamba2_ssm_state")), batch,
                    config_.num_heads, config_.head_dim, config_.state_size)};
  }

  /// One token (inference, no padding; not with the sparse branch, which would need a KV cache:
  /// throws hax::invalid_argument then).
  /// \param x [in] (B, d_model); \param y [out] (B, d_model), written. Fed a sequence token by
  /// token from a zeroed state, gives forward()'s outputs.
  template <class X, class Y>
  void step(Space const& space, nn::ParameterStore<Space, T> const& store,
            std::string const& prefix, StepState const& state, X const& x, Y const& y) const {
    static_assert(X::rank() == 2 && Y::rank() == 2,
                  "hax::ssm::Mamba2Mixer::step: x, y (B, d_model)");
    char const* op = "hax::ssm::Mamba2Mixer::step";
    core::require(!hybrid_.enabled(), op,
                  "sparse: step mode has no KV cache for the sparse branch; use forward()");
    auto const p = impl::mixer_prefix(prefix);
    int const B = x.extent_int(0);
    int const E = config_.d_inner, N = config_.state_size, H = config_.num_heads;
    int const P = config_.head_dim;
    core::require(x.extent_int(1) == config_.d_model && y.extent_int(0) == B &&
                      y.extent_int(1) == config_.d_model && state.ssm.extent_int(0) == B,
                  op, "x ", impl::shape_of(x), " and y ", impl::shape_of(y),
                  " must be (B, d_model = ", config_.d_model, ") with B of the state ",
                  impl::shape_of(state.ssm));
    auto const zxbcdt =
        uninitialized_view<T**>(space, "hax::ssm::mamba2_step_zxbcdt", B, proj_width());
    nn::linear_forward(space, x, store.template value<2>(p + "in_proj.weight"), view<T*>(),
                       zxbcdt);
    auto const z = uninitialized_view<T**>(space, "hax::ssm::mamba2_step_z", B, E);
    auto const xbc = uninitialized_view<T**>(space, "hax::ssm::mamba2_step_xbc", B, conv_width());
    auto const dt = uninitialized_view<T**>(space, "hax::ssm::mamba2_step_dt", B, H);
    impl::split_columns(space, zxbcdt, 0, z);
    impl::split_columns(space, zxbcdt, E, xbc);
    impl::split_columns(space, zxbcdt, E + conv_width(), dt);
    auto const xbc_act =
        uninitialized_view<T**>(space, "hax::ssm::mamba2_step_xbc_act", B, conv_width());
    impl::conv_silu_step(space, xbc, conv_weight(store, p),
                         store.template value<1>(p + "conv1d.bias"), state.conv, xbc_act);
    auto const xs = uninitialized_view<T**>(space, "hax::ssm::mamba2_step_x", B, E);
    auto const Bm = uninitialized_view<T**>(space, "hax::ssm::mamba2_step_B", B, N);
    auto const Cm = uninitialized_view<T**>(space, "hax::ssm::mamba2_step_C", B, N);
    impl::split_columns(space, xbc_act, 0, xs);
    impl::split_columns(space, xbc_act, E, Bm);
    impl::split_columns(space, xbc_act, E + N, Cm);
    auto const A = uninitialized_view<T*>(space, "hax::ssm::mamba2_step_A", H);
    impl::negative_exp(space, store.template value<1>(p + "A_log"), A);
    auto const scan = uninitialized_view<T***>(space, "hax::ssm::mamba2_step_scan", B, 1, E);
    ssd_step(space, state.ssm, impl::const_view<T const***, memory_space>(xs.data(), B, H, P),
             impl::const_view<T const**, memory_space>(dt),
             impl::const_view<T const*, memory_space>(store.template value<1>(p + "dt_bias")),
             impl::const_view<T const*, memory_space>(A),
             impl::const_view<T const**, memory_space>(Bm),
             impl::const_view<T const**, memory_space>(Cm),
             impl::const_view<T const*, memory_space>(store.template value<1>(p + "D")),
             view<T***>(scan.data(), B, H, P));
    // the gated norm and out_proj through the (B, L, ·) ops with L = 1
    auto const rstd = uninitialized_view<T**>(space, "hax::ssm::mamba2_step_rstd", B, 1);
    auto const normed = uninitialized_view<T***>(space, "hax::ssm::mamba2_step_normed", B, 1, E);
    nn::gated_rms_norm_forward(space, scan, view<T***>(z.data(), B, 1, E),
                               store.template value<1>(p + "norm.weight"), normed, rstd,
                               config_.norm_eps);
    nn::linear_forward(space, nn::as_rows(normed), store.template value<2>(p + "out_proj.weight"),
                       view<T*>(), y);
  }

 private:
  template <class X, class Mask, class Y>
  void check_io(char const* op, X const& x, Mask const& mask, Y const& y,
                char const* y_name) const {
    impl::check_mixer_io(op, config_.d_model, x, mask, y, y_name);
  }

  /// (B, L, H·P) seen as (B, L, H, P), same data.
  static view<T****> heads(view<T***> const& v, int P) {
    return view<T****>(v.data(), v.extent(0), v.extent(1), v.extent(2) / P, P);
  }
  static auto conv_weight(nn::ParameterStore<Space, T> const& store, std::string const& p) {
    return impl::as_conv_2d(store.template value<3>(p + "conv1d.weight"));
  }

  SsdInputs<T, memory_space> ssd_inputs(nn::ParameterStore<Space, T> const& store,
                                        std::string const& p, Saved const& s) const {
    SsdInputs<T, memory_space> in;
    in.x = heads(s.xs, config_.head_dim);
    in.dt = s.dt;
    in.dt_bias = store.template value<1>(p + "dt_bias");
    in.A = s.A;
    in.Bm = s.Bm;
    in.Cm = s.Cm;
    in.Dskip = store.template value<1>(p + "D");
    in.lengths = s.lengths;
    return in;
  }

  Mamba2Config config_;
  impl::HybridBranch<Space, T> hybrid_;  // the optional HAX branch and its E
};

}  // namespace hax::ssm
