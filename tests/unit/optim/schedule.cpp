// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/optim/schedule.hpp>
#include <hax/reference/optim/adamw.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "support/compare.hpp"
#include "support/test_space.hpp"

TEST_CASE("warm-up schedule values at t = 1, 2, warmup, warmup + 1", "[optim][schedule]") {
  double const lr = 2e-3;
  std::int64_t const warmup = 5000;
  hax::optim::WarmupCosine const s{lr, warmup};
  CHECK(s(1) == 0.0);  // the reference's first update has lr 0
  CHECK(s(2) == lr * 1.0 / 5000.0);
  CHECK(s(warmup) == lr * 4999.0 / 5000.0);
  CHECK(s(warmup + 1) == lr);
  CHECK(s(400000) == lr);  // no decay by default
  for (std::int64_t t : {1, 2, 3, 100, 4999, 5000, 5001, 5002, 123456}) {
    CAPTURE(t);
    CHECK(s(t) == hax::reference::optim::warmup_lr(lr, warmup, t));
  }
}

TEST_CASE("warm-up of zero means the full rate from the first update", "[optim][schedule]") {
  hax::optim::WarmupCosine const s{1e-3, 0};
  CHECK(s(1) == 1e-3);
  CHECK(s(7) == 1e-3);
  CHECK(hax::optim::ConstantLr{3e-4}(11) == 3e-4);
}

TEST_CASE("cosine decay after warm-up reaches the floor at the horizon", "[optim][schedule]") {
  double const lr = 1e-2, floor = 1e-4;
  std::int64_t const warmup = 10, decay = 100;
  hax::optim::WarmupCosine const s{lr, warmup, decay, floor};
  CHECK(s(1) == 0.0);
  CHECK(s(warmup) == lr * 9.0 / 10.0);
  CHECK(s(warmup + 1) == lr);  // progress 0
  double const half = floor + (lr - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * 0.5));
  CHECK(std::abs(s(warmup + 1 + decay / 2) - half) <= 1e-15);
  CHECK(std::abs(s(warmup + 1 + decay / 2) - (lr + floor) / 2) <= 1e-15);
  CHECK(std::abs(s(warmup + 1 + decay) - floor) <= 1e-18);
  CHECK(std::abs(s(warmup + 1 + 5 * decay) - floor) <= 1e-18);
  for (std::int64_t t = warmup + 1; t < warmup + 1 + decay; ++t) {
    CHECK(s(t + 1) <= s(t));  // monotone decay
  }
}

TEST_CASE("schedules evaluate identically on the device", "[optim][schedule]") {
  using space_t = hax::test::test_space;
  hax::optim::WarmupCosine const s{3e-3, 7, 20, 1e-5};
  int const n = 40;
  Kokkos::View<double*, hax::test::test_memory_space> out("lr", n);  // (n)
  Kokkos::parallel_for(
      "test::schedule", Kokkos::RangePolicy<space_t>(0, n),
      KOKKOS_LAMBDA(int i) { out(i) = s(i + 1); });
  auto const device = hax::test::to_vector(out);
  std::vector<double> host(n);
  for (int i = 0; i < n; ++i) {
    host[i] = s(i + 1);
  }
  hax::test::check_close(device, host, 1e-15, 0.0, "lr");
}

TEST_CASE("schedule rejects bad settings", "[optim][schedule]") {
  using Catch::Matchers::ContainsSubstring;
  CHECK_THROWS_WITH((hax::optim::WarmupCosine{1e-3, -1}.validate()),
                    ContainsSubstring("hax::optim::WarmupCosine") &&
                        ContainsSubstring("warmup"));
  CHECK_THROWS_AS((hax::optim::WarmupCosine{1e-3, 0, 10, 1e-2}.validate()),
                  hax::invalid_argument);
  CHECK_NOTHROW((hax::optim::WarmupCosine{1e-3, 10, 10, 1e-4}.validate()));
}
