// SPDX-License-Identifier: MIT
/// \file
/// Masked cross-entropy over the vocabulary (token-level mean over the masked positions of the
/// whole batch, as the reference's CrossEntropyLoss on logits[mask]), its backward, a fused
/// forward that also writes dlogits for training, and per-item masked accuracy with its batch
/// mean. Every result goes into device Views: nothing here synchronises with the host.
/// The derivation is in docs/math/cross_entropy.md.
///
/// Conventions fixed here:
///  - loss = (1/n) Σ_{(b,t): mask(b,t) != 0} −log softmax(logits(b, t, :))[label(b, t)], with
///    n = #masked positions. A batch with n = 0 has loss 0 and dlogits 0 (not NaN).
///  - Labels are read only at masked positions (pads may carry any label); there they must be in
///    [0, V) (device data: not checked, an out-of-range label reads outside the row).
///  - Accuracy: argmax ties go to the lowest vocabulary index (PyTorch leaves ties unspecified).
///    An item with no masked position gets acc_item = 0 and is left out of the batch mean; the
///    mean of a batch without any masked position is 0.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/dispatch.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/nn/impl/shape.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace hax::nn {

namespace impl {

/// Shape checks shared by the cross-entropy and accuracy entry points.
template <class Logits, class Labels, class Mask>
void check_ce_shapes(char const* op, Logits const& logits, Labels const& labels,
                     Mask const& mask) {
  core::require(labels.extent(0) == logits.extent(0) && labels.extent(1) == logits.extent(1), op,
                "labels ", shape_of(labels), " vs logits ", shape_of(logits),
                ": labels must be (B, L) for logits (B, L, V)");
  core::require(mask.extent(0) == logits.extent(0) && mask.extent(1) == logits.extent(1), op,
                "mask ", shape_of(mask), " vs logits ", shape_of(logits),
                ": mask must be (B, L) for logits (B, L, V)");
}

/// count = #positions with mask != 0, into a rank-0 device View (one reduction, asynchronous).
template <class Space, class Mask, class Count>
void count_masked(Space const& space, Mask mask, Count count) {
  int const B = mask.extent_int(0);
  int const L = mask.extent_int(1);
  Kokkos::parallel_reduce(
      "hax::nn::cross_entropy::count",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<2, Kokkos::Iterate::Right, Kokkos::Iterate::Right>>(space, {0, 0}, {B, L}),
      KOKKOS_LAMBDA(int b, int t, typename Count::non_const_value_type& n) {
        n += mask(b, t) != 0 ? 1 : 0;
      },
      count);
}

/// One row (b, t) of the cross-entropy: the row's max and Σ exp(z − max) by lane reductions over
/// the V logits, its loss share (the return value, the same on every lane; 0 on an unmasked row)
/// and, when kWriteGrad, dlogits(b, t, :) = g · (softmax − onehot(label)) (0 on an unmasked row).
/// exp(z − max) is parked in the dlogits row between the second and third sweeps, so it is
/// evaluated once; a lane reads back only the entries it wrote (both sweeps map v to the same
/// lane), so no barrier is needed.
template <bool kWriteGrad, class T, class Member, class Logits, class Labels, class Mask, class DLogits>
KOKKOS_INLINE_FUNCTION T cross_entropy_row(Member const& team, Logits const& logits, Labels const& labels,
                                           Mask const& mask, DLogits const& dlogits, int b, int t, T inv_n,
                                           T g) {
  int const V = logits.extent_int(2);
  if (mask(b, t) == 0) {
    if (kWriteGrad) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, V), [&](int v) { dlogits(b, t, v) = T(0); });
    }
    return T(0);
  }
  T row_max = 0;
  Kokkos::parallel_reduce(
      Kokkos::ThreadVectorRange(team, V),
      [&](int v, T& m) { m = Kokkos::max(m, static_cast<T>(logits(b, t, v))); }, Kokkos::Max<T>(row_max));
  T denom = 0;
  Kokkos::parallel_reduce(
      Kokkos::ThreadVectorRange(team, V),
      [&](int v, T& acc) {
        T const e = Kokkos::exp(static_cast<T>(logits(b, t, v)) - row_max);
        if (kWriteGrad) { dlogits(b, t, v) = e; }
        acc += e;
      },
      denom);
  auto const label = static_cast<std::int64_t>(labels(b, t));
  if (kWriteGrad) {
    T const inv_denom = T(1) / denom;
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, V), [&](int v) {
      T const p = dlogits(b, t, v) * inv_denom;
      dlogits(b, t, v) = g * (p - (v == label ? T(1) : T(0)));
    });
  }
  // −log softmax[label] = log Σ exp(z − max) − (z_label − max)
  return (Kokkos::log(denom) - (static_cast<T>(logits(b, t, label)) - row_max)) * inv_n;
}

