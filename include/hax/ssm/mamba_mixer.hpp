// SPDX-License-Identifier: MIT
/// \file
/// hax::ssm::MambaMixer: the Mamba-1 mixer of the joint-recall models (semantics.md sections 2
/// and 4, fla's MambaMixer), forward and hand-written backward over the existing ops, plus a
/// one-token recurrent step mode. Math, shapes and what is saved: docs/math/mamba_mixer.md.
///
///   (x, z)        = in_proj(u)                          (B, L, 2·E), no bias
///   x             = SiLU(conv1d(x ⊙ m)) ⊙ m              causal depthwise, width K, bias
///   (dt_low, B, C) = x_proj(x)                           (B, L, R + 2N), no bias
///   delta         = dt_proj.weight · dt_low               the bias goes in as the scan's delta_bias
///   scan          = selective_scan(x, delta, dt_proj.bias, −exp(A_log), B, C, D)
///   y             = out_proj(scan ⊙ SiLU(z))             (B, L, d_model), no bias
/// m is the pad mask (1 = real token). With `sparse` (the HAX hybrid, semantics.md section 4):
///   attn          = SparseBranch(x)                      (B, L, E), V = x, Q/K from xx_proj(x)
///   y             = out_proj((scan + attn ⊙ E) ⊙ SiLU(z))
/// which is the reference's out_proj(scan ⊙ SiLU(z) + attn ⊙ E ⊙ SiLU(z)); the branch's ranking
/// loss (training with key selection) is added to gate_loss.
#pragma once

#include <Kokkos_Core.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/scratch.hpp>
#include <hax/core/views.hpp>
#include <hax/nn/activation.hpp>
#include <hax/nn/conv1d.hpp>
#include <hax/nn/elementwise.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/linear.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/ssm/impl/mixer_common.hpp>
#include <hax/ssm/impl/mixer_hybrid.hpp>
#include <hax/ssm/policy.hpp>
#include <hax/ssm/selective_scan.hpp>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace hax::ssm {

/// Configuration of the Mamba-1 mixer; defaults: mamba.json (d_model 64, d_inner 128, N 16).
struct MambaConfig {
  int d_model = 64;         ///< D, the block width
  int d_inner = 128;        ///< E = expand · D
  int state_size = 16;      ///< N
  int dt_rank = 8;          ///< R
  int conv_kernel = 4;      ///< K, the causal conv width (≤ nn::kMaxConvWidth)
  double init_range = 0.1;  ///< std of the N(0, ·) Linear weights
  /// Selective-scan checkpoint chunk (memory vs recompute). 32 keeps the backward's per-team
  /// states and adjoints of a chunk (2 · chunk · 8 channels · N floats) in GPU shared memory.
  int chunk = 32;
  /// The HAX branch, if any; its d_inner and state_size must be the mixer's (0 = take them).
  std::optional<attn::SparseBranchConfig> sparse;
  double e_init = 1.0;      ///< initial value of E (the released code: 1; the paper's NL runs: 0)
  /// With a pad mask, the selective scan skips the steps after each row's last real token
  /// (SelectiveScanInputs::lengths). The mixer zeroes the scan input x at pads, and B, C and
  /// delta are projections of it without bias, so the full scan's output there is exactly
  /// 0 as well and nothing changes but the cost: every output and gradient is the same, in both
  /// semantics, with or without the branch (which reads x, not the scan; tested). The models set
  /// it; off by default so that the plain mixer scans what it is given.
  bool skip_padding = false;
};

/// The Mamba-1 mixer (stateless: parameters live in an nn::ParameterStore under a prefix).
template <execution_space Space, class T = float>
class MambaMixer {
 public:
  using memory_space = typename Space::memory_space;
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, memory_space>;

