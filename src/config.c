/* SPDX-License-Identifier: MIT */
/*
 * Sparsity config (SPEC 5). The document keeps every key it was given
 * (unknown keys are carried into the state); this module only fills in
 * torch's defaults, validates, and answers "which args for this weight".
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "glob.h"

/* Largest integer a double holds exactly. */
#define JSON_INT_MAX 9007199254740992.0

static const char ZPB_TOO_MANY[] =
	"Number of zeros per block cannot be more than the total number of elements in that block.";
static const char ZPB_NEGATIVE[] = "Number of zeros per block should be positive.";

static bool json_get_int(const cJSON *item, int64_t *ret)
{
	double v;

	if (!cJSON_IsNumber(item))
		return false;
	v = item->valuedouble;
	if (!isfinite(v) || fabs(v) > JSON_INT_MAX || floor(v) != v)
		return false;
	*ret = (int64_t)v;
	return true;
}

static const cJSON *json_get(const cJSON *object, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(object, key);
}

/* ---- group arguments ---- */

static int args_read_block(const cJSON *item, const char *ctx, int64_t *ret_rows,
			   int64_t *ret_cols, struct onnxpass_error *err)
{
	int64_t dims[2];

	if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2 ||
	    !json_get_int(cJSON_GetArrayItem(item, 0), &dims[0]) ||
	    !json_get_int(cJSON_GetArrayItem(item, 1), &dims[1]))
		return opass_error_config(err,
					  "config: %s'sparse_block_shape' must be an array of two integers",
					  ctx);
	if (dims[0] < 1 || dims[1] < 1)
		return opass_error_config(err,
					  "config: %s'sparse_block_shape' dimensions must be at least 1 (got [%lld, %lld])",
					  ctx, (long long)dims[0], (long long)dims[1]);
	if (dims[0] > INT32_MAX || dims[1] > INT32_MAX)
		return opass_error_config(err,
				   "config: %s'sparse_block_shape' dimensions must be at most %d",
					  ctx, INT32_MAX);
	*ret_rows = dims[0];
	*ret_cols = dims[1];
	return 0;
}

static int args_read_sparsity_level(const cJSON *args, const char *ctx, struct opass_args *a,
				    struct onnxpass_error *err)
{
	const cJSON *item = json_get(args, "sparsity_level");

	if (!item)
		return 0;
	if (!cJSON_IsNumber(item))
		return opass_error_config(err, "config: %s'sparsity_level' must be a number", ctx);
	if (!(item->valuedouble >= 0.0 && item->valuedouble <= 1.0))
		return opass_error_config(err,
				   "config: %s'sparsity_level' must be between 0 and 1 (got %g)",
					  ctx, item->valuedouble);
	a->sparsity_level = item->valuedouble;
	return 0;
}

/* null or absent: the product of the block shape (torch's None), as in
 * WeightNormSparsifier.__init__. Checks in torch's order (update_mask). */
static int args_read_zeros_per_block(const cJSON *args, const char *ctx, struct opass_args *a,
				     struct onnxpass_error *err)
{
	const cJSON *item = json_get(args, "zeros_per_block");
	int64_t values_per_block = a->block_rows * a->block_cols;
	int64_t zeros = values_per_block;

	if (item && !cJSON_IsNull(item) && !json_get_int(item, &zeros))
		return opass_error_config(err, "config: %s'zeros_per_block' must be an integer",
					  ctx);
	if (zeros > values_per_block)
		return opass_error_config(err, "config: %s%s", ctx, ZPB_TOO_MANY);
	if (zeros < 0)
		return opass_error_config(err, "config: %s%s", ctx, ZPB_NEGATIVE);
	a->zeros_per_block = zeros;
	return 0;
}

/* null or absent: 2 (torch's norm=None). */
static int args_read_norm(const cJSON *args, const char *ctx, struct opass_args *a,
			  struct onnxpass_error *err)
{
	const cJSON *item = json_get(args, "norm");

