// SPDX-License-Identifier: MIT
/// \file
/// The Mamba-2 state-space-dual (SSD) core, as mamba_chunk_scan_combined with D, dt_bias,
/// dt_softplus=True, one group of B/C shared by all heads and z=None: the chunked algorithm
/// (quadratic causal form inside chunks of Q steps, a recurrence over chunk states across them),
/// its backward, and a one-token step mode. Derivations: docs/math/ssd.md.
///
///   dt_t  = softplus(dt_t + dt_bias)                         (B, L, H)
///   S_t   = exp(dt_t A_h) S_{t-1} + dt_t x_t ⊗ B_t            per (b, h): a (P, N) state
///   y_t   = S_t C_t + Dskip_h x_t                             (P)
///
/// Inside a chunk with log-decay cumsum a_t = Σ_{s<=t in chunk} dt_s A_h:
///   y_t = Σ_{s<=t} (C_t·B_s) exp(a_t - a_s) dt_s x_s  +  exp(a_t) S_start C_t  +  Dskip x_t
/// and S_end = exp(a_last) S_start + Σ_s exp(a_last - a_s) dt_s x_s ⊗ B_s.
/// Saved: S_start of every chunk, (B, H, ceil(L / Q), P, N). Workspaces: (B, L, Q) for C·Bᵀ (one
/// group, so shared by the heads) and (B, L, H) for the decays; nothing of size L² or L·P·N.
#pragma once

#include <Kokkos_Core.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/ssm/impl/common.hpp>
#include <hax/ssm/policy.hpp>
#include <string>