  /// Validates the config; throws hax::invalid_argument naming the bad field.
  explicit MambaMixer(MambaConfig config) : config_(std::move(config)) {
    char const* op = "hax::ssm::MambaMixer";
    core::require(config_.d_model >= 1, op, "d_model must be >= 1, got ", config_.d_model);
    core::require(config_.d_inner >= 1, op, "d_inner must be >= 1, got ", config_.d_inner);
    core::require(config_.state_size >= 1 && config_.state_size <= 256, op,
                  "state_size must be in [1, 256], got ", config_.state_size);
    core::require(config_.dt_rank >= 1, op, "dt_rank must be >= 1, got ", config_.dt_rank);
    core::require(config_.conv_kernel >= 1 && config_.conv_kernel <= nn::kMaxConvWidth, op,
                  "conv_kernel must be in [1, ", nn::kMaxConvWidth, "], got ",
                  config_.conv_kernel);
    core::require(config_.init_range > 0.0, op, "init_range must be > 0, got ",
                  config_.init_range);
    core::require(config_.chunk >= 1, op, "chunk must be >= 1, got ", config_.chunk);
    hybrid_ = impl::HybridBranch<Space, T>(config_.sparse, config_.d_inner, config_.state_size,
                                           config_.e_init, op);
  }

  MambaConfig const& config() const { return config_; }
  /// Whether the HAX sparse branch is on (config().sparse was given).
  bool has_sparse_branch() const { return hybrid_.enabled(); }
  /// The branch (only when has_sparse_branch()); its config has the mixer's widths filled in.
  attn::SparseBranch<Space, T> const& sparse_branch() const { return hybrid_.branch(); }

  /// Registers the reference's parameters (names and initialisation of semantics.md section 2,
  /// "Mamba-1 and Samba") under `prefix` ("layers.0.mixer" or "layers.0.mixer."); with the
  /// branch also E (E) = e_init, xx_proj.weight (2N, E) and, with key selection, ks_mlp.*.
  void register_parameters(nn::ParameterStore<Space, T>& store, std::string const& prefix) const {
    auto const p = impl::mixer_prefix(prefix);
    auto const D = std::size_t(config_.d_model), E = std::size_t(config_.d_inner);
    auto const N = std::size_t(config_.state_size), R = std::size_t(config_.dt_rank);
    auto const K = std::size_t(config_.conv_kernel);
    nn::init::Normal const linear{0.0, config_.init_range};
    store.add(p + "in_proj.weight", {2 * E, D}, linear);
    // PyTorch's Conv1d default: kaiming-uniform with fan_in = K for weight and bias (0.5 at K = 4)
    store.add(p + "conv1d.weight", {E, 1, K}, nn::init::KaimingUniform{});
    store.add(p + "conv1d.bias", {E}, nn::init::KaimingUniform{std::int64_t(K)});
    store.add(p + "x_proj.weight", {R + 2 * N, E}, linear);
    double const dt_std = 1.0 / std::sqrt(double(R));  // dt_init "random", dt_scale 1
    store.add(p + "dt_proj.weight", {E, R}, nn::init::Uniform{-dt_std, dt_std});
    store.add(p + "dt_proj.bias", {E}, nn::init::DtBias{});
    store.add(p + "A_log", {E, N}, nn::init::ALog{});
    store.add(p + "D", {E}, nn::init::Ones{});
    store.add(p + "out_proj.weight", {D, E}, linear);
    hybrid_.register_parameters(store, p);
  }

  /// What the backward needs (all (B, L, ·) LayoutRight).
  struct Saved {
    view<T const***> x;         // (B, L, d_model) the mixer input (the caller keeps it alive)
    view<std::int8_t**> mask;   // (B, L) 1 = real token (all ones without a pad mask)
    bool has_mask = false;      // whether a pad mask was given (the branch then skips pads)
    view<T***> xin;             // (B, L, E) in_proj's x half, before the conv
    view<T***> z;               // (B, L, E) in_proj's gate half
    view<T***> xc;              // (B, L, E) SiLU(conv(x ⊙ m)) ⊙ m, the scan input
    view<T***> dt_low;          // (B, L, R)
    view<T***> Bm;              // (B, L, N)
    view<T***> Cm;              // (B, L, N)
    view<T***> delta;           // (B, L, E) dt_proj.weight · dt_low (before bias and softplus)
    view<T**> A;                // (E, N) −exp(A_log)
    view<T***> scan;            // (B, L, E) the scan output (+ attn ⊙ E with the branch)
    view<int*> lengths;         // (B) steps the scan computes (skip_padding), else empty
    SelectiveScanSaved<T, memory_space> scan_saved;  // (B, E, n_chunks, N) chunk states
    typename impl::HybridBranch<Space, T>::Saved hybrid;  // the branch's (only with `sparse`)
  };

