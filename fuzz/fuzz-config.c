/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: config JSON -> opass_config_parse + match against the
 * weights of a small fixed model -> every pass list with that config (which
 * also reaches options: state for state-load, format, keep_params...).
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *model;
	static size_t model_size;
	char *text = malloc(size + 1);

	if (!model)
		model = fuzz_small_model(&model_size);
	memcpy(text, data, size);
	text[size] = '\0';
	match_all(text);
	fuzz_run_lists(model, model_size, NULL, text);
	free(text);
	return 0;
}
