/* SPDX-License-Identifier: MIT */
/*
 * onnx-pass: command line front end. Options, messages and exit codes only;
 * everything else is the library's. Exit 0 on success, 2 on usage or config
 * errors, 1 on all others; one "onnx-pass: error: ..." line on failure, its
 * exit code and the file it names chosen by the error's source.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "onnxpass/onnxpass.h"
#include "onnxpass/plugin.h"

#define EXIT_USAGE 2

struct cli {
	const char *command;
	const char *passes;
	const char *model;
	const char *output;
	const char *config_file;
	const char *state_file;
	const char *inputs;      /* compare --inputs */
	const char *candidate;   /* compare's second model */
	bool external_data;
	bool fsync;
	cJSON *config;     /* the config document sent to the library */
	const char **plugins;
	size_t n_plugins;
};

static void usage(FILE *f)
{
	fputs("Usage: onnx-pass [--plugin PATH]... COMMAND [OPTIONS] MODEL [-o OUTPUT]\n"
	      "\n"
	      "torch.ao.pruning's sparsifier workflow for ONNX models.\n"
	      "\n"
	      "Commands:\n"
	      "  config MODEL              print the default config (make_config_from_model)\n"
	      "  inspect MODEL [--json]    per-weight sparsity, pattern, storage; groups if prepared\n"
	      "  prepare MODEL -o OUT      add masks and mask nodes (prepare)\n"
	      "  step MODEL -o OUT         recompute masks (step); --sparsity X for this step,\n"
	      "                            --freeze / --unfreeze (enable_mask_update)\n"
	      "  squash MODEL -o OUT       fold masks into dense weights (squash_mask)\n"
	      "  convert MODEL -o OUT      squash, then sparse_initializers (convert)\n"
	      "  sparsify MODEL -o OUT     prepare + step + convert in one run\n"
	      "  state export MODEL -o STATE.json      write the sparsifier state (state_dict)\n"
	      "  state load MODEL STATE.json -o OUT    apply a state (load_state_dict)\n"
	      "  run PASS[,PASS...] MODEL [-o OUT]     run any passes, plugins' too\n"
	      "  compare REF CAND --inputs PATH [--json]  run both in ONNX Runtime on PATH's\n"
	      "                            batches; per output: max abs / rel error, cosine,\n"
	      "                            top-1 agreement\n"
	      "\n"
	      "Config (SPEC 5): --config FILE, or defaults from flags:\n"
	      "  --sparsifier weight_norm|nearly_diagonal|wanda|sparsegpt   --sparsity X\n"
	      "  --block RxC   --zeros-per-block N   --norm 1|2   --nearliness N   --conv-view oihw|ohwi\n"
	      "Calibration-aware sparsifiers (wanda, sparsegpt; step and sparsify):\n"
	      "  --calibration PATH      inputs: a .npz, a folder of .npz or of test_data_set_*\n"
	      "  --percdamp X --blocksize N   sparsegpt (defaults 0.01, 128)\n"
	      "  --sequential            prune layer by layer, later layers see earlier pruning\n"
	      "  --stages N              sequential in N stages of consecutive layers (faster)\n"
	      "  --allocate sensitivity  per-layer levels from measured output error\n"
	      "Options:\n"
	      "  -o, --output FILE       output (may equal the input; replaced atomically, mode and\n"
	      "                          owner kept, symlinks followed; - is stdout; a device or\n"
	      "                          FIFO is written as a stream)\n"
	      "  --format auto|coo|dense|ort-sparse  storage for convert/sparsify (default auto);\n"
	      "                          ort-sparse: MatMul/Gemm -> ai.onnx_pass::SparseMatMul\n"
	      "  --min-sparsity X        ort-sparse: convert weights with >= X zeros (default 0.5)\n"
	      "  --threads N             worker threads for step/convert, 1..1024 (default: one per CPU)\n"
	      "  --keep-params K1,K2     squash/convert: keep these args (params_to_keep)\n"
	      "  --strict, --no-strict   state load: every group must exist (default strict)\n"
	      "  --external-data         write tensors to OUTPUT.data (OUTPUT.N.data if taken)\n"
	      "  --fsync                 make the output durable (fsync) before it replaces OUTPUT\n"
	      "  --json                  inspect, compare: JSON output\n"
	      "  --inputs PATH           compare: test_data_set_*/ folders, .npz files or one .npz\n"
	      "  --plugin PATH           load passes from a plugin (repeatable)\n"
	      "  --list                  list passes\n"
	      "  --help, --version\n", f);
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("onnx-pass: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long size;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)size + 1)) && fread(buf, 1, (size_t)size, f) == (size_t)size)
		buf[size] = '\0';
	else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static cJSON *json_object(cJSON *parent, const char *key)
{
	cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, key);

	if (cJSON_IsObject(o))
		return o;
	cJSON_DeleteItemFromObjectCaseSensitive(parent, key);
	return cJSON_AddObjectToObject(parent, key);
}

static void json_set(cJSON *parent, const char *key, cJSON *value)
{
	cJSON_DeleteItemFromObjectCaseSensitive(parent, key);
	cJSON_AddItemToObject(parent, key, value);
}

static int parse_number(const char *opt, const char *text, double *ret)
{
	char *end;

	errno = 0;
	*ret = strtod(text, &end);
	if (errno || end == text || *end)
		return fail(EXIT_USAGE, "%s: '%s' is not a number", opt, text);
	return 0;
}

static int parse_block(const char *text, cJSON **ret)
{
	long r, c;
	char *end;

	r = strtol(text, &end, 10);
	if (end == text || (*end != 'x' && *end != 'X' && *end != ','))
		return fail(EXIT_USAGE, "--block: expected RxC (e.g. 1x4), got '%s'", text);
	c = strtol(end + 1, &end, 10);
	if (*end || r < 1 || c < 1 || r > 1 << 20 || c > 1 << 20)
		return fail(EXIT_USAGE, "--block: expected RxC with R, C >= 1, got '%s'", text);
	*ret = cJSON_CreateIntArray((const int[]){ (int)r, (int)c }, 2);
	return 0;
}

static cJSON *split_list(const char *text)
{
	cJSON *list = cJSON_CreateArray();
	char *copy = strdup(text), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t && list; t = strtok_r(NULL, ",", &save))
		cJSON_AddItemToArray(list, cJSON_CreateString(t));
	free(copy);
	return list;
}

