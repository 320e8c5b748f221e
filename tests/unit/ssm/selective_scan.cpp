// SPDX-License-Identifier: MIT
#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <hax/core/error.hpp>
#include <hax/reference/ssm/selective_scan.hpp>
#include <hax/ssm/selective_scan.hpp>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;
using Mem = test_memory_space;

template <class T>
using view1 = Kokkos::View<T*, Kokkos::LayoutRight, Mem>;
template <class T>
using view2 = Kokkos::View<T**, Kokkos::LayoutRight, Mem>;
template <class T>
using view3 = Kokkos::View<T***, Kokkos::LayoutRight, Mem>;

/// A random problem: delta around softplus's knee, A negative (stable), as in Mamba.
template <class T>
hax::reference::ssm::SelectiveScanProblem<T> random_problem(std::size_t B, std::size_t L,
                                                            std::size_t D, std::size_t N,
                                                            std::uint64_t seed) {
  using hax::test::random_vector;
  hax::reference::ssm::SelectiveScanProblem<T> p{B, L, D, N};
  auto cast = [](std::vector<double> const& v) { return std::vector<T>(v.begin(), v.end()); };
  p.u = cast(random_vector(B * L * D, seed + 1));
  p.delta = cast(random_vector(B * L * D, seed + 2, -2.0, 1.0));
  p.delta_bias = cast(random_vector(D, seed + 3, -1.0, 0.5));
  p.A = cast(random_vector(D * N, seed + 4, -2.0, -0.1));
  p.Bm = cast(random_vector(B * L * N, seed + 5));
  p.Cm = cast(random_vector(B * L * N, seed + 6));
  p.Dskip = cast(random_vector(D, seed + 7));
  return p;
}

template <class V, class T>
void upload(V const& v, std::vector<T> const& x) {
  hax::test::from_vector(v, std::vector<double>(x.begin(), x.end()));
}

/// Device copies of a problem.
template <class T>
struct DeviceProblem {
  view3<T> u, delta;    // (B, L, D)
  view1<T> delta_bias;  // (D)
  view2<T> A;           // (D, N)
  view3<T> Bm, Cm;      // (B, L, N)
  view1<T> Dskip;       // (D)

  explicit DeviceProblem(hax::reference::ssm::SelectiveScanProblem<T> const& p)
      : u("u", p.B, p.L, p.D),
        delta("delta", p.B, p.L, p.D),
        delta_bias("delta_bias", p.D),
        A("A", p.D, p.N),
        Bm("Bm", p.B, p.L, p.N),
        Cm("Cm", p.B, p.L, p.N),
        Dskip("Dskip", p.D) {
    upload(u, p.u);
    upload(delta, p.delta);
    upload(delta_bias, p.delta_bias);
    upload(A, p.A);
    upload(Bm, p.Bm);
    upload(Cm, p.Cm);
    upload(Dskip, p.Dskip);
  }
  hax::ssm::SelectiveScanInputs<T, Mem> inputs() const {
    return {u, delta, delta_bias, A, Bm, Cm, Dskip};
  }
};

template <class T>
std::vector<double> as_double(std::vector<T> const& x) {
  return std::vector<double>(x.begin(), x.end());
}

template <class T>
std::vector<double> run_forward(hax::reference::ssm::SelectiveScanProblem<T> const& p, int chunk) {
  DeviceProblem<T> dev(p);
  view3<T> y("y", p.B, p.L, p.D);  // (B, L, D)
  test_space space;
  hax::ssm::selective_scan_forward(space, dev.inputs(), y, hax::ssm::ChunkBoundaries{chunk});
  space.fence();
  return hax::test::to_vector(y);
}

