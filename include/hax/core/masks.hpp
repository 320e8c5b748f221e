// SPDX-License-Identifier: MIT
/// \file
/// Row extents of a pad mask: how many leading positions of each row can matter under causal
/// semantics. Everything at position t depends on positions <= t only, so the positions after a
/// row's last real token reach no real output; kernels that take these extents skip them.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>

namespace hax::core {

/// extents(b) = 1 + the last t with mask(b, t) != 0, and 0 for a row of pads. Pads before the
/// last real token (holes) are inside the extent. One team per row; asynchronous on `space`.
template <execution_space Space, class Mask, class Extents>
  requires(view_accessible_from<Mask, Space> && view_accessible_from<Extents, Space>)
void real_extent(Space const& space, Mask const& mask, Extents const& extents) {
  static_assert(Mask::rank() == 2 && Extents::rank() == 1,
                "hax::core::real_extent: mask must be (B, L) and extents (B)");
  require(extents.extent(0) == mask.extent(0), "hax::core::real_extent", "extents (", extents.extent(0),
          ") must have one entry per row of mask (", mask.extent(0), ", ", mask.extent(1), ")");
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  int const L = mask.extent_int(1);
  Kokkos::parallel_for(
      "hax::core::real_extent", long_loop_teams(space, mask.extent_int(0)), KOKKOS_LAMBDA(member const& team) {
        int const b = team.league_rank();
        int last = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, L),
            [&](int t, int& m) {
              if (mask(b, t) != 0 && t + 1 > m) { m = t + 1; }
            },
            Kokkos::Max<int>(last));
        // Max's identity is INT_MIN: a row of pads reduces to it.
        Kokkos::single(Kokkos::PerTeam(team), [&]() { extents(b) = last > 0 ? last : 0; });
      });
}

}  // namespace hax::core