namespace hax::ssm {

/// Inputs of SSD (read only).
template <class T, class MemorySpace>
struct SsdInputs {
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, MemorySpace>;
  view<T const****> x;     // (B, L, H, P)
  view<T const***> dt;     // (B, L, H)  before softplus
  view<T const*> dt_bias;  // (H)
  view<T const*> A;        // (H)        one (negative) scalar per head
  view<T const***> Bm;     // (B, L, N)  one group shared by the heads
  view<T const***> Cm;     // (B, L, N)
  view<T const*> Dskip;    // (H)
};

/// Gradients of SSD: input gradients written (=), parameter gradients (ddt_bias, dA, dD)
/// accumulated (+=).
template <class T, class MemorySpace>
struct SsdGrads {
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, MemorySpace>;
  view<T****> dx;     // (B, L, H, P) =
  view<T***> ddt;     // (B, L, H)    =  (with respect to dt before softplus)
  view<T*> ddt_bias;  // (H)          +=
  view<T*> dA;        // (H)          +=
  view<T***> dB;      // (B, L, N)    =
  view<T***> dC;      // (B, L, N)    =
  view<T*> dD;        // (H)          +=
};

/// What the SSD forward keeps for the backward: the state at the start of every chunk.
template <class T, class MemorySpace>
struct SsdSaved {
  Kokkos::View<T*****, Kokkos::LayoutRight, MemorySpace> chunk_states;  // (B, H, n_chunks, P, N)
  int chunk = 1;                                                        // Q
};

namespace impl {

template <class T, class Mem, class Y>
void check_ssd(char const* op, SsdInputs<T, Mem> const& in, Y const& y, int chunk) {
  auto const& x = in.x;
  auto const B = x.extent(0), L = x.extent(1), H = x.extent(2), P = x.extent(3);
  auto const N = in.Bm.extent(2);
  core::require(chunk >= 1, op, "chunk must be >= 1, got ", chunk);
  core::require(in.dt.extent(0) == B && in.dt.extent(1) == L && in.dt.extent(2) == H, op, "dt ",
                shape_of(in.dt), " must be (B, L, H) for x ", shape_of(x), " (B, L, H, P)");
  core::require(in.dt_bias.extent(0) == H && in.A.extent(0) == H && in.Dskip.extent(0) == H, op,
                "dt_bias ", shape_of(in.dt_bias), ", A ", shape_of(in.A), " and Dskip ",
                shape_of(in.Dskip), " must be (H) for x ", shape_of(x), " (B, L, H, P)");
  core::require(in.Bm.extent(0) == B && in.Bm.extent(1) == L, op, "B ", shape_of(in.Bm),
                " must be (B, L, N) for x ", shape_of(x), " (B, L, H, P)");
  core::require(in.Cm.extent(0) == B && in.Cm.extent(1) == L && in.Cm.extent(2) == N, op, "C ",
                shape_of(in.Cm), " must match B ", shape_of(in.Bm), " (B, L, N)");
  core::require(y.extent(0) == B && y.extent(1) == L && y.extent(2) == H && y.extent(3) == P, op,
                "y/dy ", shape_of(y), " must match x ", shape_of(x), " (B, L, H, P)");
}

/// dtv = softplus(dt + dt_bias) and the within-chunk inclusive cumsum of the log decays
/// acs_t = Σ_{s <= t in the chunk} dtv_s A_h, one thread per (b, h, chunk).
template <class Space, class T, class Mem>
void ssd_decay(Space const& space, SsdInputs<T, Mem> const& in, int chunk,
               Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& dtv,
               Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& acs) {
  auto const dt = in.dt;
  auto const dt_bias = in.dt_bias;
  auto const A = in.A;
  int const B = dt.extent_int(0), L = dt.extent_int(1), H = dt.extent_int(2);
  int const n_chunks = ceil_div(L, chunk);
  Kokkos::parallel_for(
      "hax::ssm::ssd_decay",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<3>>(space, {0, 0, 0}, {B, n_chunks, H}),
      KOKKOS_LAMBDA(int b, int c, int h) {
        int const cs = c * chunk;
        int const ce = Kokkos::min(cs + chunk, L);
        T run = T(0);
        for (int t = cs; t < ce; ++t) {
          T const v = softplus(dt(b, t, h) + dt_bias(h));
          dtv(b, t, h) = v;
          run += v * A(h);
          acs(b, t, h) = run;
        }
      });
}

/// cb(b, t, j - cs) = C_t · B_j for j in t's chunk, j <= t (0 above the diagonal).
template <class Space, class T, class Mem>
void ssd_cb(Space const& space, SsdInputs<T, Mem> const& in, int chunk,
            Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& cb) {
  auto const Bm = in.Bm;
  auto const Cm = in.Cm;
  int const B = Bm.extent_int(0), L = Bm.extent_int(1), N = Bm.extent_int(2);
  int const Q = cb.extent_int(2);
  Kokkos::parallel_for(
      "hax::ssm::ssd_cb",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<3>>(space, {0, 0, 0}, {B, L, Q}),
      KOKKOS_LAMBDA(int b, int t, int jj) {
        int const j = (t / chunk) * chunk + jj;
        T s = T(0);
        if (j <= t) {
          for (int n = 0; n < N; ++n) {
            s += Cm(b, t, n) * Bm(b, j, n);
          }
        }
        cb(b, t, jj) = s;
      });
}

/// Recurrence over chunks, in place: on entry buf(c) holds chunk c's own contribution; on exit
/// buf(c) holds the carried value *before* chunk c in the direction of travel:
///   forward:  buf(c) ← S_start(c),  S_start(c + 1) = exp(acs_last(c)) S_start(c) + own(c)
///   backward: buf(c) ← G(c) (adjoint of S_end(c)),  G(c - 1) = exp(acs_last(c)) G(c) + own(c)
template <class Space, class T, class Mem>
void ssd_chunk_pass(Space const& space, Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& acs,
                    int chunk, bool reverse,
                    Kokkos::View<T*****, Kokkos::LayoutRight, Mem> const& buf) {
  int const B = buf.extent_int(0), H = buf.extent_int(1), n_chunks = buf.extent_int(2);
  int const P = buf.extent_int(3), N = buf.extent_int(4);
  int const L = acs.extent_int(1);
  Kokkos::parallel_for(
      reverse ? "hax::ssm::ssd_chunk_pass_reverse" : "hax::ssm::ssd_chunk_pass",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<4>>(space, {0, 0, 0, 0}, {B, H, P, N}),
      KOKKOS_LAMBDA(int b, int h, int p, int n) {
        T carry = T(0);
        for (int k = 0; k < n_chunks; ++k) {
          int const c = reverse ? n_chunks - 1 - k : k;
          int const last = Kokkos::min(c * chunk + chunk, L) - 1;
          T const own = buf(b, h, c, p, n);
          buf(b, h, c, p, n) = carry;
          carry = Kokkos::exp(acs(b, last, h)) * carry + own;
        }
      });
}

}  // namespace impl

/// Forward of SSD by the chunked state-space-dual algorithm.
///
/// \param space [in] execution-space instance; the op is asynchronous on it.
/// \param in [in] x (B, L, H, P); dt (B, L, H); dt_bias, A, Dskip (H); Bm, Cm (B, L, N).
/// \param y [out] (B, L, H, P), overwritten.
/// \param checkpoint [in] the chunk size Q (any value >= 1; the reference uses 256).
/// \return the chunk-start states (B, H, ceil(L / Q), P, N) for the backward.
/// Throws hax::invalid_argument on mismatched shapes or chunk < 1.
template <execution_space Space, class T, class Mem>
requires view_accessible_from<Kokkos::View<T*, Mem>, Space> SsdSaved<T, Mem> ssd_forward(
    Space const& space, SsdInputs<T, Mem> const& in,
    Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& y,
    ChunkBoundaries checkpoint = ChunkBoundaries{256}) {
  impl::check_ssd("hax::ssm::ssd_forward", in, y, checkpoint.chunk);
  int const chunk = checkpoint.chunk;
  auto const x = in.x;
  auto const Bm = in.Bm;
  auto const Cm = in.Cm;
  auto const Dskip = in.Dskip;
  int const B = x.extent_int(0), L = x.extent_int(1), H = x.extent_int(2), P = x.extent_int(3);
  int const N = Bm.extent_int(2);
  int const n_chunks = impl::ceil_div(L, chunk);
  int const Q = Kokkos::min(chunk, L);
  using view3 = Kokkos::View<T***, Kokkos::LayoutRight, Mem>;
  using view5 = Kokkos::View<T*****, Kokkos::LayoutRight, Mem>;
  auto alloc = [&](char const* label) {
    return Kokkos::view_alloc(space, Kokkos::WithoutInitializing, std::string(label));
  };
  SsdSaved<T, Mem> saved{view5(alloc("hax::ssm::ssd_chunk_states"), B, H, n_chunks, P, N), chunk};
  if (B == 0 || L == 0 || H == 0) {
    return saved;
  }
  view3 dtv(alloc("hax::ssm::ssd_dt"), B, L, H);   // (B, L, H) softplus(dt + dt_bias)
  view3 acs(alloc("hax::ssm::ssd_acs"), B, L, H);  // (B, L, H) within-chunk cumsum of dt·A
  view3 cb(alloc("hax::ssm::ssd_cb"), B, L, Q);    // (B, L, Q) C_t·B_j inside the chunk
  impl::ssd_decay(space, in, chunk, dtv, acs);
  impl::ssd_cb(space, in, chunk, cb);

  // Each chunk's own end-state contribution Σ_s exp(a_last - a_s) dt_s x_s ⊗ B_s ...
  auto const states = saved.chunk_states;
  Kokkos::parallel_for(
      "hax::ssm::ssd_forward_chunk_states",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<4>>(space, {0, 0, 0, 0}, {B, H, n_chunks, P}),
      KOKKOS_LAMBDA(int b, int h, int c, int p) {
        int const cs = c * chunk;
        int const last = Kokkos::min(cs + chunk, L) - 1;
        T const a_last = acs(b, last, h);
        for (int n = 0; n < N; ++n) {
          states(b, h, c, p, n) = T(0);
        }
        for (int j = cs; j <= last; ++j) {  // one exp per (j, p), reused for every n
          T const wj = Kokkos::exp(a_last - acs(b, j, h)) * dtv(b, j, h) * x(b, j, h, p);
          for (int n = 0; n < N; ++n) {
            states(b, h, c, p, n) += wj * Bm(b, j, n);
          }
        }
      });
  // ... then the recurrence over chunks turns them into the state at each chunk's start.
  impl::ssd_chunk_pass(space, acs, chunk, false, states);

  Kokkos::parallel_for(
      "hax::ssm::ssd_forward_output",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<3>>(space, {0, 0, 0}, {B, L, H}),
      KOKKOS_LAMBDA(int b, int t, int h) {
        int const c = t / chunk;
        int const cs = c * chunk;
        T const at = acs(b, t, h);
        T const e_t = Kokkos::exp(at);
        // inter-chunk: the state carried into the chunk, decayed to t, read by C_t; plus the skip
        for (int p = 0; p < P; ++p) {
          T inter = T(0);
          for (int n = 0; n < N; ++n) {
            inter += states(b, h, c, p, n) * Cm(b, t, n);
          }
          y(b, t, h, p) = e_t * inter + Dskip(h) * x(b, t, h, p);
        }
        // intra-chunk: the causal, decay-masked quadratic form (C Bᵀ ⊙ L) (dt x), one exp per j
        for (int j = cs; j <= t; ++j) {
          T const wj = cb(b, t, j - cs) * Kokkos::exp(at - acs(b, j, h)) * dtv(b, j, h);
          for (int p = 0; p < P; ++p) {
            y(b, t, h, p) += wj * x(b, j, h, p);
          }
        }
      });
  return saved;
}

/// Overload on the default instance of y's execution space.
template <class T, class Mem>
SsdSaved<T, Mem> ssd_forward(SsdInputs<T, Mem> const& in,
                             Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& y,
                             ChunkBoundaries checkpoint = ChunkBoundaries{256}) {
  using Space = typename Kokkos::View<T****, Kokkos::LayoutRight, Mem>::execution_space;
  return ssd_forward(Space{}, in, y, checkpoint);
}

/// Backward of SSD (derivation in docs/math/ssd.md): recomputes the decays and C·Bᵀ, forms the
/// adjoints G of the chunk-end states by a reverse recurrence over chunks, then every gradient
/// from chunk-local quadratic forms. Workspaces (B, L, Q) ×2, (B, L, H) ×3, (B, H, n_chunks, P, N).
///
/// \param in [in] the forward's inputs; \param saved [in] what ssd_forward returned.
/// \param dy [in] (B, L, H, P).
/// \param grads [out] dx, ddt, dB, dC written; ddt_bias, dA, dD accumulated (+=).
/// Asynchronous on `space`; 11 kernels whatever L is.
template <execution_space Space, class T, class Mem>
requires view_accessible_from<Kokkos::View<T*, Mem>, Space>
void ssd_backward(Space const& space, SsdInputs<T, Mem> const& in, SsdSaved<T, Mem> const& saved,
                  impl::const_view<T const****, Mem> const& dy, SsdGrads<T, Mem> const& grads) {
  char const* op = "hax::ssm::ssd_backward";
  int const chunk = saved.chunk;
  impl::check_ssd(op, in, dy, chunk);
  auto const x = in.x;
  auto const Bm = in.Bm;
  auto const Cm = in.Cm;
  auto const A = in.A;
  auto const dt_raw = in.dt;
  auto const dt_bias = in.dt_bias;
  auto const Dskip = in.Dskip;
  int const B = x.extent_int(0), L = x.extent_int(1), H = x.extent_int(2), P = x.extent_int(3);
  int const N = Bm.extent_int(2);
  int const n_chunks = impl::ceil_div(L, chunk);
  auto const states = saved.chunk_states;
  core::require(states.extent_int(0) == B && states.extent_int(1) == H &&
                    states.extent_int(2) == n_chunks && states.extent_int(3) == P &&
                    states.extent_int(4) == N,
                op, "saved chunk_states ", impl::shape_of(states), " do not match x ",
                impl::shape_of(x), ", B ", impl::shape_of(Bm), " and chunk ", chunk);
  core::require(grads.dx.extent(0) == x.extent(0) && grads.dx.extent(1) == x.extent(1) &&
                    grads.dx.extent(2) == x.extent(2) && grads.dx.extent(3) == x.extent(3) &&
                    grads.ddt.extent(0) == in.dt.extent(0) &&
                    grads.ddt.extent(1) == in.dt.extent(1) &&
                    grads.ddt.extent(2) == in.dt.extent(2),
                op, "dx ", impl::shape_of(grads.dx), " and ddt ", impl::shape_of(grads.ddt),
                " must match x ", impl::shape_of(x), " and dt ", impl::shape_of(in.dt));
  core::require(grads.dB.extent(0) == Bm.extent(0) && grads.dB.extent(1) == Bm.extent(1) &&
                    grads.dB.extent(2) == Bm.extent(2) && grads.dC.extent(0) == Bm.extent(0) &&
                    grads.dC.extent(1) == Bm.extent(1) && grads.dC.extent(2) == Bm.extent(2),
                op, "dB ", impl::shape_of(grads.dB), " and dC ", impl::shape_of(grads.dC),
                " must match B ", impl::shape_of(Bm));
  core::require(grads.ddt_bias.extent_int(0) == H && grads.dA.extent_int(0) == H &&
                    grads.dD.extent_int(0) == H,
                op, "ddt_bias ", impl::shape_of(grads.ddt_bias), ", dA ", impl::shape_of(grads.dA),
                ", dD ", impl::shape_of(grads.dD), " must be (H) for x ", impl::shape_of(x));
  if (B == 0 || L == 0 || H == 0) {
    return;
  }
  int const Q = Kokkos::min(chunk, L);
  using view3 = Kokkos::View<T***, Kokkos::LayoutRight, Mem>;
  using view4 = Kokkos::View<T****, Kokkos::LayoutRight, Mem>;
  using view5 = Kokkos::View<T*****, Kokkos::LayoutRight, Mem>;
  auto alloc = [&](char const* label) {
    return Kokkos::view_alloc(space, Kokkos::WithoutInitializing, std::string(label));
  };
  view3 dtv(alloc("hax::ssm::ssd_dt"), B, L, H);     // (B, L, H)
  view3 acs(alloc("hax::ssm::ssd_acs"), B, L, H);    // (B, L, H)
  view3 dacs(alloc("hax::ssm::ssd_dacs"), B, L, H);  // (B, L, H) dLoss/d acs_t
  view3 cb(alloc("hax::ssm::ssd_cb"), B, L, Q);      // (B, L, Q) C_t·B_j
  view3 w(alloc("hax::ssm::ssd_w"), B, L, Q);        // (B, L, Q) Σ_h decay dt_j (dy_t·x_j)
  view5 G(alloc("hax::ssm::ssd_chunk_adjoints"), B, H, n_chunks, P, N);  // (B, H, nc, P, N)
  view4 part(alloc("hax::ssm::ssd_part"), B, H, n_chunks, 3);            // (B, H, nc, 3)
  impl::ssd_decay(space, in, chunk, dtv, acs);
  impl::ssd_cb(space, in, chunk, cb);