/// The chunk-start states (B, D, n_chunks, N) of the sequential recurrence, in double: the state
/// before each chunk; past a row's length (p.lengths) the state stays that at its last step.
template <class T>
std::vector<double> reference_chunk_states(hax::reference::ssm::SelectiveScanProblem<T> const& p,
                                           int chunk) {
  std::size_t const B = p.B, L = p.L, D = p.D, N = p.N;
  std::size_t const n_chunks = (L + chunk - 1) / chunk;
  std::vector<double> states(B * D * n_chunks * N, 0.0);
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t d = 0; d < D; ++d) {
      std::vector<double> h(N, 0.0);
      for (std::size_t t = 0; t < n_chunks * chunk; ++t) {
        if (t % chunk == 0) {
          for (std::size_t n = 0; n < N; ++n) {
            states[((b * D + d) * n_chunks + t / chunk) * N + n] = h[n];
          }
        }
        if (t >= p.length(b)) continue;
        double const x = double(p.delta[(b * L + t) * D + d]) + double(p.delta_bias[d]);
        double const dt = x > 20.0 ? x : std::log1p(std::exp(x));
        for (std::size_t n = 0; n < N; ++n) {
          h[n] = std::exp(dt * double(p.A[d * N + n])) * h[n] +
                 dt * double(p.Bm[(b * L + t) * N + n]) * double(p.u[(b * L + t) * D + d]);
        }
      }
    }
  }
  return states;
}

/// Checks every gradient of the device backward `g` against the reference's `gref`.
template <class T, class Grads>
void check_gradients_close(Grads const& g,
                           hax::reference::ssm::SelectiveScanGradients<T> const& gref, double rtol,
                           double atol) {
  using hax::test::check_close;
  using hax::test::to_vector;
  check_close(to_vector(g.du), as_double(gref.du), rtol, atol, "du");
  check_close(to_vector(g.ddelta), as_double(gref.ddelta), rtol, atol, "ddelta");
  check_close(to_vector(g.dA), as_double(gref.dA), rtol, atol, "dA");
  check_close(to_vector(g.dB), as_double(gref.dB), rtol, atol, "dB");
  check_close(to_vector(g.dC), as_double(gref.dC), rtol, atol, "dC");
  check_close(to_vector(g.ddelta_bias), as_double(gref.ddelta_bias), rtol, atol, "ddelta_bias");
  check_close(to_vector(g.dD), as_double(gref.dD), rtol, atol, "dD");
}

}  // namespace

TEMPLATE_TEST_CASE("selective scan: chunked forward and backward match the sequential reference",
                   "[ssm][selective_scan]", float, double) {
  using T = TestType;
  auto const L = GENERATE(1, 7, 100);
  auto const chunk = GENERATE(1, 3, 16, 64, 100, 257);
  CAPTURE(L, chunk);
  std::size_t const B = 2, D = 5, N = 6;
  auto const p = random_problem<T>(B, L, D, N, 100 + L);
  auto const dyh = hax::test::random_vector(B * L * D, 7);
  test_space space;
  DeviceProblem<T> dev(p);
  view3<T> y("y", B, L, D);  // (B, L, D)
  view3<T> dy("dy", B, L, D);
  hax::test::from_vector(dy, dyh);
  auto const saved =
      hax::ssm::selective_scan_forward(space, dev.inputs(), y, hax::ssm::ChunkBoundaries{chunk});
  CHECK(saved.chunk_states.extent_int(2) == (static_cast<int>(L) + chunk - 1) / chunk);

  // Parameter gradients start nonzero: the op must accumulate (+=) into them.
  hax::ssm::SelectiveScanGrads<T, Mem> g{view3<T>("du", B, L, D),    view3<T>("ddelta", B, L, D),
                                         view1<T>("ddelta_bias", D), view2<T>("dA", D, N),
                                         view3<T>("dB", B, L, N),    view3<T>("dC", B, L, N),
                                         view1<T>("dD", D)};
  auto const dbias0 = hax::test::fill_random(g.ddelta_bias, 11);
  auto const dA0 = hax::test::fill_random(g.dA, 12);
  auto const dD0 = hax::test::fill_random(g.dD, 13);
  hax::test::fill_random(g.du, 14);  // input gradients are overwritten
  hax::test::fill_random(g.dB, 15);
  hax::ssm::selective_scan_backward(space, dev.inputs(), saved, dy, g);
  space.fence();

  std::vector<T> dyT(dyh.begin(), dyh.end());
  auto const yref = hax::reference::ssm::selective_scan_forward(p);
  auto const gref = hax::reference::ssm::selective_scan_backward(p, dyT);
  using tol = hax::test::tolerance<T>;
  REQUIRE(hax::test::max_abs(as_double(yref)) > 0.1);
  hax::test::check_close(hax::test::to_vector(y), as_double(yref), tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(g.du), as_double(gref.du), tol::rtol, tol::atol,
                         "du");
  hax::test::check_close(hax::test::to_vector(g.ddelta), as_double(gref.ddelta), tol::rtol,
                         tol::atol, "ddelta");
  hax::test::check_close(hax::test::to_vector(g.dB), as_double(gref.dB), tol::rtol, tol::atol,
                         "dB");
  hax::test::check_close(hax::test::to_vector(g.dC), as_double(gref.dC), tol::rtol, tol::atol,
                         "dC");
  auto plus = [](std::vector<double> a, std::vector<T> const& b) {
    for (std::size_t i = 0; i < a.size(); ++i) {
      a[i] += static_cast<double>(b[i]);
    }
    return a;
  };
  hax::test::check_close(hax::test::to_vector(g.ddelta_bias), plus(dbias0, gref.ddelta_bias),
                         tol::rtol, tol::atol, "ddelta_bias");
  hax::test::check_close(hax::test::to_vector(g.dA), plus(dA0, gref.dA), tol::rtol, tol::atol,
                         "dA");
  hax::test::check_close(hax::test::to_vector(g.dD), plus(dD0, gref.dD), tol::rtol, tol::atol,
                         "dD");
}

