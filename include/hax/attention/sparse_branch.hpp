// SPDX-License-Identifier: MIT
/// \file
/// SparseBranch: the HAX sparse-attention branch of the hybrid Mamba/Mamba2 blocks
/// (semantics.md sections 3, 4, 6, 9; docs/math/sparse_branch.md). From the mixer's post-conv
/// activations x (B, L, d_inner) it computes
///   [K, Q] = split(x · W_xxᵀ),  K ← K / √N,  V = x,
///   attn   = sparse attention of (Q, K, V) over the pattern named by config.arch,
/// with one head, the budget k split evenly among the '+' parts, the LSH plan (pre-hash
/// transform, projection drawn on the device from (seed, layer, step), bucketing) and the
/// key-selection plan (features from K and the prefix sum of Q, scoring MLP, causal top-k'), and
/// in training the key-selection ranking loss (accumulated into a device scalar) whose gradient,
/// scaled by α, is the only signal of the MLP. Forward and backward run asynchronously on the
/// given execution-space instance: every reduction goes into device Views, nothing is copied to
/// the host, and no L×L object exists (cost O(B·L·(k·(N + d_inner) + N·d_inner + N²))).
#pragma once

#include <hax/attention/hash/argmax_hash.hpp>
#include <hax/attention/hash/random_projection.hpp>
#include <hax/attention/hash/sign_bit_hash.hpp>
#include <hax/attention/impl/sparse_branch_kernels.hpp>
#include <hax/attention/key_selection/features.hpp>
#include <hax/attention/key_selection/ranking_loss.hpp>
#include <hax/attention/key_selection/score_mlp.hpp>
#include <hax/attention/key_selection/topk.hpp>
#include <hax/attention/lsh/bucketing.hpp>
#include <hax/attention/pattern/names.hpp>
#include <hax/attention/sparse_attention.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/masks.hpp>
#include <hax/core/scratch.hpp>
#include <hax/core/views.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/linear.hpp>
#include <hax/nn/parameters.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace hax::attn {

/// Per forward call: which random draws to use and whether the ranking loss is computed.
struct StepContext {
  std::uint64_t seed = 1;         ///< run seed
  std::uint64_t step = 0;         ///< training update index (hash projections redrawn per step and layer in training)
  int layer = 0;                  ///< layer index (part of every random stream's name)
  bool training = true;           ///< ranking loss only in training; `causal` eval uses a fixed seeded projection
  double gate_loss_weight = 0.1;  ///< α: the scale of the ranking-loss gradient in backward
};

/// The branch's configuration (validated by SparseBranch's constructor).
struct SparseBranchConfig {
  std::string arch;  ///< e.g. "sign_bin_lsh+key_selection", "sliding_window", "sliding_window+dilated", "full"
  int keys = 64;     ///< k, split evenly among the '+' parts (error if not divisible)
  int num_hash = 8;  ///< h: hash bits (sign-bit: 2^h buckets) or directions (argmax: 2h buckets)
  int state_size = 16;                     ///< N: Q/K width
  int d_inner = 32;                        ///< V width
  Semantics semantics = Semantics::causal;  ///< semantics.md section 9
  int max_length = 2048;                   ///< dilation stride = max_length / k'
  /// Under causal semantics with a pad mask, the key-selection plan (features and scores) stops at
  /// each row's last real token (core::real_extent): later positions are neither queries nor keys
  /// of a real query, so every output and gradient is unchanged (tests/unit/attention/sparse_branch.cpp).
  bool skip_padding = true;
};

/// The `step` of the projection stream at evaluation in `causal` semantics: fixed (so evaluation
/// is deterministic) and distinct from every training step.
inline constexpr std::uint64_t kEvalProjectionStep = ~std::uint64_t{0};

/// The step whose projection a forward call uses: ctx.step in training and at evaluation under
/// `reference` (the caller passes a per-batch counter there: redrawn per batch), else
/// kEvalProjectionStep.
inline std::uint64_t projection_step(SparseBranchConfig const& cfg, StepContext const& ctx) {
  return (ctx.training || cfg.semantics == Semantics::reference) ? ctx.step : kEvalProjectionStep;
}

/// The LSH bucketing algorithm the branch uses: on host backends counting while the per-sequence
/// histogram (num_buckets entries: 2^h for sign bits, 2h for argmax) stays within 2^12 entries,
/// sorting beyond. On GPUs always sorting: the
/// counting sort walks each sequence with one thread, and at the training shape (B = 64,
/// L = 1057, h = 8) it took 0.81 ms per call on an H200 against 0.13 ms for the sort
/// (bench/attention_plans, docs/perf_attention_plans.md).
inline constexpr int kCountingMaxBits = 12;