  // w(t, j) = Σ_h exp(a_t - a_j) dt_j (dy_t · x_j): the weights of dC's and dB's intra terms.
  Kokkos::parallel_for(
      "hax::ssm::ssd_backward_w",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<3>>(space, {0, 0, 0}, {B, L, Q}),
      KOKKOS_LAMBDA(int b, int t, int jj) {
        int const j = (t / chunk) * chunk + jj;
        T s = T(0);
        if (j <= t) {
          for (int h = 0; h < H; ++h) {
            T dot = T(0);
            for (int p = 0; p < P; ++p) {
              dot += dy(b, t, h, p) * x(b, j, h, p);
            }
            s += Kokkos::exp(acs(b, t, h) - acs(b, j, h)) * dtv(b, j, h) * dot;
          }
        }
        w(b, t, jj) = s;
      });

  // Adjoint of each chunk's start state from its own outputs, Σ_i exp(a_i) dy_i ⊗ C_i, then the
  // reverse recurrence over chunks gives G(c) = dLoss/dS_end(c).
  Kokkos::parallel_for(
      "hax::ssm::ssd_backward_chunk_adjoints",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<4>>(space, {0, 0, 0, 0}, {B, H, n_chunks, P}),
      KOKKOS_LAMBDA(int b, int h, int c, int p) {
        int const cs = c * chunk;
        int const ce = Kokkos::min(cs + chunk, L);
        for (int n = 0; n < N; ++n) {
          G(b, h, c, p, n) = T(0);
        }
        for (int i = cs; i < ce; ++i) {
          T const wi = Kokkos::exp(acs(b, i, h)) * dy(b, i, h, p);
          for (int n = 0; n < N; ++n) {
            G(b, h, c, p, n) += wi * Cm(b, i, n);
          }
        }
      });
  impl::ssd_chunk_pass(space, acs, chunk, true, G);