TEST_CASE("selective scan: Checkpoint All equals chunk 1 and the reference",
          "[ssm][selective_scan]") {
  auto const p = random_problem<double>(2, 13, 3, 5, 5);
  test_space space;
  DeviceProblem<double> dev(p);
  view3<double> y("y", 2, 13, 3);
  auto const saved = hax::ssm::selective_scan_forward(space, dev.inputs(), y, hax::ssm::All{});
  space.fence();
  CHECK(saved.chunk == 1);
  CHECK(saved.chunk_states.extent_int(2) == 13);
  hax::test::check_close(hax::test::to_vector(y),
                         as_double(hax::reference::ssm::selective_scan_forward(p)), 1e-10, 1e-12,
                         "y");
}

TEMPLATE_TEST_CASE("selective scan: step mode equals the parallel forward", "[ssm][selective_scan]",
                   float, double) {
  using T = TestType;
  std::size_t const B = 2, L = 11, D = 3, N = 17;  // N > 16: the next state capacity
  auto const p = random_problem<T>(B, L, D, N, 21);
  auto const yfull = run_forward(p, 4);
  DeviceProblem<T> dev(p);
  test_space space;
  view3<T> state("state", B, D, N);  // (B, D, N), zero
  view2<T> ut("u_t", B, D), dt("delta_t", B, D), yt("y_t", B, D);
  view2<T> bt("B_t", B, N), ct("C_t", B, N);
  std::vector<double> ystep(B * L * D);
  for (std::size_t t = 0; t < L; ++t) {
    Kokkos::deep_copy(space, ut, Kokkos::subview(dev.u, Kokkos::ALL, t, Kokkos::ALL));
    Kokkos::deep_copy(space, dt, Kokkos::subview(dev.delta, Kokkos::ALL, t, Kokkos::ALL));
    Kokkos::deep_copy(space, bt, Kokkos::subview(dev.Bm, Kokkos::ALL, t, Kokkos::ALL));
    Kokkos::deep_copy(space, ct, Kokkos::subview(dev.Cm, Kokkos::ALL, t, Kokkos::ALL));
    hax::ssm::selective_scan_step(space, state, ut, dt, dev.delta_bias, dev.A, bt, ct, dev.Dskip,
                                  yt);
    space.fence();
    auto const y = hax::test::to_vector(yt);
    for (std::size_t b = 0; b < B; ++b) {
      for (std::size_t d = 0; d < D; ++d) {
        ystep[(b * L + t) * D + d] = y[b * D + d];
      }
    }
  }
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(ystep, yfull, tol::rtol, tol::atol, "y step vs parallel");
}

