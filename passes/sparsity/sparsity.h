/* SPDX-License-Identifier: MIT */
/*
 * Shared by the sparsity passes: the sparsifier state stored in the model
 * (metadata_props "onnx_pass.sparsity", JSON), groups resolved against the
 * model, and the 2-D views of SPEC 4.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "config.h"
#include "filemap.h"
#include "model.h"
#include "onnxpass/plugin.h"
#include "weights.h"

#define OPASS_STATE_KEY "onnx_pass.sparsity"
#define OPASS_PARAMS_KEY "onnx_pass.sparse_params"
#define OPASS_STATE_FORMAT "onnx_pass.sparsity/1"

/* Where a constant lives. */
struct opass_constant {
	Onnx__TensorProto *tensor;
	Onnx__GraphProto *graph;
	Onnx__NodeProto *node; /* Constant node, or NULL for an initializer */
};

/* Mapping between a weight's 2-D view and its storage order. */
struct opass_view_map {
	enum opass_view view;
	enum opass_conv_view conv_view;
	int64_t rows, cols;
	int64_t conv_channels; /* I/g (conv only) */
	int64_t conv_kernel;   /* prod(k) (conv only) */
};

int opass_view_map_init(struct opass_view_map *map, enum opass_view view, enum opass_conv_view cv,
			const Onnx__TensorProto *t, struct onnxpass_error *err);
/* Storage index of view element (i, j). */
uint64_t opass_view_offset(const struct opass_view_map *map, int64_t i, int64_t j);
enum opass_view opass_view_from_name(const char *name);

/* A group of the state, resolved against the model. */
struct opass_group {
	cJSON *json;                /* the group's object in the state */
	const char *name;           /* tensor_fqn */
	struct opass_constant weight;
	Onnx__TensorProto *mask;    /* BOOL, same dims */
	struct opass_args args;
	struct opass_view_map map;
	/* sparsify only: the mask tensor's bytes are unset and unused; step
	 * applies each mask to W directly (W itself is the masked weight) */
	bool mask_in_weight;
	/* this run's step wrote W with the mask applied (SparseGPT's
	 * reconstruction: W * mask == W) */
	bool weight_masked;
	int64_t nnz;                /* nonzeros of W once known, else -1 */
};

/* The parsed state, with groups resolved. */
struct opass_state {
	cJSON *root;
	enum opass_sparsifier sparsifier;
	struct opass_group *groups;
	size_t n_groups;
	/* the model it was loaded from: for steps that run it in ONNX Runtime,
	 * and its mapped tensor bytes (model->store.map) */
	struct onnxpass_model *model;
};

/* -ENOENT (with a message) when the model is not prepared. */
int opass_state_load(struct onnxpass_model *model, struct opass_state **ret_state,
		     struct onnxpass_error *err);
struct opass_state *opass_state_free(struct opass_state *state);
/* The file mapping the model's tensors may point into (filemap.h). */
const struct opass_filemap *opass_state_filemap(const struct opass_state *state);
/* Drop the pages of group i's weight when it is mapped: a pass calls it
 * when done with the weight. */
void opass_state_release_weight(const struct opass_state *state, size_t i);
/* Write state->root back into metadata_props. */
int opass_state_store(Onnx__ModelProto *model, const struct opass_state *state,
		      struct onnxpass_error *err);

/* Read the currently masked weight (W * mask) in view order into values;
 * scratch (same size) is used for views that are not the storage order. */
void opass_group_read_masked(const struct opass_group *group, double *values, double *scratch);
/* The same in float32, for float32/float16/bfloat16 weights (exact). */
void opass_group_read_masked_f32(const struct opass_group *group, float *values, float *scratch);
/* Can the mask be computed on the stored weight (a float weight stored as
 * its view's transpose, line blocks: opass_weight_norm_mask_f32_transposed)? */
bool opass_group_mask_in_storage(const struct opass_group *group);
/* The masked weight in storage order: W itself when it is float32 and
 * mask_in_weight, else read into values (rows * cols floats). */
const float *opass_group_read_stored_f32(const struct opass_group *group, float *values);
/* Apply a storage-order mask: into the mask tensor, or (mask_in_weight) to W. */
void opass_group_write_stored_mask(struct opass_group *group, const uint8_t *mask);
/* Store a view-order mask into the group's mask tensor, or (mask_in_weight)
 * zero the pruned elements of W and set group->nnz; scratch holds
 * rows * cols bytes. */
void opass_group_write_mask(struct opass_group *group, const uint8_t *view_mask, uint8_t *scratch);

/* Write view-order float values into the weight (its own layout and
 * dtype; float16/bfloat16 rounded to nearest even). */
void opass_group_write_weight_f32(struct opass_group *group, const float *values);

/* JSON helpers. */
double opass_json_number(const cJSON *obj, const char *key, double fallback);
const char *opass_json_string(const cJSON *obj, const char *key);
bool opass_json_bool(const cJSON *obj, const char *key, bool fallback);
/* Parse ctx's config, load the model's state and run apply (the body of
 * step, squash or convert) on them. */
int opass_state_run(struct onnxpass_model *model, struct onnxpass_context *ctx,
		    int (*apply)(Onnx__ModelProto *model, struct opass_state *state,
				 const struct opass_config *config, struct onnxpass_error *err),
		    struct onnxpass_error *err);
/* Parse the config of a pass context; -EINVAL with line/column on errors. */
int opass_context_config(struct onnxpass_context *ctx, struct opass_config **ret_config,
			 struct onnxpass_error *err);
/* options.threads: worker threads (0 or absent: one per CPU). */
int opass_config_threads(const struct opass_config *config, unsigned *ret,
			 struct onnxpass_error *err);
/* The options object of a config, or NULL. */
const cJSON *opass_config_option(const struct opass_config *config, const char *key);
