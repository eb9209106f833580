/* SPDX-License-Identifier: MIT */
/*
 * state-export / state-load: torch's sparsifier state_dict() and
 * load_state_dict(strict=).
 *
 * state-export   Before: a prepared model   After: unchanged; report = JSON
 *                {format, sparsifier, defaults, enable_mask_update, step_count,
 *                 schedule, groups: [{..., "mask_data": {"shape", "bits"}}]} with
 *                masks bit-packed (LSB first, storage order) in base64.
 * state-load     Before: a model, prepared or not   After: prepared with the
 *                state's groups and masks (options.state holds the state).
 *
 * Conditions (load): with options.strict (default true) every group of the
 * state must name a weight of the model (torch raises otherwise); without,
 * missing ones are skipped. Mask shapes must equal the weights'. As in
 * torch, the state's groups replace the model's: a group the state lacks
 * leaves the sparsifier, its mask folded into its weight (squash).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "passes.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64_encode(const uint8_t *data, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1), *p = out;

	for (size_t i = 0; out && i < n; i += 3) {
		uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < n ? (uint32_t)data[i + 1] << 8 : 0) |
			     (i + 2 < n ? data[i + 2] : 0);

		*p++ = b64[v >> 18 & 63];
		*p++ = b64[v >> 12 & 63];
		*p++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*p++ = i + 2 < n ? b64[v & 63] : '=';
	}
	if (out)
		*p = '\0';
	return out;
}

/* Decode into out (size n exactly); -EINVAL on bad input or size. */
static int base64_decode(const char *text, uint8_t *out, size_t n)
{
	size_t len = strlen(text), k = 0;

	if (len % 4 || len / 4 * 3 < n || len / 4 * 3 > n + 2)
		return -EINVAL;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t v = 0;

		for (size_t j = 0; j < 4; j++) {
			const char *c = text[i + j] == '=' ? b64 : strchr(b64, text[i + j]);

			if (!c || !text[i + j])
				return -EINVAL;
			v = v << 6 | (uint32_t)(c - b64);
		}
		for (size_t j = 0; j < 3 && k < n; j++)
			out[k++] = (uint8_t)(v >> (16 - 8 * j));
	}
	return 0;
}

static int group_export(cJSON *groups, const struct opass_group *g)
{
	size_t n = g->mask->raw_data.len, nbytes = (n + 7) / 8;
	uint8_t *bits = calloc(nbytes ? nbytes : 1, 1);
	cJSON *copy = cJSON_Duplicate(g->json, true), *mask, *shape;
	char *text;

	if (!bits || !copy) {
		free(bits);
		cJSON_Delete(copy);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (g->mask->raw_data.data[i])
			bits[i / 8] |= (uint8_t)(1u << (i % 8));
	text = base64_encode(bits, nbytes);
	free(bits);
	cJSON_AddItemToArray(groups, copy);
	mask = cJSON_AddObjectToObject(copy, "mask_data");
	shape = cJSON_AddArrayToObject(mask, "shape");
	for (size_t i = 0; shape && i < g->mask->n_dims; i++)
		cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)g->mask->dims[i]));
	if (!text || !cJSON_AddStringToObject(mask, "bits", text)) {
		free(text);
		return -ENOMEM;
	}
	free(text);
	return 0;
}

int opass_pass_state_export(struct onnxpass_model *model, struct onnxpass_context *ctx,
			    struct onnxpass_error *err)
{
	struct opass_state *state = NULL;
	cJSON *out = NULL, *groups;
	char *text = NULL;
	int r;

	r = opass_state_load(model, &state, err);
	if (r < 0)
		return r;
	out = cJSON_Duplicate(state->root, true);
	cJSON_DeleteItemFromObjectCaseSensitive(out, "groups");
	groups = cJSON_AddArrayToObject(out, "groups");
	for (size_t i = 0; groups && r == 0 && i < state->n_groups; i++)
		r = group_export(groups, &state->groups[i]);
	text = r == 0 && groups ? cJSON_Print(out) : NULL;
	r = text ? onnxpass_context_print(ctx, "%s\n", text) : -ENOMEM;
	if (r < 0)
		opass_error(err, r, "out of memory");
	free(text);
	cJSON_Delete(out);
	opass_state_free(state);
	return r;
}

/* A config equivalent to the state: its defaults, one exact entry per group. */
static char *state_config_text(const cJSON *saved, bool strict)
{
	cJSON *config = cJSON_CreateObject(), *entries, *g;
	char *text;

	cJSON_AddItemToObject(config, "sparsifier",
			      cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(saved, "sparsifier"), true));
	cJSON_AddItemToObject(config, "defaults",
			      cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(saved, "defaults"), true));
	cJSON_AddItemToObject(config, "schedule",
			      cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(saved, "schedule"), true));
	cJSON_AddBoolToObject(config, "strict", strict);
	entries = cJSON_AddArrayToObject(config, "config");
	cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(saved, "groups")) {
		cJSON *e = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(g, "args"), true);

		if (!e)
			continue;
		cJSON_AddItemToArray(entries, e);
		cJSON_DeleteItemFromObjectCaseSensitive(e, "tensor_fqn");
		cJSON_AddItemToObject(e, "tensor_fqn",
				      cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(g, "tensor_fqn"), true));
	}
	text = cJSON_PrintUnformatted(config);
	cJSON_Delete(config);
	return text;
}

static const cJSON *saved_group(const cJSON *saved, const char *name)
{
	const cJSON *g;

	cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(saved, "groups")) {
		const char *fqn = opass_json_string(g, "tensor_fqn");

		if (fqn && strcmp(fqn, name) == 0)
			return g;
	}
	return NULL;
}