namespace {

/// Checks every gradient of loss = Σ dy ⊙ y against central finite differences of the device
/// forward in double, with `in` (dev's inputs, possibly with lengths).
void check_gradients_fd(DeviceProblem<double> const& dev,
                        hax::ssm::SelectiveScanInputs<double, Mem> const& in,
                        std::vector<double> const& dyh, int chunk) {
  int const B = dev.u.extent_int(0), L = dev.u.extent_int(1), D = dev.u.extent_int(2);
  int const N = dev.A.extent_int(1);
  test_space space;
  view3<double> y("y", B, L, D), dy("dy", B, L, D);
  hax::test::from_vector(dy, dyh);
  auto const saved =
      hax::ssm::selective_scan_forward(space, in, y, hax::ssm::ChunkBoundaries{chunk});
  hax::ssm::SelectiveScanGrads<double, Mem> g{
      view3<double>("du", B, L, D), view3<double>("ddelta", B, L, D), view1<double>("dbias", D),
      view2<double>("dA", D, N),    view3<double>("dB", B, L, N),     view3<double>("dC", B, L, N),
      view1<double>("dD", D)};
  hax::ssm::selective_scan_backward(space, in, saved, dy, g);
  space.fence();

  // loss(q) = Σ dy ⊙ y(q) with one input replaced by q, evaluated by the device forward.
  auto check = [&](auto const& view, auto const& grad, char const* what) {
    auto const x0 = hax::test::to_vector(view);
    auto loss = [&](std::vector<double> const& q) {
      hax::test::from_vector(view, q);
      view3<double> yq("yq", B, L, D);
      hax::ssm::selective_scan_forward(space, in, yq, hax::ssm::ChunkBoundaries{chunk});
      space.fence();
      auto const yv = hax::test::to_vector(yq);
      double s = 0;
      for (std::size_t i = 0; i < yv.size(); ++i) {
        s += dyh[i] * yv[i];
      }
      return s;
    };
    hax::test::check_gradient(x0, hax::test::to_vector(grad), loss, what);
    hax::test::from_vector(view, x0);
  };
  check(dev.u, g.du, "du");
  check(dev.delta, g.ddelta, "ddelta");
  check(dev.delta_bias, g.ddelta_bias, "ddelta_bias");
  check(dev.A, g.dA, "dA");
  check(dev.Bm, g.dB, "dB");
  check(dev.Cm, g.dC, "dC");
  check(dev.Dskip, g.dD, "dD");
}

}  // namespace

TEST_CASE("selective scan: finite-difference gradients in double", "[ssm][selective_scan]") {
  std::size_t const B = 2, L = 9, D = 3, N = 4;
  int const chunk = 4;  // two full chunks and a partial one
  auto const p = random_problem<double>(B, L, D, N, 31);
  DeviceProblem<double> dev(p);
  check_gradients_fd(dev, dev.inputs(), hax::test::random_vector(B * L * D, 32), chunk);
}

TEST_CASE("selective scan: finite-difference gradients in double with lengths",
          "[ssm][selective_scan]") {
  std::size_t const B = 3, L = 11, D = 3, N = 4;
  int const chunk = 4;
  auto const p = random_problem<double>(B, L, D, N, 33);
  DeviceProblem<double> dev(p);
  view1<int> len_view("lengths", B);
  hax::test::from_vector(len_view, std::vector<double>{7, 11, 2});
  auto in = dev.inputs();
  in.lengths = len_view;
  check_gradients_fd(dev, in, hax::test::random_vector(B * L * D, 34), chunk);
}