  /// Forward. \param x [in] (B, L, d_model) the normalised block input.
  /// \param pad_mask [in] (B, L) nonzero = real token, or an empty View (no padding).
  /// \param y [out] (B, L, d_model), written. \param gate_loss [in,out] 0-d device View: the
  /// branch's ranking loss is added (+=) in training (ctx.training) with key selection, else it
  /// is untouched (and may be empty). \param ctx seeds, step and layer of the branch's random
  /// draws (unused without the branch). Asynchronous on `space`: no host synchronisation.
  template <class X, class Mask, class Y, class Loss>
  Saved forward(Space const& space, nn::ParameterStore<Space, T> const& store,
                std::string const& prefix, X const& x, Mask const& pad_mask, Y const& y,
                Loss const& gate_loss, attn::StepContext const& ctx) const {
    char const* op = "hax::ssm::MambaMixer::forward";
    static_assert(X::rank() == 3 && Y::rank() == 3 && Mask::rank() == 2,
                  "hax::ssm::MambaMixer::forward: x, y (B, L, d_model), pad_mask (B, L)");
    auto const p = impl::mixer_prefix(prefix);
    int const B = x.extent_int(0), L = x.extent_int(1);
    int const E = config_.d_inner, N = config_.state_size, R = config_.dt_rank;
    check_io(op, x, pad_mask, y, "y");
    Saved s;
    s.x = x;
    s.mask = uninitialized_view<std::int8_t**>(space, "hax::ssm::mamba_mask", B, L);
    impl::copy_mask(space, pad_mask, s.mask);
    s.has_mask = pad_mask.is_allocated();
    auto const mflat = impl::flat_mask(s.mask);

    // in_proj as two GEMMs, one per row block of its weight ([x | z], each a contiguous (out, in)
    // matrix), each straight into its own output: no packed (B, L, 2E) projection to split.
    s.xin = uninitialized_view<T***>(space, "hax::ssm::mamba_xin", B, L, E);
    s.z = uninitialized_view<T***>(space, "hax::ssm::mamba_z", B, L, E);
    {
      auto const w_in = store.template value<2>(p + "in_proj.weight");
      nn::linear_forward(space, nn::as_rows(x), nn::output_rows(w_in, 0, E), view<T*>(), nn::as_rows(s.xin));
      nn::linear_forward(space, nn::as_rows(x), nn::output_rows(w_in, E, 2 * E), view<T*>(), nn::as_rows(s.z));
    }

    s.xc = uninitialized_view<T***>(space, "hax::ssm::mamba_xc", B, L, E);
    nn::conv1d_silu_forward(space, s.xin, conv_weight(store, p),
                            store.template value<1>(p + "conv1d.bias"), s.mask, s.xc);
    impl::mask_rows(space, nn::as_rows(s.xc), mflat);

    // The packed x_proj output (R + 2N = 40 columns at the released shapes) dies once split: it
    // lives in a scratch frame taken after the saved pieces, so the next frame reuses its memory.
    s.dt_low = uninitialized_view<T***>(space, "hax::ssm::mamba_dt_low", B, L, R);
    s.Bm = uninitialized_view<T***>(space, "hax::ssm::mamba_B", B, L, N);
    s.Cm = uninitialized_view<T***>(space, "hax::ssm::mamba_C", B, L, N);
    {
      core::ScratchFrame<memory_space> frame;
      auto const xdbl = uninitialized_view<T***>(space, "hax::ssm::mamba_xdbl", B, L,
                                                 R + 2 * N);  // (B, L, R + 2N)
      nn::linear_forward(space, nn::as_rows(s.xc), store.template value<2>(p + "x_proj.weight"),
                         view<T*>(), nn::as_rows(xdbl));
      impl::split_columns(space, nn::as_rows(xdbl), 0, nn::as_rows(s.dt_low));
      impl::split_columns(space, nn::as_rows(xdbl), R, nn::as_rows(s.Bm));
      impl::split_columns(space, nn::as_rows(xdbl), R + N, nn::as_rows(s.Cm));
    }

    s.delta = uninitialized_view<T***>(space, "hax::ssm::mamba_delta", B, L, E);
    nn::linear_forward(space, nn::as_rows(s.dt_low),
                       store.template value<2>(p + "dt_proj.weight"), view<T*>(),
                       nn::as_rows(s.delta));
    s.A = uninitialized_view<T**>(space, "hax::ssm::mamba_A", E, N);
    impl::negative_exp(space, store.template value<2>(p + "A_log"), s.A);

    s.scan = uninitialized_view<T***>(space, "hax::ssm::mamba_scan", B, L, E);
    if (config_.skip_padding && s.has_mask) {
      s.lengths = uninitialized_view<int*>(space, "hax::ssm::mamba_lengths", B);
      core::real_extent(space, s.mask, s.lengths);
    }
    s.scan_saved = selective_scan_forward(space, scan_inputs(store, p, s), s.scan,
                                          ChunkBoundaries{config_.chunk});
    if (hybrid_.enabled()) {  // scan += attn ⊙ E, attn from the scan's own input x
      s.hybrid = hybrid_.forward(space, store, p, s.xc, s.has_mask ? s.mask : view<std::int8_t**>(),
                                 s.scan, gate_loss, ctx);
    }
    {
      // out_proj's input is not kept: the backward recomputes it (one elementwise pass) rather
      // than hold a (B, L, E) activation per layer for the whole step.
      core::ScratchFrame<memory_space> frame;
      auto const gated = uninitialized_view<T***>(space, "hax::ssm::mamba_gated", B, L, E);
      nn::silu_gate_forward(space, s.scan, s.z, gated);
      nn::linear_forward(space, nn::as_rows(gated), store.template value<2>(p + "out_proj.weight"),
                         view<T*>(), nn::as_rows(y));
    }
    return s;
  }

