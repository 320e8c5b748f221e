// SPDX-License-Identifier: MIT
#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#include <cstddef>
#include <cstdint>
#include <hax/core/error.hpp>
#include <hax/reference/ssm/ssd.hpp>
#include <hax/ssm/ssd.hpp>
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
template <class T>
using view4 = Kokkos::View<T****, Kokkos::LayoutRight, Mem>;

/// A random problem with A < 0 and dt around softplus's knee, as Mamba-2 has them.
template <class T>
hax::reference::ssm::SsdProblem<T> random_problem(std::size_t B, std::size_t L, std::size_t H,
                                                  std::size_t P, std::size_t N,
                                                  std::uint64_t seed) {
  using hax::test::random_vector;
  hax::reference::ssm::SsdProblem<T> q{B, L, H, P, N};
  auto cast = [](std::vector<double> const& v) { return std::vector<T>(v.begin(), v.end()); };
  q.x = cast(random_vector(B * L * H * P, seed + 1));
  q.dt = cast(random_vector(B * L * H, seed + 2, -2.0, 1.0));
  q.dt_bias = cast(random_vector(H, seed + 3, -1.0, 0.5));
  q.A = cast(random_vector(H, seed + 4, -1.5, -0.1));
  q.Bm = cast(random_vector(B * L * N, seed + 5));
  q.Cm = cast(random_vector(B * L * N, seed + 6));
  q.Dskip = cast(random_vector(H, seed + 7));
  return q;
}

template <class V, class T>
void upload(V const& v, std::vector<T> const& x) {
  hax::test::from_vector(v, std::vector<double>(x.begin(), x.end()));
}

template <class T>
struct DeviceProblem {
  view4<T> x;                  // (B, L, H, P)
  view3<T> dt;                 // (B, L, H)
  view1<T> dt_bias, A, Dskip;  // (H)
  view3<T> Bm, Cm;             // (B, L, N)

  explicit DeviceProblem(hax::reference::ssm::SsdProblem<T> const& q)
      : x("x", q.B, q.L, q.H, q.P),
        dt("dt", q.B, q.L, q.H),
        dt_bias("dt_bias", q.H),
        A("A", q.H),
        Dskip("Dskip", q.H),
        Bm("Bm", q.B, q.L, q.N),
        Cm("Cm", q.B, q.L, q.N) {
    upload(x, q.x);
    upload(dt, q.dt);
    upload(dt_bias, q.dt_bias);
    upload(A, q.A);
    upload(Dskip, q.Dskip);
    upload(Bm, q.Bm);
    upload(Cm, q.Cm);
  }
  hax::ssm::SsdInputs<T, Mem> inputs() const { return {x, dt, dt_bias, A, Bm, Cm, Dskip}; }
};

template <class T>
hax::ssm::SsdGrads<T, Mem> make_grads(std::size_t B, std::size_t L, std::size_t H, std::size_t P,
                                      std::size_t N) {
  return {view4<T>("dx", B, L, H, P), view3<T>("ddt", B, L, H), view1<T>("ddt_bias", H),
          view1<T>("dA", H),          view3<T>("dB", B, L, N),  view3<T>("dC", B, L, N),
          view1<T>("dD", H)};
}

template <class T>
std::vector<double> as_double(std::vector<T> const& x) {
  return std::vector<double>(x.begin(), x.end());
}

