/* SPDX-License-Identifier: MIT */
/* Sparsity config (SPEC 5): parsing, defaults, overlay, matching, validation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "glob.h"
#include "testlib.h"

static struct opass_config *parse_ok(const char *json)
{
	struct onnxpass_error err = {0};
	struct opass_config *config = NULL;
	int r = opass_config_parse(json, &config, &err);

	ck_assert_msg(r == 0, "parse failed (%d): %s\n%s", r, err.message, json);
	ck_assert_ptr_nonnull(config);
	return config;
}

/* Parsing fails with -EINVAL and a message containing want. */
static void parse_fails(const char *json, const char *want)
{
	struct onnxpass_error err = {0};
	struct opass_config *config = NULL;
	int r = opass_config_parse(json, &config, &err);

	ck_assert_msg(r == -EINVAL, "expected -EINVAL, got %d for %s", r, json);
	ck_assert_ptr_null(config);
	ck_assert_int_eq(err.code, -EINVAL);
	ck_assert_msg(strncmp(err.message, "config: ", 8) == 0, "no prefix: %s", err.message);
	ck_assert_msg(strstr(err.message, want), "message '%s' lacks '%s'", err.message, want);
}

static double num(const cJSON *object, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	ck_assert_msg(cJSON_IsNumber(item), "%s is not a number", key);
	return item->valuedouble;
}

static void assert_block(const cJSON *object, int rows, int cols)
{
	const cJSON *block = cJSON_GetObjectItemCaseSensitive(object, "sparse_block_shape");

	ck_assert(cJSON_IsArray(block));
	ck_assert_int_eq(cJSON_GetArraySize(block), 2);
	ck_assert_int_eq(cJSON_GetArrayItem(block, 0)->valueint, rows);
	ck_assert_int_eq(cJSON_GetArrayItem(block, 1)->valueint, cols);
}

/* Args for a weight, or NULL when it is not selected. */
static cJSON *match(struct opass_config *config, const char *name, const char *alias,
		    const char *type)
{
	struct onnxpass_error err = {0};
	cJSON *args = (cJSON *)1;
	int r = opass_config_match(config, name, alias, type, &args, &err);

	ck_assert_msg(r == 0, "match failed: %s", err.message);
	ck_assert(args != (cJSON *)1);
	return args;
}

static bool selected(struct opass_config *config, const char *name, const char *alias,
		     const char *type)
{
	cJSON *args = match(config, name, alias, type);
	bool sel = args != NULL;

	cJSON_Delete(args);
	return sel;
}

START_TEST(test_defaults_empty)
{
	const char *docs[] = {NULL, "", "{}", " \n{ }\n "};

	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		struct opass_config *config = parse_ok(docs[i]);

		ck_assert_int_eq(config->sparsifier, OPASS_SPARSIFIER_WEIGHT_NORM);
		ck_assert(cJSON_IsObject(config->defaults));
		ck_assert(num(config->defaults, "sparsity_level") == 0.5);
		assert_block(config->defaults, 1, 4);
		ck_assert(num(config->defaults, "zeros_per_block") == 4);
		ck_assert(num(config->defaults, "norm") == 2);
		ck_assert(!cJSON_GetObjectItem(config->defaults, "nearliness"));
		ck_assert_ptr_null(config->entries);
		ck_assert(config->module_linear && config->module_conv);
		ck_assert(config->strict);
		ck_assert_ptr_null(config->exclude);
		ck_assert_ptr_null(config->options);
		/* the filled defaults live in the document */
		ck_assert_ptr_eq(cJSON_GetObjectItem(config->root, "defaults"), config->defaults);
		opass_config_free(config);
	}
}
END_TEST

START_TEST(test_defaults_partial)
{
	struct opass_config *config;
	struct opass_args args;

	/* zeros_per_block defaults to the product of the defaults' block */
	config = parse_ok("{\"defaults\": {\"sparse_block_shape\": [2, 3], \"sparsity_level\": 0.7}}");
	assert_block(config->defaults, 2, 3);
	ck_assert(num(config->defaults, "zeros_per_block") == 6);
	ck_assert(num(config->defaults, "sparsity_level") == 0.7);
	ck_assert(num(config->defaults, "norm") == 2);
	ck_assert_int_eq(opass_args_parse(config->defaults, config->sparsifier, &args, NULL), 0);
	ck_assert_int_eq(args.block_rows, 2);
	ck_assert_int_eq(args.block_cols, 3);
	ck_assert_int_eq(args.zeros_per_block, 6);
	ck_assert(args.sparsity_level == 0.7);
	ck_assert_int_eq(args.norm, 2);
	opass_config_free(config);

	/* torch's None: null zeros_per_block and norm get the defaults */
	config = parse_ok("{\"defaults\": {\"zeros_per_block\": null, \"norm\": null,"
			  " \"sparse_block_shape\": [1, 8]}}");
	ck_assert(num(config->defaults, "zeros_per_block") == 8);
	ck_assert(num(config->defaults, "norm") == 2);
	opass_config_free(config);

	/* "defaults": null is the same as absent */
	config = parse_ok("{\"defaults\": null}");
	ck_assert(num(config->defaults, "zeros_per_block") == 4);
	opass_config_free(config);
}
END_TEST