  /// Backward. \param dy [in] (B, L, d_model). \param dx [out] (B, L, d_model), written (=).
  /// Parameter gradients accumulate (+=) into store.grad<R>(...); with key selection in
  /// training the MLP's come from ctx.gate_loss_weight (α) × the ranking loss only.
  /// \param ctx the forward's. Asynchronous on `space`.
  template <class DY, class DX>
  void backward(Space const& space, nn::ParameterStore<Space, T> const& store,
                std::string const& prefix, Saved const& s, DY const& dy, DX const& dx,
                attn::StepContext const& ctx) const {
    char const* op = "hax::ssm::MambaMixer::backward";
    static_assert(DY::rank() == 3 && DX::rank() == 3,
                  "hax::ssm::MambaMixer::backward: dy, dx (B, L, d_model)");
    auto const p = impl::mixer_prefix(prefix);
    check_io(op, s.x, s.mask, dy, "dy");
    check_io(op, s.x, s.mask, dx, "dx");
    int const B = s.x.extent_int(0), L = s.x.extent_int(1);
    int const E = config_.d_inner, N = config_.state_size, R = config_.dt_rank;
    auto const mflat = impl::flat_mask(s.mask);
    Kokkos::View<std::int8_t*, memory_space> no_mask;

    // in_proj's output gradient [dxin | dz]: the gate writes dz and the conv writes dxin straight
    // into its columns (no copies). Taken first, as it lives until in_proj's backward; the
    // temporaries after it are released as soon as they are consumed (scratch frames).
    auto const dxz = uninitialized_view<T***>(space, "hax::ssm::mamba_dxz", B, L, 2 * E);
    auto const dxin = Kokkos::subview(dxz, Kokkos::ALL, Kokkos::ALL, Kokkos::pair<int, int>(0, E));
    auto const dz = Kokkos::subview(dxz, Kokkos::ALL, Kokkos::ALL, Kokkos::pair<int, int>(E, 2 * E));
    // gate: dscan = dgated ⊙ SiLU(z), dz = dgated ⊙ scan ⊙ SiLU'(z)
    // (with the branch "scan" is scan + attn ⊙ E, and dscan is the gradient of both terms)
    auto const dscan = uninitialized_view<T***>(space, "hax::ssm::mamba_dscan", B, L, E);
    {
      core::ScratchFrame<memory_space> frame;  // out_proj's input, recomputed, and its gradient
      auto const gated = uninitialized_view<T***>(space, "hax::ssm::mamba_gated", B, L, E);
      nn::silu_gate_forward(space, s.scan, s.z, gated);
      // out_proj: dgated = dy · W_out, dW_out += dyᵀ gated
      auto const dgated = uninitialized_view<T***>(space, "hax::ssm::mamba_dgated", B, L, E);
      nn::linear_backward(space, nn::as_rows(dy), nn::as_rows(gated),
                          store.template value<2>(p + "out_proj.weight"), nn::as_rows(dgated),
                          store.template grad<2>(p + "out_proj.weight"), view<T*>());
      nn::silu_gate_backward(space, dgated, s.scan, s.z, dscan, dz);
    }

    // selective scan; dA goes through a zeroed temporary because A_log's gradient needs ⊙ A
    SelectiveScanGrads<T, memory_space> g;
    g.du = uninitialized_view<T***>(space, "hax::ssm::mamba_du", B, L, E);
    g.ddelta = uninitialized_view<T***>(space, "hax::ssm::mamba_ddelta", B, L, E);
    g.ddelta_bias = store.template grad<1>(p + "dt_proj.bias");
    g.dA = zeroed_view<T**>(space, "hax::ssm::mamba_dA", E, N);
    g.dB = uninitialized_view<T***>(space, "hax::ssm::mamba_dB", B, L, N);
    g.dC = uninitialized_view<T***>(space, "hax::ssm::mamba_dC", B, L, N);
    g.dD = store.template grad<1>(p + "D");
    {
      core::ScratchFrame<memory_space> frame;  // the scan's own temporaries
      selective_scan_backward(space, scan_inputs(store, p, s), s.scan_saved,
                              impl::const_view<T const***, memory_space>(dscan), g);
    }
    impl::negative_exp_backward(space, g.dA, s.A, store.template grad<2>(p + "A_log"));

    // dt_proj (no bias here: its bias gradient came out of the scan as ddelta_bias)
    auto const dxdbl = uninitialized_view<T***>(space, "hax::ssm::mamba_dxdbl", B, L, R + 2 * N);
    auto const ddt_low = uninitialized_view<T***>(space, "hax::ssm::mamba_ddt_low", B, L, R);
    nn::linear_backward(space, nn::as_rows(g.ddelta), nn::as_rows(s.dt_low),
                        store.template value<2>(p + "dt_proj.weight"), nn::as_rows(ddt_low),
                        store.template grad<2>(p + "dt_proj.weight"), view<T*>());
    impl::place_columns(space, nn::as_rows(ddt_low), 0, nn::as_rows(dxdbl), no_mask);
    impl::place_columns(space, nn::as_rows(g.dB), R, nn::as_rows(dxdbl), no_mask);
    impl::place_columns(space, nn::as_rows(g.dC), R + N, nn::as_rows(dxdbl), no_mask);

    // x_proj, then dxc = (du + x_proj's dx) ⊙ m  (the post-conv mask)
    auto const dxc = uninitialized_view<T***>(space, "hax::ssm::mamba_dxc", B, L, E);
    nn::linear_backward(space, nn::as_rows(dxdbl), nn::as_rows(s.xc),
                        store.template value<2>(p + "x_proj.weight"), nn::as_rows(dxc),
                        store.template grad<2>(p + "x_proj.weight"), view<T*>());
    nn::add_forward(space, dxc, g.du, dxc);
    if (hybrid_.enabled()) {  // dE, and the branch's dx (V and xx_proj) added into dxc
      core::ScratchFrame<memory_space> frame;  // the branch's temporaries
      hybrid_.backward(space, store, p, s.hybrid, dscan, dxc, ctx);
    }
    impl::mask_rows(space, nn::as_rows(dxc), mflat);

    // conv + SiLU (its pre-conv mask zeroes dxin at pads) into dxz's columns, then in_proj
    auto const conv_dw = store.template grad<3>(p + "conv1d.weight");
    nn::conv1d_silu_backward(space, dxc, s.xin, conv_weight(store, p),
                             store.template value<1>(p + "conv1d.bias"), s.mask, dxin,
                             impl::as_conv_2d(conv_dw), store.template grad<1>(p + "conv1d.bias"));
    nn::linear_backward(space, nn::as_rows(dxz), nn::as_rows(s.x),
                        store.template value<2>(p + "in_proj.weight"), nn::as_rows(dx),
                        store.template grad<2>(p + "in_proj.weight"), view<T*>());
  }