template <class Space>
constexpr bool use_counting_bucketing(int num_buckets) {
  return Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible &&
         num_buckets <= (1 << kCountingMaxBits);
}

/// The HAX sparse-attention branch (see the file comment). Stateless apart from its config: the
/// parameters live in a ParameterStore under a caller-chosen prefix.
template <execution_space Space, class T = float>
class SparseBranch {
 public:
  using memory_space = typename Space::memory_space;
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, memory_space>;
  using mlp_type = ScoreMlp<Space, T>;

  /// Validates the config; throws hax::invalid_argument naming the setting: an unknown or repeated
  /// pattern part, keys not divisible by the number of parts, state_size/d_inner < 1, num_hash
  /// outside [1, 30] (the int bucket index) when an LSH part is present, max_length < k'.
  explicit SparseBranch(SparseBranchConfig config) : config_(std::move(config)) {
    constexpr char const* op = "hax::attn::SparseBranch";
    core::require(!config_.arch.empty(), op, "arch is empty; name a pattern such as 'sign_bin_lsh+key_selection'");
    parts_ = parse_pattern_name(config_.arch, config_.keys);
    core::require(config_.state_size >= 1, op, "state_size (N = ", config_.state_size, ") must be >= 1");
    core::require(config_.d_inner >= 1, op, "d_inner (", config_.d_inner, ") must be >= 1");
    core::require(config_.max_length >= parts_.front().kprime, op, "max_length (", config_.max_length,
                  ") must be >= k' = ", parts_.front().kprime, " (keys ", config_.keys, " over ",
                  parts_.size(), " parts)");
    for (auto const& p : parts_) {
      if (p.kind == PatternKind::sign_bin_lsh || p.kind == PatternKind::argmax_lsh) {
        core::require(config_.num_hash >= 1 && config_.num_hash <= kMaxHashBits, op, "num_hash (h = ",
                      config_.num_hash, ") must be in [1, ", kMaxHashBits,
                      "]: the bucket index is an int (2^h sign-bit buckets)");
      }
      if (p.kind == PatternKind::key_selection) { key_selection_ = true; }
    }
  }

  SparseBranchConfig const& config() const { return config_; }
  bool has_key_selection() const { return key_selection_; }
  /// The parsed parts of config().arch, each with its k'.
  std::vector<PatternPart> const& parts() const { return parts_; }

  /// Registers prefix + "xx_proj.weight" (2N, d_inner), normal(0, 0.1), and for key selection the
  /// scoring MLP: prefix + "ks_mlp.0.weight" (2N, 2N), ".0.bias" (2N), ".2.weight" (2N, 2N),
  /// ".2.bias" (2N), ".4.weight" (1, 2N), ".4.bias" (1); normal(0, 0.1) weights, zero biases.
  void register_parameters(nn::ParameterStore<Space, T>& store, std::string const& prefix) const {
    auto const n2 = static_cast<std::size_t>(2 * config_.state_size);
    nn::init::Normal const w{0.0, 0.1};
    store.add(prefix + "xx_proj.weight", {n2, static_cast<std::size_t>(config_.d_inner)}, w);
    if (key_selection_) {
      store.add(prefix + "ks_mlp.0.weight", {n2, n2}, w);
      store.add(prefix + "ks_mlp.0.bias", {n2}, nn::init::Zeros{});
      store.add(prefix + "ks_mlp.2.weight", {n2, n2}, w);
      store.add(prefix + "ks_mlp.2.bias", {n2}, nn::init::Zeros{});
      store.add(prefix + "ks_mlp.4.weight", {1, n2}, w);
      store.add(prefix + "ks_mlp.4.bias", {1}, nn::init::Zeros{});
    }
  }