  // Per (b, t, h): dx, the direct part of d dt (through dt_t x_t ⊗ B_t) and dLoss/d acs_t.
  auto const dx = grads.dx;
  auto const ddt = grads.ddt;
  Kokkos::parallel_for(
      "hax::ssm::ssd_backward_dx",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<3>>(space, {0, 0, 0}, {B, L, H}),
      KOKKOS_LAMBDA(int b, int t, int h) {
        int const c = t / chunk;
        int const cs = c * chunk;
        int const last = Kokkos::min(cs + chunk, L) - 1;
        T const at = acs(b, t, h);
        T const dtt = dtv(b, t, h);
        T const e_last = Kokkos::exp(acs(b, last, h) - at);
        // gB[p] = Σ_n g_t[p, n] B_t[n], with g_t = dLoss/dS_t; accumulated in dx(b, t, h, :)
        for (int p = 0; p < P; ++p) {
          dx(b, t, h, p) = T(0);
        }
        for (int i = t; i <= last; ++i) {
          T const wi = Kokkos::exp(acs(b, i, h) - at) * cb(b, i, t - cs);
          for (int p = 0; p < P; ++p) {
            dx(b, t, h, p) += wi * dy(b, i, h, p);
          }
        }
        T xg = T(0);  // Σ_p x_t[p] gB[p] = Σ_{p,n} g_t ⊙ (x_t ⊗ B_t)
        for (int p = 0; p < P; ++p) {
          T gb_inter = T(0);
          for (int n = 0; n < N; ++n) {
            gb_inter += G(b, h, c, p, n) * Bm(b, t, n);
          }
          T const gb = dx(b, t, h, p) + e_last * gb_inter;
          xg += x(b, t, h, p) * gb;
          dx(b, t, h, p) = dtt * gb + Dskip(h) * dy(b, t, h, p);
        }
        // dLoss/d acs_t: acs_t enters with + wherever t is the destination of a decay (y_t's
        // terms, and S_end when t is last) and with - wherever t is the source (dt_t x_t B_t).
        T m = T(0);
        for (int j = cs; j <= t; ++j) {
          T dot = T(0);
          for (int p = 0; p < P; ++p) {
            dot += dy(b, t, h, p) * x(b, j, h, p);
          }
          m += cb(b, t, j - cs) * Kokkos::exp(at - acs(b, j, h)) * dtv(b, j, h) * dot;
        }
        T inter = T(0);
        for (int p = 0; p < P; ++p) {
          T sc = T(0);
          for (int n = 0; n < N; ++n) {
            sc += states(b, h, c, p, n) * Cm(b, t, n);
          }
          inter += dy(b, t, h, p) * sc;
        }
        m += Kokkos::exp(at) * inter;
        if (t == last && c + 1 < n_chunks) {
          T ge = T(0);  // <G(c), S_end(c)>, S_end(c) = S_start(c + 1)
          for (int p = 0; p < P; ++p) {
            for (int n = 0; n < N; ++n) {
              ge += G(b, h, c, p, n) * states(b, h, c + 1, p, n);
            }
          }
          m += ge;
        }
        dacs(b, t, h) = m - dtt * xg;
        ddt(b, t, h) = xg;  // the direct part; ssd_backward_dt adds the decay part
      });

