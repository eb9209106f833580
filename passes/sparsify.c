/* SPDX-License-Identifier: MIT */
/*
 * sparsify: the one-shot job, prepare + step + convert.
 *
 * Before:   W ─► Gemm / MatMul / Conv
 * After:    W (pruned; sparse_initializer when smaller, see convert) ─► ...
 *
 * Conditions: those of prepare, step and convert; options.format as convert.
 */
#include "passes.h"

int opass_pass_sparsify(struct onnxpass_model *model, struct onnxpass_context *ctx,
			struct onnxpass_error *err)
{
	int r = opass_pass_prepare(model, ctx, err);

	if (r == 0)
		r = opass_pass_step(model, ctx, err);
	if (r == 0)
		r = opass_pass_convert(model, ctx, err);
	return r;
}
