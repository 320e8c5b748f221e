// SPDX-License-Identifier: MIT
/// \file
/// Model configurations (hax::models::ModelConfig) read from JSON files that use the reference's
/// field names (fla / HF config.json: hidden_size, state_size, expand, intermediate_size,
/// num_heads, head_dim, n_groups, chunk_size, conv_kernel, time_step_rank, num_hidden_layers,
/// vocab_size, initializer_range, norm_eps / layer_norm_epsilon, sparse_arch, sparse_keys,
/// num_hash, data_max_length) plus hax's own `semantics`. Unknown fields and inconsistent sizes
/// are errors naming the field. Also the parameter count implied by the shapes of semantics.md
/// section 2, which hax::Model's store must reproduce.
#pragma once

#include <hax/core/error.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace hax::models {

/// The base architecture of every block.
enum class Base { mamba, mamba2, samba };

inline char const* base_name(Base b) {
  switch (b) {
    case Base::mamba: return "mamba";
    case Base::mamba2: return "mamba2";
    case Base::samba: return "samba";
  }
  return "?";
}

/// Parses "mamba", "mamba2", "samba"; anything else is hax::invalid_argument.
inline Base parse_base(std::string const& name) {
  if (name == "mamba") return Base::mamba;
  if (name == "mamba2") return Base::mamba2;
  if (name == "samba") return Base::samba;
  throw invalid_argument(core::concat("hax::models::parse_base: unknown base architecture \"",
                                      name, "\" (known: mamba, mamba2, samba)"));
}

/// The pattern names a sparse_arch may join with '+' (semantics.md section 9).
inline std::vector<std::string> const& known_sparse_parts() {
  static std::vector<std::string> const parts = {
      "dilated", "sliding_window", "sink", "sign_bin_lsh", "argmax_lsh", "key_selection", "full"};
  return parts;
}

/// Splits "a+b+c" into its parts; throws for an empty or unknown part.
inline std::vector<std::string> split_sparse_arch(std::string const& arch) {
  constexpr char const* op = "hax::models::split_sparse_arch";
  std::vector<std::string> parts;
  std::stringstream in(arch);
  std::string part;
  while (std::getline(in, part, '+')) {
    core::require(!part.empty(), op, "sparse_arch \"", arch, "\" has an empty part");
    bool known = false;
    for (auto const& k : known_sparse_parts()) known = known || (k == part);
    core::require(known, op, "sparse_arch \"", arch, "\": unknown pattern \"", part,
                  "\" (known: dilated, sliding_window, sink, sign_bin_lsh, argmax_lsh, "
                  "key_selection, full, or a '+'-union of them)");
    parts.push_back(part);
  }
  core::require(!parts.empty(), op, "sparse_arch is empty (use \"none\" or omit it)");
  return parts;
}

/// A model's configuration. Field names follow the reference's config.json files.
struct ModelConfig {
  Base base = Base::mamba2;
  int vocab_size = 100;
  int hidden_size = 64;         // d_model
  int num_hidden_layers = 2;
  int state_size = 32;          // N
  int expand = 2;
  int intermediate_size = 128;  // d_inner = expand * hidden_size
  int num_heads = 8;            // Mamba2 only
  int head_dim = 16;            // Mamba2 only; num_heads * head_dim = d_inner
  int n_groups = 1;             // Mamba2 only (hax supports 1)
  int chunk_size = 256;         // Mamba2 SSD chunk
  int conv_kernel = 4;
  int time_step_rank = 8;       // Mamba only (dt_rank)
  double initializer_range = 0.1;
  double norm_eps = 1e-5;
  std::string sparse_arch;      // empty: no sparse branch
  int sparse_keys = 64;         // k
  int num_hash = 8;             // h (sign-bit LSH bits)
  int data_max_length = 2048;   // dilation grid (semantics.md 6.4)
  std::string semantics = "causal";  // "causal" | "reference"
  double e_init = 1.0;          // initial value of the branch scale E (released code: 1)
  // Samba only (samba.json's "attn" object and hidden_ratio):
  std::vector<int> attn_layers = {1, 3};  // layers whose mixer is sliding-window attention
  int attn_num_heads = 4;       // heads (= kv heads); head_dim = hidden_size / attn_num_heads
  int attn_window = 64;         // keys per query, itself included
  double rope_theta = 1e4;      // RoPE base
  int hidden_ratio = 4;         // SwiGLU width: fla's rule, a multiple of 256
  int mlp_width = 0;            // SwiGLU width if > 0 (samba JSON: "intermediate_size")