static int group_load(struct opass_group *g, const cJSON *saved, struct onnxpass_error *err)
{
	const cJSON *mask = cJSON_GetObjectItemCaseSensitive(saved, "mask_data");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(mask, "shape"), *d;
	const char *bits_text = opass_json_string(mask, "bits");
	size_t n = g->mask->raw_data.len, i = 0;
	uint8_t *bits;
	int r;

	/* what step recorded (current_sparsity_level) comes back too */
	cJSON_ArrayForEach(d, saved)
		if (d->string && strcmp(d->string, "mask_data") != 0 &&
		    !cJSON_GetObjectItemCaseSensitive(g->json, d->string))
			cJSON_AddItemToObject(g->json, d->string, cJSON_Duplicate(d, true));
	if (!bits_text)
		return 0;
	cJSON_ArrayForEach(d, shape)
		if (i >= g->mask->n_dims || !cJSON_IsNumber(d) || d->valuedouble != (double)g->mask->dims[i++])
			i = SIZE_MAX - 1;
	if (i != g->mask->n_dims)
		return opass_error_usage(err, "state: group '%s': mask shape differs from the weight",
					 g->name);
	bits = malloc((n + 7) / 8 ? (n + 7) / 8 : 1);
	if (!bits)
		return opass_error(err, -ENOMEM, "out of memory");
	r = base64_decode(bits_text, bits, (n + 7) / 8);
	for (size_t k = 0; r == 0 && k < n; k++)
		g->mask->raw_data.data[k] = bits[k / 8] >> (k % 8) & 1;
	free(bits);
	return r < 0 ? opass_error_usage(err, "state: group '%s': bad mask bits", g->name) : 0;
}

/* torch's load_state_dict replaces the groups with the state's: a group of
 * the model that the state lacks leaves the sparsifier, its mask folded into
 * its weight (what its forward computed). Only the kept groups stay in state. */
static int groups_drop_missing(Onnx__ModelProto *model, struct opass_state *state, const cJSON *saved,
			       const struct opass_config *config, struct onnxpass_error *err)
{
	struct opass_state gone = {
		.root = state->root, .sparsifier = state->sparsifier, .model = state->model,
	};
	cJSON *groups = cJSON_GetObjectItemCaseSensitive(state->root, "groups");
	size_t kept = 0;
	int r = 0;

	gone.groups = calloc(state->n_groups + 1, sizeof(*gone.groups));
	if (!gone.groups)
		return opass_error(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < state->n_groups; i++) {
		if (saved_group(saved, state->groups[i].name))
			state->groups[kept++] = state->groups[i];
		else
			gone.groups[gone.n_groups++] = state->groups[i];
	}
	state->n_groups = kept;
	if (gone.n_groups)
		r = opass_squash_apply(model, &gone, config, err);
	/* their JSON goes (the kept groups' JSON stays where it is) */
	for (size_t i = 0; r == 0 && i < gone.n_groups; i++)
		cJSON_Delete(cJSON_DetachItemViaPointer(groups, gone.groups[i].json));
	free(gone.groups);
	return r;
}

static int state_apply(struct onnxpass_model *model, const cJSON *saved,
		       const struct opass_config *config, struct onnxpass_error *err)
{
	struct opass_state *state = NULL;
	int r = opass_state_load(model, &state, err);

	if (r == 0)
		r = groups_drop_missing(model->proto, state, saved, config, err);
	for (size_t i = 0; r == 0 && i < state->n_groups; i++) {
		const cJSON *s = saved_group(saved, state->groups[i].name);

		if (s)
			r = group_load(&state->groups[i], s, err);
	}
	if (r == 0) {
		cJSON_ReplaceItemInObjectCaseSensitive(state->root, "step_count",
			cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(saved, "step_count"), true));
		cJSON_ReplaceItemInObjectCaseSensitive(state->root, "enable_mask_update",
			cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(saved, "enable_mask_update"), true));
		r = opass_state_store(model->proto, state, err);
	}
	opass_state_free(state);
	return r;
}

int opass_pass_state_load(struct onnxpass_model *model, struct onnxpass_context *ctx,
			  struct onnxpass_error *err)
{
	struct opass_config *config = NULL, *state_config = NULL;
	const cJSON *saved;
	char *text = NULL;
	bool strict;
	int r;

	r = opass_context_config(ctx, &config, err);
	if (r < 0)
		return r;
	saved = opass_config_option(config, "state");
	strict = opass_json_bool(config->options, "strict", true);
	if (!cJSON_IsObject(saved) || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(saved, "groups")) ||
	    !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(saved, "step_count")) ||
	    !cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(saved, "enable_mask_update"))) {
		r = opass_error_usage(err, "state: options.state is not a sparsifier state");
		goto out;
	}
	if (!opass_model_get_metadata(model->proto, OPASS_STATE_KEY)) {
		text = state_config_text(saved, strict);
		r = text ? opass_config_parse(text, &state_config, err) : -ENOMEM;
		if (r == 0)
			r = opass_prepare_apply(model->proto, state_config, true, err);
		/* the state's config is options.state's, not the config document's */
		if (r < 0 && opass_error_prefix(err, "state: ") == -EINVAL)
			opass_error_blame(err, ONNXPASS_ERROR_USAGE);
	}
	if (r == 0)
		r = state_apply(model, saved, config, err);
out:
	free(text);
	opass_config_free(state_config);
	opass_config_free(config);
	return r;
}