/// Checks every SSD gradient (of x, dt, dt_bias, A, B, C, Dskip) by finite differences in double
/// for the loss Σ dy ⊙ ssd_forward(in); `in` views dev's data (and may carry lengths).
void check_gradients_fd(DeviceProblem<double> const& dev,
                        hax::ssm::SsdInputs<double, Mem> const& in,
                        std::vector<double> const& dyh, int chunk) {
  int const B = dev.x.extent_int(0), L = dev.x.extent_int(1), H = dev.x.extent_int(2);
  int const P = dev.x.extent_int(3), N = dev.Bm.extent_int(2);
  test_space space;
  view4<double> y("y", B, L, H, P), dy("dy", B, L, H, P);
  hax::test::from_vector(dy, dyh);
  auto const saved = hax::ssm::ssd_forward(space, in, y, hax::ssm::ChunkBoundaries{chunk});
  auto g = make_grads<double>(B, L, H, P, N);
  hax::ssm::ssd_backward(space, in, saved, dy, g);
  space.fence();
  auto check = [&](auto const& view, auto const& grad, char const* what) {
    auto const x0 = hax::test::to_vector(view);
    auto loss = [&](std::vector<double> const& v) {
      hax::test::from_vector(view, v);
      view4<double> yq("yq", B, L, H, P);
      hax::ssm::ssd_forward(space, in, yq, hax::ssm::ChunkBoundaries{chunk});
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
  check(dev.x, g.dx, "dx");
  check(dev.dt, g.ddt, "ddt");
  check(dev.dt_bias, g.ddt_bias, "ddt_bias");
  check(dev.A, g.dA, "dA");
  check(dev.Bm, g.dB, "dB");
  check(dev.Cm, g.dC, "dC");
  check(dev.Dskip, g.dD, "dD");
}

}  // namespace

TEMPLATE_TEST_CASE("ssd: chunked forward and backward match the sequential reference", "[ssm][ssd]",
                   float, double) {
  using T = TestType;
  auto const L = GENERATE(1, 7, 100);
  auto const chunk = GENERATE(1, 3, 16, 64, 100, 257);
  CAPTURE(L, chunk);
  std::size_t const B = 2, H = 3, P = 4, N = 5;
  auto const q = random_problem<T>(B, L, H, P, N, 200 + L);
  auto const dyh = hax::test::random_vector(B * L * H * P, 9);
  test_space space;
  DeviceProblem<T> dev(q);
  view4<T> y("y", B, L, H, P);  // (B, L, H, P)
  view4<T> dy("dy", B, L, H, P);
  hax::test::from_vector(dy, dyh);
  auto const saved =
      hax::ssm::ssd_forward(space, dev.inputs(), y, hax::ssm::ChunkBoundaries{chunk});
  CHECK(saved.chunk_states.extent_int(2) == (static_cast<int>(L) + chunk - 1) / chunk);
  auto g = make_grads<T>(B, L, H, P, N);
  auto const dbias0 = hax::test::fill_random(g.ddt_bias, 11);  // accumulated into
  auto const dA0 = hax::test::fill_random(g.dA, 12);
  auto const dD0 = hax::test::fill_random(g.dD, 13);
  hax::test::fill_random(g.dx, 14);  // overwritten
  hax::test::fill_random(g.ddt, 15);
  hax::test::fill_random(g.dB, 16);
  hax::ssm::ssd_backward(space, dev.inputs(), saved, dy, g);
  space.fence();

  std::vector<T> dyT(dyh.begin(), dyh.end());
  auto const yref = hax::reference::ssm::ssd_forward(q);
  auto const gref = hax::reference::ssm::ssd_backward(q, dyT);
  using tol = hax::test::tolerance<T>;
  REQUIRE(hax::test::max_abs(as_double(yref)) > 0.1);
  hax::test::check_close(hax::test::to_vector(y), as_double(yref), tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(g.dx), as_double(gref.dx), tol::rtol, tol::atol,
                         "dx");
  hax::test::check_close(hax::test::to_vector(g.ddt), as_double(gref.ddt), tol::rtol, tol::atol,
                         "ddt");
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
  hax::test::check_close(hax::test::to_vector(g.ddt_bias), plus(dbias0, gref.ddt_bias), tol::rtol,
                         tol::atol, "ddt_bias");
  hax::test::check_close(hax::test::to_vector(g.dA), plus(dA0, gref.dA), tol::rtol, tol::atol,
                         "dA");
  hax::test::check_close(hax::test::to_vector(g.dD), plus(dD0, gref.dD), tol::rtol, tol::atol,
                         "dD");
}

TEMPLATE_TEST_CASE("ssd: step mode equals the parallel forward", "[ssm][ssd]", float, double) {
  using T = TestType;
  std::size_t const B = 2, L = 11, H = 2, P = 3, N = 5;
  auto const q = random_problem<T>(B, L, H, P, N, 51);
  DeviceProblem<T> dev(q);
  test_space space;
  view4<T> yfull("y", B, L, H, P);
  hax::ssm::ssd_forward(space, dev.inputs(), yfull, hax::ssm::ChunkBoundaries{4});
  view4<T> state("state", B, H, P, N);  // (B, H, P, N), zero
  view3<T> xt("x_t", B, H, P), yt("y_t", B, H, P);
  view2<T> dtt("dt_t", B, H), bt("B_t", B, N), ct("C_t", B, N);
  std::vector<double> ystep(B * L * H * P);
  for (std::size_t t = 0; t < L; ++t) {
    Kokkos::deep_copy(space, xt, Kokkos::subview(dev.x, Kokkos::ALL, t, Kokkos::ALL, Kokkos::ALL));
    Kokkos::deep_copy(space, dtt, Kokkos::subview(dev.dt, Kokkos::ALL, t, Kokkos::ALL));
    Kokkos::deep_copy(space, bt, Kokkos::subview(dev.Bm, Kokkos::ALL, t, Kokkos::ALL));
    Kokkos::deep_copy(space, ct, Kokkos::subview(dev.Cm, Kokkos::ALL, t, Kokkos::ALL));
    hax::ssm::ssd_step(space, state, xt, dtt, dev.dt_bias, dev.A, bt, ct, dev.Dskip, yt);
    space.fence();
    auto const y = hax::test::to_vector(yt);
    for (std::size_t b = 0; b < B; ++b) {
      for (std::size_t i = 0; i < H * P; ++i) {
        ystep[(b * L + t) * H * P + i] = y[b * H * P + i];
      }
    }
  }
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(ystep, hax::test::to_vector(yfull), tol::rtol, tol::atol,
                         "y step vs parallel");
}

TEST_CASE("ssd: finite-difference gradients in double", "[ssm][ssd]") {
  std::size_t const B = 2, L = 9, H = 2, P = 3, N = 4;
  int const chunk = 4;  // two full chunks and a partial one
  auto const q = random_problem<double>(B, L, H, P, N, 61);
  DeviceProblem<double> dev(q);
  check_gradients_fd(dev, dev.inputs(), hax::test::random_vector(B * L * H * P, 62), chunk);
}

TEST_CASE("ssd: bad shapes throw hax::invalid_argument naming the op", "[ssm][ssd]") {
  using Catch::Matchers::ContainsSubstring;
  auto const q = random_problem<float>(2, 5, 2, 3, 4, 71);
  DeviceProblem<float> dev(q);
  test_space space;
  view4<float> y("y", 2, 5, 2, 3);
  auto in = dev.inputs();
  SECTION("dt with the wrong number of heads") {
    in.dt = view3<float>("dt", 2, 5, 3);
    CHECK_THROWS_WITH(hax::ssm::ssd_forward(space, in, y),
                      ContainsSubstring("hax::ssm::ssd_forward") &&
                          ContainsSubstring("(2, 5, 3)") && ContainsSubstring("(2, 5, 2, 3)"));
  }
  SECTION("C with another state size than B") {
    in.Cm = view3<float>("Cm", 2, 5, 6);
    CHECK_THROWS_WITH(hax::ssm::ssd_forward(space, in, y),
                      ContainsSubstring("(2, 5, 6)") && ContainsSubstring("(2, 5, 4)"));
  }
  SECTION("y with the wrong head dim") {
    view4<float> y_bad("y", 2, 5, 2, 4);
    CHECK_THROWS_AS(hax::ssm::ssd_forward(space, in, y_bad), hax::invalid_argument);
  }
  SECTION("lengths of another batch size") {
    in.lengths = view1<int>("lengths", 3);
    CHECK_THROWS_WITH(hax::ssm::ssd_forward(space, in, y),
                      ContainsSubstring("lengths") && ContainsSubstring("(3)") &&
                          ContainsSubstring("(2, 5, 2, 3)"));
  }
  SECTION("chunk 0") {
    CHECK_THROWS_WITH(hax::ssm::ssd_forward(space, in, y, hax::ssm::ChunkBoundaries{0}),
                      ContainsSubstring("chunk"));
  }
  SECTION("backward with saved states of another chunk") {
    auto saved = hax::ssm::ssd_forward(space, in, y, hax::ssm::ChunkBoundaries{2});
    saved.chunk = 4;
    auto g = make_grads<float>(2, 5, 2, 3, 4);
    CHECK_THROWS_WITH(
        hax::ssm::ssd_backward(space, in, saved, y, g),
        ContainsSubstring("hax::ssm::ssd_backward") && ContainsSubstring("chunk_states"));
  }
  SECTION("step with a mismatched state") {
    view4<float> state("state", 2, 2, 3, 5);
    view3<float> xt("x", 2, 2, 3);
    view2<float> dtt("dt", 2, 2), bt("b", 2, 4);
    CHECK_THROWS_WITH(
        hax::ssm::ssd_step(space, state, xt, dtt, in.dt_bias, in.A, bt, bt, in.Dskip, xt),
        ContainsSubstring("hax::ssm::ssd_step"));
  }
}

TEST_CASE("ssd: any small dimension works (forward and backward vs reference)", "[ssm][ssd]") {
  struct Dims {
    std::size_t B, L, H, P, N;
    int chunk;
  };
  auto const dims =
      GENERATE(Dims{1, 1, 1, 1, 1, 1}, Dims{1, 6, 1, 7, 1, 4}, Dims{3, 5, 5, 1, 9, 2});
  CAPTURE(dims.B, dims.L, dims.H, dims.P, dims.N, dims.chunk);
  auto const q = random_problem<double>(dims.B, dims.L, dims.H, dims.P, dims.N, 91);
  auto const dyh = hax::test::random_vector(dims.B * dims.L * dims.H * dims.P, 92);
  test_space space;
  DeviceProblem<double> dev(q);
  view4<double> y("y", dims.B, dims.L, dims.H, dims.P), dy("dy", dims.B, dims.L, dims.H, dims.P);
  hax::test::from_vector(dy, dyh);
  auto const saved =
      hax::ssm::ssd_forward(space, dev.inputs(), y, hax::ssm::ChunkBoundaries{dims.chunk});
  auto g = make_grads<double>(dims.B, dims.L, dims.H, dims.P, dims.N);
  hax::ssm::ssd_backward(space, dev.inputs(), saved, dy, g);
  space.fence();
  auto const gref = hax::reference::ssm::ssd_backward(q, std::vector<double>(dyh));
  hax::test::check_close(hax::test::to_vector(y), hax::reference::ssm::ssd_forward(q), 1e-10, 1e-12,
                         "y");
  hax::test::check_close(hax::test::to_vector(g.dx), gref.dx, 1e-10, 1e-12, "dx");
  hax::test::check_close(hax::test::to_vector(g.ddt), gref.ddt, 1e-10, 1e-12, "ddt");
  hax::test::check_close(hax::test::to_vector(g.dA), gref.dA, 1e-10, 1e-12, "dA");
  hax::test::check_close(hax::test::to_vector(g.dB), gref.dB, 1e-10, 1e-12, "dB");
  hax::test::check_close(hax::test::to_vector(g.dC), gref.dC, 1e-10, 1e-12, "dC");
}

TEMPLATE_TEST_CASE("ssd: team tiling at awkward sizes matches the reference", "[ssm][ssd]", float,
                   double) {
  // P, N and chunks that are not powers of two, L not a multiple of the chunk, chunks longer than
  // a tile (several tiles per chunk, the last one ragged) and longer than L, one head. The last
  // shape (P = 24, N = 60) is too large for the kernels to stage the heads' states in team scratch
  // (impl::ssd_stage_states), the others stage them: both paths are checked.
  using T = TestType;
  struct Dims {
    std::size_t B, L, H, P, N;
    int chunk;
  };
  auto const dims =
      GENERATE(Dims{2, 150, 1, 5, 7, 13}, Dims{1, 150, 1, 5, 7, 70}, Dims{1, 150, 2, 3, 11, 150},
               Dims{2, 97, 1, 6, 3, 1000}, Dims{1, 131, 3, 17, 9, 129}, Dims{1, 40, 2, 24, 60, 40});
  CAPTURE(dims.B, dims.L, dims.H, dims.P, dims.N, dims.chunk);
  auto const q = random_problem<T>(dims.B, dims.L, dims.H, dims.P, dims.N, 300 + dims.L);
  auto const dyh = hax::test::random_vector(dims.B * dims.L * dims.H * dims.P, 301);
  test_space space;
  DeviceProblem<T> dev(q);
  view4<T> y("y", dims.B, dims.L, dims.H, dims.P), dy("dy", dims.B, dims.L, dims.H, dims.P);
  hax::test::from_vector(dy, dyh);
  auto const saved =
      hax::ssm::ssd_forward(space, dev.inputs(), y, hax::ssm::ChunkBoundaries{dims.chunk});
  auto g = make_grads<T>(dims.B, dims.L, dims.H, dims.P, dims.N);
  hax::test::fill_random(g.dx, 302);  // overwritten
  hax::test::fill_random(g.dB, 303);
  hax::ssm::ssd_backward(space, dev.inputs(), saved, dy, g);
  space.fence();
  std::vector<T> dyT(dyh.begin(), dyh.end());
  auto const yref = hax::reference::ssm::ssd_forward(q);
  auto const gref = hax::reference::ssm::ssd_backward(q, dyT);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(y), as_double(yref), tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(g.dx), as_double(gref.dx), tol::rtol, tol::atol,
                         "dx");
  hax::test::check_close(hax::test::to_vector(g.ddt), as_double(gref.ddt), tol::rtol, tol::atol,
                         "ddt");
  hax::test::check_close(hax::test::to_vector(g.dB), as_double(gref.dB), tol::rtol, tol::atol,
                         "dB");
  hax::test::check_close(hax::test::to_vector(g.dC), as_double(gref.dC), tol::rtol, tol::atol,
                         "dC");
  hax::test::check_close(hax::test::to_vector(g.ddt_bias), as_double(gref.ddt_bias), tol::rtol,
                         tol::atol, "ddt_bias");
  hax::test::check_close(hax::test::to_vector(g.dA), as_double(gref.dA), tol::rtol, tol::atol,
                         "dA");
  hax::test::check_close(hax::test::to_vector(g.dD), as_double(gref.dD), tol::rtol, tol::atol,
                         "dD");
}