  bool has_sparse() const { return !sparse_arch.empty(); }
  /// True when the sparse_arch contains key_selection (adds the key-score MLP).
  bool has_key_selection() const {
    if (!has_sparse()) return false;
    for (auto const& p : split_sparse_arch(sparse_arch)) {
      if (p == "key_selection") return true;
    }
    return false;
  }

  /// Checks sizes and names; throws hax::invalid_argument naming the field and the values.
  void validate() const {
    constexpr char const* op = "hax::models::ModelConfig";
    core::require(vocab_size >= 1, op, "vocab_size must be >= 1, got ", vocab_size);
    core::require(hidden_size >= 1, op, "hidden_size must be >= 1, got ", hidden_size);
    core::require(num_hidden_layers >= 1, op, "num_hidden_layers must be >= 1, got ",
                  num_hidden_layers);
    core::require(state_size >= 1, op, "state_size must be >= 1, got ", state_size);
    core::require(conv_kernel >= 1, op, "conv_kernel must be >= 1, got ", conv_kernel);
    core::require(initializer_range > 0.0, op, "initializer_range must be > 0, got ",
                  initializer_range);
    core::require(norm_eps > 0.0, op, "norm_eps must be > 0, got ", norm_eps);
    core::require(intermediate_size == expand * hidden_size, op, "intermediate_size (",
                  intermediate_size, ") must equal expand (", expand, ") * hidden_size (",
                  hidden_size, ")");
    if (base == Base::mamba || base == Base::samba) {
      core::require(time_step_rank >= 1, op, "time_step_rank must be >= 1, got ", time_step_rank);
    }
    if (base == Base::mamba2) {
      core::require(num_heads >= 1 && head_dim >= 1, op, "num_heads (", num_heads,
                    ") and head_dim (", head_dim, ") must be >= 1");
      core::require(num_heads * head_dim == intermediate_size, op, "num_heads (", num_heads,
                    ") * head_dim (", head_dim, ") must equal intermediate_size (",
                    intermediate_size, ")");
      core::require(n_groups == 1, op, "n_groups must be 1 (hax implements one group), got ",
                    n_groups);
      core::require(chunk_size >= 1, op, "chunk_size must be >= 1, got ", chunk_size);
    }
    if (base == Base::samba) {
      for (int l : attn_layers) {
        core::require(l >= 0 && l < num_hidden_layers, op, "attn.layers: layer ", l,
                      " is outside [0, num_hidden_layers = ", num_hidden_layers, ")");
      }
      core::require(attn_num_heads >= 1 && hidden_size % attn_num_heads == 0, op,
                    "attn.num_heads (", attn_num_heads, ") must divide hidden_size (", hidden_size,
                    ")");
      core::require((hidden_size / attn_num_heads) % 2 == 0, op, "the attention head width (",
                    "hidden_size ", hidden_size, " / attn.num_heads ", attn_num_heads,
                    ") must be even (RoPE)");
      core::require(attn_window >= 1, op, "attn.window_size must be >= 1, got ", attn_window);
      core::require(rope_theta > 0.0, op, "attn.rope_theta must be > 0, got ", rope_theta);
      core::require(hidden_ratio >= 1, op, "hidden_ratio must be >= 1, got ", hidden_ratio);
      core::require(mlp_width >= 0, op, "the MLP's intermediate_size must be >= 1, got ",
                    mlp_width);
    }
    core::require(semantics == "causal" || semantics == "reference", op,
                  "semantics must be \"causal\" or \"reference\", got \"", semantics, "\"");
    if (has_sparse()) {
      core::require(base != Base::samba, op,
                    "sparse_arch is not supported with samba (the reference raises too)");
      auto const parts = split_sparse_arch(sparse_arch);
      core::require(sparse_keys >= 1, op, "sparse_keys must be >= 1, got ", sparse_keys);
      core::require(sparse_keys % static_cast<int>(parts.size()) == 0, op, "sparse_keys (",
                    sparse_keys, ") must be divisible by the number of parts (", parts.size(),
                    ") of sparse_arch \"", sparse_arch, "\"");
      core::require(num_hash >= 1 && num_hash <= 30, op, "num_hash must be in [1, 30], got ",
                    num_hash);
      core::require(data_max_length >= 1, op, "data_max_length must be >= 1, got ",
                    data_max_length);
    }
  }
};

