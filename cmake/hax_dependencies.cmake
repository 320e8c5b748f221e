# SPDX-License-Identifier: MIT
# Dependencies: find_package first; when a package is missing and HAX_FETCH_DEPENDENCIES is on,
# FetchContent from the upstream release tag. Point CMake at an existing install with
# CMAKE_PREFIX_PATH (or Kokkos_ROOT / KokkosKernels_ROOT / Catch2_ROOT).
include(FetchContent)

set(HAX_KOKKOS_TAG 4.6.01 CACHE STRING "Kokkos release tag fetched when Kokkos is not installed")
set(HAX_KOKKOS_KERNELS_TAG 4.6.01 CACHE STRING "Kokkos Kernels release tag fetched when missing")
set(HAX_CATCH2_TAG v3.7.1 CACHE STRING "Catch2 release tag fetched when missing")
set(HAX_JSON_TAG v3.11.3 CACHE STRING "nlohmann/json release tag fetched when missing")
set(HAX_CLI11_TAG v2.4.2 CACHE STRING "CLI11 release tag fetched when missing")

# hax_require(<package> <min-version> <target> <git-repository> <tag> [cache settings...])
# Finds the package, or fetches it, or stops with a message that says how to provide it.
macro(hax_require package min_version target repository tag)
  if(NOT TARGET ${target})
    find_package(${package} ${min_version} QUIET)
  endif()
  if(NOT TARGET ${target})
    if(HAX_FETCH_DEPENDENCIES)
      message(STATUS "hax: ${package} >= ${min_version} not found; fetching ${repository} at ${tag}")
      foreach(setting ${ARGN})
        string(REPLACE "=" ";" kv "${setting}")
        list(GET kv 0 key)
        list(GET kv 1 value)
        set(${key} ${value} CACHE INTERNAL "")
      endforeach()
      FetchContent_Declare(${package} GIT_REPOSITORY ${repository} GIT_TAG ${tag} GIT_SHALLOW TRUE)
      FetchContent_MakeAvailable(${package})
    else()
      message(FATAL_ERROR
        "hax: ${package} >= ${min_version} was not found and HAX_FETCH_DEPENDENCIES is OFF. "
        "Install it and point CMake at it with -DCMAKE_PREFIX_PATH=<prefix> or -D${package}_ROOT=<prefix>.")
    endif()
  endif()
  if(NOT TARGET ${target})
    message(FATAL_ERROR "hax: ${package} provides no target ${target}")
  endif()
endmacro()

hax_require(Kokkos 4.6 Kokkos::kokkos https://github.com/kokkos/kokkos.git ${HAX_KOKKOS_TAG}
  Kokkos_ENABLE_SERIAL=ON Kokkos_ENABLE_OPENMP=ON CMAKE_CXX_STANDARD=20)
hax_require(KokkosKernels 4.6 Kokkos::kokkoskernels https://github.com/kokkos/kokkos-kernels.git
  ${HAX_KOKKOS_KERNELS_TAG} KokkosKernels_ENABLE_COMPONENTS=BATCHED\\;BLAS KokkosKernels_ETI_ONLY=OFF)
hax_require(nlohmann_json 3.10 nlohmann_json::nlohmann_json https://github.com/nlohmann/json.git ${HAX_JSON_TAG}
  JSON_BuildTests=OFF JSON_Install=ON)
