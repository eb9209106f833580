/* SPDX-License-Identifier: MIT */
/* The built-in plugin: an explicit table of the sparsity passes. */
#include "passes.h"
#include "registry.h"

static const struct onnxpass_pass builtin_passes[] = {
	{ "config", "print the default sparsity config of a model (make_config_from_model)",
	  opass_pass_config },
	{ "inspect", "per-weight sparsity, N:M pattern, storage and sizes; groups of a prepared model",
	  opass_pass_inspect },
	{ "prepare", "add mask initializers and Cast/Mul mask nodes per weight (prepare)",
	  opass_pass_prepare },
	{ "step", "recompute every mask: weight_norm or nearly_diagonal (step / update_mask)",
	  opass_pass_step },
	{ "squash", "fold masks into dense weights and remove mask nodes (squash_mask)",
	  opass_pass_squash },
	{ "convert", "squash, then store sparse weights as COO sparse_initializers (convert)",
	  opass_pass_convert },
	{ "sparsify", "prepare + step + convert in one run", opass_pass_sparsify },
	{ "state-export", "print the sparsifier state: groups and bit-packed masks (state_dict)",
	  opass_pass_state_export },
	{ "state-load", "apply a sparsifier state given in options.state (load_state_dict)",
	  opass_pass_state_load },
};

static const struct onnxpass_plugin builtin_plugin = {
	.abi_version = ONNXPASS_PLUGIN_ABI_VERSION,
	.name = "onnx-pass sparsity",
	.passes = builtin_passes,
	.n_passes = sizeof(builtin_passes) / sizeof(builtin_passes[0]),
};

const struct onnxpass_plugin *opass_builtin_plugin(void)
{
	return &builtin_plugin;
}