/// The fused cross-entropy over every row (b, t): loss (rank 0) = Σ of the rows' shares, and when
/// kWriteGrad, dlogits(b, t, :) = scale · (softmax − onehot(label)) / n (0 on unmasked rows).
/// One row per thread of a core::row_teams team, the V logits on its vector lanes (a warp per row
/// on GPUs: coalesced rows). The team parks its rows' shares in scratch and one thread adds them
/// in row order, so the loss's float sum order is fixed by the shape. A thread per row walking its
/// row serially (an MDRange, whose first index CUDA puts on the lanes) took 150 µs per call for
/// B·L = 67 648 rows of V = 100 on an H100 (docs/perf_training_step.md). dlogits must not alias
/// logits.
template <bool kWriteGrad, class Space, class Logits, class Labels, class Mask, class Count,
          class Loss, class DLogits>
void cross_entropy_rows(Space const& space, Logits logits, Labels labels, Mask mask, Count count,
                        Loss loss, DLogits dlogits,
                        typename Loss::non_const_value_type grad_scale) {
  using T = typename Loss::non_const_value_type;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  using scratch_1d = Kokkos::View<T*, typename Space::scratch_memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  constexpr int kRows = core::kRowsPerTeam;
  int const L = logits.extent_int(1);
  int const rows = logits.extent_int(0) * L;
  int const league = (rows + kRows - 1) / kRows;
  std::size_t const bytes = scratch_1d::shmem_size(kRows);
  Kokkos::parallel_reduce(
      kWriteGrad ? "hax::nn::cross_entropy_forward_backward" : "hax::nn::cross_entropy_forward",
      core::row_teams(space, league).set_scratch_size(0, Kokkos::PerTeam(bytes)),
      // kWriteGrad is tested with a plain `if`: nvcc's extended lambdas cannot first-capture a
      // variable inside `if constexpr`; the branch folds away all the same.
      KOKKOS_LAMBDA(member const& team, T& sum) {
        scratch_1d share(team.team_scratch(0), kRows);
        int const first = team.league_rank() * kRows;
        // count() >= 1 whenever a row is masked, the only rows that divide by it.
        T const inv_n = T(1) / static_cast<T>(count() > 0 ? count() : 1);
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kRows), [&](int r) {
          int const row = first + r;
          T v = 0;
          if (row < rows) {
            v = cross_entropy_row<kWriteGrad, T>(team, logits, labels, mask, dlogits, row / L, row % L, inv_n,
                                                 grad_scale * inv_n);
          }
          Kokkos::single(Kokkos::PerThread(team), [&]() { share(r) = v; });
        });
        team.team_barrier();
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          T acc = 0;
          for (int r = 0; r < kRows; ++r) { acc += share(r); }
          sum += acc;
        });
        // Kokkos' CUDA reduction may run several teams in turn on one block: the shares must be
        // read before the block's next team overwrites them.
        team.team_barrier();
      },
      loss);
}

