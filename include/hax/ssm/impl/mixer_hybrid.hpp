// SPDX-License-Identifier: MIT
/// \file
/// The HAX hybrid part shared by the Mamba and Mamba2 mixers (semantics.md section 4): the
/// sparse-attention branch over the mixer's post-conv, pad-masked x (V = x), its per-channel
/// scale E, and the combination mixed = scan + attn ⊙ E that both mixers then gate (Mamba:
/// ⊙ SiLU(z); Mamba2: gated RMSNorm with z). Holds the optional hax::attn::SparseBranch, checks
/// that its widths agree with the mixer's, registers E and the branch's parameters under the
/// mixer prefix, and runs the branch forward/backward with the combination's two kernels.
#pragma once

#include <Kokkos_Core.hpp>
#include <hax/attention/sparse_branch.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/views.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/linear.hpp>
#include <hax/nn/parameters.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace hax::ssm::impl {

/// Rows of (B·L, E) summed per work item before one atomic add into dE(e).
inline constexpr int kHybridRowsPerChunk = 128;

/// y(m, e) = a(m, e) + b(m, e) · scale(e) over (B·L, E) rows; y may alias a (in place).
template <class Space, class A, class Bv, class S, class Y>
void scale_add_forward(Space const& space, A const& a, Bv const& b, S const& scale, Y const& y) {
  int const M = y.extent_int(0), E = y.extent_int(1);
  core::for_each_row_major(
      "hax::ssm::hybrid_combine", space, M, E,
      KOKKOS_LAMBDA(int m, int e) { y(m, e) = a(m, e) + b(m, e) * scale(e); });
}

/// Backward of y = a + b ⊙ scale (the gradient of a is dy itself, passed on by the caller):
/// db(m, e) = dy(m, e) · scale(e) (written), dscale(e) += Σ_m dy(m, e) · b(m, e) (accumulated;
/// each work item sums kHybridRowsPerChunk rows, then one atomic add: the float sum order is
/// unspecified). db must not alias dy or b.
template <class Space, class DY, class Bv, class S, class DB, class DS>
void scale_add_backward(Space const& space, DY const& dy, Bv const& b, S const& scale, DB const& db,
                        DS const& dscale) {
  int const M = dy.extent_int(0), E = dy.extent_int(1);
  int const chunks = (M + kHybridRowsPerChunk - 1) / kHybridRowsPerChunk;
  core::for_each_row_major(
      "hax::ssm::hybrid_combine_backward", space, chunks, E,
      KOKKOS_LAMBDA(int c, int e) {
        using V = typename DB::non_const_value_type;
        int const begin = c * kHybridRowsPerChunk;
        int const end = begin + kHybridRowsPerChunk < M ? begin + kHybridRowsPerChunk : M;
        V const s = scale(e);
        V sum = 0;
        for (int m = begin; m < end; ++m) {
          V const g = dy(m, e);
          db(m, e) = g * s;
          sum += g * b(m, e);
        }
        Kokkos::atomic_add(&dscale(e), sum);
      });
}

/// The branch's configuration as the mixer runs it: d_inner and state_size of 0 are taken from
/// the mixer; any other value must equal the mixer's (a mismatch is rejected, naming both).
inline attn::SparseBranchConfig hybrid_branch_config(attn::SparseBranchConfig cfg, int d_inner,
                                                     int state_size, char const* op) {
  if (cfg.d_inner == 0) {
    cfg.d_inner = d_inner;
  }
  if (cfg.state_size == 0) {
    cfg.state_size = state_size;
  }
  core::require(cfg.d_inner == d_inner, op, "sparse.d_inner (", cfg.d_inner,
                ") must equal the mixer's d_inner (", d_inner,
                "): V is the mixer's x; set it to ", d_inner, " or 0 to take the mixer's");
  core::require(cfg.state_size == state_size, op, "sparse.state_size (", cfg.state_size,
                ") must equal the mixer's state_size (", state_size,
                "): Q/K have the SSM's state width; set it to ", state_size,
                " or 0 to take the mixer's");
  return cfg;
}

