/* SPDX-License-Identifier: MIT */
/*
 * ort-bench: time a model in ONNX Runtime's CPU provider.
 *
 *   ort-bench [--custom-ops LIB] [--threads N] [--warmup W] [--repeat R] MODEL.onnx
 *
 * Every graph input must be a float tensor of fixed shape; it is filled with
 * uniform random values in [-1, 1) (fixed seed). The session uses all graph
 * optimizations and N intra-op threads (default 1). After W untimed runs,
 * R runs are timed one by one; prints "best MS median MS mean MS" on stdout.
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
	OrtEnv *env;
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

static int session_open(struct bench *b, const char *model, const char *lib, int threads)
{
	int k;

	k = check(ort->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "ort-bench", &b->env), "CreateEnv");
	if (k == 0)
		k = check(ort->CreateSessionOptions(&b->options), "CreateSessionOptions");
	if (k == 0)
		k = check(ort->SetSessionGraphOptimizationLevel(b->options, ORT_ENABLE_ALL),
			  "SetSessionGraphOptimizationLevel");
	if (k == 0)
		k = check(ort->SetIntraOpNumThreads(b->options, threads), "SetIntraOpNumThreads");
	if (k == 0 && lib)
		k = check(ort->RegisterCustomOpsLibrary_V2(b->options, lib), lib);
	if (k == 0)
		k = check(ort->CreateSession(b->env, model, b->options, &b->session), model);
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

static int run_once(struct bench *b)
{
	OrtValue *out[MAX_IO] = { 0 };
	int k;

	k = check(ort->Run(b->session, NULL, (const char *const *)b->in_names,
			   (const OrtValue *const *)b->in_values, b->n_in,
			   (const char *const *)b->out_names, b->n_out, out), "Run");
	for (size_t i = 0; i < b->n_out; i++)
		ort->ReleaseValue(out[i]);
	return k;
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
	ort->ReleaseEnv(b->env);
}

static int usage(void)
{
	fprintf(stderr, "usage: ort-bench [--custom-ops LIB] [--threads N] [--warmup W] "
		"[--repeat R] MODEL.onnx\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *lib = NULL;
	int threads = 1, warmup = 5, repeat = 20, i, k;
	struct bench b = { 0 };

	for (i = 1; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--custom-ops") == 0)
			lib = argv[i + 1];
		else if (strcmp(argv[i], "--threads") == 0)
			threads = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--warmup") == 0)
			warmup = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--repeat") == 0)
			repeat = atoi(argv[i + 1]);
		else
			return usage();
	}
	if (i + 1 != argc || threads < 1 || warmup < 0 || repeat < 1)
		return usage();
	ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
	if (!ort) {
		fprintf(stderr, "ort-bench: ONNX Runtime lacks API version %d\n", ORT_API_VERSION);
		return 1;
	}
	k = session_open(&b, argv[i], lib, threads);
	if (k == 0)
		k = names_get(&b, 0);
	if (k == 0)
		k = names_get(&b, 1);
	if (k == 0)
		k = inputs_make(&b);
	if (k == 0)
		k = timed(&b, warmup, repeat);
	bench_free(&b);
	return k < 0 ? 1 : 0;
}