TEST_CASE("selective scan: bad shapes throw hax::invalid_argument naming the op",
          "[ssm][selective_scan]") {
  using Catch::Matchers::ContainsSubstring;
  auto const p = random_problem<float>(2, 5, 3, 4, 41);
  DeviceProblem<float> dev(p);
  test_space space;
  view3<float> y("y", 2, 5, 3);
  auto in = dev.inputs();
  SECTION("B with the wrong state size") {
    in.Bm = view3<float>("Bm", 2, 5, 3);
    CHECK_THROWS_WITH(hax::ssm::selective_scan_forward(space, in, y),
                      ContainsSubstring("hax::ssm::selective_scan_forward") &&
                          ContainsSubstring("(2, 5, 3)") && ContainsSubstring("(3, 4)"));
  }
  SECTION("y with the wrong length") {
    view3<float> y_bad("y", 2, 4, 3);
    CHECK_THROWS_AS(hax::ssm::selective_scan_forward(space, in, y_bad), hax::invalid_argument);
  }
  SECTION("lengths of the wrong size") {
    view1<int> lengths("lengths", 3);
    in.lengths = lengths;
    CHECK_THROWS_WITH(hax::ssm::selective_scan_forward(space, in, y),
                      ContainsSubstring("hax::ssm::selective_scan_forward") &&
                          ContainsSubstring("lengths (3)") && ContainsSubstring("empty or (B)"));
  }
  SECTION("chunk 0") {
    CHECK_THROWS_WITH(hax::ssm::selective_scan_forward(space, in, y, hax::ssm::ChunkBoundaries{0}),
                      ContainsSubstring("chunk"));
  }
  SECTION("state size beyond the supported maximum") {
    in.A = view2<float>("A", 3, 300);
    in.Bm = view3<float>("Bm", 2, 5, 300);
    in.Cm = view3<float>("Cm", 2, 5, 300);
    CHECK_THROWS_WITH(hax::ssm::selective_scan_forward(space, in, y), ContainsSubstring("300"));
  }
  SECTION("backward with saved states of another chunk") {
    auto const saved = hax::ssm::selective_scan_forward(space, in, y, hax::ssm::ChunkBoundaries{2});
    auto bad = saved;
    bad.chunk = 1;
    hax::ssm::SelectiveScanGrads<float, Mem> g{
        view3<float>("du", 2, 5, 3), view3<float>("ddelta", 2, 5, 3), view1<float>("db", 3),
        view2<float>("dA", 3, 4),    view3<float>("dB", 2, 5, 4),     view3<float>("dC", 2, 5, 4),
        view1<float>("dD", 3)};
    CHECK_THROWS_WITH(hax::ssm::selective_scan_backward(space, in, bad, y, g),
                      ContainsSubstring("hax::ssm::selective_scan_backward") &&
                          ContainsSubstring("chunk_states"));
  }
  SECTION("step with a mismatched state") {
    view3<float> state("state", 2, 3, 5);
    view2<float> ut("u", 2, 3), bt("b", 2, 4), yt("y", 2, 3);
    CHECK_THROWS_WITH(hax::ssm::selective_scan_step(space, state, ut, ut, in.delta_bias, in.A, bt,
                                                    bt, in.Dskip, yt),
                      ContainsSubstring("hax::ssm::selective_scan_step"));
  }
}

TEST_CASE("selective scan: any small dimension works (forward and backward vs reference)",
          "[ssm][selective_scan]") {
  struct Dims {
    std::size_t B, L, D, N;
    int chunk;
  };
  auto const dims = GENERATE(Dims{1, 1, 1, 1, 1}, Dims{1, 5, 1, 65, 2}, Dims{3, 4, 7, 2, 3});
  CAPTURE(dims.B, dims.L, dims.D, dims.N, dims.chunk);
  auto const p = random_problem<double>(dims.B, dims.L, dims.D, dims.N, 81);
  auto const dyh = hax::test::random_vector(dims.B * dims.L * dims.D, 82);
  test_space space;
  DeviceProblem<double> dev(p);
  view3<double> y("y", dims.B, dims.L, dims.D), dy("dy", dims.B, dims.L, dims.D);
  hax::test::from_vector(dy, dyh);
  auto const saved = hax::ssm::selective_scan_forward(space, dev.inputs(), y,
                                                      hax::ssm::ChunkBoundaries{dims.chunk});
  hax::ssm::SelectiveScanGrads<double, Mem> g{view3<double>("du", dims.B, dims.L, dims.D),
                                              view3<double>("ddelta", dims.B, dims.L, dims.D),
                                              view1<double>("db", dims.D),
                                              view2<double>("dA", dims.D, dims.N),
                                              view3<double>("dB", dims.B, dims.L, dims.N),
                                              view3<double>("dC", dims.B, dims.L, dims.N),
                                              view1<double>("dD", dims.D)};
  hax::ssm::selective_scan_backward(space, dev.inputs(), saved, dy, g);
  space.fence();
  auto const gref = hax::reference::ssm::selective_scan_backward(p, std::vector<double>(dyh));
  hax::test::check_close(hax::test::to_vector(y), hax::reference::ssm::selective_scan_forward(p),
                         1e-10, 1e-12, "y");
  check_gradients_close(g, gref, 1e-10, 1e-12);
}