	if (!item || cJSON_IsNull(item))
		return 0;
	if (!cJSON_IsNumber(item))
		return opass_error_config(err, "config: %s'norm' must be 1 or 2", ctx);
	if (item->valuedouble != 1.0 && item->valuedouble != 2.0)
		return opass_error_config(err,
				   "config: %s'norm' must be 1 or 2 (L-%g is not yet implemented.)",
					  ctx, item->valuedouble);
	a->norm = (int)item->valuedouble;
	return 0;
}

static int args_read_conv_view(const cJSON *args, const char *ctx, struct opass_args *a,
			       struct onnxpass_error *err)
{
	const cJSON *item = json_get(args, "conv_view");

	if (!item)
		return 0;
	if (cJSON_IsString(item) && strcmp(item->valuestring, "oihw") == 0)
		a->conv_view = OPASS_CONV_VIEW_OIHW;
	else if (cJSON_IsString(item) && strcmp(item->valuestring, "ohwi") == 0)
		a->conv_view = OPASS_CONV_VIEW_OHWI;
	else
		return opass_error_config(err,
				   "config: %s'conv_view' must be \"oihw\" or \"ohwi\"", ctx);
	return 0;
}

static int args_read_weight_norm(const cJSON *args, const char *ctx, struct opass_args *a,
				 struct onnxpass_error *err)
{
	const cJSON *block = json_get(args, "sparse_block_shape");
	int r;

	r = args_read_sparsity_level(args, ctx, a, err);
	if (r == 0 && block)
		r = args_read_block(block, ctx, &a->block_rows, &a->block_cols, err);
	if (r == 0)
		r = args_read_zeros_per_block(args, ctx, a, err);
	if (r == 0)
		r = args_read_norm(args, ctx, a, err);
	return r;
}

/* wanda / sparsegpt: [1, 1] is unstructured at sparsity_level, [1, M]
 * is N:M with N = zeros_per_block < M; the view is always oihw. */
static int args_read_calibrated(const cJSON *args, const char *ctx, struct opass_args *a,
				struct onnxpass_error *err)
{
	const cJSON *damp = json_get(args, "percdamp"), *bs = json_get(args, "blocksize");
	int r;

	a->block_cols = 1;
	a->zeros_per_block = 1;
	r = args_read_weight_norm(args, ctx, a, err);
	if (r < 0)
		return r;
	if (a->block_rows != 1 || (a->block_cols > 1 && a->zeros_per_block >= a->block_cols))
		return opass_error_config(err,
					  "config: %s%s takes sparse_block_shape [1, 1] (unstructured) or [1, M] with zeros_per_block N < M (N:M)",
					  ctx, opass_sparsifier_name(a->sparsifier));
	if (a->conv_view != OPASS_CONV_VIEW_OIHW)
		return opass_error_config(err, "config: %s%s uses the oihw conv view", ctx,
					  opass_sparsifier_name(a->sparsifier));
	if (damp && (!cJSON_IsNumber(damp) || !(damp->valuedouble >= 0 && damp->valuedouble <= 1e6)))
		return opass_error_config(err, "config: %s'percdamp' must be a number >= 0", ctx);
	a->percdamp = damp ? damp->valuedouble : 0.01;
	a->blocksize = (128 + a->block_cols - 1) / a->block_cols * a->block_cols;
	if (bs && (!json_get_int(bs, &a->blocksize) || a->blocksize < 1 || a->blocksize > (1 << 20) ||
		   a->blocksize % a->block_cols))
		return opass_error_config(err,
					  "config: %s'blocksize' must be a positive integer, a multiple of M", ctx);
	return 0;
}

/* torch only rejects even values when nearliness > 0 (<= 0 gives an
 * all-zero mask). */
static int args_read_nearliness(const cJSON *args, const char *ctx, struct opass_args *a,
				struct onnxpass_error *err)
{
	const cJSON *item = json_get(args, "nearliness");