/// Fields of the reference's config files that hax reads but that do not change what hax builds
/// (they restate fla defaults hax hard-wires, or belong to HF machinery hax has no use for).
inline std::set<std::string> const& informational_fields() {
  static std::set<std::string> const f = {
      "architectures", "model_type", "use_bias", "use_conv_bias", "hidden_act",
      "residual_in_fp32", "rescale_prenorm_residual", "tie_word_embeddings", "time_step_min",
      "time_step_max", "time_step_floor", "time_step_init_scheme", "time_step_scale",
      "time_step_limit", "bos_token_id", "eos_token_id", "pad_token_id", "fuse_norm",
      "fuse_cross_entropy", "use_cache", "torch_dtype", "transformers_version", "norm_before_gate",
      "rms_norm", "max_position_embeddings", "elementwise_affine", "initializer_range_note",
      "_comment"};
  return f;
}

/// Builds a config from a JSON object with the reference's field names. `model_type` (or the
/// `base` override) picks the base; unknown fields throw naming the field.
inline ModelConfig config_from_json(nlohmann::json const& j) {
  constexpr char const* op = "hax::models::config_from_json";
  core::require(j.is_object(), op, "a model config must be a JSON object");
  ModelConfig c;
  std::string base = j.value("base", j.value("model_type", std::string("mamba2")));
  c.base = parse_base(base);
  // Base-dependent defaults (fla's, overridden by the files).
  if (c.base == Base::mamba || c.base == Base::samba) c.state_size = 16;
  bool has_intermediate = false;
  for (auto const& [key, value] : j.items()) {
    auto as_int = [&]() {
      core::require(value.is_number_integer(), op, "field \"", key, "\" must be an integer, got ",
                    value.dump());
      return value.get<int>();
    };
    auto as_double = [&]() {
      core::require(value.is_number(), op, "field \"", key, "\" must be a number, got ",
                    value.dump());
      return value.get<double>();
    };
    if (key == "base" || key == "model_type") continue;
    if (key == "vocab_size") c.vocab_size = as_int();
    else if (key == "hidden_size") c.hidden_size = as_int();
    else if (key == "num_hidden_layers" || key == "num_layers") c.num_hidden_layers = as_int();
    else if (key == "state_size") c.state_size = as_int();
    else if (key == "expand") c.expand = as_int();
    else if (key == "intermediate_size" && c.base == Base::samba) c.mlp_width = as_int();  // fla
    else if (key == "intermediate_size") { c.intermediate_size = as_int(); has_intermediate = true; }
    else if (key == "num_heads") c.num_heads = as_int();
    else if (key == "head_dim") c.head_dim = as_int();
    else if (key == "n_groups") c.n_groups = as_int();
    else if (key == "chunk_size") c.chunk_size = as_int();
    else if (key == "conv_kernel") c.conv_kernel = as_int();
    else if (key == "time_step_rank") {
      if (value.is_string()) {
        core::require(value.get<std::string>() == "auto", op,
                      "time_step_rank must be an integer or \"auto\", got ", value.dump());
        c.time_step_rank = -1;  // resolved below
      } else {
        c.time_step_rank = as_int();
      }
    } else if (key == "initializer_range") c.initializer_range = as_double();
    else if (key == "norm_eps" || key == "layer_norm_epsilon") c.norm_eps = as_double();
    else if (key == "sparse_arch") {
      core::require(value.is_null() || value.is_string(), op,
                    "field \"sparse_arch\" must be a string or null, got ", value.dump());
      c.sparse_arch = value.is_null() ? "" : value.get<std::string>();
      if (c.sparse_arch == "none") c.sparse_arch.clear();
    } else if (key == "sparse_keys") c.sparse_keys = as_int();
    else if (key == "num_hash") c.num_hash = as_int();
    else if (key == "data_max_length") c.data_max_length = as_int();
    else if (key == "e_init") c.e_init = as_double();
    else if (key == "hidden_ratio") c.hidden_ratio = as_int();
    else if (key == "attn") {
      core::require(value.is_object(), op, "field \"attn\" must be an object, got ",
                    value.dump());
      int kv_heads = -1;
      for (auto const& [akey, avalue] : value.items()) {
        auto a_int = [&]() {
          core::require(avalue.is_number_integer(), op, "field \"attn.", akey,
                        "\" must be an integer, got ", avalue.dump());
          return avalue.get<int>();
        };
        if (akey == "layers") {
          core::require(avalue.is_array(), op, "field \"attn.layers\" must be an array");
          c.attn_layers.clear();
          for (auto const& l : avalue) {
            core::require(l.is_number_integer(), op, "field \"attn.layers\" must hold integers");
            c.attn_layers.push_back(l.get<int>());
          }
        } else if (akey == "num_heads") c.attn_num_heads = a_int();
        else if (akey == "num_kv_heads") kv_heads = a_int();
        else if (akey == "window_size") c.attn_window = a_int();
        else if (akey == "rope_theta") {
          core::require(avalue.is_number(), op, "field \"attn.rope_theta\" must be a number");
          c.rope_theta = avalue.get<double>();
        } else if (akey == "qkv_bias") {
          core::require(avalue.is_boolean() && !avalue.get<bool>(), op,
                        "attn.qkv_bias must be false (hax's attention has no bias)");
        } else {
          throw invalid_argument(core::concat(op, ": unknown field \"attn.", akey,
                                              "\" in the model config"));
        }
      }
      core::require(kv_heads < 0 || kv_heads == c.attn_num_heads, op, "attn.num_kv_heads (",
                    kv_heads, ") must equal attn.num_heads (", c.attn_num_heads,
                    "): hax implements multi-head attention without grouping");
    } else if (key == "semantics") {
      core::require(value.is_string(), op, "field \"semantics\" must be a string");
      c.semantics = value.get<std::string>();
    } else if (informational_fields().contains(key)) {
      continue;
    } else {
      throw invalid_argument(core::concat(op, ": unknown field \"", key, "\" in the model config"));
    }
  }
  if (!has_intermediate) c.intermediate_size = c.expand * c.hidden_size;
  if (c.time_step_rank < 0) c.time_step_rank = (c.hidden_size + 15) / 16;
  c.validate();
  return c;
}

