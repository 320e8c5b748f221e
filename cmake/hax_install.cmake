# SPDX-License-Identifier: MIT
# Installs the headers and exports hax::hax so that find_package(hax) works for consumers.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY include/hax DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS hax EXPORT haxTargets)
install(EXPORT haxTargets NAMESPACE hax:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hax)
configure_package_config_file(cmake/haxConfig.cmake.in "${CMAKE_CURRENT_BINARY_DIR}/haxConfig.cmake"
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hax)
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/haxConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/haxConfig.cmake" "${CMAKE_CURRENT_BINARY_DIR}/haxConfigVersion.cmake"
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/hax)