/// What the hybrid part's backward needs.
template <class Space, class T>
struct HybridSaved {
  using memory_space = typename Space::memory_space;
  typename attn::SparseBranch<Space, T>::Saved branch;  // the branch's own (q, k, lse, plans...)
  Kokkos::View<T***, Kokkos::LayoutRight, memory_space> attn;  // (B, L, E) the branch output
};

/// The optional HAX branch of a mixer with its scale E (see the file comment).
template <execution_space Space, class T>
class HybridBranch {
 public:
  using memory_space = typename Space::memory_space;
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, memory_space>;
  using Saved = HybridSaved<Space, T>;

  HybridBranch() = default;
  /// Without `sparse` the mixer has no branch. Throws hax::invalid_argument (from `op`) when the
  /// branch's widths disagree with the mixer's or the branch config itself is bad.
  HybridBranch(std::optional<attn::SparseBranchConfig> const& sparse, int d_inner, int state_size,
               double e_init, char const* op)
      : e_init_(e_init) {
    if (sparse.has_value()) {
      branch_.emplace(hybrid_branch_config(*sparse, d_inner, state_size, op));
    }
  }

  bool enabled() const { return branch_.has_value(); }
  /// The branch (only when enabled()).
  attn::SparseBranch<Space, T> const& branch() const { return *branch_; }

  /// Registers p + "E" (E) = e_init, then the branch's xx_proj.weight and ks_mlp.* under p.
  void register_parameters(nn::ParameterStore<Space, T>& store, std::string const& p) const {
    if (!enabled()) {
      return;
    }
    store.add(p + "E", {std::size_t(branch_->config().d_inner)}, nn::init::Constant{e_init_});
    branch_->register_parameters(store, p);
  }

  /// attn = branch(x) and, in place, scan += attn ⊙ E. \param x (B, L, E) the post-conv,
  /// pad-masked x (kept by reference in the returned Saved: the caller keeps it alive).
  /// \param mask (B, L) int8 pad mask or an empty View. \param scan (B, L, E) in/out.
  /// \param gate_loss rank 0: += the ranking loss in training with key selection.
  template <class X, class Mask, class Scan, class Loss>
  Saved forward(Space const& space, nn::ParameterStore<Space, T> const& store, std::string const& p,
                X const& x, Mask const& mask, Scan const& scan, Loss const& gate_loss,
                attn::StepContext const& ctx) const {
    Saved s;
    s.attn = uninitialized_view<T***>(space, "hax::ssm::hybrid_attn", x.extent(0), x.extent(1),
                                      x.extent(2));
    s.branch = branch_->forward(space, store, p, x, mask, s.attn, gate_loss, ctx);
    scale_add_forward(space, nn::as_rows(scan), nn::as_rows(s.attn),
                      store.template value<1>(p + "E"), nn::as_rows(scan));
    return s;
  }

  /// Backward of scan + attn ⊙ E and of the branch: dE += Σ dmixed ⊙ attn, dattn = dmixed ⊙ E,
  /// then the branch adds its input gradient into dx (+=) and accumulates xx_proj's gradient
  /// and (with key selection in training) α · the ranking loss's MLP gradient.
  /// \param dmixed (B, L, E) the gradient of scan + attn ⊙ E (also the scan's gradient).
  /// \param dx (B, L, E) the gradient of the post-conv x, accumulated.
  template <class DM, class DX>
  void backward(Space const& space, nn::ParameterStore<Space, T> const& store, std::string const& p,
                Saved const& s, DM const& dmixed, DX const& dx,
                attn::StepContext const& ctx) const {
    auto const dattn = uninitialized_view<T***>(space, "hax::ssm::hybrid_dattn", s.attn.extent(0),
                                                s.attn.extent(1), s.attn.extent(2));  // (B, L, E)
    scale_add_backward(space, nn::as_rows(dmixed), nn::as_rows(s.attn),
                       store.template value<1>(p + "E"), nn::as_rows(dattn),
                       store.template grad<1>(p + "E"));
    branch_->backward(space, store, p, s.branch, dattn, dx, ctx);
  }

 private:
  std::optional<attn::SparseBranch<Space, T>> branch_;
  double e_init_ = 1.0;
};

}  // namespace hax::ssm::impl