	if (!item)
		return 0;
	if (!json_get_int(item, &a->nearliness))
		return opass_error_config(err, "config: %s'nearliness' must be an integer", ctx);
	if (a->nearliness > 0 && a->nearliness % 2 == 0)
		return opass_error_config(err, "config: %snearliness can only be an odd number",
					  ctx);
	return 0;
}

static int args_parse(const cJSON *args, enum opass_sparsifier sparsifier, const char *ctx,
		      struct opass_args *ret_args, struct onnxpass_error *err)
{
	struct opass_args a = {
		.sparsifier = sparsifier,
		.sparsity_level = 0.5,
		.block_rows = 1,
		.block_cols = 4,
		.zeros_per_block = 4,
		.norm = 2,
		.conv_view = OPASS_CONV_VIEW_OIHW,
		.nearliness = 1,
		.percdamp = 0.01,
		.blocksize = 128,
	};
	int r;

	if (!cJSON_IsObject(args))
		return opass_error_config(err, "config: %sarguments must be an object", ctx);
	r = args_read_conv_view(args, ctx, &a, err);
	if (r < 0)
		return r;
	if (sparsifier == OPASS_SPARSIFIER_WEIGHT_NORM)
		r = args_read_weight_norm(args, ctx, &a, err);
	else if (opass_sparsifier_calibrated(sparsifier))
		r = args_read_calibrated(args, ctx, &a, err);
	else
		r = args_read_nearliness(args, ctx, &a, err);
	if (r < 0)
		return r;
	*ret_args = a;
	return 0;
}

int opass_args_parse(const cJSON *args, enum opass_sparsifier sparsifier,
		     struct opass_args *ret_args, struct onnxpass_error *err)
{
	return args_parse(args, sparsifier, "", ret_args, err);
}

int opass_args_check_shape(const struct opass_args *args, int64_t rows, int64_t cols,
			   struct onnxpass_error *err)
{
	int64_t min = rows < cols ? rows : cols;

	if (args->sparsifier != OPASS_SPARSIFIER_NEARLY_DIAGONAL || args->nearliness <= 0)
		return 0;
	if (args->nearliness / 2 >= min)
		return opass_error_config(err,
					  "config: nearliness cannot be larger than the dimensions of tensor.");
	return 0;
}

/* ---- the document ---- */

/* 1-based line and column (in UTF-8 characters) of offset pos. */
static void json_position(const char *json, size_t pos, unsigned *ret_line, unsigned *ret_col)
{
	unsigned line = 1, col = 1;

	for (size_t i = 0; i < pos && json[i]; i++) {
		unsigned char c = (unsigned char)json[i];

		if (c == '\n') {
			line++;
			col = 1;
		} else if ((c & 0xC0) != 0x80) {
			col++;
		}
	}
	*ret_line = line;
	*ret_col = col;
}

/* cJSON_GetErrorPtr() reads a global: use the parse end instead. cJSON
 * limits nesting (CJSON_NESTING_LIMIT), so deep input fails cleanly. */
static int config_parse_json(const char *json, cJSON **ret_root, struct onnxpass_error *err)
{
	const char *end = NULL;
	unsigned line, col;
	cJSON *root;

	if (!json || !*json)
		json = "{}";
	root = cJSON_ParseWithOpts(json, &end, 0);
	if (root && end) {
		end += strspn(end, " \t\r\n");
		if (*end == '\0') {
			*ret_root = root;
			return 0;
		}
	}
	cJSON_Delete(root);
	if (!end || end < json)
		end = json;
	json_position(json, (size_t)(end - json), &line, &col);
	return opass_error_config(err, "config: line %u, column %u: invalid JSON", line, col);
}