  /// Everything backward needs; O(B·L·(N + k)) memory (plus, in training with key selection, the
  /// MLP's input and activations at the ranking loss's B·k' rows only). x and attn are kept by
  /// reference: the caller keeps them alive and unchanged until backward.
  struct Saved {
    view<T const***> x;            // (B, L, d_inner) the input (V), by reference
    view<T const***> attn;         // (B, L, d_inner) the forward's output, by reference
    view<T***> k;                  // (B, L, N) scaled by 1/√N
    view<T***> q;                  // (B, L, N)
    view<T**> lse;                 // (B, L) log Σ exp of each query row (−∞: empty row)
    view<int**> valid;             // (B, L) 1 = real token; empty when there was no pad mask
    RuntimePattern<memory_space> pattern;  // with the plan steps' candidate lists (B, L, k')
    bool ranking = false;          // the ranking loss was computed (training with key selection)
    view<T***> feat;               // (B, k', 2N) MLP input at the candidates (ranking only)
    typename mlp_type::Saved mlp;  // (B, k', 2N) ×2 hidden activations at them (ranking only)
    view<int**> rows;              // (B, k') a, or -1 for an empty candidate: rows of feat, mlp
    view<int**> cand;              // (B, k') sampled candidates (ranking only)
    view<T**> ds;                  // (B, k') dLoss/ds of the ranking loss (ranking only)
  };

  /// Forward (see the file comment).
  /// \param x (B, L, d_inner) LayoutRight contiguous: post-conv, post-SiLU, pad-masked activations.
  /// \param pad_mask (B, L): non-zero = real token; an empty View = no padding.
  /// \param attn (B, L, d_inner): written; must not alias x.
  /// \param gate_loss rank-0 device View: += this layer's ranking loss when ctx.training and key
  ///        selection is on (untouched otherwise; may be empty then).
  /// Asynchronous on `space`. Throws hax::invalid_argument on mismatched shapes or k' > L.
  template <class X, class Mask, class Attn, class Loss>
    requires(view_accessible_from<X, Space> && view_accessible_from<Attn, Space>)
  Saved forward(Space const& space, nn::ParameterStore<Space, T> const& store, std::string const& prefix,
                X const& x, Mask const& pad_mask, Attn const& attn, Loss const& gate_loss,
                StepContext const& ctx) const {
    constexpr char const* op = "hax::attn::SparseBranch::forward";
    static_assert(X::rank() == 3 && Attn::rank() == 3 && Mask::rank() == 2 && Loss::rank() == 0,
                  "hax::attn::SparseBranch::forward: x, attn (B, L, d_inner), pad_mask (B, L), gate_loss rank 0");
    int const B = x.extent_int(0), L = x.extent_int(1), N = config_.state_size, D = config_.d_inner;
    core::require(x.extent_int(2) == D, op, "x (", B, ", ", L, ", ", x.extent(2), ") must have width d_inner = ", D);
    core::require(attn.extent_int(0) == B && attn.extent_int(1) == L && attn.extent_int(2) == D, op, "attn (",
                  attn.extent(0), ", ", attn.extent(1), ", ", attn.extent(2), ") must be (B, L, d_inner) = (", B,
                  ", ", L, ", ", D, ")");
    bool const has_mask = pad_mask.is_allocated();
    core::require(!has_mask || (pad_mask.extent_int(0) == B && pad_mask.extent_int(1) == L), op, "pad_mask (",
                  pad_mask.extent(0), ", ", pad_mask.extent(1), ") must be (B, L) = (", B, ", ", L, ")");
    bool const ranking = ctx.training && key_selection_;
    core::require(!ranking || gate_loss.is_allocated(), op,
                  "gate_loss must be an allocated rank-0 View in training with key selection");

    Saved s;
    s.x = x;
    s.attn = attn;
    s.pattern = make_pattern<memory_space>(config_.arch, config_.keys, L, config_.max_length);

    // [K, Q] = split(x · W_xxᵀ), K scaled by 1/√N so that the logits are q·k/√N.
    auto const w_xx = store.template value<2>(prefix + "xx_proj.weight");  // (2N, d_inner)
    s.k = uninitialized_view<T***>(space, "hax::attn::sparse_branch::k", B, L, N);
    s.q = uninitialized_view<T***>(space, "hax::attn::sparse_branch::q", B, L, N);
    {
      core::ScratchFrame<memory_space> frame;  // the packed projection dies once split
      auto const xx = uninitialized_view<T***>(space, "hax::attn::sparse_branch::xx", B, L, 2 * N);  // (B, L, 2N)
      view<T*> const no_bias;                                                                         // (0)
      nn::linear_forward(space, nn::as_rows(x), w_xx, no_bias, nn::as_rows(xx));
      T const inv_sqrt_n = T(1) / static_cast<T>(std::sqrt(static_cast<double>(N)));
      impl::branch_split_kq(space, xx, s.k, s.q, inv_sqrt_n);
    }

    if (has_mask) {
      s.valid = uninitialized_view<int**>(space, "hax::attn::sparse_branch::valid", B, L);
      impl::branch_copy_mask(space, pad_mask, s.valid);
    }
    view<int*> extents;  // (B) the plan steps' row extents, or empty: every row
    if (has_mask && key_selection_ && config_.skip_padding && config_.semantics == Semantics::causal) {
      extents = uninitialized_view<int*>(space, "hax::attn::sparse_branch::extents", B);
      core::real_extent(space, s.valid, extents);
    }

    // Plan steps of the data-dependent parts, in the name's order: each list is attached with the
    // keys of the earlier parts removed, once, so the attention kernels need no per-key check.
    for (auto const& part : parts_) {
      int const kp = part.kprime;
      if (part.kind == PatternKind::sign_bin_lsh || part.kind == PatternKind::argmax_lsh) {
        auto const idx = uninitialized_view<int***>(space, "hax::attn::sparse_branch::lsh_idx", B, L, kp);
        {
          core::ScratchFrame<memory_space> frame;  // hashes, buckets and sort keys die with the plan
          lsh_plan_step(space, part.kind, ctx, s.q, s.k, idx);
        }
        s.pattern.set_candidates(space, part.kind, idx);
      } else if (part.kind == PatternKind::key_selection) {
        auto const idx = uninitialized_view<int***>(space, "hax::attn::sparse_branch::ks_idx", B, L, kp);
        key_selection_step(space, store, prefix, ctx, ranking, kp, s, gate_loss, extents, idx);
        s.pattern.set_candidates(space, part.kind, idx);
      }
    }

    s.lse = uninitialized_view<T**>(space, "hax::attn::sparse_branch::lse", B, L);
    AttentionOptions const opts{1.0, config_.semantics};
    if (has_mask) {
      sparse_attention_forward(space, s.pattern, s.q, s.k, x, s.valid, attn, s.lse, opts);
    } else {
      sparse_attention_forward(space, s.pattern, s.q, s.k, x, attn, s.lse, opts);
    }
    return s;
  }