/// Backward only: the same row pass without the loss reduction.
template <class Space, class Logits, class Labels, class Mask, class Count, class DLogits>
void cross_entropy_backward_rows(Space const& space, Logits logits, Labels labels, Mask mask,
                                 Count count, DLogits dlogits,
                                 typename DLogits::non_const_value_type dloss) {
  using T = typename DLogits::non_const_value_type;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  constexpr int kRows = core::kRowsPerTeam;
  int const L = logits.extent_int(1);
  int const rows = logits.extent_int(0) * L;
  int const league = (rows + kRows - 1) / kRows;
  Kokkos::parallel_for(
      "hax::nn::cross_entropy_backward", core::row_teams(space, league), KOKKOS_LAMBDA(member const& team) {
        T const inv_n = T(1) / static_cast<T>(count() > 0 ? count() : 1);
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kRows), [&](int r) {
          int const row = team.league_rank() * kRows + r;
          if (row < rows) {
            (void)cross_entropy_row<true, T>(team, logits, labels, mask, dlogits, row / L, row % L, inv_n,
                                             dloss * inv_n);
          }
        });
      });
}

}  // namespace impl

/// Masked cross-entropy forward, optionally fused with its backward.
///
/// Writes loss = mean over masked positions of −log softmax(logits)[label] and count = number of
/// masked positions (both rank-0 device Views, overwritten). If `maybe_dlogits` is allocated it
/// also writes dlogits = ∂loss/∂logits = (softmax − onehot)/count on masked rows and 0 elsewhere,
/// in the same pass over the logits: the training step's path (no separate backward needed).
///
/// \param space [in] execution-space instance; asynchronous on it (two kernels, no fence).
/// \param logits [in] (B, L, V).
/// \param labels [in] (B, L) integral, in [0, V) wherever mask != 0.
/// \param mask [in] (B, L) integral or bool; nonzero = this position is scored.
/// \param loss [out] rank-0 floating View.
/// \param count [out] rank-0 integral View: the number of masked positions (saved for backward).
/// \param maybe_dlogits [out] (B, L, V) or an empty View (evaluation).
/// Saved for backward: logits, labels, mask, count.
template <execution_space Space, class Logits, class Labels, class Mask, class Loss, class Count,
          class DLogits>
  requires(view_accessible_from<Logits, Space> && view_accessible_from<Labels, Space> &&
           view_accessible_from<Mask, Space> && view_accessible_from<Loss, Space> &&
           view_accessible_from<Count, Space> && view_accessible_from<DLogits, Space>)
void cross_entropy_forward(Space const& space, Logits const& logits, Labels const& labels,
                           Mask const& mask, Loss const& loss, Count const& count,
                           DLogits const& maybe_dlogits) {
  static_assert(Logits::rank() == 3 && Labels::rank() == 2 && Mask::rank() == 2 &&
                    DLogits::rank() == 3,
                "hax::nn::cross_entropy_forward: logits (B, L, V), labels (B, L), mask (B, L), "
                "dlogits (B, L, V)");
  static_assert(Loss::rank() == 0 && Count::rank() == 0,
                "hax::nn::cross_entropy_forward: loss and count must be rank-0 Views");
  static_assert(std::is_floating_point_v<typename Loss::value_type>,
                "hax::nn::cross_entropy_forward: loss must be floating point");
  static_assert(std::is_integral_v<typename Count::value_type> &&
                    std::is_integral_v<typename Labels::value_type>,
                "hax::nn::cross_entropy_forward: count and labels must be integral");
  constexpr char const* op = "hax::nn::cross_entropy_forward";
  impl::check_ce_shapes(op, logits, labels, mask);
  core::require(logits.extent(2) > 0, op, "logits ", impl::shape_of(logits),
                ": the vocabulary must not be empty");
  bool const want_grad = maybe_dlogits.is_allocated();
  core::require(!want_grad || (maybe_dlogits.extent(0) == logits.extent(0) &&
                               maybe_dlogits.extent(1) == logits.extent(1) &&
                               maybe_dlogits.extent(2) == logits.extent(2)),
                op, "dlogits ", impl::shape_of(maybe_dlogits), " vs logits ",
                impl::shape_of(logits), ": must match");
  impl::count_masked(space, mask, count);
  using T = typename Loss::non_const_value_type;
  core::dispatch_bool(want_grad, [&]<bool kWriteGrad>() {
    impl::cross_entropy_rows<kWriteGrad>(space, logits, labels, mask, count, loss, maybe_dlogits,
                                         T(1));
  });
}