  // Per (b, h, chunk): d a_t = Σ_{i >= t in chunk} d acs_i (a reverse cumsum), a_t = dt_t A_h,
  // then through softplus; partial sums of ddt_bias, dA, dD.
  Kokkos::parallel_for(
      "hax::ssm::ssd_backward_dt",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<3>>(space, {0, 0, 0}, {B, H, n_chunks}),
      KOKKOS_LAMBDA(int b, int h, int c) {
        int const cs = c * chunk;
        int const ce = Kokkos::min(cs + chunk, L);
        T run = T(0);
        T s_bias = T(0);
        T s_a = T(0);
        T s_d = T(0);
        for (int t = ce - 1; t >= cs; --t) {
          run += dacs(b, t, h);
          T const ddtv = ddt(b, t, h) + run * A(h);
          T const g = ddtv * impl::sigmoid(dt_raw(b, t, h) + dt_bias(h));
          ddt(b, t, h) = g;
          s_bias += g;
          s_a += run * dtv(b, t, h);
          for (int p = 0; p < P; ++p) {
            s_d += dy(b, t, h, p) * x(b, t, h, p);
          }
        }
        part(b, h, c, 0) = s_bias;
        part(b, h, c, 1) = s_a;
        part(b, h, c, 2) = s_d;
      });
  auto const dbias = grads.ddt_bias;
  auto const dA = grads.dA;
  auto const dD = grads.dD;
  Kokkos::parallel_for(
      "hax::ssm::ssd_backward_params", Kokkos::RangePolicy<Space>(space, 0, H),
      KOKKOS_LAMBDA(int h) {
        T sb = T(0), sa = T(0), sd = T(0);
        for (int b = 0; b < B; ++b) {
          for (int c = 0; c < n_chunks; ++c) {
            sb += part(b, h, c, 0);
            sa += part(b, h, c, 1);
            sd += part(b, h, c, 2);
          }
        }
        dbias(h) += sb;
        dA(h) += sa;
        dD(h) += sd;
      });