  /// Overload on the default instance of attn's execution space.
  template <class X, class Mask, class Attn, class Loss>
  Saved forward(nn::ParameterStore<Space, T> const& store, std::string const& prefix, X const& x,
                Mask const& pad_mask, Attn const& attn, Loss const& gate_loss, StepContext const& ctx) const {
    return forward(Space{}, store, prefix, x, pad_mask, attn, gate_loss, ctx);
  }

  /// Backward. dattn (B, L, d_inner) in; dx (B, L, d_inner) ACCUMULATED (+=), because x also
  /// feeds the SSM path. Parameter gradients accumulate (+=) into store.grad: xx_proj from the
  /// attention path; the MLP from ctx.gate_loss_weight × the ranking loss only (the selection
  /// itself is not differentiable, and the MLP inputs are detached, so the ranking loss sends
  /// nothing to x or xx_proj). Asynchronous on `space`.
  template <class DAttn, class DX>
    requires(view_accessible_from<DAttn, Space> && view_accessible_from<DX, Space>)
  void backward(Space const& space, nn::ParameterStore<Space, T> const& store, std::string const& prefix,
                Saved const& saved, DAttn const& dattn, DX const& dx, StepContext const& ctx) const {
    constexpr char const* op = "hax::attn::SparseBranch::backward";
    static_assert(DAttn::rank() == 3 && DX::rank() == 3,
                  "hax::attn::SparseBranch::backward: dattn and dx must be (B, L, d_inner)");
    int const B = saved.x.extent_int(0), L = saved.x.extent_int(1), N = config_.state_size, D = config_.d_inner;
    auto same = [&](auto const& v) { return v.extent_int(0) == B && v.extent_int(1) == L && v.extent_int(2) == D; };
    core::require(same(dattn) && same(dx), op, "dattn (", dattn.extent(0), ", ", dattn.extent(1), ", ",
                  dattn.extent(2), ") and dx (", dx.extent(0), ", ", dx.extent(1), ", ", dx.extent(2),
                  ") must be (B, L, d_inner) = (", B, ", ", L, ", ", D, ") of the forward");

    // Each temporary is released as soon as it has been added into dx (scratch frames), so the
    // branch's peak is one (B, L, d_inner) gradient at a time.
    auto const dq = uninitialized_view<T***>(space, "hax::attn::sparse_branch::dq", B, L, N);    // (B, L, N)
    auto const dk = uninitialized_view<T***>(space, "hax::attn::sparse_branch::dk", B, L, N);    // (B, L, N)
    {
      core::ScratchFrame<memory_space> frame;  // dv and the attention backward's own lists
      auto const dv = uninitialized_view<T***>(space, "hax::attn::sparse_branch::dv", B, L, D);  // (B, L, d_inner)
      AttentionOptions const opts{1.0, config_.semantics};
      if (saved.valid.is_allocated()) {
        sparse_attention_backward(space, saved.pattern, saved.q, saved.k, saved.x, saved.valid, saved.attn,
                                  saved.lse, dattn, dq, dk, dv, opts);
      } else {
        sparse_attention_backward(space, saved.pattern, saved.q, saved.k, saved.x, saved.attn, saved.lse,
                                  dattn, dq, dk, dv, opts);
      }
      impl::branch_accumulate_dx(space, dx, dv);  // x feeds V directly
    }
    auto const dxx = uninitialized_view<T***>(space, "hax::attn::sparse_branch::dxx", B, L, 2 * N);  // (B, L, 2N)
    T const inv_sqrt_n = T(1) / static_cast<T>(std::sqrt(static_cast<double>(N)));
    impl::branch_pack_dxx(space, dk, dq, dxx, inv_sqrt_n);
    core::ScratchFrame<memory_space> frame;  // dlin
    auto const dlin = uninitialized_view<T***>(space, "hax::attn::sparse_branch::dlin", B, L, D);  // (B, L, d_inner)
    view<T*> const no_bias;                                                                          // (0)
    nn::linear_backward(space, nn::as_rows(dxx), nn::as_rows(saved.x),
                        store.template value<2>(prefix + "xx_proj.weight"), nn::as_rows(dlin),
                        store.template grad<2>(prefix + "xx_proj.weight"), no_bias);
    impl::branch_accumulate_dx(space, dx, dlin);  // and the xx projection

    if (saved.ranking) {
      int const kp = saved.cand.extent_int(1);
      auto const ds = uninitialized_view<T**>(space, "hax::attn::sparse_branch::ds_scaled", B, kp);  // (B, k')
      impl::branch_scale(space, saved.ds, ds, static_cast<T>(ctx.gate_loss_weight));
      mlp_type{}.backward(space, mlp_params(store, prefix, false), saved.feat, saved.mlp, saved.rows, ds,
                          mlp_params(store, prefix, true));
    }
  }

