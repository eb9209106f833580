/* SPDX-License-Identifier: MIT */
/*
 * ort-bench: time a model in ONNX Runtime's CPU provider.
 *
 *   ort-bench [--custom-ops LIB] [--ep LIB [--rounds N] [--ep-option KEY=VALUE]...]
 *             [--threads N] [--warmup W] [--repeat R] MODEL.onnx
 *
 * Every graph input must be a float tensor of fixed shape; it is filled with
 * uniform random values in [-1, 1) (fixed seed). The session uses all graph
 * optimizations and N intra-op threads (default 1). After W untimed runs,
 * R runs are timed one by one; prints "best MS median MS mean MS" on stdout.
 *
 * With --ep, two sessions of the model in one process: the CPU EP alone, and
 * with the OnnxPassSparse device of the EP library LIB appended. They are
 * timed alternately, N rounds (default 5) of R runs each, and the line is
 * "cpu MS ep MS ratio X relerr E": the best run of each, cpu / ep, and the
 * largest difference of the first output relative to its largest magnitude.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <onnxruntime_c_api.h>

#define MAX_IO 16
#define MAX_RANK 8

struct bench {
	OrtSessionOptions *options;
	OrtSession *session;
	OrtMemoryInfo *meminfo;
	size_t n_in, n_out;
	char *in_names[MAX_IO], *out_names[MAX_IO];
	float *in_data[MAX_IO];
	OrtValue *in_values[MAX_IO];
};

static const OrtApi *ort;

static int check(OrtStatus *status, const char *what)
{
	if (!status)
		return 0;
	fprintf(stderr, "ort-bench: %s: %s\n", what, ort->GetErrorMessage(status));
	ort->ReleaseStatus(status);
	return -EIO;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static OrtEnv *env;
static const char *ep_keys[8], *ep_values[8];
static size_t n_ep_options;

static int ep_append(struct bench *b, const char *ep_lib)
{
	const OrtEpDevice *const *devices = NULL;
	size_t n = 0;
	int k;

	k = check(ort->GetEpDevices(env, &devices, &n), "GetEpDevices");
	for (size_t i = 0; k == 0 && i < n; i++)
		if (strcmp(ort->EpDevice_EpName(devices[i]), "OnnxPassSparse") == 0)
			return check(ort->SessionOptionsAppendExecutionProvider_V2(
				     b->options, env, &devices[i], 1, ep_keys, ep_values,
				     n_ep_options), ep_lib);
	fprintf(stderr, "ort-bench: %s: no OnnxPassSparse device\n", ep_lib);
	return -ENOENT;
}

static int session_open(struct bench *b, const char *model, const char *lib,
			const char *ep_lib, int threads)
{
	int k;

	k = check(ort->CreateSessionOptions(&b->options), "CreateSessionOptions");
	if (k == 0)
		k = check(ort->SetSessionGraphOptimizationLevel(b->options, ORT_ENABLE_ALL),
			  "SetSessionGraphOptimizationLevel");
	if (k == 0)
		k = check(ort->SetIntraOpNumThreads(b->options, threads), "SetIntraOpNumThreads");
	if (k == 0 && lib)
		k = check(ort->RegisterCustomOpsLibrary_V2(b->options, lib), lib);
	if (k == 0 && ep_lib)
		k = ep_append(b, ep_lib);
	if (k == 0)
		k = check(ort->CreateSession(env, model, b->options, &b->session), model);
	if (k == 0)
		k = check(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault,
						   &b->meminfo), "CreateCpuMemoryInfo");
	return k;
}

static int names_get(struct bench *b, int outputs)
{
	OrtAllocator *alloc;
	size_t n;
	int k;

	k = check(ort->GetAllocatorWithDefaultOptions(&alloc), "GetAllocator");
	if (k == 0)
		k = check(outputs ? ort->SessionGetOutputCount(b->session, &n) :
			  ort->SessionGetInputCount(b->session, &n), "SessionGetCount");
	if (k == 0 && n > MAX_IO) {
		fprintf(stderr, "ort-bench: more than %d inputs or outputs\n", MAX_IO);
		k = -E2BIG;
	}
	for (size_t i = 0; k == 0 && i < n; i++) {
		char *name;

		k = check(outputs ? ort->SessionGetOutputName(b->session, i, alloc, &name) :
			  ort->SessionGetInputName(b->session, i, alloc, &name), "GetName");
		if (k < 0)
			break;
		(outputs ? b->out_names : b->in_names)[i] = strdup(name);
		(outputs ? &b->n_out : &b->n_in)[0] = i + 1;
		k = check(ort->AllocatorFree(alloc, name), "AllocatorFree");
	}
	return k;
}

static int input_shape(struct bench *b, size_t i, int64_t *dims, size_t *rank, size_t *numel)
{
	OrtTypeInfo *type = NULL;
	const OrtTensorTypeAndShapeInfo *info;
	ONNXTensorElementDataType elem;
	int k;

	k = check(ort->SessionGetInputTypeInfo(b->session, i, &type), "SessionGetInputTypeInfo");
	if (k == 0)
		k = check(ort->CastTypeInfoToTensorInfo(type, &info), "CastTypeInfoToTensorInfo");
	if (k == 0)
		k = check(ort->GetTensorElementType(info, &elem), "GetTensorElementType");
	if (k == 0)
		k = check(ort->GetDimensionsCount(info, rank), "GetDimensionsCount");
	if (k == 0 && (elem != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || *rank > MAX_RANK))
		k = -EINVAL;
	if (k == 0)
		k = check(ort->GetDimensions(info, dims, *rank), "GetDimensions");
	*numel = 1;
	for (size_t d = 0; k == 0 && d < *rank; d++) {
		if (dims[d] < 0)
			k = -EINVAL;
		else
			*numel *= (size_t)dims[d];
	}
	if (k == -EINVAL)
		fprintf(stderr, "ort-bench: input %s: not a float tensor of fixed shape\n",
			b->in_names[i]);
	ort->ReleaseTypeInfo(type);
	return k;
}

static int inputs_make(struct bench *b)
{
	uint64_t seed = 0x9e3779b97f4a7c15u;

	for (size_t i = 0; i < b->n_in; i++) {
		int64_t dims[MAX_RANK];
		size_t rank, numel;
		int k = input_shape(b, i, dims, &rank, &numel);

		if (k < 0)
			return k;
		b->in_data[i] = malloc((numel ? numel : 1) * sizeof(float));
		if (!b->in_data[i])
			return -ENOMEM;
		for (size_t e = 0; e < numel; e++) {
			seed = seed * 6364136223846793005u + 1442695040888963407u;
			b->in_data[i][e] = (float)(seed >> 40) / (float)(1 << 23) - 1.0f;
		}
		k = check(ort->CreateTensorWithDataAsOrtValue(b->meminfo, b->in_data[i],
							      numel * sizeof(float), dims, rank,
							      ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
							      &b->in_values[i]), b->in_names[i]);
		if (k < 0)
			return k;
	}
	return 0;
}

/* One run; the first output is kept in *ret_first when given. */
static int run_keep(struct bench *b, OrtValue **ret_first)
{
	OrtValue *out[MAX_IO] = { 0 };
	int k;

	k = check(ort->Run(b->session, NULL, (const char *const *)b->in_names,
			   (const OrtValue *const *)b->in_values, b->n_in,
			   (const char *const *)b->out_names, b->n_out, out), "Run");
	for (size_t i = 0; i < b->n_out; i++) {
		if (i == 0 && k == 0 && ret_first) {
			*ret_first = out[0];
			continue;
		}
		ort->ReleaseValue(out[i]);
	}
	return k;
}