START_TEST(test_defaults_nearly_diagonal)
{
	struct opass_config *config;
	struct opass_args args;

	config = parse_ok("{\"sparsifier\": \"nearly_diagonal\"}");
	ck_assert_int_eq(config->sparsifier, OPASS_SPARSIFIER_NEARLY_DIAGONAL);
	ck_assert(num(config->defaults, "nearliness") == 1);
	ck_assert(!cJSON_GetObjectItem(config->defaults, "sparsity_level"));
	ck_assert(!cJSON_GetObjectItem(config->defaults, "zeros_per_block"));
	opass_config_free(config);

	config = parse_ok("{\"sparsifier\": \"nearly_diagonal\", \"defaults\": {\"nearliness\": 5}}");
	ck_assert(num(config->defaults, "nearliness") == 5);
	ck_assert_int_eq(opass_args_parse(config->defaults, config->sparsifier, &args, NULL), 0);
	ck_assert_int_eq(args.sparsifier, OPASS_SPARSIFIER_NEARLY_DIAGONAL);
	ck_assert_int_eq(args.nearliness, 5);
	opass_config_free(config);
}
END_TEST

START_TEST(test_overlay)
{
	struct opass_config *config = parse_ok(
		"{\"defaults\": {\"sparsity_level\": 0.3, \"zeros_per_block\": 2},"
		" \"config\": ["
		"  {\"tensor_fqn\": \"a.weight\", \"sparsity_level\": 0.9, \"module_fqn\": \"x\"},"
		"  {\"tensor_fqn\": \"b.weight\", \"sparse_block_shape\": [1, 8]}]}");
	struct opass_args parsed;
	cJSON *args;

	args = match(config, "a.weight", NULL, "linear");
	ck_assert_ptr_nonnull(args);
	ck_assert(num(args, "sparsity_level") == 0.9);
	ck_assert(num(args, "zeros_per_block") == 2);
	assert_block(args, 1, 4);
	ck_assert(num(args, "norm") == 2);
	ck_assert_str_eq(cJSON_GetObjectItem(args, "module_fqn")->valuestring, "x");
	ck_assert(!cJSON_GetObjectItem(args, "tensor_fqn"));
	cJSON_Delete(args);

	/* the defaults were copied, not changed */
	ck_assert(num(config->defaults, "sparsity_level") == 0.3);
	ck_assert(!cJSON_GetObjectItem(config->defaults, "module_fqn"));

	/* overriding only the block keeps the defaults' zeros_per_block (torch) */
	args = match(config, "b.weight", NULL, "conv");
	ck_assert_ptr_nonnull(args);
	assert_block(args, 1, 8);
	ck_assert(num(args, "zeros_per_block") == 2);
	ck_assert(num(args, "sparsity_level") == 0.3);
	ck_assert_int_eq(opass_args_parse(args, config->sparsifier, &parsed, NULL), 0);
	ck_assert_int_eq(parsed.block_cols, 8);
	ck_assert_int_eq(parsed.zeros_per_block, 2);
	cJSON_Delete(args);

	ck_assert_ptr_null(match(config, "c.weight", NULL, "linear"));
	opass_config_free(config);
}
END_TEST

START_TEST(test_overlay_block_inherits_zeros)
{
	/* defaults' zeros_per_block (4, from [1, 4]) no longer fits a [1, 2] block:
	 * torch raises in update_mask; we refuse at parse time. */
	parse_fails("{\"config\": [{\"tensor_fqn\": \"w\", \"sparse_block_shape\": [1, 2]}]}",
		    "Number of zeros per block cannot be more than the total number of "
		    "elements in that block.");
	parse_fails("{\"config\": [{\"tensor_fqn\": \"w\", \"sparse_block_shape\": [1, 2]}]}",
		    "'w'");
	/* null in an entry means the product of that entry's block */
	struct opass_config *config = parse_ok(
		"{\"config\": [{\"tensor_fqn\": \"w\", \"sparse_block_shape\": [1, 2],"
		" \"zeros_per_block\": null}]}");
	struct opass_args parsed;
	cJSON *args = match(config, "w", NULL, "linear");

	ck_assert_int_eq(opass_args_parse(args, config->sparsifier, &parsed, NULL), 0);
	ck_assert_int_eq(parsed.zeros_per_block, 2);
	cJSON_Delete(args);
	opass_config_free(config);
}
END_TEST

