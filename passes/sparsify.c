/* SPDX-License-Identifier: MIT */
/*
 * sparsify: the one-shot job, prepare + step + convert.
 *
 * Before:   W ─► Gemm / MatMul / Conv
 * After:    W (pruned; sparse_initializer when smaller, see convert) ─► ...
 *
 * Conditions: those of prepare, step and convert; options.format as convert.
 * The result is that of the three passes run one after the other; the
 * passes share one state, and step writes each mask straight into its
 * weight (the all-true masks of prepare are never filled nor read), except
 * for wanda and sparsegpt, whose step runs the prepared model.
 */
#include "passes.h"

int opass_pass_sparsify(struct onnxpass_model *model, struct onnxpass_context *ctx,
			struct onnxpass_error *err)
{
	struct opass_config *config = NULL;
	struct opass_state *state = NULL;
	int r;

	r = opass_context_config(ctx, &config, err);
	/* wanda / sparsegpt run the prepared model in ONNX Runtime: its masks
	 * must be real */
	if (r == 0)
		r = opass_prepare_state(model, config, !opass_sparsifier_calibrated(config->sparsifier),
					&state, err);
	if (r == 0)
		r = opass_step_apply(model->proto, state, config, err);
	if (r == 0)
		r = opass_convert_apply(model->proto, state, config, err);
	opass_state_free(state);
	opass_config_free(config);
	return r;
}