static const char *const sparsifier_names[] = {
	[OPASS_SPARSIFIER_WEIGHT_NORM] = "weight_norm",
	[OPASS_SPARSIFIER_NEARLY_DIAGONAL] = "nearly_diagonal",
	[OPASS_SPARSIFIER_WANDA] = "wanda",
	[OPASS_SPARSIFIER_SPARSEGPT] = "sparsegpt",
};

const char *opass_sparsifier_name(enum opass_sparsifier sparsifier)
{
	return sparsifier_names[sparsifier];
}

int opass_sparsifier_from_name(const char *name, enum opass_sparsifier *ret_sparsifier)
{
	for (size_t i = 0; name && i < sizeof(sparsifier_names) / sizeof(sparsifier_names[0]); i++)
		if (strcmp(name, sparsifier_names[i]) == 0) {
			*ret_sparsifier = (enum opass_sparsifier)i;
			return 0;
		}
	return -EINVAL;
}

bool opass_sparsifier_calibrated(enum opass_sparsifier sparsifier)
{
	return sparsifier == OPASS_SPARSIFIER_WANDA || sparsifier == OPASS_SPARSIFIER_SPARSEGPT;
}

/* The keys a config may hold, one table per level: anything else is a typo
 * and an error (torch would raise, or silently use a default). */
static const char *const config_top_keys[] = {
	"sparsifier", "defaults", "config", "module_types", "exclude", "strict", "options",
	"schedule", "sequential", "allocate", NULL,
};
/* defaults, and entries (which also take config_entry_keys) */
static const char *const config_args_keys[] = {
	"sparsity_level", "sparse_block_shape", "zeros_per_block", "norm", "conv_view",
	"nearliness", "percdamp", "blocksize", NULL,
};
/* torch's own group keys besides the args (kept in the group, as torch does) */
static const char *const config_entry_keys[] = { "tensor_fqn", "module_fqn", "tensor_name", NULL };
static const char *const config_schedule_keys[] = {
	"type", "init_sl", "init_t", "delta_t", "total_t", "initially_zero", NULL,
};

static bool key_known(const char *key, const char *const *keys)
{
	for (; keys && *keys; keys++)
		if (strcmp(key, *keys) == 0)
			return true;
	return false;
}

/* Every key of object is in keys or more (may be NULL). */
static int config_check_keys(const cJSON *object, const char *const *keys,
			     const char *const *more, const char *where, struct onnxpass_error *err)
{
	const cJSON *item;

	cJSON_ArrayForEach(item, object)
		if (item->string && !key_known(item->string, keys) && !key_known(item->string, more))
			return opass_error_config(err, "config: %sunknown key '%s'", where,
						  item->string);
	return 0;
}

static int config_check_all_keys(const struct opass_config *config, struct onnxpass_error *err)
{
	const cJSON *entry;
	int r;

	r = config_check_keys(config->root, config_top_keys, NULL, "", err);
	if (r == 0)
		r = config_check_keys(config->defaults, config_args_keys, NULL, "defaults: ", err);
	cJSON_ArrayForEach(entry, config->entries) {
		char where[256];

		if (r < 0)
			break;
		snprintf(where, sizeof(where), "entry '%s': ",
			 json_get(entry, "tensor_fqn")->valuestring);
		r = config_check_keys(entry, config_args_keys, config_entry_keys, where, err);
	}
	return r;
}

/* A schedule (CubicSL / linear) that step can apply: checked here, not at
 * the first step. */
