/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: config JSON -> opass_config_parse + match against the
 * weights of a small fixed model -> every pass list with that config (which
 * also reaches options: state for state-load, format, keep_params...).
 * The same text is also stored as the sparsifier state (metadata
 * "onnx_pass.sparsity") of the prepared model, and every pass list runs on
 * that: the state is model input too.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "model.h"
#include "onnxpass/plugin.h"
#include "sparsity/sparsity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[][3] = {
	{ "w0", "layer0.weight", "linear" },
	{ "w1", NULL, "linear" },
	{ "conv.weight", "layer1.0.conv1.weight", "conv" },
};

static void match_all(const char *text)
{
	struct opass_config *config = NULL;

	if (opass_config_parse(text, &config, NULL) < 0)
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		cJSON *args = NULL;
		struct opass_args parsed;

		if (opass_config_match(config, names[i][0], names[i][1], names[i][2], &args, NULL) < 0 ||
		    !args)
			continue;
		if (opass_args_parse(args, config->sparsifier, &parsed, NULL) == 0)
			opass_args_check_shape(&parsed, 8, 8, NULL);
		cJSON_Delete(args);
	}
	opass_config_check_unused(config, NULL);
	opass_config_free(config);
}

/* Run prepare on the model; abort on failure (the model is fixed). */
static uint8_t *prepare(const uint8_t *model, size_t size, size_t *ret_size)
{
	struct onnxpass_registry *reg = NULL;
	struct onnxpass_model *m = NULL;
	void *out = NULL;

	if (onnxpass_registry_new(&reg, NULL) < 0 ||
	    onnxpass_model_load_bytes(model, size, NULL, &m, NULL) < 0 ||
	    onnxpass_registry_run(reg, m, "prepare", fuzz_config, NULL, NULL) < 0 ||
	    onnxpass_model_save_bytes(m, &out, ret_size, NULL) < 0)
		abort();
	onnxpass_model_free(m);
	onnxpass_registry_free(reg);
	return out;
}

/* The prepared model with text as its state. */
static void run_with_state(const uint8_t *prepared, size_t size, const char *text)
{
	struct onnxpass_model *m = NULL;
	void *out = NULL;
	size_t out_size;

	if (onnxpass_model_load_bytes(prepared, size, NULL, &m, NULL) < 0 ||
	    opass_model_set_metadata(m->proto, OPASS_STATE_KEY, text) < 0 ||
	    onnxpass_model_save_bytes(m, &out, &out_size, NULL) < 0)
		abort();
	onnxpass_model_free(m);
	fuzz_run_lists(out, out_size, NULL, fuzz_config);
	onnxpass_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *model, *prepared;
	static size_t model_size, prepared_size;
	char *text = malloc(size + 1);

	if (!model) {
		model = fuzz_small_model(&model_size);
		prepared = prepare(model, model_size, &prepared_size);
	}
	memcpy(text, data, size);
	text[size] = '\0';
	match_all(text);
	fuzz_run_lists(model, model_size, NULL, text);
	run_with_state(prepared, prepared_size, text);
	free(text);
	return 0;
}