/// Overload on the default instance of loss's execution space.
template <class Logits, class Labels, class Mask, class Loss, class Count, class DLogits>
void cross_entropy_forward(Logits const& logits, Labels const& labels, Mask const& mask,
                           Loss const& loss, Count const& count, DLogits const& maybe_dlogits) {
  cross_entropy_forward(typename Loss::execution_space{}, logits, labels, mask, loss, count,
                        maybe_dlogits);
}

/// Masked cross-entropy backward: dlogits = dloss · (softmax − onehot)/count on masked rows, 0
/// elsewhere (written). `count` is the forward's output, read on the device; `dloss` is the
/// host-side weight of this loss in the total (1 for the plain loss).
///
/// \param logits [in] (B, L, V); \param labels [in] (B, L); \param mask [in] (B, L);
/// \param count [in] rank-0 from cross_entropy_forward; \param dlogits [out] (B, L, V).
template <execution_space Space, class Logits, class Labels, class Mask, class Count,
          class DLogits>
  requires(view_accessible_from<Logits, Space> && view_accessible_from<Labels, Space> &&
           view_accessible_from<Mask, Space> && view_accessible_from<Count, Space> &&
           view_accessible_from<DLogits, Space>)
void cross_entropy_backward(Space const& space, Logits const& logits, Labels const& labels,
                            Mask const& mask, Count const& count, DLogits const& dlogits,
                            typename DLogits::non_const_value_type dloss = 1) {
  static_assert(Logits::rank() == 3 && Labels::rank() == 2 && Mask::rank() == 2 &&
                    DLogits::rank() == 3 && Count::rank() == 0,
                "hax::nn::cross_entropy_backward: logits (B, L, V), labels (B, L), mask (B, L), "
                "count rank 0, dlogits (B, L, V)");
  constexpr char const* op = "hax::nn::cross_entropy_backward";
  impl::check_ce_shapes(op, logits, labels, mask);
  core::require(dlogits.extent(0) == logits.extent(0) && dlogits.extent(1) == logits.extent(1) &&
                    dlogits.extent(2) == logits.extent(2),
                op, "dlogits ", impl::shape_of(dlogits), " vs logits ", impl::shape_of(logits),
                ": must match");
  impl::cross_entropy_backward_rows(space, logits, labels, mask, count, dlogits, dloss);
}

/// Overload on the default instance of dlogits' execution space.
template <class Logits, class Labels, class Mask, class Count, class DLogits>
void cross_entropy_backward(Logits const& logits, Labels const& labels, Mask const& mask,
                            Count const& count, DLogits const& dlogits,
                            typename DLogits::non_const_value_type dloss = 1) {
  cross_entropy_backward(typename DLogits::execution_space{}, logits, labels, mask, count,
                         dlogits, dloss);
}