TEST_CASE("ssd: tiles never straddle a chunk boundary", "[ssm][ssd]") {
  // Every chunk boundary is a tile boundary and the tiles cover [0, L) exactly once, for chunks
  // below, at and above the largest tile and above L.
  auto const L = GENERATE(1, 63, 64, 65, 300, 1057);
  auto const chunk = GENERATE(1, 7, 64, 65, 100, 256, 2000);
  auto const fit = GENERATE(64, 56, 19);
  CAPTURE(L, chunk, fit);
  auto const tl = hax::ssm::impl::ssd_make_tiles(
      "test", L, chunk, [&](int q) -> std::size_t { return q <= fit ? 0 : 1u << 30; });
  CHECK(tl.tile <= fit);
  CHECK(tl.tile <= hax::ssm::impl::kSsdMaxTile);
  std::vector<int> covered(static_cast<std::size_t>(L), 0);
  for (int k = 0; k < tl.n_tiles; ++k) {
    int start = 0, len = 0;
    tl.range(k, start, len);
    if (k % tl.per_chunk == 0) {
      CHECK(start == (k / tl.per_chunk) * chunk);  // a chunk starts with its first tile
    }
    for (int t = start; t < start + len; ++t) {
      REQUIRE(t < L);
      CHECK(t / chunk == k / tl.per_chunk);  // inside its chunk
      ++covered[static_cast<std::size_t>(t)];
    }
  }
  for (int c : covered) {
    REQUIRE(c == 1);
  }
}