static int run_once(struct bench *b)
{
	return run_keep(b, NULL);
}

static int cmp_double(const void *pa, const void *pb)
{
	double a = *(const double *)pa, c = *(const double *)pb;

	return (a > c) - (a < c);
}

static int timed(struct bench *b, int warmup, int repeat)
{
	double *ms = calloc((size_t)repeat, sizeof(*ms)), sum = 0;
	int k = 0;

	if (!ms)
		return -ENOMEM;
	for (int i = 0; k == 0 && i < warmup; i++)
		k = run_once(b);
	for (int i = 0; k == 0 && i < repeat; i++) {
		double t0 = now_ms();

		k = run_once(b);
		ms[i] = now_ms() - t0;
		sum += ms[i];
	}
	if (k == 0) {
		qsort(ms, (size_t)repeat, sizeof(*ms), cmp_double);
		printf("best %.4f median %.4f mean %.4f\n", ms[0], ms[repeat / 2], sum / repeat);
	}
	free(ms);
	return k;
}

/* Best of rounds x repeat runs, warmed up. */
static int best_of(struct bench *b, int repeat, double *best)
{
	int k = 0;

	for (int i = 0; k == 0 && i < repeat; i++) {
		double t0 = now_ms(), ms;

		k = run_once(b);
		ms = now_ms() - t0;
		if (ms < *best)
			*best = ms;
	}
	return k;
}

static int output_floats(OrtValue *v, const float **ret, size_t *ret_n)
{
	OrtTensorTypeAndShapeInfo *info = NULL;
	void *data = NULL;
	int k;

	k = check(ort->GetTensorTypeAndShape(v, &info), "GetTensorTypeAndShape");
	if (k == 0)
		k = check(ort->GetTensorShapeElementCount(info, ret_n), "GetElementCount");
	if (k == 0)
		k = check(ort->GetTensorMutableData(v, &data), "GetTensorMutableData");
	ort->ReleaseTensorTypeAndShapeInfo(info);
	*ret = data;
	return k;
}