/// The config as JSON with the reference's field names (round-trips through config_from_json).
inline nlohmann::json config_to_json(ModelConfig const& c) {
  nlohmann::json j;
  j["model_type"] = base_name(c.base);
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["state_size"] = c.state_size;
  j["expand"] = c.expand;
  if (c.base != Base::samba) j["intermediate_size"] = c.intermediate_size;  // Samba: the MLP's
  j["conv_kernel"] = c.conv_kernel;
  j["initializer_range"] = c.initializer_range;
  j["norm_eps"] = c.norm_eps;
  if (c.base == Base::mamba2) {
    j["num_heads"] = c.num_heads;
    j["head_dim"] = c.head_dim;
    j["n_groups"] = c.n_groups;
    j["chunk_size"] = c.chunk_size;
  } else {
    j["time_step_rank"] = c.time_step_rank;
  }
  j["sparse_arch"] = c.has_sparse() ? nlohmann::json(c.sparse_arch) : nlohmann::json(nullptr);
  j["sparse_keys"] = c.sparse_keys;
  j["num_hash"] = c.num_hash;
  j["data_max_length"] = c.data_max_length;
  j["semantics"] = c.semantics;
  j["e_init"] = c.e_init;
  if (c.base == Base::samba) {
    j["attn"] = nlohmann::json{{"layers", c.attn_layers},
                               {"num_heads", c.attn_num_heads},
                               {"num_kv_heads", c.attn_num_heads},
                               {"window_size", c.attn_window},
                               {"rope_theta", c.rope_theta}};
    j["hidden_ratio"] = c.hidden_ratio;
    if (c.mlp_width > 0) j["intermediate_size"] = c.mlp_width;
  }
  return j;
}

/// Reads a JSON config file; errors name the path.
inline ModelConfig load_config(std::filesystem::path const& path) {
  std::ifstream in(path);
  if (!in) {
    throw invalid_argument(core::concat("hax::models::load_config: cannot open \"", path.string(),
                                        "\""));
  }
  nlohmann::json j;
  try {
    in >> j;
  } catch (nlohmann::json::exception const& e) {
    throw invalid_argument(core::concat("hax::models::load_config: \"", path.string(),
                                        "\" is not valid JSON: ", e.what()));
  }
  try {
    return config_from_json(j);
  } catch (invalid_argument const& e) {
    throw invalid_argument(core::concat(e.what(), " (in \"", path.string(), "\")"));
  }
}

