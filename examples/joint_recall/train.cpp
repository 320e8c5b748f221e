// SPDX-License-Identifier: MIT
/// \file
/// The `joint_recall train` subcommand is header-only (train.hpp, included by main.cpp), since
/// examples/joint_recall/CMakeLists.txt compiles main.cpp alone. This translation unit only
/// checks that train.hpp is self-contained; it is not part of the build until the CMakeLists
/// lists it.
#include "train.hpp"