  /// Overload on the default instance of dx's execution space.
  template <class DAttn, class DX>
  void backward(nn::ParameterStore<Space, T> const& store, std::string const& prefix, Saved const& saved,
                DAttn const& dattn, DX const& dx, StepContext const& ctx) const {
    backward(Space{}, store, prefix, saved, dattn, dx, ctx);
  }

  /// The scoring MLP's parameters (grads = false) or their gradients (grads = true) in `store`.
  typename mlp_type::Params mlp_params(nn::ParameterStore<Space, T> const& store, std::string const& prefix,
                                       bool grads) const {
    auto get2 = [&](char const* n) { return grads ? store.template grad<2>(prefix + n) : store.template value<2>(prefix + n); };
    auto get1 = [&](char const* n) { return grads ? store.template grad<1>(prefix + n) : store.template value<1>(prefix + n); };
    return typename mlp_type::Params{get2("ks_mlp.0.weight"), get1("ks_mlp.0.bias"), get2("ks_mlp.2.weight"),
                                     get1("ks_mlp.2.bias"),   get2("ks_mlp.4.weight"), get1("ks_mlp.4.bias")};
  }

  /// The LSH plan of one part: projection W (N, h) drawn on the device from (seed, layer,
  /// projection_step), the pre-hash transform of the semantics, buckets, candidate lists idx (B, L, k').
  template <class Q, class K, class Idx>
  void lsh_plan_step(Space const& space, PatternKind kind, StepContext const& ctx, Q const& q, K const& k,
                     Idx const& idx) const {
    int const h = config_.num_hash;
    auto const w = uninitialized_view<T**>(space, "hax::attn::sparse_branch::projection", config_.state_size, h);  // (N, h)
    draw_random_projection(space, w, ctx.seed, static_cast<std::uint64_t>(ctx.layer), projection_step(config_, ctx));
    auto run = [&](auto const& hash) {
      if (use_counting_bucketing<Space>(hash.num_buckets())) {
        lsh_plan(space, config_.semantics, hash, BucketCount{}, q, k, idx);
      } else {
        lsh_plan(space, config_.semantics, hash, BucketSort{}, q, k, idx);
      }
    };
    if (kind == PatternKind::sign_bin_lsh) {
      run(make_sign_bit_hash(w));
    } else {
      run(make_argmax_hash(w));
    }
  }