enum {
	OPT_SPARSITY = 1000, OPT_BLOCK, OPT_ZEROS, OPT_NORM, OPT_SPARSIFIER, OPT_NEARLINESS,
	OPT_CONV_VIEW, OPT_FORMAT, OPT_KEEP, OPT_STRICT, OPT_NO_STRICT, OPT_EXTERNAL, OPT_FSYNC, OPT_JSON,
	OPT_FREEZE, OPT_UNFREEZE, OPT_CONFIG, OPT_PLUGIN, OPT_LIST, OPT_VERSION,
	OPT_MIN_SPARSITY, OPT_THREADS, OPT_CALIBRATION, OPT_ALLOCATE, OPT_SEQUENTIAL, OPT_PERCDAMP,
	OPT_BLOCKSIZE, OPT_INPUTS, OPT_STAGES,
};

static const struct option options[] = {
	{ "output", required_argument, NULL, 'o' },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "sparsity", required_argument, NULL, OPT_SPARSITY },
	{ "block", required_argument, NULL, OPT_BLOCK },
	{ "zeros-per-block", required_argument, NULL, OPT_ZEROS },
	{ "norm", required_argument, NULL, OPT_NORM },
	{ "sparsifier", required_argument, NULL, OPT_SPARSIFIER },
	{ "nearliness", required_argument, NULL, OPT_NEARLINESS },
	{ "conv-view", required_argument, NULL, OPT_CONV_VIEW },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "min-sparsity", required_argument, NULL, OPT_MIN_SPARSITY },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "calibration", required_argument, NULL, OPT_CALIBRATION },
	{ "allocate", required_argument, NULL, OPT_ALLOCATE },
	{ "sequential", no_argument, NULL, OPT_SEQUENTIAL },
	{ "stages", required_argument, NULL, OPT_STAGES },
	{ "percdamp", required_argument, NULL, OPT_PERCDAMP },
	{ "blocksize", required_argument, NULL, OPT_BLOCKSIZE },
	{ "keep-params", required_argument, NULL, OPT_KEEP },
	{ "strict", no_argument, NULL, OPT_STRICT },
	{ "no-strict", no_argument, NULL, OPT_NO_STRICT },
	{ "external-data", no_argument, NULL, OPT_EXTERNAL },
	{ "fsync", no_argument, NULL, OPT_FSYNC },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "inputs", required_argument, NULL, OPT_INPUTS },
	{ "freeze", no_argument, NULL, OPT_FREEZE },
	{ "unfreeze", no_argument, NULL, OPT_UNFREEZE },
	{ "plugin", required_argument, NULL, OPT_PLUGIN },
	{ "list", no_argument, NULL, OPT_LIST },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ 0 },
};