/* max |a - b| / max |a| over the first outputs of two sessions. */
static int compare_outputs(struct bench *a, struct bench *b, double *ret)
{
	OrtValue *va = NULL, *vb = NULL;
	const float *pa = NULL, *pb = NULL;
	size_t na = 0, nb = 0;
	double err = 0, scale = 1e-30;
	int k;

	k = run_keep(a, &va);
	if (k == 0)
		k = run_keep(b, &vb);
	if (k == 0)
		k = output_floats(va, &pa, &na);
	if (k == 0)
		k = output_floats(vb, &pb, &nb);
	for (size_t i = 0; k == 0 && i < na && i < nb; i++) {
		double d = pa[i] - pb[i], m = pa[i] < 0 ? -pa[i] : pa[i];

		err = (d < 0 ? -d : d) > err ? (d < 0 ? -d : d) : err;
		scale = m > scale ? m : scale;
	}
	ort->ReleaseValue(va);
	ort->ReleaseValue(vb);
	*ret = err / scale;
	return k;
}

static int compare(struct bench *cpu, struct bench *ep, int warmup, int repeat, int rounds)
{
	double best_cpu = 1e300, best_ep = 1e300, relerr = 0;
	int k = 0;

	for (int i = 0; k == 0 && i < warmup; i++) {
		k = run_once(cpu);
		if (k == 0)
			k = run_once(ep);
	}
	for (int r = 0; k == 0 && r < rounds; r++) {
		k = best_of(cpu, repeat, &best_cpu);
		if (k == 0)
			k = best_of(ep, repeat, &best_ep);
	}
	if (k == 0)
		k = compare_outputs(cpu, ep, &relerr);
	if (k == 0)
		printf("cpu %.4f ep %.4f ratio %.3f relerr %.3g\n", best_cpu, best_ep,
		       best_cpu / best_ep, relerr);
	return k;
}

static int bench_open(struct bench *b, const char *model, const char *lib, const char *ep_lib,
		      int threads)
{
	int k = session_open(b, model, lib, ep_lib, threads);

	if (k == 0)
		k = names_get(b, 0);
	if (k == 0)
		k = names_get(b, 1);
	if (k == 0)
		k = inputs_make(b);
	return k;
}

static void bench_free(struct bench *b)
{
	for (size_t i = 0; i < b->n_in; i++) {
		ort->ReleaseValue(b->in_values[i]);
		free(b->in_data[i]);
		free(b->in_names[i]);
	}
	for (size_t i = 0; i < b->n_out; i++)
		free(b->out_names[i]);
	ort->ReleaseMemoryInfo(b->meminfo);
	ort->ReleaseSession(b->session);
	ort->ReleaseSessionOptions(b->options);
}

static void ep_option_add(char *entry)
{
	char *eq = strchr(entry, '=');

	*eq = 0;
	ep_keys[n_ep_options] = entry;
	ep_values[n_ep_options++] = eq + 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: ort-bench [--custom-ops LIB] [--ep LIB [--rounds N] "
		"[--ep-option KEY=VALUE]...] "
		"[--threads N] [--warmup W] [--repeat R] MODEL.onnx\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *lib = NULL, *ep_lib = NULL;
	int threads = 1, warmup = 5, repeat = 20, rounds = 5, i, k;
	struct bench b = { 0 }, e = { 0 };

	for (i = 1; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--custom-ops") == 0)
			lib = argv[i + 1];
		else if (strcmp(argv[i], "--ep") == 0)
			ep_lib = argv[i + 1];
		else if (strcmp(argv[i], "--ep-option") == 0 && n_ep_options < 8 &&
			 strchr(argv[i + 1], '='))
			ep_option_add(argv[i + 1]);
		else if (strcmp(argv[i], "--rounds") == 0)
			rounds = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--threads") == 0)
			threads = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--warmup") == 0)
			warmup = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--repeat") == 0)
			repeat = atoi(argv[i + 1]);
		else
			return usage();
	}
	if (i + 1 != argc || threads < 1 || warmup < 0 || repeat < 1 || rounds < 1)
		return usage();
	ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
	if (!ort) {
		fprintf(stderr, "ort-bench: ONNX Runtime lacks API version %d\n", ORT_API_VERSION);
		return 1;
	}
	k = check(ort->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "ort-bench", &env), "CreateEnv");
	if (k == 0 && ep_lib)
		k = check(ort->RegisterExecutionProviderLibrary(env, "onnx_pass", ep_lib), ep_lib);
	if (k == 0)
		k = bench_open(&b, argv[i], lib, NULL, threads);
	if (k == 0 && ep_lib)
		k = bench_open(&e, argv[i], lib, ep_lib, threads);
	if (k == 0)
		k = ep_lib ? compare(&b, &e, warmup, repeat, rounds) : timed(&b, warmup, repeat);
	bench_free(&e);
	bench_free(&b);
	if (env)
		ort->ReleaseEnv(env);
	return k < 0 ? 1 : 0;
}