  // Per (b, t, n): dC_t = Σ_{h,p} dy_t S_t and dB_t = Σ_{h,p} g_t dt_t x_t, each as an intra-chunk
  // quadratic form plus the inter-chunk term.
  auto const dB = grads.dB;
  auto const dC = grads.dC;
  Kokkos::parallel_for(
      "hax::ssm::ssd_backward_dbc",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<3>>(space, {0, 0, 0}, {B, L, N}),
      KOKKOS_LAMBDA(int b, int t, int n) {
        int const c = t / chunk;
        int const cs = c * chunk;
        int const last = Kokkos::min(cs + chunk, L) - 1;
        T sc = T(0);
        for (int j = cs; j <= t; ++j) {
          sc += w(b, t, j - cs) * Bm(b, j, n);
        }
        T sb = T(0);
        for (int i = t; i <= last; ++i) {
          sb += w(b, i, t - cs) * Cm(b, i, n);
        }
        for (int h = 0; h < H; ++h) {
          T const at = acs(b, t, h);
          T ic = T(0);
          T ib = T(0);
          for (int p = 0; p < P; ++p) {
            ic += dy(b, t, h, p) * states(b, h, c, p, n);
            ib += x(b, t, h, p) * G(b, h, c, p, n);
          }
          sc += Kokkos::exp(at) * ic;
          sb += dtv(b, t, h) * Kokkos::exp(acs(b, last, h) - at) * ib;
        }
        dC(b, t, n) = sc;
        dB(b, t, n) = sb;
      });
}

/// Overload on the default instance of dx's execution space.
template <class T, class Mem>
void ssd_backward(SsdInputs<T, Mem> const& in, SsdSaved<T, Mem> const& saved,
                  impl::const_view<T const****, Mem> const& dy, SsdGrads<T, Mem> const& grads) {
  using Space = typename Kokkos::View<T****, Kokkos::LayoutRight, Mem>::execution_space;
  ssd_backward(Space{}, in, saved, dy, grads);
}

/// One token of SSD (recurrent inference): S ← exp(dt A_h) S + dt x ⊗ B, y = S C + Dskip_h x with
/// dt = softplus(dt + dt_bias). Gives the same y_t as ssd_forward from a zero state.
///
/// \param state [in,out] (B, H, P, N) carried between calls (start from zeros).
/// \param x [in] (B, H, P); \param dt [in] (B, H) before softplus; \param dt_bias, A, Dskip [in]
/// (H); \param Bm, Cm [in] (B, N); \param y [out] (B, H, P). Asynchronous on `space`.
template <execution_space Space, class T, class Mem>
requires view_accessible_from<Kokkos::View<T*, Mem>, Space>
void ssd_step(Space const& space, Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& state,
              impl::const_view<T const***, Mem> const& x,
              impl::const_view<T const**, Mem> const& dt,
              impl::const_view<T const*, Mem> const& dt_bias,
              impl::const_view<T const*, Mem> const& A, impl::const_view<T const**, Mem> const& Bm,
              impl::const_view<T const**, Mem> const& Cm,
              impl::const_view<T const*, Mem> const& Dskip,
              Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& y) {
  char const* op = "hax::ssm::ssd_step";
  int const B = state.extent_int(0), H = state.extent_int(1), P = state.extent_int(2);
  int const N = state.extent_int(3);
  core::require(x.extent_int(0) == B && x.extent_int(1) == H && x.extent_int(2) == P &&
                    y.extent_int(0) == B && y.extent_int(1) == H && y.extent_int(2) == P &&
                    dt.extent_int(0) == B && dt.extent_int(1) == H,
                op, "x ", impl::shape_of(x), ", y ", impl::shape_of(y), " (B, H, P) and dt ",
                impl::shape_of(dt), " (B, H) must match state ", impl::shape_of(state),
                " (B, H, P, N)");
  core::require(dt_bias.extent_int(0) == H && A.extent_int(0) == H && Dskip.extent_int(0) == H &&
                    Bm.extent_int(0) == B && Bm.extent_int(1) == N && Cm.extent_int(0) == B &&
                    Cm.extent_int(1) == N,
                op, "dt_bias ", impl::shape_of(dt_bias), ", A ", impl::shape_of(A), ", Dskip ",
                impl::shape_of(Dskip), " (H) and B ", impl::shape_of(Bm), ", C ",
                impl::shape_of(Cm), " (B, N) must match state ", impl::shape_of(state));
  Kokkos::parallel_for(
      "hax::ssm::ssd_step",
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<3>>(space, {0, 0, 0}, {B, H, P}),
      KOKKOS_LAMBDA(int b, int h, int p) {
        T const v = impl::softplus(dt(b, h) + dt_bias(h));
        T const decay = Kokkos::exp(v * A(h));
        T const xv = x(b, h, p);
        T acc = T(0);
        for (int n = 0; n < N; ++n) {
          T const s = decay * state(b, h, p, n) + v * xv * Bm(b, n);
          state(b, h, p, n) = s;
          acc += s * Cm(b, n);
        }
        y(b, h, p) = acc + Dskip(h) * xv;
      });
}

/// Overload on the default instance of y's execution space.
template <class T, class Mem>
void ssd_step(Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& state,
              impl::const_view<T const***, Mem> const& x,
              impl::const_view<T const**, Mem> const& dt,
              impl::const_view<T const*, Mem> const& dt_bias,
              impl::const_view<T const*, Mem> const& A, impl::const_view<T const**, Mem> const& Bm,
              impl::const_view<T const**, Mem> const& Cm,
              impl::const_view<T const*, Mem> const& Dskip,
              Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& y) {
  using Space = typename Kokkos::View<T***, Kokkos::LayoutRight, Mem>::execution_space;
  ssd_step(Space{}, state, x, dt, dt_bias, A, Bm, Cm, Dskip, y);
}

}  // namespace hax::ssm