  /// Recurrent state of the step mode: zeros before the first token.
  struct StepState {
    view<T***> conv;  // (B, K − 1, E) the last K − 1 conv inputs, oldest first
    view<T***> ssm;   // (B, E, N)     the selective-scan state
  };

  /// A zeroed step state for `batch` sequences (asynchronous on `space`).
  StepState make_step_state(Space const& space, int batch) const {
    return StepState{
        view<T***>(Kokkos::view_alloc(space, std::string("hax::ssm::mamba_conv_state")), batch,
                   config_.conv_kernel - 1, config_.d_inner),
        view<T***>(Kokkos::view_alloc(space, std::string("hax::ssm::mamba_ssm_state")), batch,
                   config_.d_inner, config_.state_size)};
  }

  /// One token (inference, no padding; not with the sparse branch, which would need a KV cache:
  /// throws hax::invalid_argument then).
  /// \param x [in] (B, d_model) this token's input; \param y [out] (B, d_model), written.
  /// Fed the tokens of a sequence one by one from a zeroed state, gives forward()'s outputs.
  template <class X, class Y>
  void step(Space const& space, nn::ParameterStore<Space, T> const& store,
            std::string const& prefix, StepState const& state, X const& x, Y const& y) const {
    static_assert(X::rank() == 2 && Y::rank() == 2,
                  "hax::ssm::MambaMixer::step: x, y (B, d_model)");
    char const* op = "hax::ssm::MambaMixer::step";
    core::require(!hybrid_.enabled(), op,
                  "sparse: step mode has no KV cache for the sparse branch; use forward()");
    auto const p = impl::mixer_prefix(prefix);
    int const B = x.extent_int(0);
    int const E = config_.d_inner, N = config_.state_size, R = config_.dt_rank;
    core::require(x.extent_int(1) == config_.d_model && y.extent_int(0) == B &&
                      y.extent_int(1) == config_.d_model && state.ssm.extent_int(0) == B,
                  op, "x ", impl::shape_of(x), " and y ", impl::shape_of(y),
                  " must be (B, d_model = ", config_.d_model, ") with B of the state ",
                  impl::shape_of(state.ssm));
    auto const xz = uninitialized_view<T**>(space, "hax::ssm::mamba_step_xz", B, 2 * E);
    nn::linear_forward(space, x, store.template value<2>(p + "in_proj.weight"), view<T*>(), xz);
    auto const xin = uninitialized_view<T**>(space, "hax::ssm::mamba_step_xin", B, E);
    auto const z = uninitialized_view<T**>(space, "hax::ssm::mamba_step_z", B, E);
    impl::split_columns(space, xz, 0, xin);
    impl::split_columns(space, xz, E, z);
    auto const xc = uninitialized_view<T**>(space, "hax::ssm::mamba_step_xc", B, E);
    impl::conv_silu_step(space, xin, conv_weight(store, p),
                         store.template value<1>(p + "conv1d.bias"), state.conv, xc);
    auto const xdbl = uninitialized_view<T**>(space, "hax::ssm::mamba_step_xdbl", B, R + 2 * N);
    nn::linear_forward(space, xc, store.template value<2>(p + "x_proj.weight"), view<T*>(), xdbl);
    auto const dt_low = uninitialized_view<T**>(space, "hax::ssm::mamba_step_dt_low", B, R);
    auto const Bm = uninitialized_view<T**>(space, "hax::ssm::mamba_step_B", B, N);
    auto const Cm = uninitialized_view<T**>(space, "hax::ssm::mamba_step_C", B, N);
    impl::split_columns(space, xdbl, 0, dt_low);
    impl::split_columns(space, xdbl, R, Bm);
    impl::split_columns(space, xdbl, R + N, Cm);
    auto const delta = uninitialized_view<T**>(space, "hax::ssm::mamba_step_delta", B, E);
    nn::linear_forward(space, dt_low, store.template value<2>(p + "dt_proj.weight"), view<T*>(),
                       delta);
    auto const A = uninitialized_view<T**>(space, "hax::ssm::mamba_step_A", E, N);
    impl::negative_exp(space, store.template value<2>(p + "A_log"), A);
    auto const scan = uninitialized_view<T**>(space, "hax::ssm::mamba_step_scan", B, E);
    selective_scan_step(space, state.ssm, impl::const_view<T const**, memory_space>(xc),
                        impl::const_view<T const**, memory_space>(delta),
                        impl::const_view<T const*, memory_space>(
                            store.template value<1>(p + "dt_proj.bias")),
                        impl::const_view<T const**, memory_space>(A),
                        impl::const_view<T const**, memory_space>(Bm),
                        impl::const_view<T const**, memory_space>(Cm),
                        impl::const_view<T const*, memory_space>(store.template value<1>(p + "D")),
                        scan);
    // scan ⊙ SiLU(z) through the (B, L, E) op with L = 1
    auto const gated = uninitialized_view<T***>(space, "hax::ssm::mamba_step_gated", B, 1, E);
    nn::silu_gate_forward(space, view<T***>(scan.data(), B, 1, E), view<T***>(z.data(), B, 1, E),
                          gated);
    nn::linear_forward(space, nn::as_rows(gated), store.template value<2>(p + "out_proj.weight"),
                       view<T*>(), y);
  }

 private:
  template <class X, class Mask, class Y>
  void check_io(char const* op, X const& x, Mask const& mask, Y const& y,
                char const* y_name) const {
    impl::check_mixer_io(op, config_.d_model, x, mask, y, y_name);
  }
  static auto conv_weight(nn::ParameterStore<Space, T> const& store, std::string const& p) {
    return impl::as_conv_2d(store.template value<3>(p + "conv1d.weight"));
  }

  static SelectiveScanInputs<T, memory_space> scan_inputs(
      nn::ParameterStore<Space, T> const& store, std::string const& p, Saved const& s) {
    SelectiveScanInputs<T, memory_space> in;
    in.u = s.xc;
    in.delta = s.delta;
    in.delta_bias = store.template value<1>(p + "dt_proj.bias");
    in.A = s.A;
    in.Bm = s.Bm;
    in.Cm = s.Cm;
    in.Dskip = store.template value<1>(p + "D");
    in.lengths = s.lengths;
    return in;
  }

  MambaConfig config_;
  impl::HybridBranch<Space, T> hybrid_;  // the optional HAX branch and its E
};

}  // namespace hax::ssm