/// Per-item masked accuracy and its batch mean, the reference's metric:
///   acc_item(b) = #{t : mask(b,t) != 0 and argmax_v logits(b,t,v) == label(b,t)} / #{t : mask != 0}
///   acc_mean    = mean of acc_item over the items that have at least one masked position.
/// Argmax ties go to the lowest index. Items without masked positions get acc_item = 0 and are
/// not counted in the mean; a batch without any gives acc_mean = 0.
///
/// \param logits [in] (B, L, V); \param labels [in] (B, L); \param mask [in] (B, L);
/// \param acc_item [out] (B) floating; \param acc_mean [out] rank-0 floating.
/// Asynchronous on `space` (two kernels, no fence).
template <execution_space Space, class Logits, class Labels, class Mask, class AccItem,
          class AccMean>
  requires(view_accessible_from<Logits, Space> && view_accessible_from<Labels, Space> &&
           view_accessible_from<Mask, Space> && view_accessible_from<AccItem, Space> &&
           view_accessible_from<AccMean, Space>)
void masked_accuracy(Space const& space, Logits const& logits, Labels const& labels,
                     Mask const& mask, AccItem const& acc_item, AccMean const& acc_mean) {
  static_assert(Logits::rank() == 3 && Labels::rank() == 2 && Mask::rank() == 2 &&
                    AccItem::rank() == 1 && AccMean::rank() == 0,
                "hax::nn::masked_accuracy: logits (B, L, V), labels (B, L), mask (B, L), "
                "acc_item (B), acc_mean rank 0");
  constexpr char const* op = "hax::nn::masked_accuracy";
  impl::check_ce_shapes(op, logits, labels, mask);
  core::require(acc_item.extent(0) == logits.extent(0), op, "acc_item ",
                impl::shape_of(acc_item), " vs logits ", impl::shape_of(logits),
                ": one entry per item");
  using A = typename AccItem::non_const_value_type;
  using M = typename AccMean::non_const_value_type;
  int const B = logits.extent_int(0);
  int const L = logits.extent_int(1);
  int const V = logits.extent_int(2);
  using team_policy = Kokkos::TeamPolicy<Space>;
  using member_type = typename team_policy::member_type;
  // One team per item; its threads split the positions and reduce two counts.
  Kokkos::parallel_for(
      "hax::nn::masked_accuracy", team_policy(space, B, Kokkos::AUTO),
      KOKKOS_LAMBDA(member_type const& team) {
        int const b = team.league_rank();
        int scored = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, L),
            [&](int t, int& n) { n += mask(b, t) != 0 ? 1 : 0; }, scored);
        int correct = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, L),
            [&](int t, int& n) {
              if (mask(b, t) == 0) {
                return;
              }
              int best = 0;  // strict > keeps the lowest index among ties
              for (int v = 1; v < V; ++v) {
                if (logits(b, t, v) > logits(b, t, best)) {
                  best = v;
                }
              }
              n += static_cast<std::int64_t>(labels(b, t)) == best ? 1 : 0;
            },
            correct);
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          acc_item(b) = scored > 0 ? static_cast<A>(correct) / static_cast<A>(scored) : A(0);
        });
      });
  // The batch mean needs every item's count; B is small (64), so one work item does it in a fixed
  // order (deterministic). Recount the scored items from the mask rather than store a flag.
  Kokkos::parallel_for(
      "hax::nn::masked_accuracy::mean", Kokkos::RangePolicy<Space>(space, 0, 1),
      KOKKOS_LAMBDA(int) {
        M sum = 0;
        int items = 0;
        for (int b = 0; b < B; ++b) {
          bool any = false;
          for (int t = 0; t < L && !any; ++t) {
            any = mask(b, t) != 0;
          }
          if (any) {
            sum += static_cast<M>(acc_item(b));
            ++items;
          }
        }
        acc_mean() = items > 0 ? sum / static_cast<M>(items) : M(0);
      });
}

/// Overload on the default instance of acc_item's execution space.
template <class Logits, class Labels, class Mask, class AccItem, class AccMean>
void masked_accuracy(Logits const& logits, Labels const& labels, Mask const& mask,
                     AccItem const& acc_item, AccMean const& acc_mean) {
  masked_accuracy(typename AccItem::execution_space{}, logits, labels, mask, acc_item, acc_mean);
}

}  // namespace hax::nn