TEMPLATE_TEST_CASE("ssd: lengths make the steps after them absent (forward and backward vs "
                   "reference)",
                   "[ssm][ssd]", float, double) {
  // Rows that end inside a tile, on a tile or chunk boundary, at 0, at L and past L (clamped to
  // L), with chunks of one tile and of several (chunk 64 has two tiles of 32 in the backward):
  // y is 0 after a row's length, dy there is ignored, and every gradient there is 0.
  using T = TestType;
  auto const L = GENERATE(37, 130);
  auto const chunk = GENERATE(5, 16, 64);
  CAPTURE(L, chunk);
  std::size_t const B = 6, H = 2, P = 3, N = 4;
  std::vector<int> const lengths = {static_cast<int>(L), 0, 1, 16, 33, static_cast<int>(L) + 9};
  auto q = random_problem<T>(B, L, H, P, N, 300 + L);
  auto const dyh = hax::test::random_vector(B * L * H * P, 301);  // nonzero at absent steps too
  test_space space;
  DeviceProblem<T> dev(q);
  view1<int> len_view("lengths", B);
  auto const len_host = Kokkos::create_mirror_view(len_view);
  for (std::size_t b = 0; b < B; ++b) {
    len_host(b) = lengths[b];
    q.lengths.push_back(static_cast<std::size_t>(lengths[b]));
  }
  Kokkos::deep_copy(len_view, len_host);
  auto in = dev.inputs();
  in.lengths = len_view;
  view4<T> y("y", B, L, H, P), dy("dy", B, L, H, P);
  hax::test::fill_random(y, 302);  // every element must be written
  hax::test::from_vector(dy, dyh);
  auto const saved = hax::ssm::ssd_forward(space, in, y, hax::ssm::ChunkBoundaries{chunk});
  auto g = make_grads<T>(B, L, H, P, N);
  hax::test::fill_random(g.dx, 303);  // overwritten, absent steps included
  hax::test::fill_random(g.ddt, 304);
  hax::test::fill_random(g.dB, 305);
  hax::test::fill_random(g.dC, 306);
  hax::ssm::ssd_backward(space, in, saved, dy, g);
  space.fence();

  auto const yref = hax::reference::ssm::ssd_forward(q);
  auto const gref = hax::reference::ssm::ssd_backward(q, std::vector<T>(dyh.begin(), dyh.end()));
  using tol = hax::test::tolerance<T>;
  REQUIRE(hax::test::max_abs(as_double(yref)) > 0.1);
  hax::test::check_close(hax::test::to_vector(y), as_double(yref), tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(g.dx), as_double(gref.dx), tol::rtol, tol::atol,
                         "dx");
  hax::test::check_close(hax::test::to_vector(g.ddt), as_double(gref.ddt), tol::rtol, tol::atol,
                         "ddt");
  hax::test::check_close(hax::test::to_vector(g.dB), as_double(gref.dB), tol::rtol, tol::atol,
                         "dB");
  hax::test::check_close(hax::test::to_vector(g.dC), as_double(gref.dC), tol::rtol, tol::atol,
                         "dC");
  hax::test::check_close(hax::test::to_vector(g.ddt_bias), as_double(gref.ddt_bias), tol::rtol,
                         tol::atol, "ddt_bias");
  hax::test::check_close(hax::test::to_vector(g.dA), as_double(gref.dA), tol::rtol, tol::atol,
                         "dA");
  hax::test::check_close(hax::test::to_vector(g.dD), as_double(gref.dD), tol::rtol, tol::atol,
                         "dD");

  // The reference itself: a row's present steps equal those of the full sequence (causal), and
  // the absent ones are 0.
  auto full = q;
  full.lengths.clear();
  auto const yfull = hax::reference::ssm::ssd_forward(full);
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t t = 0; t < L; ++t) {
      for (std::size_t i = 0; i < H * P; ++i) {
        std::size_t const at = (b * L + t) * H * P + i;
        CHECK(yref[at] == (t < q.length(b) ? yfull[at] : T(0)));
      }
    }
  }
}

TEST_CASE("ssd: finite-difference gradients in double with lengths", "[ssm][ssd]") {
  std::size_t const B = 3, L = 11, H = 2, P = 2, N = 3;
  int const chunk = 4;
  auto const q = random_problem<double>(B, L, H, P, N, 81);
  DeviceProblem<double> dev(q);
  view1<int> len_view("lengths", B);
  hax::test::from_vector(len_view, std::vector<double>{7, 11, 2});
  auto in = dev.inputs();
  in.lengths = len_view;
  check_gradients_fd(dev, in, hax::test::random_vector(B * L * H * P, 82), chunk);
}