static int config_read_schedule(const struct opass_config *config, struct onnxpass_error *err)
{
	const cJSON *schedule = json_get(config->root, "schedule");
	const cJSON *type = json_get(schedule, "type"), *item;
	const cJSON *dt = json_get(schedule, "delta_t"), *n = json_get(schedule, "total_t");
	int r;

	if (!schedule || cJSON_IsNull(schedule))
		return 0;
	if (!cJSON_IsObject(schedule))
		return opass_error_config(err, "config: 'schedule' must be an object");
	r = config_check_keys(schedule, config_schedule_keys, NULL, "schedule: ", err);
	if (r < 0)
		return r;
	if (!cJSON_IsString(type) || (strcmp(type->valuestring, "cubic") != 0 &&
				      strcmp(type->valuestring, "linear") != 0))
		return opass_error_config(err, "config: schedule: 'type' must be \"cubic\" or \"linear\"");
	cJSON_ArrayForEach(item, schedule) {
		if (strcmp(item->string, "type") == 0)
			continue;
		if (strcmp(item->string, "initially_zero") == 0 ? !cJSON_IsBool(item) : !cJSON_IsNumber(item))
			return opass_error_config(err, "config: schedule: '%s' must be a %s", item->string,
						  strcmp(item->string, "initially_zero") == 0 ? "boolean" : "number");
	}
	item = json_get(schedule, "init_sl");
	if (item && !(item->valuedouble >= 0.0 && item->valuedouble <= 1.0))
		return opass_error_config(err, "config: schedule: 'init_sl' must be in [0, 1]");
	if (n && !(n->valuedouble > 0.0))
		return opass_error_config(err, "config: schedule: 'total_t' must be > 0");
	if (dt && dt->valuedouble == 0.0 && strcmp(type->valuestring, "cubic") == 0)
		return opass_error_config(err, "config: schedule: 'delta_t' must not be 0");
	return 0;
}

static int config_read_sparsifier(struct opass_config *config, struct onnxpass_error *err)
{
	const cJSON *item = json_get(config->root, "sparsifier");

	if (!item || cJSON_IsNull(item))
		config->sparsifier = OPASS_SPARSIFIER_WEIGHT_NORM;
	else if (!cJSON_IsString(item))
		return opass_error_config(err, "config: 'sparsifier' must be a string");
	else if (opass_sparsifier_from_name(item->valuestring, &config->sparsifier) < 0)
		return opass_error_config(err,
					  "config: unknown sparsifier '%s' (expected weight_norm, nearly_diagonal, wanda or sparsegpt)",
					  item->valuestring);
	return 0;
}

/* Set key to value (replacing any item of that name); value is consumed. */
static int json_put(cJSON *object, const char *key, cJSON *value)
{
	bool ok;

	if (!value)
		return -ENOMEM;
	if (cJSON_GetObjectItemCaseSensitive(object, key))
		ok = cJSON_ReplaceItemInObjectCaseSensitive(object, key, value);
	else
		ok = cJSON_AddItemToObject(object, key, value);
	if (!ok) {
		cJSON_Delete(value);
		return -ENOMEM;
	}
	return 0;
}

/* Set key to value when it is absent (or, with replace_null, null). */
static int json_fill(cJSON *object, const char *key, cJSON *value, bool replace_null)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	if (item && !(replace_null && cJSON_IsNull(item))) {
		cJSON_Delete(value);
		return 0;
	}
	return json_put(object, key, value);
}

/*
 * torch's WeightNormSparsifier(sparsity_level=0.5, sparse_block_shape=(1, 4),
 * zeros_per_block=None, norm=None): a None zeros_per_block becomes the
 * product of the *defaults'* block shape, once, in __init__. So an entry
 * that overrides only sparse_block_shape keeps the defaults' zeros_per_block
 * (and fails validation if that no longer fits its block), exactly as torch.
 */
static int defaults_fill_weight_norm(cJSON *defaults, struct onnxpass_error *err)
{
	const cJSON *block;
	int64_t rows, cols;
	int r;

	r = json_fill(defaults, "sparsity_level", cJSON_CreateNumber(0.5), false);
	if (r == 0)
		r = json_fill(defaults, "sparse_block_shape", cJSON_CreateIntArray((int[]){1, 4}, 2),
			      false);
	if (r < 0)
		return opass_error(err, r, "config: out of memory");
	block = json_get(defaults, "sparse_block_shape");
	r = args_read_block(block, "defaults: ", &rows, &cols, err);
	if (r < 0)
		return r;
	r = json_fill(defaults, "zeros_per_block", cJSON_CreateNumber((double)(rows * cols)), true);
	if (r == 0)
		r = json_fill(defaults, "norm", cJSON_CreateNumber(2), true);
	if (r < 0)
		return opass_error(err, r, "config: out of memory");
	return 0;
}

