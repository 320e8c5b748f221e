// SPDX-License-Identifier: MIT
/// \file
/// Umbrella header: every public header of hax. Implementation headers (*/impl/) are not included.
#pragma once

#include <hax/version.hpp>

#include <hax/attention/pattern/candidate_list.hpp>
#include <hax/attention/pattern/compose.hpp>
#include <hax/attention/pattern/concepts.hpp>
#include <hax/attention/pattern/dilated.hpp>
#include <hax/attention/pattern/full.hpp>
#include <hax/attention/pattern/names.hpp>
#include <hax/attention/pattern/sink.hpp>
#include <hax/attention/pattern/sliding_window.hpp>
#include <hax/attention/sparse_attention.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/dispatch.hpp>
#include <hax/core/error.hpp>
#include <hax/core/finite.hpp>
#include <hax/core/random.hpp>
#include <hax/core/views.hpp>
#include <hax/data/decode.hpp>
#include <hax/data/io.hpp>
#include <hax/data/joint_recall.hpp>
#include <hax/nn/activation.hpp>
#include <hax/nn/conv1d.hpp>
#include <hax/nn/cross_entropy.hpp>
#include <hax/nn/elementwise.hpp>
#include <hax/nn/embedding.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/linear.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/nn/rms_norm.hpp>
#include <hax/optim/adamw.hpp>
#include <hax/optim/schedule.hpp>
#include <hax/ssm/policy.hpp>
#include <hax/ssm/selective_scan.hpp>
#include <hax/ssm/ssd.hpp>