  /// The key-selection plan: features [K, normalised prefix sum of Q] (detached), MLP scores,
  /// causal top-k' into idx (B, L, k'); in training also the ranking loss (+= into gate_loss) and
  /// what its backward needs (kept in s: the MLP's input and activations at the k' sampled rows
  /// per sequence, so that the (B, L, ·) ones are scratch that dies with this call). With extents
  /// (B) allocated, features and scores stop at extents(b) (scores -inf after it): the sampled
  /// candidates are positions below the count of real tokens, hence before it.
  template <class Loss, class Idx>
  void key_selection_step(Space const& space, nn::ParameterStore<Space, T> const& store, std::string const& prefix,
                          StepContext const& ctx, bool ranking, int kp, Saved& s, Loss const& gate_loss,
                          view<int const*> const& extents, Idx const& idx) const {
    int const B = s.q.extent_int(0), L = s.q.extent_int(1), N = config_.state_size;
    auto const params = mlp_params(store, prefix, false);
    int const hidden = params.w1.extent_int(0);
    if (ranking) {  // kept for the backward: taken before the frame below
      s.cand = uninitialized_view<int**>(space, "hax::attn::sparse_branch::ks_cand", B, kp);
      s.ds = uninitialized_view<T**>(space, "hax::attn::sparse_branch::ks_ds", B, kp);
      s.rows = uninitialized_view<int**>(space, "hax::attn::sparse_branch::ks_rows", B, kp);
      s.feat = uninitialized_view<T***>(space, "hax::attn::sparse_branch::ks_feat_rows", B, kp, 2 * N);
      s.mlp = typename mlp_type::Saved{
          uninitialized_view<T***>(space, "hax::attn::sparse_branch::ks_h1_rows", B, kp, hidden),
          uninitialized_view<T***>(space, "hax::attn::sparse_branch::ks_h2_rows", B, kp, hidden)};
    }
    core::ScratchFrame<memory_space> frame;  // the (B, L, ·) features, scores and activations
    auto const feat = uninitialized_view<T***>(space, "hax::attn::sparse_branch::ks_feat", B, L, 2 * N);  // (B, L, 2N)
    key_selection_features(space, config_.semantics, s.q, s.k, feat, extents);
    auto const scores = uninitialized_view<T**>(space, "hax::attn::sparse_branch::ks_scores", B, L);  // (B, L)
    mlp_type{}.score(space, params, feat, scores, extents);
    causal_topk(space, scores, idx);
    if (!ranking) { return; }
    auto const lengths = uninitialized_view<int*>(space, "hax::attn::sparse_branch::lengths", B);  // (B)
    impl::branch_lengths(space, s.valid, L, lengths);
    sample_candidates(space, lengths, ctx.seed, static_cast<std::uint64_t>(ctx.layer), ctx.step, s.cand);
    auto const targets = uninitialized_view<T**>(space, "hax::attn::sparse_branch::ks_targets", B, kp);  // (B, k')
    ranking_targets(space, config_.semantics, s.q, s.k, lengths, s.cand, targets);
    using R = typename Loss::non_const_value_type;
    auto const loss = uninitialized_view<R>(space, "hax::attn::sparse_branch::ranking_loss");  // () overwritten
    ranking_loss(space, scores, s.cand, targets, loss, s.ds);
    impl::branch_add_scalar(space, gate_loss, loss);
    // The backward needs the MLP's activations at the k' sampled rows only: gather their inputs
    // and run the MLP again on those B·k' rows, keeping its hidden layers this time.
    impl::branch_gather_ranking_rows(space, s.cand, feat, s.feat, s.rows);
    auto const row_scores = uninitialized_view<T**>(space, "hax::attn::sparse_branch::ks_row_scores", B, kp);
    mlp_type{}.forward(space, params, s.feat, row_scores, s.mlp);
    s.ranking = true;
  }

 private:
  SparseBranchConfig config_;
  std::vector<PatternPart> parts_;
  bool key_selection_ = false;
};

}  // namespace hax::attn