/* wanda / sparsegpt: unstructured 50%, percdamp 0.01; zeros_per_block
 * None is the block's product as for weight_norm (so [1, M] needs an
 * explicit N); blocksize, when absent, is 128 rounded up to a multiple of M. */
static int defaults_fill_calibrated(cJSON *defaults, struct onnxpass_error *err)
{
	int r;

	r = json_fill(defaults, "sparse_block_shape", cJSON_CreateIntArray((int[]){1, 1}, 2), false);
	if (r == 0)
		r = json_fill(defaults, "percdamp", cJSON_CreateNumber(0.01), true);
	if (r < 0)
		return opass_error(err, r, "config: out of memory");
	return defaults_fill_weight_norm(defaults, err);
}

static int config_read_defaults(struct opass_config *config, struct onnxpass_error *err)
{
	cJSON *defaults = cJSON_GetObjectItemCaseSensitive(config->root, "defaults");
	int r;

	if (defaults && !cJSON_IsNull(defaults) && !cJSON_IsObject(defaults))
		return opass_error_config(err, "config: 'defaults' must be an object");
	if (!cJSON_IsObject(defaults)) {
		r = json_fill(config->root, "defaults", cJSON_CreateObject(), true);
		if (r < 0)
			return opass_error(err, r, "config: out of memory");
		defaults = cJSON_GetObjectItemCaseSensitive(config->root, "defaults");
	}
	config->defaults = defaults;
	if (config->sparsifier == OPASS_SPARSIFIER_WEIGHT_NORM)
		return defaults_fill_weight_norm(defaults, err);
	if (opass_sparsifier_calibrated(config->sparsifier))
		return defaults_fill_calibrated(defaults, err);
	r = json_fill(defaults, "nearliness", cJSON_CreateNumber(1), false);
	if (r < 0)
		return opass_error(err, r, "config: out of memory");
	return 0;
}

static int config_read_entries(struct opass_config *config, struct onnxpass_error *err)
{
	const cJSON *entries = json_get(config->root, "config");
	const cJSON *entry;
	size_t i = 0;

	if (!entries || cJSON_IsNull(entries))
		return 0;
	if (!cJSON_IsArray(entries))
		return opass_error_config(err, "config: 'config' must be an array or null");
	cJSON_ArrayForEach(entry, entries) {
		const cJSON *fqn = json_get(entry, "tensor_fqn");

		if (!cJSON_IsObject(entry))
			return opass_error_config(err,
						  "config: config[%zu] must be an object", i);
		if (!cJSON_IsString(fqn))
			return opass_error_config(err,
					   "config: config[%zu] needs a string 'tensor_fqn'", i);
		i++;
	}
	config->entry_used = calloc(i ? i : 1, sizeof(bool));
	if (!config->entry_used)
		return opass_error(err, -ENOMEM, "config: out of memory");
	config->entries = entries;
	return 0;
}

static int config_read_module_types(struct opass_config *config, struct onnxpass_error *err)
{
	const cJSON *types = json_get(config->root, "module_types");
	const cJSON *type;

	config->module_linear = config->module_conv = true;
	if (!types || cJSON_IsNull(types))
		return 0;
	if (!cJSON_IsArray(types))
		return opass_error_config(err, "config: 'module_types' must be an array of strings");
	config->module_linear = config->module_conv = false;
	cJSON_ArrayForEach(type, types) {
		if (!cJSON_IsString(type))
			return opass_error_config(err,
					   "config: 'module_types' must be an array of strings");
		if (strcmp(type->valuestring, "linear") == 0)
			config->module_linear = true;
		else if (strcmp(type->valuestring, "conv") == 0)
			config->module_conv = true;
		else
			return opass_error_config(err,
						  "config: unknown module type '%s' (expected linear or conv)",
						  type->valuestring);
	}
	return 0;
}

