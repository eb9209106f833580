/* SPDX-License-Identifier: MIT */
/* The built-in passes (one file each) and what they share. */
#pragma once

#include "onnxpass/plugin.h"
#include "sparsity/sparsity.h"

int opass_pass_config(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err);
int opass_pass_inspect(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err);
int opass_pass_prepare(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err);
int opass_pass_step(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err);
int opass_pass_squash(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err);
int opass_pass_convert(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err);
int opass_pass_sparsify(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err);
int opass_pass_state_export(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err);
int opass_pass_state_load(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err);

/* prepare with an already parsed config (state load reuses it); without
 * fill_masks the mask tensors are allocated but left unset (sparsify sets
 * mask_in_weight on every group and never reads them). */
int opass_prepare_apply(Onnx__ModelProto *model, struct opass_config *config, bool fill_masks,
			struct onnxpass_error *err);
/* prepare, then the state of this run loaded from it: with mask_in_weight
 * the masks are never filled and each group's mask goes straight into its
 * weight (sparsify, convert of an unprepared model). */
int opass_prepare_state(struct onnxpass_model *model, struct opass_config *config,
			bool mask_in_weight, struct opass_state **ret_state,
			struct onnxpass_error *err);
/* step and convert on a loaded state (sparsify runs them on one state). */
int opass_step_apply(Onnx__ModelProto *model, struct opass_state *state,
		     const struct opass_config *config, struct onnxpass_error *err);
int opass_convert_apply(Onnx__ModelProto *model, struct opass_state *state,
			const struct opass_config *config, struct onnxpass_error *err);

/* squash every group of a loaded state; the state is consumed (metadata
 * removed) but the struct stays valid for reading group names. */
int opass_squash_apply(Onnx__ModelProto *model, struct opass_state *state,
		       const struct opass_config *config, struct onnxpass_error *err);