TEMPLATE_TEST_CASE("selective scan: every schedule and layout at awkward sizes",
                   "[ssm][selective_scan]", float, double) {
  // Both forward schedules (the public forward picks one by the device's size), with the states
  // on the lanes or in registers, give the same y and chunk-start states as the reference, and
  // the backward in the same layout matches it: N and D not
  // powers of two nor multiples of a channel block, L not a multiple of the chunk, chunk > L, D
  // = 1.
  using T = TestType;
  struct Dims {
    std::size_t B, L, D, N;
    int chunk;
  };
  // The Mamba default N = 16 with several register sub-chunks per chunk and several groups of 32
  // channels, and N = 100 (the largest register capacity).
  auto const dims = GENERATE(Dims{2, 37, 19, 5, 8}, Dims{1, 64, 33, 17, 64}, Dims{3, 29, 1, 3, 7},
                             Dims{1, 23, 18, 40, 100}, Dims{2, 50, 5, 1, 1},
                             Dims{2, 150, 70, 16, 64}, Dims{1, 77, 33, 16, 17},
                             Dims{1, 40, 5, 100, 9});
  auto const chunk_parallel = GENERATE(false, true);
  auto const layout =
      GENERATE(hax::ssm::impl::ScanLayout::lanes, hax::ssm::impl::ScanLayout::registers);
  CAPTURE(dims.B, dims.L, dims.D, dims.N, dims.chunk, chunk_parallel, static_cast<int>(layout));
  auto const p = random_problem<T>(dims.B, dims.L, dims.D, dims.N, 400 + dims.L);
  auto const dyh = hax::test::random_vector(dims.B * dims.L * dims.D, 401);
  test_space space;
  DeviceProblem<T> dev(p);
  view3<T> y("y", dims.B, dims.L, dims.D), dy("dy", dims.B, dims.L, dims.D);
  hax::test::from_vector(dy, dyh);
  int const n_chunks = (static_cast<int>(dims.L) + dims.chunk - 1) / dims.chunk;
  hax::ssm::SelectiveScanSaved<T, Mem> saved{
      Kokkos::View<T****, Kokkos::LayoutRight, Mem>("states", dims.B, dims.D, n_chunks, dims.N),
      dims.chunk};
  hax::ssm::impl::selective_scan_forward_run(space, dev.inputs(), y, saved, chunk_parallel, layout);
  hax::ssm::SelectiveScanGrads<T, Mem> g{view3<T>("du", dims.B, dims.L, dims.D),
                                         view3<T>("ddelta", dims.B, dims.L, dims.D),
                                         view1<T>("db", dims.D),
                                         view2<T>("dA", dims.D, dims.N),
                                         view3<T>("dB", dims.B, dims.L, dims.N),
                                         view3<T>("dC", dims.B, dims.L, dims.N),
                                         view1<T>("dD", dims.D)};
  hax::ssm::impl::selective_scan_backward_run(space, dev.inputs(), saved, dy, g, layout);
  space.fence();
  // The chunk-start states: the sequential recurrence of the reference, sampled at chunk starts.
  auto const states_ref = reference_chunk_states(p, dims.chunk);
  std::vector<T> dyT(dyh.begin(), dyh.end());
  auto const yref = hax::reference::ssm::selective_scan_forward(p);
  auto const gref = hax::reference::ssm::selective_scan_backward(p, dyT);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(y), as_double(yref), tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(saved.chunk_states), states_ref, tol::rtol, tol::atol,
                         "chunk states");
  check_gradients_close(g, gref, tol::rtol, tol::atol);
}

