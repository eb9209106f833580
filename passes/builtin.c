/* SPDX-License-Identifier: MIT */
/*
 * The built-in plugin, an explicit table of the sparsity passes, and the
 * public entry points that start from it: onnxpass_registry_new() hands the
 * table to the core registry; onnxpass_transform_bytes() runs it on bytes.
 */
#include <stdlib.h>

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

ONNXPASS_EXPORT int onnxpass_registry_new(struct onnxpass_registry **ret_registry,
					  struct onnxpass_error *err)
{
	return opass_registry_new(&builtin_plugin, ret_registry, err);
}

ONNXPASS_EXPORT int onnxpass_transform_bytes(const void *in, size_t in_size,
					     const char *passes, const char *config_json,
					     void **ret_out, size_t *ret_out_size,
					     char **ret_report, struct onnxpass_error *err)
{
	struct onnxpass_registry *reg = NULL;
	struct onnxpass_model *model = NULL;
	char *report = NULL;
	int r;

	r = onnxpass_registry_new(&reg, err);
	if (r == 0)
		r = onnxpass_model_load_bytes(in, in_size, NULL, &model, err);
	if (r == 0)
		r = onnxpass_registry_run(reg, model, passes, config_json, &report, err);
	if (r == 0)
		r = onnxpass_model_save_bytes(model, ret_out, ret_out_size, err);
	if (r == 0 && ret_report) {
		*ret_report = report;
		report = NULL;
	}
	free(report);
	onnxpass_model_free(model);
	onnxpass_registry_free(reg);
	return r;
}