START_TEST(test_glob)
{
	static const struct {
		const char *pattern, *text;
		bool match;
	} cases[] = {
		{"", "", true},
		{"", "a", false},
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "ab", false},
		{"*", "", true},
		{"*", "any/thing.weight", true},
		{"a*", "a", true},
		{"*.weight", "layer1.0.conv1.weight", true},
		{"*.weight", "layer1.0.conv1.bias", false},
		{"layer.*.up.weight", "layer.3.up.weight", true},
		{"layer.*.up.weight", "layer.3.down.weight", false},
		{"/enc/*/MatMul", "/enc/layer/0/MatMul", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "a/c", true},
		{"*a*b*c*", "xxaxxbxxcxx", true},
		{"*a*b*c*", "xxaxxcxxbxx", false},
		{"*ab", "aab", true},
		{"*aab", "aaab", true},
		{"a*b*", "acbd", true},
		{"layer[0-2].w", "layer1.w", true},
		{"layer[0-2].w", "layer3.w", false},
		{"layer[!0-2].w", "layer3.w", true},
		{"layer[!0-2].w", "layer1.w", false},
		{"layer[^0-2].w", "layer1.w", false},
		{"layer[^0-2].w", "layer7.w", true},
		{"[abc]", "b", true},
		{"[abc]", "d", false},
		{"[a-cx-z]", "y", true},
		{"[a-cx-z]", "m", false},
		{"[]]", "]", true},
		{"[]a]", "a", true},
		{"[!]]", "]", false},
		{"[!]]", "x", true},
		{"[a-]", "-", true},
		{"[-a]", "-", true},
		{"[ab", "[ab", true},
		{"[ab", "a", false},
		{"x\\*", "x*", true},
		{"x\\*", "xy", false},
		{"x\\[1]", "x[1]", true},
		{"onnx::MatMul_*", "onnx::MatMul_123", true},
		{"*.[0-9].*", "features.1.conv", true},
		{"*.[0-9].*", "features.a.conv", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(opass_glob_match(cases[i].pattern, cases[i].text) == cases[i].match,
			      "glob '%s' on '%s' should be %d", cases[i].pattern, cases[i].text,
			      cases[i].match);
}
END_TEST

START_TEST(test_glob_pathological)
{
	/* exponential for naive recursion; must terminate (and not match) */
	size_t n = 20000;
	char *text = malloc(n + 1);
	char pattern[] = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";

	ck_assert_ptr_nonnull(text);
	memset(text, 'a', n);
	text[n] = '\0';
	ck_assert(!opass_glob_match(pattern, text));
	text[n - 1] = 'b';
	ck_assert(opass_glob_match(pattern, text));
	free(text);
}
END_TEST

START_TEST(test_match_name_alias)
{
	struct opass_config *config = parse_ok(
		"{\"config\": ["
		"  {\"tensor_fqn\": \"layer1.0.conv[12].weight\", \"sparsity_level\": 0.1},"
		"  {\"tensor_fqn\": \"onnx::Conv_*\", \"sparsity_level\": 0.2},"
		"  {\"tensor_fqn\": \"head.weight\", \"sparsity_level\": 0.3}]}");
	cJSON *args;

	ck_assert(!config->entry_used[0] && !config->entry_used[1] && !config->entry_used[2]);
	/* the alias matches the first entry, the name the second: first wins */
	args = match(config, "onnx::Conv_193", "layer1.0.conv1.weight", "conv");
	ck_assert_ptr_nonnull(args);
	ck_assert(num(args, "sparsity_level") == 0.1);
	cJSON_Delete(args);
	ck_assert(config->entry_used[0]);
	ck_assert(!config->entry_used[1]);

	/* alias conv3 is outside [12]; the name matches entry 2 */
	args = match(config, "onnx::Conv_200", "layer1.0.conv3.weight", "conv");
	ck_assert(num(args, "sparsity_level") == 0.2);
	cJSON_Delete(args);
	ck_assert(config->entry_used[1]);

	/* matched through the name with no alias */
	args = match(config, "head.weight", NULL, "linear");
	ck_assert(num(args, "sparsity_level") == 0.3);
	cJSON_Delete(args);
	ck_assert(config->entry_used[2]);

	ck_assert(!selected(config, "tail.weight", "tail.weight", "linear"));
	ck_assert_int_eq(opass_config_check_unused(config, NULL), 0);
	opass_config_free(config);
}
END_TEST

START_TEST(test_match_negated_bracket)
{
	struct opass_config *config = parse_ok(
		"{\"config\": [{\"tensor_fqn\": \"blocks.[!0].fc.weight\"}]}");

	ck_assert(!selected(config, "w0", "blocks.0.fc.weight", "linear"));
	ck_assert(selected(config, "w1", "blocks.1.fc.weight", "linear"));
	opass_config_free(config);
}
END_TEST

START_TEST(test_module_types)
{
	struct opass_config *config = parse_ok("{\"module_types\": [\"conv\"]}");

	ck_assert(!config->module_linear && config->module_conv);
	ck_assert(!selected(config, "fc.weight", NULL, "linear"));
	ck_assert(selected(config, "conv.weight", NULL, "conv"));
	opass_config_free(config);

	config = parse_ok("{\"module_types\": [\"linear\"],"
			  " \"config\": [{\"tensor_fqn\": \"*\"}]}");
	ck_assert(selected(config, "fc.weight", NULL, "linear"));
	ck_assert(!selected(config, "conv.weight", NULL, "conv"));
	opass_config_free(config);

	config = parse_ok("{\"module_types\": []}");
	ck_assert(!selected(config, "fc.weight", NULL, "linear"));
	ck_assert(!selected(config, "conv.weight", NULL, "conv"));
	opass_config_free(config);
}
END_TEST

START_TEST(test_exclude)
{
	struct opass_config *config = parse_ok(
		"{\"exclude\": [\"*embed*\", \"head.[wb]eight\"]}");

	ck_assert(!selected(config, "embed.weight", NULL, "linear"));
	/* excluded through the alias */
	ck_assert(!selected(config, "onnx::MatMul_1", "tok_embed.weight", "linear"));
	ck_assert(!selected(config, "onnx::MatMul_2", "head.weight", "linear"));
	ck_assert(selected(config, "onnx::MatMul_3", "body.weight", "linear"));
	ck_assert(selected(config, "body.weight", NULL, "conv"));
	opass_config_free(config);

	/* exclude wins over a matching entry */
	config = parse_ok("{\"exclude\": [\"b*\"], \"config\": [{\"tensor_fqn\": \"*.weight\"}]}");
	ck_assert(!selected(config, "body.weight", NULL, "linear"));
	ck_assert(selected(config, "arm.weight", NULL, "linear"));
	opass_config_free(config);
}
END_TEST

START_TEST(test_config_null_all)
{
	const char *docs[] = {"{}", "{\"config\": null}"};

	for (size_t i = 0; i < 2; i++) {
		struct opass_config *config = parse_ok(docs[i]);
		cJSON *args = match(config, "anything", NULL, "linear");

		ck_assert_ptr_nonnull(args);
		ck_assert(num(args, "sparsity_level") == 0.5);
		ck_assert(num(args, "zeros_per_block") == 4);
		cJSON_Delete(args);
		ck_assert(selected(config, "x", "y", "conv"));
		ck_assert_int_eq(opass_config_check_unused(config, NULL), 0);
		opass_config_free(config);
	}

	/* an empty list selects nothing, like torch's prepare(model, []) */
	struct opass_config *config = parse_ok("{\"config\": []}");

	ck_assert_ptr_nonnull(config->entries);
	ck_assert(!selected(config, "anything", NULL, "linear"));
	opass_config_free(config);
}
END_TEST

START_TEST(test_strict_unused)
{
	const char *json = "{\"config\": [{\"tensor_fqn\": \"a.*\"}, {\"tensor_fqn\": \"zz.w\"}]%s}";
	struct onnxpass_error err = {0};
	struct opass_config *config;
	char doc[256];

	snprintf(doc, sizeof(doc), json, "");
	config = parse_ok(doc);
	ck_assert(selected(config, "a.w", NULL, "linear"));
	ck_assert_int_eq(opass_config_check_unused(config, &err), -EINVAL);
	ck_assert_int_eq(err.code, -EINVAL);
	ck_assert_str_eq(err.message, "config: entry 'zz.w' matches no weight");
	opass_config_free(config);

	snprintf(doc, sizeof(doc), json, ", \"strict\": true");
	config = parse_ok(doc);
	ck_assert_int_eq(opass_config_check_unused(config, NULL), -EINVAL);
	opass_config_free(config);

	snprintf(doc, sizeof(doc), json, ", \"strict\": false");
	config = parse_ok(doc);
	ck_assert(!config->strict);
	ck_assert_int_eq(opass_config_check_unused(config, NULL), 0);
	opass_config_free(config);
}
END_TEST

START_TEST(test_validation_messages)
{
	static const struct {
		const char *json, *message;
	} cases[] = {
		{"{\"defaults\": {\"zeros_per_block\": 5}}",
		 "Number of zeros per block cannot be more than the total number of elements "
		 "in that block."},
		{"{\"defaults\": {\"sparse_block_shape\": [2, 2], \"zeros_per_block\": 5}}",
		 "Number of zeros per block cannot be more than the total number of elements "
		 "in that block."},
		{"{\"defaults\": {\"zeros_per_block\": -1}}",
		 "Number of zeros per block should be positive."},
		{"{\"config\": [{\"tensor_fqn\": \"x\", \"zeros_per_block\": -2}]}",
		 "Number of zeros per block should be positive."},
		{"{\"defaults\": {\"zeros_per_block\": 1.5}}", "'zeros_per_block' must be an integer"},
		{"{\"defaults\": {\"sparse_block_shape\": [0, 4]}}",
		 "'sparse_block_shape' dimensions must be at least 1"},
		{"{\"defaults\": {\"sparse_block_shape\": [4, -1]}}",
		 "'sparse_block_shape' dimensions must be at least 1"},
		{"{\"defaults\": {\"sparse_block_shape\": [4]}}",
		 "'sparse_block_shape' must be an array of two integers"},
		{"{\"defaults\": {\"sparse_block_shape\": [1, 2, 3]}}",
		 "'sparse_block_shape' must be an array of two integers"},
		{"{\"defaults\": {\"sparse_block_shape\": [1, 2.5]}}",
		 "'sparse_block_shape' must be an array of two integers"},
		{"{\"defaults\": {\"sparse_block_shape\": \"1x4\"}}",
		 "'sparse_block_shape' must be an array of two integers"},
		{"{\"config\": [{\"tensor_fqn\": \"x\", \"sparse_block_shape\": [0, 1]}]}",
		 "'sparse_block_shape' dimensions must be at least 1"},
		{"{\"defaults\": {\"sparsity_level\": 1.5}}", "'sparsity_level' must be between 0 and 1"},
		{"{\"defaults\": {\"sparsity_level\": -0.1}}",
		 "'sparsity_level' must be between 0 and 1"},
		{"{\"defaults\": {\"sparsity_level\": 1e400}}",
		 "'sparsity_level' must be between 0 and 1"},
		{"{\"defaults\": {\"sparsity_level\": \"0.5\"}}", "'sparsity_level' must be a number"},
		{"{\"config\": [{\"tensor_fqn\": \"x\", \"sparsity_level\": null}]}",
		 "'sparsity_level' must be a number"},
		{"{\"defaults\": {\"norm\": 3}}", "'norm' must be 1 or 2"},
		{"{\"defaults\": {\"norm\": \"l2\"}}", "'norm' must be 1 or 2"},
		{"{\"defaults\": {\"conv_view\": \"hwio\"}}", "'conv_view' must be \"oihw\" or \"ohwi\""},
		{"{\"defaults\": {\"conv_view\": 1}}", "'conv_view' must be \"oihw\" or \"ohwi\""},
		{"{\"sparsifier\": \"nearly_diagonal\", \"defaults\": {\"nearliness\": 2}}",
		 "nearliness can only be an odd number"},
		{"{\"sparsifier\": \"nearly_diagonal\", \"config\": [{\"tensor_fqn\": \"x\","
		 " \"nearliness\": 4}]}", "nearliness can only be an odd number"},
		{"{\"sparsifier\": \"nearly_diagonal\", \"defaults\": {\"nearliness\": 1.5}}",
		 "'nearliness' must be an integer"},
		{"{\"sparsifier\": \"nearly_diagonal\", \"defaults\": {\"nearliness\": \"3\"}}",
		 "'nearliness' must be an integer"},
		{"{\"sparsifier\": \"magnitude\"}",
		 "config: unknown sparsifier 'magnitude' (expected weight_norm, nearly_diagonal, wanda or sparsegpt)"},
		{"{\"module_types\": [\"linear\", \"embedding\"]}",
		 "unknown module type 'embedding'"},
		/* wanda / sparsegpt (SPEC 12) */
		{"{\"sparsifier\": \"sparsegpt\", \"defaults\": {\"sparse_block_shape\": [2, 2]}}",
		 "sparsegpt takes sparse_block_shape [1, 1] (unstructured) or [1, M]"},
		{"{\"sparsifier\": \"wanda\", \"defaults\": {\"sparse_block_shape\": [1, 4]}}",
		 "wanda takes sparse_block_shape [1, 1] (unstructured) or [1, M] with zeros_per_block N < M"},
		{"{\"sparsifier\": \"sparsegpt\", \"defaults\": {\"percdamp\": -1}}",
		 "'percdamp' must be a number >= 0"},
		{"{\"sparsifier\": \"sparsegpt\", \"defaults\": {\"sparse_block_shape\": [1, 4],"
		 " \"zeros_per_block\": 2, \"blocksize\": 6}}", "'blocksize' must be a positive integer"},
		{"{\"sparsifier\": \"sparsegpt\", \"defaults\": {\"conv_view\": \"ohwi\"}}",
		 "sparsegpt uses the oihw conv view"},
		{"{\"allocate\": \"sensitivity\"}", "need a calibration-aware sparsifier"},
		{"{\"sparsifier\": \"wanda\", \"allocate\": \"greedy\"}",
		 "'allocate' must be \"sensitivity\" or \"uniform\""},
		{"{\"sparsifier\": \"wanda\", \"sequential\": 0}", "'sequential' must be true, false or a number of stages"},
		{"{\"sparsifier\": \"wanda\", \"sequential\": 2.5}", "'sequential' must be true, false or a number of stages"},
		{"{\"sparsifier\": \"wanda\", \"sequential\": \"yes\"}", "'sequential' must be true, false or a number of stages"},
		{"{\"sequential\": 4}", "need a calibration-aware sparsifier"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		parse_fails(cases[i].json, cases[i].message);
}
END_TEST

START_TEST(test_validation_context)
{
	/* errors name where they come from */
	parse_fails("{\"defaults\": {\"sparsity_level\": 2}}", "defaults");
	parse_fails("{\"config\": [{\"tensor_fqn\": \"enc.*.fc\", \"norm\": 0}]}",
		    "entry 'enc.*.fc'");
}
END_TEST

START_TEST(test_validation_accepts)
{
	struct opass_config *config;

	/* boundaries that are valid */
	config = parse_ok("{\"defaults\": {\"sparsity_level\": 0, \"zeros_per_block\": 0,"
			  " \"norm\": 1, \"conv_view\": \"ohwi\"}}");
	opass_config_free(config);
	config = parse_ok("{\"defaults\": {\"sparsity_level\": 1, \"zeros_per_block\": 4}}");
	opass_config_free(config);
	/* torch: nearliness <= 0 is an all-zero mask, not an error */
	config = parse_ok("{\"sparsifier\": \"nearly_diagonal\", \"defaults\": {\"nearliness\": 0}}");
	opass_config_free(config);
	config = parse_ok("{\"sparsifier\": \"nearly_diagonal\", \"defaults\": {\"nearliness\": -2}}");
	opass_config_free(config);
	/* weight_norm keys are not checked for nearly_diagonal (torch's **kwargs) */
	config = parse_ok("{\"sparsifier\": \"nearly_diagonal\", \"defaults\": {\"norm\": 7}}");
	opass_config_free(config);
}
END_TEST

START_TEST(test_args_parse)
{
	struct onnxpass_error err = {0};
	struct opass_args args;
	cJSON *json;

	json = cJSON_Parse("{\"sparse_block_shape\": [2, 4], \"norm\": null,"
			   " \"conv_view\": \"ohwi\", \"sparsity_level\": 0.25}");
	ck_assert_int_eq(opass_args_parse(json, OPASS_SPARSIFIER_WEIGHT_NORM, &args, &err), 0);
	ck_assert_int_eq(args.sparsifier, OPASS_SPARSIFIER_WEIGHT_NORM);
	ck_assert_int_eq(args.block_rows, 2);
	ck_assert_int_eq(args.block_cols, 4);
	ck_assert_int_eq(args.zeros_per_block, 8); /* absent: product of the block */
	ck_assert_int_eq(args.norm, 2);
	ck_assert_int_eq(args.conv_view, OPASS_CONV_VIEW_OHWI);
	ck_assert(args.sparsity_level == 0.25);
	cJSON_Delete(json);

	json = cJSON_Parse("{\"norm\": 1.0}");
	ck_assert_int_eq(opass_args_parse(json, OPASS_SPARSIFIER_WEIGHT_NORM, &args, &err), 0);
	ck_assert_int_eq(args.norm, 1);
	ck_assert_int_eq(args.conv_view, OPASS_CONV_VIEW_OIHW);
	cJSON_Delete(json);

	/* failure leaves *ret_args alone */
	memset(&args, 0x5a, sizeof(args));
	json = cJSON_Parse("{\"zeros_per_block\": 9}");
	ck_assert_int_eq(opass_args_parse(json, OPASS_SPARSIFIER_WEIGHT_NORM, &args, &err),
			 -EINVAL);
	ck_assert_str_eq(err.message, "config: Number of zeros per block cannot be more than the "
			 "total number of elements in that block.");
	ck_assert_int_eq(args.block_rows, 0x5a5a5a5a5a5a5a5a);
	cJSON_Delete(json);

	json = cJSON_Parse("[1]");
	ck_assert_int_eq(opass_args_parse(json, OPASS_SPARSIFIER_WEIGHT_NORM, &args, &err),
			 -EINVAL);
	cJSON_Delete(json);
}
END_TEST

START_TEST(test_args_check_shape)
{
	struct onnxpass_error err = {0};
	struct opass_args args = {
		.sparsifier = OPASS_SPARSIFIER_NEARLY_DIAGONAL,
		.nearliness = 5,
	};

	/* 5 // 2 = 2 >= min(2, 10) */
	ck_assert_int_eq(opass_args_check_shape(&args, 2, 10, &err), -EINVAL);
	ck_assert_str_eq(err.message,
			 "config: nearliness cannot be larger than the dimensions of tensor.");
	ck_assert_int_eq(opass_args_check_shape(&args, 10, 2, NULL), -EINVAL);
	ck_assert_int_eq(opass_args_check_shape(&args, 3, 10, NULL), 0);
	args.nearliness = 3;
	ck_assert_int_eq(opass_args_check_shape(&args, 2, 2, NULL), 0);
	ck_assert_int_eq(opass_args_check_shape(&args, 1, 2, NULL), -EINVAL);
	args.nearliness = 0;
	ck_assert_int_eq(opass_args_check_shape(&args, 1, 1, NULL), 0);
	/* weight_norm has no shape condition */
	args.sparsifier = OPASS_SPARSIFIER_WEIGHT_NORM;
	args.nearliness = 99;
	ck_assert_int_eq(opass_args_check_shape(&args, 1, 1, NULL), 0);
}
END_TEST

START_TEST(test_malformed_json)
{
	/* missing comma between two members on line 3 */
	parse_fails("{\n  \"sparsifier\": \"weight_norm\",\n  \"strict\": true \"exclude\": []\n}\n",
		    "config: line 3, column ");
	parse_fails("{\n  \"sparsifier\": \"weight_norm\",\n  \"strict\": true \"exclude\": []\n}\n",
		    "invalid JSON");
	/* column counts characters */
	parse_fails("{\"a\": tru}", "line 1, column 7");
	parse_fails("{\"a\": 1,\n\n\"b\": }", "line 3, column 6");
	parse_fails("{", "line 1, column ");
	parse_fails("{} trailing", "line 1, column 4");
	parse_fails("{\"a\": 1}\n{}", "line 2, column 1");
	parse_fails("[1, 2]", "top level must be a JSON object");
	parse_fails("\"text\"", "top level must be a JSON object");
	parse_fails("   ", "invalid JSON");
}
END_TEST

START_TEST(test_deep_nesting)
{
	size_t n = 100000;
	char *doc = malloc(2 * n + 16);

	ck_assert_ptr_nonnull(doc);
	memset(doc, '[', n);
	doc[n] = '\0';
	parse_fails(doc, "invalid JSON");
	/* the same inside an object value, balanced */
	strcpy(doc, "{\"x\": ");
	memset(doc + 6, '[', n);
	memset(doc + 6 + n, ']', n);
	strcpy(doc + 6 + 2 * n, "}");
	parse_fails(doc, "invalid JSON");
	free(doc);
}
END_TEST

START_TEST(test_wrong_types)
{
	static const struct {
		const char *json, *message;
	} cases[] = {
		{"{\"sparsifier\": 1}", "'sparsifier' must be a string"},
		{"{\"defaults\": []}", "'defaults' must be an object"},
		{"{\"defaults\": 0.5}", "'defaults' must be an object"},
		{"{\"config\": {\"tensor_fqn\": \"x\"}}", "'config' must be an array or null"},
		{"{\"config\": \"x\"}", "'config' must be an array or null"},
		{"{\"config\": [\"x\"]}", "config[0] must be an object"},
		{"{\"config\": [{\"tensor_fqn\": \"x\"}, {\"sparsity_level\": 0.5}]}",
		 "config[1] needs a string 'tensor_fqn'"},
		{"{\"config\": [{\"tensor_fqn\": 3}]}", "config[0] needs a string 'tensor_fqn'"},
		{"{\"module_types\": \"linear\"}", "'module_types' must be an array of strings"},
		{"{\"module_types\": [1]}", "'module_types' must be an array of strings"},
		{"{\"exclude\": \"*embed*\"}", "'exclude' must be an array of strings"},
		{"{\"exclude\": [null]}", "'exclude' must be an array of strings"},
		{"{\"strict\": 0}", "'strict' must be true or false"},
		{"{\"strict\": \"no\"}", "'strict' must be true or false"},
		{"{\"options\": [1]}", "'options' must be an object"},
		{"{\"schedule\": \"cubic\"}", "'schedule' must be an object"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		parse_fails(cases[i].json, cases[i].message);
}
END_TEST

START_TEST(test_passthrough)
{
	struct opass_config *config = parse_ok(
		"{\"options\": {\"format\": \"coo\", \"future_option\": 1},"
		" \"schedule\": {\"type\": \"cubic\"}}");

	ck_assert_ptr_nonnull(config->options);
	ck_assert_str_eq(cJSON_GetObjectItem(config->options, "format")->valuestring, "coo");
	ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(config->root, "schedule"),
					     "type")->valuestring, "cubic");
	opass_config_free(config);
	ck_assert_ptr_null(opass_config_free(NULL));
}
END_TEST

/* Typos are errors (issue 12): unknown keys at every level, bad schedules. */
START_TEST(test_unknown_keys_and_schedules)
{
	static const struct {
		const char *json;
		const char *message;
	} cases[] = {
		{ "{\"defualts\": {}}", "config: unknown key 'defualts'" },
		{ "{\"defaults\": {\"sparsity\": 0.9}}", "config: defaults: unknown key 'sparsity'" },
		{ "{\"config\": [{\"tensor_fqn\": \"a\", \"sparsty_level\": 0.5}]}",
		  "config: entry 'a': unknown key 'sparsty_level'" },
		{ "{\"schedule\": {\"type\": \"exp\"}}", "'type' must be \"cubic\" or \"linear\"" },
		{ "{\"schedule\": {\"type\": \"cubic\", \"total_t\": 0}}", "'total_t' must be > 0" },
		{ "{\"schedule\": {\"type\": \"linear\", \"total_t\": -1}}", "'total_t' must be > 0" },
		{ "{\"schedule\": {\"type\": \"cubic\", \"delta_t\": 0}}", "'delta_t' must not be 0" },
		{ "{\"schedule\": {\"type\": \"cubic\", \"init_sl\": \"x\"}}", "'init_sl' must be a number" },
		{ "{\"schedule\": {\"type\": \"cubic\", \"kind\": 1}}", "schedule: unknown key 'kind'" },
		{ "{\"schedule\": {}}", "'type' must be" },
	};
	struct opass_config *config;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		parse_fails(cases[i].json, cases[i].message);
	/* the keys other passes read are known */
	config = parse_ok("{\"sparsifier\": \"sparsegpt\", \"sequential\": true,"
			  " \"allocate\": \"sensitivity\", \"defaults\":"
			  " {\"percdamp\": 0.01, \"blocksize\": 128}, \"config\": [{\"tensor_fqn\": \"a\","
			  " \"tensor_name\": \"weight\"}], \"schedule\": {\"type\": \"linear\","
			  " \"init_sl\": 0, \"init_t\": 0, \"delta_t\": 1, \"total_t\": 3,"
			  " \"initially_zero\": false}}");
	opass_config_free(config);
}
END_TEST

START_TEST(test_match_bad_module_type)
{
	struct opass_config *config = parse_ok(NULL);
	struct onnxpass_error err = {0};
	cJSON *args = NULL;

	ck_assert_int_eq(opass_config_match(config, "w", NULL, "embedding", &args, &err), -EINVAL);
	ck_assert_ptr_null(args);
	opass_config_free(config);
}
END_TEST

Suite *test_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_test(tc, test_defaults_empty);
	tcase_add_test(tc, test_defaults_partial);
	tcase_add_test(tc, test_defaults_nearly_diagonal);
	tcase_add_test(tc, test_overlay);
	tcase_add_test(tc, test_overlay_block_inherits_zeros);
	tcase_add_test(tc, test_glob);
	tcase_add_test(tc, test_glob_pathological);
	tcase_add_test(tc, test_match_name_alias);
	tcase_add_test(tc, test_match_negated_bracket);
	tcase_add_test(tc, test_module_types);
	tcase_add_test(tc, test_exclude);
	tcase_add_test(tc, test_config_null_all);
	tcase_add_test(tc, test_strict_unused);
	tcase_add_test(tc, test_validation_messages);
	tcase_add_test(tc, test_validation_context);
	tcase_add_test(tc, test_validation_accepts);
	tcase_add_test(tc, test_args_parse);
	tcase_add_test(tc, test_args_check_shape);
	tcase_add_test(tc, test_malformed_json);
	tcase_add_test(tc, test_deep_nesting);
	tcase_add_test(tc, test_wrong_types);
	tcase_add_test(tc, test_passthrough);
	tcase_add_test(tc, test_unknown_keys_and_schedules);
	tcase_add_test(tc, test_match_bad_module_type);
	suite_add_tcase(s, tc);
	return s;
}