/* Flags collected before the config file is read. */
struct flags {
	cJSON *defaults;  /* overrides of "defaults" */
	cJSON *opts;      /* overrides of "options" */
	cJSON *top;       /* overrides of top-level keys (allocate, sequential) */
	const char *sparsifier;
	bool list;
	bool help;
	bool version;
};

static int parse_flag(struct cli *cli, struct flags *fl, int c, const char *arg)
{
	double v = 0;
	cJSON *block = NULL;
	int r = 0;

	switch (c) {
	case 'o': cli->output = arg; break;
	case OPT_CONFIG: cli->config_file = arg; break;
	case OPT_SPARSITY:
		r = parse_number("--sparsity", arg, &v);
		if (r == 0)
			json_set(fl->defaults, "sparsity_level", cJSON_CreateNumber(v));
		break;
	case OPT_BLOCK:
		r = parse_block(arg, &block);
		if (r == 0)
			json_set(fl->defaults, "sparse_block_shape", block);
		break;
	case OPT_ZEROS:
	case OPT_NORM:
	case OPT_NEARLINESS:
		r = parse_number(c == OPT_ZEROS ? "--zeros-per-block" : c == OPT_NORM ? "--norm" : "--nearliness",
				 arg, &v);
		if (r == 0)
			json_set(fl->defaults, c == OPT_ZEROS ? "zeros_per_block" :
				 c == OPT_NORM ? "norm" : "nearliness", cJSON_CreateNumber(v));
		break;
	case OPT_CONV_VIEW: json_set(fl->defaults, "conv_view", cJSON_CreateString(arg)); break;
	case OPT_PERCDAMP:
	case OPT_BLOCKSIZE:
		r = parse_number(c == OPT_PERCDAMP ? "--percdamp" : "--blocksize", arg, &v);
		if (r == 0)
			json_set(fl->defaults, c == OPT_PERCDAMP ? "percdamp" : "blocksize",
				 cJSON_CreateNumber(v));
		break;
	case OPT_CALIBRATION: json_set(fl->opts, "calibration", cJSON_CreateString(arg)); break;
	case OPT_ALLOCATE: json_set(fl->top, "allocate", cJSON_CreateString(arg)); break;
	case OPT_SEQUENTIAL: json_set(fl->top, "sequential", cJSON_CreateTrue()); break;
	case OPT_STAGES:
		r = parse_number("--stages", arg, &v);
		if (r == 0)
			json_set(fl->top, "sequential", cJSON_CreateNumber(v));
		break;
	case OPT_SPARSIFIER: fl->sparsifier = arg; break;
	case OPT_FORMAT: json_set(fl->opts, "format", cJSON_CreateString(arg)); break;
	case OPT_MIN_SPARSITY:
	case OPT_THREADS:
		r = parse_number(c == OPT_THREADS ? "--threads" : "--min-sparsity", arg, &v);
		/* 0 is the library's "one per CPU", which leaving the flag out says */
		if (r == 0 && c == OPT_THREADS && !(v >= 1 && v <= 1024 && v == (int)v))
			r = fail(EXIT_USAGE, "--threads: '%s' is not a thread count (1 to 1024)", arg);
		if (r == 0)
			json_set(fl->opts, c == OPT_THREADS ? "threads" : "min_sparsity",
				 cJSON_CreateNumber(v));
		break;
	case OPT_KEEP: json_set(fl->opts, "keep_params", split_list(arg)); break;
	case OPT_STRICT: json_set(fl->opts, "strict", cJSON_CreateTrue()); break;
	case OPT_NO_STRICT: json_set(fl->opts, "strict", cJSON_CreateFalse()); break;
	case OPT_JSON: json_set(fl->opts, "json", cJSON_CreateTrue()); break;
	case OPT_FREEZE: json_set(fl->opts, "freeze", cJSON_CreateTrue()); break;
	case OPT_UNFREEZE: json_set(fl->opts, "unfreeze", cJSON_CreateTrue()); break;
	case OPT_INPUTS: cli->inputs = arg; break;
	case OPT_EXTERNAL: cli->external_data = true; break;
	case OPT_FSYNC: cli->fsync = true; break;
	case OPT_PLUGIN: cli->plugins[cli->n_plugins++] = arg; break;
	case OPT_LIST: fl->list = true; break;
	case 'h': fl->help = true; break;
	case OPT_VERSION: fl->version = true; break;
	default: r = EXIT_USAGE; break;
	}
	return r;
}