static int config_read_exclude(struct opass_config *config, struct onnxpass_error *err)
{
	const cJSON *exclude = json_get(config->root, "exclude");
	const cJSON *glob;

	if (!exclude || cJSON_IsNull(exclude))
		return 0;
	if (!cJSON_IsArray(exclude))
		return opass_error_config(err, "config: 'exclude' must be an array of strings");
	cJSON_ArrayForEach(glob, exclude) {
		if (!cJSON_IsString(glob))
			return opass_error_config(err,
						  "config: 'exclude' must be an array of strings");
	}
	config->exclude = exclude;
	return 0;
}

/* wanda / sparsegpt options kept in the state: "allocate" and "sequential". */
static int config_read_calibration(const struct opass_config *config, struct onnxpass_error *err)
{
	const cJSON *allocate = json_get(config->root, "allocate");
	const cJSON *sequential = json_get(config->root, "sequential");

	if (allocate && !cJSON_IsNull(allocate) &&
	    (!cJSON_IsString(allocate) || (strcmp(allocate->valuestring, "sensitivity") != 0 &&
					   strcmp(allocate->valuestring, "uniform") != 0)))
		return opass_error_config(err, "config: 'allocate' must be \"sensitivity\" or \"uniform\"");
	if (sequential && !cJSON_IsNull(sequential) && !cJSON_IsBool(sequential) &&
	    !(cJSON_IsNumber(sequential) && sequential->valuedouble >= 1 &&
	      sequential->valuedouble <= 1e6 && sequential->valuedouble == (double)sequential->valueint))
		return opass_error_config(err,
					  "config: 'sequential' must be true, false or a number of stages (an integer >= 1)");
	if (((allocate && cJSON_IsString(allocate) && strcmp(allocate->valuestring, "sensitivity") == 0) ||
	     cJSON_IsTrue(sequential) || cJSON_IsNumber(sequential)) &&
	    !opass_sparsifier_calibrated(config->sparsifier))
		return opass_error_config(err,
					  "config: 'allocate' and 'sequential' need a calibration-aware sparsifier (wanda or sparsegpt)");
	return 0;
}

static int config_read_flags(struct opass_config *config, struct onnxpass_error *err)
{
	const cJSON *strict = json_get(config->root, "strict");
	const cJSON *options = json_get(config->root, "options");

	config->strict = true;
	if (strict && !cJSON_IsBool(strict))
		return opass_error_config(err, "config: 'strict' must be true or false");
	if (strict)
		config->strict = cJSON_IsTrue(strict);
	if (options && !cJSON_IsNull(options) && !cJSON_IsObject(options))
		return opass_error_config(err, "config: 'options' must be an object");
	if (cJSON_IsObject(options))
		config->options = options;
	return 0;
}

/* torch: local_args = deepcopy(defaults); local_args.update(module_config),
 * minus tensor_fqn (the entry's is a glob; the caller knows the real name). */
static int config_overlay(const cJSON *defaults, const cJSON *entry, cJSON **ret_args)
{
	cJSON *args = cJSON_Duplicate(defaults, true);
	const cJSON *item;

	if (!args)
		return -ENOMEM;
	cJSON_ArrayForEach(item, entry) {
		if (!item->string || strcmp(item->string, "tensor_fqn") == 0)
			continue;
		if (json_put(args, item->string, cJSON_Duplicate(item, true)) < 0) {
			cJSON_Delete(args);
			return -ENOMEM;
		}
	}
	*ret_args = args;
	return 0;
}

