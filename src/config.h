/* SPDX-License-Identifier: MIT */
/*
 * Sparsity config (SPEC 5): torch's defaults + per-tensor config.
 * Every error of the document is -EINVAL with source ONNXPASS_ERROR_CONFIG
 * (opass_error_config()); the command line exits 2 on it and names the
 * config file. Other modules return -EINVAL too (pass options, the pass
 * list, calibration data that does not fit the model): the source, not
 * the errno, says what is wrong.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "onnxpass/onnxpass.h"

enum opass_sparsifier {
	OPASS_SPARSIFIER_WEIGHT_NORM,
	OPASS_SPARSIFIER_NEARLY_DIAGONAL,
	OPASS_SPARSIFIER_WANDA,      /* calibration-aware (SPEC 12) */
	OPASS_SPARSIFIER_SPARSEGPT,  /* calibration-aware (SPEC 12) */
};

/* "weight_norm", "nearly_diagonal", "wanda", "sparsegpt". */
const char *opass_sparsifier_name(enum opass_sparsifier sparsifier);
/* -EINVAL for an unknown name. */
int opass_sparsifier_from_name(const char *name, enum opass_sparsifier *ret_sparsifier);
/* Does the sparsifier need calibration inputs (wanda, sparsegpt)? */
bool opass_sparsifier_calibrated(enum opass_sparsifier sparsifier);

enum opass_conv_view {
	OPASS_CONV_VIEW_OIHW, /* torch weight.flatten(1): [O, I/g * prod(k)] */
	OPASS_CONV_VIEW_OHWI, /* input channel fastest: [O, prod(k) * I/g] */
};

struct opass_config {
	cJSON *root;                    /* the whole document, owned */
	enum opass_sparsifier sparsifier;
	cJSON *defaults;                /* object: torch defaults overlaid by the file's */
	const cJSON *entries;           /* array, or NULL when config is missing/null */
	bool *entry_used;               /* per entry: matched some weight */
	bool module_linear;
	bool module_conv;
	const cJSON *exclude;           /* array of globs, or NULL */
	bool strict;                    /* unmatched entries are errors */
	const cJSON *options;           /* pass options object, or NULL */
};

/* Typed, validated group arguments. */
struct opass_args {
	enum opass_sparsifier sparsifier;
	double sparsity_level;
	int64_t block_rows;
	int64_t block_cols;
	int64_t zeros_per_block;
	int norm;
	enum opass_conv_view conv_view;
	int64_t nearliness;
	double percdamp;    /* sparsegpt: dampening, fraction of mean(diag(H)) */
	int64_t blocksize;  /* sparsegpt: lazy-update column block */
};

/* Parse and validate a config document (NULL or "" means "{}"). JSON syntax
 * errors name the line and column. */
int opass_config_parse(const char *json, struct opass_config **ret_config,
		       struct onnxpass_error *err);
struct opass_config *opass_config_free(struct opass_config *config);

/*
 * The group arguments for one weight, torch semantics: defaults overlaid
 * by the first entry whose tensor_fqn (a glob: * ? [...]) matches name or
 * alias (alias may be NULL). module_type is "linear" or "conv".
 * *ret_args is a new object (caller frees with cJSON_Delete), or NULL when
 * the weight is not selected (filtered by module_types/exclude, or no entry
 * matches while entries are given). Marks the matching entry used.
 */
int opass_config_match(struct opass_config *config, const char *name, const char *alias,
		       const char *module_type, cJSON **ret_args, struct onnxpass_error *err);

/* -EINVAL naming the first entry that matched no weight, when strict. */
int opass_config_check_unused(const struct opass_config *config, struct onnxpass_error *err);

/* Read and validate group args (shape-independent checks, exact torch
 * messages where torch has one). */
int opass_args_parse(const cJSON *args, enum opass_sparsifier sparsifier,
		     struct opass_args *ret_args, struct onnxpass_error *err);

/* Shape-dependent checks (nearliness // 2 >= min(rows, cols)). */
int opass_args_check_shape(const struct opass_args *args, int64_t rows, int64_t cols,
			   struct onnxpass_error *err);