/// The reference's configuration files (examples/joint_recall/configs/*.json) as built-in
/// values, so the command line works without the files: `double_size` picks
/// <base>_double_size.json (the script's choice when no sparse_arch is given). Samba has no
/// double-size file.
inline ModelConfig reference_config(Base base, bool double_size) {
  ModelConfig c;
  c.base = base;
  c.vocab_size = 100;
  c.num_hidden_layers = 2;
  c.expand = 2;
  c.conv_kernel = 4;
  c.norm_eps = 1e-5;
  c.initializer_range = 0.1;
  if (base == Base::mamba) {
    c.hidden_size = double_size ? 128 : 64;
    c.state_size = 16;
    c.time_step_rank = 8;
  } else if (base == Base::mamba2) {
    c.hidden_size = double_size ? 128 : 64;
    c.state_size = 32;
    c.num_heads = 8;
    c.head_dim = double_size ? 32 : 16;
    c.n_groups = 1;
    c.chunk_size = 256;
  } else {
    core::require(!double_size, "hax::models::reference_config", "samba has no double-size config");
    c.hidden_size = 32;
    c.state_size = 16;
    c.num_hidden_layers = 4;
    c.time_step_rank = 8;
    c.initializer_range = 0.02;
  }
  c.intermediate_size = c.expand * c.hidden_size;
  return c;
}

/// The SwiGLU width of a Samba config: mlp_width if set, else fla's GatedMLP rule for
/// hidden_ratio r, int(D·r·2/3) rounded up to a multiple of 256 (semantics.md section 2: 256 for
/// samba.json).
inline int samba_mlp_width(ModelConfig const& c) {
  if (c.mlp_width > 0) return c.mlp_width;
  int const raw = c.hidden_size * c.hidden_ratio * 2 / 3;
  return 256 * ((raw + 255) / 256);
}

/// Whether layer `layer` of a Samba config is an attention layer (else a Mamba layer).
inline bool samba_is_attention_layer(ModelConfig const& c, int layer) {
  for (int l : c.attn_layers) {
    if (l == layer) return true;
  }
  return false;
}

/// The number of scalar parameters the reference's model with this config has (shapes of
/// semantics.md section 2; embedding included, tied output not counted twice).
inline std::int64_t reference_parameter_count(ModelConfig const& c) {
  std::int64_t const d = c.hidden_size, di = c.intermediate_size, n = c.state_size,
                     k = c.conv_kernel;
  if (c.base == Base::samba) {
    std::int64_t const r = c.time_step_rank, f = samba_mlp_width(c);
    std::int64_t total = c.vocab_size * d + d;  // embedding, norm_f
    for (int i = 0; i < c.num_hidden_layers; ++i) {
      total += 2 * d + 3 * d * f;  // mixer_norm, mlp_norm; SwiGLU gate, up, down
      if (samba_is_attention_layer(c, i)) {
        total += 4 * d * d;  // q, k, v, o projections (no bias)
      } else {
        total += 2 * di * d + di * k + di + (r + 2 * n) * di + di * r + di + di * n + di + d * di;
      }
    }
    return total;
  }
  std::int64_t per_layer = d;  // the block's RMSNorm
  if (c.base == Base::mamba) {
    std::int64_t const r = c.time_step_rank;
    per_layer += 2 * di * d          // in_proj
                 + di * k + di       // conv1d weight + bias
                 + (r + 2 * n) * di  // x_proj
                 + di * r + di       // dt_proj weight + bias
                 + di * n + di       // A_log, D
                 + d * di;           // out_proj
  } else if (c.base == Base::mamba2) {
    std::int64_t const h = c.num_heads, conv_dim = di + 2 * n;
    per_layer += d * (2 * di + 2 * n + h)  // in_proj -> z, xBC, dt
                 + conv_dim * k + conv_dim  // conv1d
                 + 3 * h                    // dt_bias, A_log, D
                 + di                       // gated norm
                 + di * d;                  // out_proj
  }
  if (c.has_sparse()) {
    per_layer += 2 * n * di + di;  // xx_proj, E
    if (c.has_key_selection()) {
      std::int64_t const f = 2 * n;  // MLP 2N -> 2N -> 2N -> 1
      per_layer += (f * f + f) * 2 + f + 1;
    }
  }
  return c.vocab_size * d + c.num_hidden_layers * per_layer + d;
}

}  // namespace hax::models