static int config_validate(const struct opass_config *config, struct onnxpass_error *err)
{
	struct opass_args args;
	const cJSON *entry;
	int r;

	r = args_parse(config->defaults, config->sparsifier, "defaults: ", &args, err);
	if (r < 0)
		return r;
	cJSON_ArrayForEach(entry, config->entries) {
		const char *fqn = json_get(entry, "tensor_fqn")->valuestring;
		char ctx[256];
		cJSON *overlay;

		r = config_overlay(config->defaults, entry, &overlay);
		if (r < 0)
			return opass_error(err, r, "config: out of memory");
		snprintf(ctx, sizeof(ctx), "entry '%s': ", fqn);
		r = args_parse(overlay, config->sparsifier, ctx, &args, err);
		cJSON_Delete(overlay);
		if (r < 0)
			return r;
	}
	return 0;
}

int opass_config_parse(const char *json, struct opass_config **ret_config,
		       struct onnxpass_error *err)
{
	struct opass_config *config = calloc(1, sizeof(*config));
	int r;

	if (!config)
		return opass_error(err, -ENOMEM, "config: out of memory");
	r = config_parse_json(json, &config->root, err);
	if (r == 0 && !cJSON_IsObject(config->root))
		r = opass_error_config(err, "config: the top level must be a JSON object");
	if (r == 0)
		r = config_read_sparsifier(config, err);
	if (r == 0)
		r = config_read_defaults(config, err);
	if (r == 0)
		r = config_read_entries(config, err);
	if (r == 0)
		r = config_read_module_types(config, err);
	if (r == 0)
		r = config_read_exclude(config, err);
	if (r == 0)
		r = config_read_flags(config, err);
	if (r == 0)
		r = config_read_calibration(config, err);
	if (r == 0)
		r = config_read_schedule(config, err);
	if (r == 0)
		r = config_check_all_keys(config, err);
	if (r == 0)
		r = config_validate(config, err);
	if (r < 0) {
		opass_config_free(config);
		return r;
	}
	*ret_config = config;
	return 0;
}

struct opass_config *opass_config_free(struct opass_config *config)
{
	if (!config)
		return NULL;
	cJSON_Delete(config->root);
	free(config->entry_used);
	free(config);
	return NULL;
}

static bool config_excluded(const struct opass_config *config, const char *name, const char *alias)
{
	const cJSON *glob;

	cJSON_ArrayForEach(glob, config->exclude) {
		if (opass_glob_match_either(glob->valuestring, name, alias))
			return true;
	}
	return false;
}

int opass_config_match(struct opass_config *config, const char *name, const char *alias,
		       const char *module_type, cJSON **ret_args, struct onnxpass_error *err)
{
	const cJSON *entry, *selected = NULL;
	bool wanted;
	size_t i = 0;
	int r;

	if (strcmp(module_type, "linear") == 0)
		wanted = config->module_linear;
	else if (strcmp(module_type, "conv") == 0)
		wanted = config->module_conv;
	else
		return opass_error_config(err, "config: unknown module type '%s'", module_type);
	if (!wanted || config_excluded(config, name, alias)) {
		*ret_args = NULL;
		return 0;
	}
	cJSON_ArrayForEach(entry, config->entries) {
		if (opass_glob_match_either(json_get(entry, "tensor_fqn")->valuestring, name, alias)) {
			config->entry_used[i] = true;
			selected = entry;
			break;
		}
		i++;
	}
	if (config->entries && !selected) {
		*ret_args = NULL;
		return 0;
	}
	r = config_overlay(config->defaults, selected, ret_args);
	if (r < 0)
		return opass_error(err, r, "config: out of memory");
	return 0;
}

int opass_config_check_unused(const struct opass_config *config, struct onnxpass_error *err)
{
	const cJSON *entry;
	size_t i = 0;

	if (!config->strict)
		return 0;
	cJSON_ArrayForEach(entry, config->entries) {
		if (!config->entry_used[i])
			return opass_error_config(err, "config: entry '%s' matches no weight",
						  json_get(entry, "tensor_fqn")->valuestring);
		i++;
	}
	return 0;
}