/* The config document: file (or {}), flags merged in. A file that is not
 * valid JSON is passed on verbatim so the library names line and column. */
static int build_config(struct cli *cli, struct flags *fl, char **ret_text)
{
	char *text = cli->config_file ? read_text(cli->config_file) : strdup("{}");
	cJSON *defaults, *opts;

	if (!text)
		return fail(EXIT_USAGE, "%s: cannot read config: %s", cli->config_file, strerror(errno));
	cli->config = cJSON_Parse(text);
	if (!cJSON_IsObject(cli->config)) {
		*ret_text = text;
		return 0;
	}
	free(text);
	if (fl->sparsifier)
		json_set(cli->config, "sparsifier", cJSON_CreateString(fl->sparsifier));
	/* --sparsity on step is a one-step override, elsewhere a default */
	if (strcmp(cli->passes, "step") == 0 && cJSON_GetObjectItem(fl->defaults, "sparsity_level"))
		json_set(fl->opts, "sparsity_level",
			 cJSON_DetachItemFromObject(fl->defaults, "sparsity_level"));
	defaults = fl->defaults->child ? json_object(cli->config, "defaults") : NULL;
	opts = fl->opts->child ? json_object(cli->config, "options") : NULL;
	for (cJSON *e = fl->defaults->child; defaults && e; e = e->next)
		json_set(defaults, e->string, cJSON_Duplicate(e, true));
	for (cJSON *e = fl->opts->child; opts && e; e = e->next)
		json_set(opts, e->string, cJSON_Duplicate(e, true));
	for (cJSON *e = fl->top->child; e; e = e->next)
		json_set(cli->config, e->string, cJSON_Duplicate(e, true));
	*ret_text = cJSON_PrintUnformatted(cli->config);
	return *ret_text ? 0 : fail(1, "out of memory");
}

static int list_passes(const struct onnxpass_registry *reg)
{
	for (size_t i = 0; i < onnxpass_registry_count(reg); i++) {
		const struct onnxpass_pass *p = onnxpass_registry_get(reg, i);

		printf("%-14s %s\n", p->name, p->summary ? p->summary : "");
	}
	return 0;
}