TEMPLATE_TEST_CASE("selective scan: lengths make the steps after them absent (every schedule and "
                   "layout vs reference)",
                   "[ssm][selective_scan]", float, double) {
  // Rows that end inside a chunk, on a chunk boundary, at 0, 1, L and past L (clamped to L):
  // y is 0 after a row's length, dy there is ignored and every gradient there is 0; the
  // chunk-start states of the chunks wholly past a row's end hold its last present state.
  using T = TestType;
  auto const L = GENERATE(37, 70);
  auto const chunk = GENERATE(5, 16, 64);
  auto const chunk_parallel = GENERATE(false, true);
  auto const layout =
      GENERATE(hax::ssm::impl::ScanLayout::lanes, hax::ssm::impl::ScanLayout::registers);
  CAPTURE(L, chunk, chunk_parallel, static_cast<int>(layout));
  std::size_t const B = 6, D = 35, N = 16;  // two groups of 32 channels, the second partial
  std::vector<int> const lengths = {L, 0, 1, 16, 33, L + 9};
  auto p = random_problem<T>(B, static_cast<std::size_t>(L), D, N, 500 + L);
  auto const dyh = hax::test::random_vector(B * L * D, 501);  // nonzero at absent steps too
  test_space space;
  DeviceProblem<T> dev(p);
  view1<int> len_view("lengths", B);
  auto const len_host = Kokkos::create_mirror_view(len_view);
  for (std::size_t b = 0; b < B; ++b) {
    len_host(b) = lengths[b];
    p.lengths.push_back(static_cast<std::size_t>(lengths[b]));
  }
  Kokkos::deep_copy(len_view, len_host);
  auto in = dev.inputs();
  in.lengths = len_view;
  view3<T> y("y", B, L, D), dy("dy", B, L, D);
  hax::test::fill_random(y, 502);  // every element must be written
  hax::test::from_vector(dy, dyh);
  int const n_chunks = (L + chunk - 1) / chunk;
  hax::ssm::SelectiveScanSaved<T, Mem> saved{
      Kokkos::View<T****, Kokkos::LayoutRight, Mem>("states", B, D, n_chunks, N), chunk};
  hax::test::fill_random(saved.chunk_states, 503);
  hax::ssm::impl::selective_scan_forward_run(space, in, y, saved, chunk_parallel, layout);
  hax::ssm::SelectiveScanGrads<T, Mem> g{view3<T>("du", B, L, D), view3<T>("ddelta", B, L, D),
                                         view1<T>("db", D),       view2<T>("dA", D, N),
                                         view3<T>("dB", B, L, N), view3<T>("dC", B, L, N),
                                         view1<T>("dD", D)};
  hax::test::fill_random(g.du, 504);  // overwritten, absent steps included
  hax::test::fill_random(g.ddelta, 505);
  hax::test::fill_random(g.dB, 506);
  hax::test::fill_random(g.dC, 507);
  hax::ssm::impl::selective_scan_backward_run(space, in, saved, dy, g, layout);
  space.fence();

  // Chunk-start states: the present recurrence sampled at chunk starts, held past the row's end.
  auto const states_ref = reference_chunk_states(p, chunk);
  auto const yref = hax::reference::ssm::selective_scan_forward(p);
  auto const gref =
      hax::reference::ssm::selective_scan_backward(p, std::vector<T>(dyh.begin(), dyh.end()));
  using tol = hax::test::tolerance<T>;
  REQUIRE(hax::test::max_abs(as_double(yref)) > 0.1);
  hax::test::check_close(hax::test::to_vector(y), as_double(yref), tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(saved.chunk_states), states_ref, tol::rtol, tol::atol,
                         "chunk states");
  check_gradients_close(g, gref, tol::rtol, tol::atol);

  // The reference itself: a row's present steps equal those of the full sequence (causal), and
  // the absent ones are 0.
  auto full = p;
  full.lengths.clear();
  auto const yfull = hax::reference::ssm::selective_scan_forward(full);
  std::size_t mismatches = 0;
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t t = 0; t < static_cast<std::size_t>(L); ++t) {
      for (std::size_t d = 0; d < D; ++d) {
        std::size_t const at = (b * L + t) * D + d;
        mismatches += yref[at] != (t < p.length(b) ? yfull[at] : T(0)) ? 1 : 0;
      }
    }
  }
  CHECK(mismatches == 0);
}
