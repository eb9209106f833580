/* SPDX-License-Identifier: MIT */
/* The frame of a sparsity pass: its config, options and the model's state. */
#include <errno.h>

#include "error.h"
#include "sparsity/sparsity.h"

int opass_state_run(struct onnxpass_model *model, struct onnxpass_context *ctx,
		    int (*apply)(Onnx__ModelProto *model, struct opass_state *state,
				 const struct opass_config *config, struct onnxpass_error *err),
		    struct onnxpass_error *err)
{
	struct opass_config *config = NULL;
	struct opass_state *state = NULL;
	int r;

	r = opass_context_config(ctx, &config, err);
	if (r == 0)
		r = opass_state_load(model, &state, err);
	if (r == 0)
		r = apply(model->proto, state, config, err);
	opass_state_free(state);
	opass_config_free(config);
	return r;
}

int opass_context_config(struct onnxpass_context *ctx, struct opass_config **ret_config,
			 struct onnxpass_error *err)
{
	return opass_config_parse(onnxpass_context_get_config(ctx), ret_config, err);
}

const cJSON *opass_config_option(const struct opass_config *config, const char *key)
{
	return config->options ? cJSON_GetObjectItemCaseSensitive(config->options, key) : NULL;
}

int opass_config_threads(const struct opass_config *config, unsigned *ret,
			 struct onnxpass_error *err)
{
	const cJSON *v = opass_config_option(config, "threads");

	if (!v || cJSON_IsNull(v)) {
		*ret = 0;
		return 0;
	}
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1024 ||
	    v->valuedouble != (double)(unsigned)v->valuedouble)
		return opass_error_usage(err, "options: threads must be an integer in [0, 1024]");
	*ret = (unsigned)v->valuedouble;
	return 0;
}