static bool pass_list_has(const char *list, const char *pass)
{
	size_t n = strlen(pass);

	for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (strncmp(p, pass, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

/* Map the command and positional arguments onto passes, model, output. */
static int parse_command(struct cli *cli, int argc, char **argv, int *index)
{
	static const char *const writes[] = { "prepare", "step", "squash", "convert", "sparsify",
					      "state-load" };
	int i = *index;

	cli->command = argv[i++];
	cli->passes = cli->command;
	if (strcmp(cli->command, "compare") == 0) {
		if (argc - i != 2)
			return fail(EXIT_USAGE, "compare: expected REF CAND (see --help)");
		cli->model = argv[i++];
		cli->candidate = argv[i++];
		if (!cli->inputs)
			return fail(EXIT_USAGE, "compare: --inputs PATH is required");
		if (cli->output)
			return fail(EXIT_USAGE, "compare: -o is not supported (the report goes to "
				    "standard output)");
		*index = i;
		return 0;
	}
	if (cli->inputs)
		return fail(EXIT_USAGE, "--inputs is only for compare");
	if (strcmp(cli->command, "state") == 0) {
		if (i >= argc || (strcmp(argv[i], "export") && strcmp(argv[i], "load")))
			return fail(EXIT_USAGE, "state: expected 'export' or 'load'");
		cli->passes = strcmp(argv[i++], "export") == 0 ? "state-export" : "state-load";
	} else if (strcmp(cli->command, "run") == 0) {
		if (i >= argc)
			return fail(EXIT_USAGE, "run: expected a pass list");
		cli->passes = argv[i++];
	}
	if (i >= argc)
		return fail(EXIT_USAGE, "%s: no model given (see --help)", cli->command);
	cli->model = argv[i++];
	if (strcmp(cli->passes, "state-load") == 0) {
		if (i >= argc)
			return fail(EXIT_USAGE, "state load: no state file given");
		cli->state_file = argv[i++];
	}
	if (i < argc)
		return fail(EXIT_USAGE, "unexpected argument '%s'", argv[i]);
	/* a list that changes the model (run prepare,step) needs somewhere to go */
	for (size_t k = 0; k < sizeof(writes) / sizeof(writes[0]); k++)
		if (pass_list_has(cli->passes, writes[k]) && !cli->output)
			return fail(EXIT_USAGE, "%s: -o OUTPUT is required", cli->command);
	if (strcmp(cli->passes, "state-load") == 0 && !cli->output)
		return fail(EXIT_USAGE, "state load: -o OUTPUT is required");
	*index = i;
	return 0;
}

static int add_state(struct cli *cli, char **config_text)
{
	char *text = read_text(cli->state_file);
	cJSON *state = text ? cJSON_Parse(text) : NULL;
	cJSON *opts;

	free(text);
	if (!state)
		return fail(EXIT_USAGE, "%s: %s", cli->state_file,
			    errno && !text ? strerror(errno) : "not valid JSON");
	if (!cJSON_IsObject(cli->config)) {
		cJSON_Delete(state);
		return 0;
	}
	opts = json_object(cli->config, "options");
	json_set(opts, "state", state);
	free(*config_text);
	*config_text = cJSON_PrintUnformatted(cli->config);
	return *config_text ? 0 : fail(1, "out of memory");
}

/* Usage and config errors exit 2, everything else 1: by the error's
 * source, never its text. */
static int exit_code(const struct onnxpass_error *err)
{
	return err->source == ONNXPASS_ERROR_USAGE || err->source == ONNXPASS_ERROR_CONFIG ?
	       EXIT_USAGE : 1;
}

/* The error line of a failed run names the file to blame. */
static int run_fail(const struct cli *cli, const struct onnxpass_error *err)
{
	switch (err->source) {
	case ONNXPASS_ERROR_CONFIG:
		/* without --config the document came from the flags */
		return fail(exit_code(err), "%s: %s", cli->config_file ? cli->config_file : cli->model,
			    err->message);
	case ONNXPASS_ERROR_INPUT_FILE:
	case ONNXPASS_ERROR_OUTPUT:
	case ONNXPASS_ERROR_DATA:
	case ONNXPASS_ERROR_RUNTIME:
		/* the message names its file, or is about none */
		return fail(exit_code(err), "%s", err->message);
	default:
		return fail(exit_code(err), "%s: %s", cli->model, err->message);
	}
}

static int run(struct cli *cli, struct onnxpass_registry *reg, const char *config_text)
{
	struct onnxpass_error err = { 0 };
	struct onnxpass_model *model = NULL;
	char *report = NULL;
	int r;

	r = onnxpass_model_load_file(cli->model, &model, &err);
	if (r == 0)
		r = onnxpass_registry_run(reg, model, cli->passes, config_text, &report, &err);
	if (r == 0 && cli->output && strcmp(cli->passes, "state-export") != 0)
		r = onnxpass_model_save_file(model, cli->output,
					     (cli->external_data ? ONNXPASS_SAVE_EXTERNAL_DATA : 0) |
					     (cli->fsync ? ONNXPASS_SAVE_FSYNC : 0), &err);
	if (r == 0 && cli->output && strcmp(cli->passes, "state-export") == 0 && report) {
		r = onnxpass_file_write(cli->output, report, strlen(report),
					cli->fsync ? ONNXPASS_SAVE_FSYNC : 0, &err);
		free(report);
		report = NULL;
	}
	if (r == 0 && report)
		fputs(report, stdout);
	free(report);
	onnxpass_model_free(model);
	return r == 0 ? 0 : run_fail(cli, &err);
}

static int compare(struct cli *cli, bool json)
{
	struct onnxpass_error err = { 0 };
	char *report = NULL;

	if (onnxpass_compare(cli->model, cli->candidate, cli->inputs,
			     json ? ONNXPASS_COMPARE_JSON : 0, &report, &err) < 0)
		return fail(exit_code(&err), "%s", err.message);
	fputs(report, stdout);
	onnxpass_free(report);
	return 0;
}

/* Every pass of the list exists (before the model is read): an unknown
 * command is a usage error, not the model's. */
static int passes_check(const struct cli *cli, const struct onnxpass_registry *reg)
{
	char *list = strdup(cli->passes), *save = NULL;
	int r = list ? 0 : fail(1, "out of memory");

	for (char *tok = list ? strtok_r(list, ",", &save) : NULL; r == 0 && tok;
	     tok = strtok_r(NULL, ",", &save)) {
		bool found = false;

		for (size_t i = 0; !found && i < onnxpass_registry_count(reg); i++)
			found = strcmp(onnxpass_registry_get(reg, i)->name, tok) == 0;
		if (found)
			continue;
		if (strcmp(cli->command, "run") == 0)
			r = fail(EXIT_USAGE, "run: unknown pass '%s' (see onnx-pass --list)", tok);
		else
			r = fail(EXIT_USAGE, "unknown command '%s' (see onnx-pass --help)", cli->command);
	}
	free(list);
	return r;
}

static int cli_main(struct cli *cli, struct flags *fl, int argc, char **argv)
{
	struct onnxpass_registry *reg = NULL;
	struct onnxpass_error err = { 0 };
	char *config_text = NULL;
	int c, r = 0, index;

	/* GNU getopt permutes: options may come anywhere, positionals follow */
	opterr = 0;
	while (r == 0 && (c = getopt_long(argc, argv, ":o:h", options, NULL)) != -1) {
		if (c == '?')
			return fail(EXIT_USAGE, "unknown option '%s' (see --help)", argv[optind - 1]);
		if (c == ':')
			return fail(EXIT_USAGE, "option '%s' needs a value", argv[optind - 1]);
		r = parse_flag(cli, fl, c, optarg);
	}
	if (r)
		return EXIT_USAGE;
	if (fl->help) {
		usage(stdout);
		return 0;
	}
	if (fl->version) {
		printf("onnx-pass %s\n", onnxpass_version());
		return 0;
	}
	if (onnxpass_registry_new(&reg, &err) < 0)
		return fail(exit_code(&err), "%s", err.message);
	for (size_t i = 0; r == 0 && i < cli->n_plugins; i++)
		if (onnxpass_registry_load_plugin(reg, cli->plugins[i], &err) < 0)
			r = fail(exit_code(&err), "%s", err.message);
	if (r == 0 && fl->list)
		r = list_passes(reg);
	else if (r == 0 && optind >= argc) {
		usage(stderr);
		r = EXIT_USAGE;
	} else if (r == 0) {
		index = optind;
		r = parse_command(cli, argc, argv, &index);
		if (r == 0 && cli->candidate) {
			r = compare(cli, cJSON_IsTrue(cJSON_GetObjectItem(fl->opts, "json")));
		} else {
			if (r == 0)
				r = passes_check(cli, reg);
			if (r == 0)
				r = build_config(cli, fl, &config_text);
			if (r == 0 && cli->state_file)
				r = add_state(cli, &config_text);
			if (r == 0)
				r = run(cli, reg, config_text);
		}
	}
	free(config_text);
	onnxpass_registry_free(reg);
	return r;
}

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	struct flags fl = { .defaults = cJSON_CreateObject(), .opts = cJSON_CreateObject(),
			    .top = cJSON_CreateObject() };
	int r;

#ifdef M_MMAP_THRESHOLD
	/* Large blocks (tensors) are mapped and go back to the system when
	 * freed: after the first such free glibc would raise the threshold and
	 * keep later freed tensors in the heap (the calibration run of a
	 * BERT-base model peaked at 848 instead of 709 MB). */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
	cli.plugins = calloc((size_t)argc + 1, sizeof(*cli.plugins));
	if (!cli.plugins || !fl.defaults || !fl.opts || !fl.top)
		return fail(1, "out of memory");
	r = cli_main(&cli, &fl, argc, argv);
	cJSON_Delete(fl.defaults);
	cJSON_Delete(fl.opts);
	cJSON_Delete(fl.top);
	cJSON_Delete(cli.config);
	free(cli.plugins);
	return r;
}
