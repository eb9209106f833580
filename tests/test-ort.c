/* SPDX-License-Identifier: MIT */
/*
 * onnxpass_ort_create_session (include/onnxpass/ort.h) against ONNX Runtime:
 * a session made by the helper (from a path or from bytes) computes exactly
 * what ORT's own CreateSession computes on the same transformed model.
 * onnxpass_ort_append_ep: two sessions with the OnnxPassSparse EP, created
 * and run at once from two threads, agree with the CPU EP alone.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onnxpass/ort.h>

#include "testlib.h"

#define PASSES "sparsify"
#define CONFIG "{\"defaults\": {\"sparsity_level\": 1, \"sparse_block_shape\": [1, 4], " \
	"\"zeros_per_block\": 2}, \"options\": {\"format\": \"coo\"}}"
#define MAX_RANK 8

static const OrtApi *ort;
static OrtEnv *env;
static OrtSessionOptions *options;
static char *models_dir;

/* One float input filled with fixed pseudo-random values, its outputs. */
struct run {
	float *input;
	size_t n_input;
	float *output;
	size_t n_output;
};

static void ort_ok(OrtStatus *status, const char *what)
{
	test_ort_ok(ort, status, what);
}

static char *model_path(const char *name)
{
	return test_model_path(models_dir, name);
}

static void setup(void)
{
	const char *python = getenv("PYTHON"), *srcdir = getenv("SRCDIR");

	ck_assert_msg(python && srcdir, "PYTHON and SRCDIR must be set (run from meson test)");
	models_dir = test_tmpdir();
	ck_assert_ptr_nonnull(models_dir);
	ck_assert_int_eq(test_system("'%s' '%s/tests/models/make_models.py' '%s' mlp_gemm "
				     "transformer_matmul external_data edge_cases >/dev/null 2>&1",
				     python, srcdir, models_dir), 0);
}

static void teardown(void)
{
	test_system("rm -rf '%s'", models_dir);
	free(models_dir);
}

/* ORT's threads do not survive Check's fork: every test makes its own env. */
static void ort_setup(void)
{
	ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
	ck_assert_ptr_nonnull(ort);
	ort_ok(ort->CreateEnv(ORT_LOGGING_LEVEL_FATAL, "test-ort", &env), "CreateEnv");
	ort_ok(ort->CreateSessionOptions(&options), "CreateSessionOptions");
	ort_ok(ort->SetIntraOpNumThreads(options, 1), "SetIntraOpNumThreads");
}

static void ort_teardown(void)
{
	ort->ReleaseSessionOptions(options);
	ort->ReleaseEnv(env);
}

static char *session_input_name(OrtSession *session, size_t index)
{
	OrtAllocator *alloc;
	char *name, *copy;

	ort_ok(ort->GetAllocatorWithDefaultOptions(&alloc), "GetAllocator");
	ort_ok(ort->SessionGetInputName(session, index, alloc, &name), "SessionGetInputName");
	copy = strdup(name);
	ort_ok(ort->AllocatorFree(alloc, name), "AllocatorFree");
	return copy;
}

/* Shape of the session's only input; symbolic dimensions become 2. */
static size_t session_input_shape(OrtSession *session, int64_t *dims)
{
	OrtTypeInfo *info;
	const OrtTensorTypeAndShapeInfo *tensor;
	size_t n_inputs, rank;

	ort_ok(ort->SessionGetInputCount(session, &n_inputs), "SessionGetInputCount");
	ck_assert_uint_eq(n_inputs, 1);
	ort_ok(ort->SessionGetInputTypeInfo(session, 0, &info), "SessionGetInputTypeInfo");
	ort_ok(ort->CastTypeInfoToTensorInfo(info, &tensor), "CastTypeInfoToTensorInfo");
	ort_ok(ort->GetDimensionsCount(tensor, &rank), "GetDimensionsCount");
	ck_assert_uint_le(rank, MAX_RANK);
	ort_ok(ort->GetDimensions(tensor, dims, rank), "GetDimensions");
	ort->ReleaseTypeInfo(info);
	for (size_t i = 0; i < rank; i++)
		if (dims[i] < 1)
			dims[i] = 2;
	return rank;
}

static void run_input_fill(struct run *run, size_t n)
{
	uint32_t state = 12345;

	run->n_input = n;
	run->input = malloc(n * sizeof(float));
	ck_assert_ptr_nonnull(run->input);
	for (size_t i = 0; i < n; i++) {
		state = state * 1664525u + 1013904223u;
		run->input[i] = (float)((state >> 8) / 16777216.0 * 4.0 - 2.0);
	}
}

/* Run the session on fixed inputs; keeps a copy of output 0. */
static struct run session_run(OrtSession *session)
{
	OrtMemoryInfo *meminfo;
	OrtValue *in = NULL, *out = NULL;
	OrtTensorTypeAndShapeInfo *info;
	int64_t dims[MAX_RANK];
	struct run run = { 0 };
	size_t rank, n = 1;
	char *in_name, *out_name;
	OrtAllocator *alloc;
	float *data;

	rank = session_input_shape(session, dims);
	for (size_t i = 0; i < rank; i++)
		n *= (size_t)dims[i];
	run_input_fill(&run, n);
	in_name = session_input_name(session, 0);
	ort_ok(ort->GetAllocatorWithDefaultOptions(&alloc), "GetAllocator");
	ort_ok(ort->SessionGetOutputName(session, 0, alloc, &out_name), "SessionGetOutputName");
	ort_ok(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &meminfo), "meminfo");
	ort_ok(ort->CreateTensorWithDataAsOrtValue(meminfo, run.input, n * sizeof(float), dims, rank,
						   ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in), "input");
	ort_ok(ort->Run(session, NULL, (const char *const[]){ in_name }, (const OrtValue *const *)&in,
			1, (const char *const[]){ out_name }, 1, &out), "Run");
	ort_ok(ort->GetTensorTypeAndShape(out, &info), "GetTensorTypeAndShape");
	ort_ok(ort->GetTensorShapeElementCount(info, &run.n_output), "GetTensorShapeElementCount");
	ort->ReleaseTensorTypeAndShapeInfo(info);
	ort_ok(ort->GetTensorMutableData(out, (void **)&data), "GetTensorMutableData");
	run.output = malloc(run.n_output * sizeof(float));
	ck_assert_ptr_nonnull(run.output);
	memcpy(run.output, data, run.n_output * sizeof(float));
	ort->ReleaseValue(out);
	ort->ReleaseValue(in);
	ort->ReleaseMemoryInfo(meminfo);
	ort_ok(ort->AllocatorFree(alloc, out_name), "AllocatorFree");
	free(in_name);
	return run;
}

static void run_free(struct run *run)
{
	free(run->input);
	free(run->output);
}

static int run_equal(const struct run *a, const struct run *b)
{
	return a->n_output == b->n_output && a->n_output > 0 &&
	       memcmp(a->output, b->output, a->n_output * sizeof(float)) == 0;
}

/* Run a session and release it. */
static struct run session_run_release(OrtSession *session)
{
	struct run run = session_run(session);

	ort->ReleaseSession(session);
	return run;
}

static OrtSession *helper_session(const char *path, const void *bytes, size_t size,
				  const char *passes, const char *config)
{
	struct onnxpass_error err = { 0 };
	OrtSession *session = NULL;
	int r;

	r = onnxpass_ort_create_session(ort, env, options, path, bytes, size, passes, config,
					&session, &err);
	ck_assert_msg(r == 0, "helper failed (%d): %s", r, err.message);
	ck_assert_ptr_nonnull(session);
	return session;
}

/* The model after PASSES with config, through the bytes API, written to a file
 * for CreateSession. */
static char *transformed_file(const char *name, const char *model_bytes, size_t size,
			      const char *config)
{
	char *out_path = NULL, *error = NULL;
	void *out = NULL;
	size_t out_size = 0;
	FILE *f;

	ck_assert_msg(onnxpass_transform_bytes(model_bytes, size, PASSES, config, &out, &out_size,
					       NULL, &error) == 0, "%s: %s", name, error);
	ck_assert_int_ge(asprintf(&out_path, "%s/%s.sparse.onnx", models_dir, name), 0);
	f = fopen(out_path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(out, 1, out_size, f), out_size);
	ck_assert_int_eq(fclose(f), 0);
	onnxpass_free(out);
	return out_path;
}

static void check_model(const char *name)
{
	char *path = model_path(name), *bytes, *sparse_path;
	struct run by_path, by_bytes, reference, dense;
	OrtSession *session;
	size_t size;

	bytes = test_read_file(path, &size);
	ck_assert_ptr_nonnull(bytes);
	sparse_path = transformed_file(name, bytes, size, CONFIG);
	ort_ok(ort->CreateSession(env, sparse_path, options, &session), sparse_path);
	reference = session_run_release(session);
	by_path = session_run_release(helper_session(path, NULL, 0, PASSES, CONFIG));
	by_bytes = session_run_release(helper_session(NULL, bytes, size, PASSES, CONFIG));
	ort_ok(ort->CreateSession(env, path, options, &session), path);
	dense = session_run_release(session);
	ck_assert_msg(run_equal(&by_path, &reference), "%s: helper (path) differs", name);
	ck_assert_msg(run_equal(&by_bytes, &reference), "%s: helper (bytes) differs", name);
	/* the passes ran: 2:4 weights change the result */
	ck_assert_uint_eq(dense.n_output, reference.n_output);
	ck_assert_msg(!run_equal(&dense, &reference), "%s: sparsify changed nothing", name);
	run_free(&by_path);
	run_free(&by_bytes);
	run_free(&reference);
	run_free(&dense);
	free(sparse_path);
	free(bytes);
	free(path);
}

/* ---- the EP: two sessions at once ---------------------------------------------- */

#define EP_CONFIG "{\"defaults\": {\"sparsity_level\": 0.95, \"sparse_block_shape\": [1, 1]}, " \
	"\"options\": {\"format\": \"dense\"}}"

struct ep_thread {
	OrtSessionOptions *options;
	const char *path;
	struct run run;
	int r;
	char message[ONNXPASS_ERROR_MAX];
};

static void *ep_thread_main(void *userdata)
{
	struct ep_thread *t = userdata;
	struct onnxpass_error err = { 0 };
	OrtSession *session = NULL;

	t->r = onnxpass_ort_create_session(ort, env, t->options, t->path, NULL, 0, "sparsify",
					   EP_CONFIG, &session, &err);
	memcpy(t->message, err.message, sizeof(t->message));
	if (t->r == 0)
		t->run = session_run_release(session);
	return NULL;
}

/* Within 1e-5 of b's largest magnitude, and not bit-identical (the EP ran). */
static void check_ep_close(const struct run *a, const struct run *b)
{
	double scale = 1e-30, err = 0;

	ck_assert_uint_eq(a->n_output, b->n_output);
	for (size_t i = 0; i < b->n_output; i++) {
		scale = fmax(scale, fabs(b->output[i]));
		err = fmax(err, fabs((double)a->output[i] - b->output[i]));
	}
	ck_assert_msg(err <= 1e-5 * scale, "EP output differs by %g (scale %g)", err, scale);
	ck_assert_msg(!run_equal(a, b), "the EP computed nothing (bit-identical outputs)");
}

START_TEST(test_ep_two_sessions)
{
	const char *lib = getenv("ONNX_PASS_LIBRARY");
	struct onnxpass_error err = { 0 };
	char *path = model_path("transformer_matmul");
	OrtSessionOptions *ep_options = NULL;
	struct ep_thread threads[2];
	pthread_t ids[2];
	struct run cpu;

	ck_assert_msg(lib, "ONNX_PASS_LIBRARY must be set");
	ort_ok(ort->CreateSessionOptions(&ep_options), "CreateSessionOptions");
	ort_ok(ort->SetIntraOpNumThreads(ep_options, 2), "SetIntraOpNumThreads");
	ck_assert_msg(onnxpass_ort_append_ep(ort, env, ep_options, lib, NULL, &err) == 0, "%s",
		      err.message);
	cpu = session_run_release(helper_session(path, NULL, 0, "sparsify", EP_CONFIG));
	for (int i = 0; i < 2; i++) {
		threads[i] = (struct ep_thread){ .options = ep_options, .path = path };
		ck_assert_int_eq(pthread_create(&ids[i], NULL, ep_thread_main, &threads[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(pthread_join(ids[i], NULL), 0);
		ck_assert_msg(threads[i].r == 0, "session %d: %s", i, threads[i].message);
		check_ep_close(&threads[i].run, &cpu);
		run_free(&threads[i].run);
	}
	run_free(&cpu);
	ort->ReleaseSessionOptions(ep_options);
	free(path);
}
END_TEST

/* Two sessions sharing one prepacked-weights container: ORT hands the EP's
 * kernels the one flat copy of each packed weight (SetSharedPrePackedWeight). */
START_TEST(test_ep_shared_weights)
{
	const char *lib = getenv("ONNX_PASS_LIBRARY");
	struct onnxpass_error err = { 0 };
	char *path = model_path("transformer_matmul"), *bytes, *sparse_path;
	OrtPrepackedWeightsContainer *container = NULL;
	OrtSessionOptions *ep_options = NULL;
	OrtSession *sessions[2] = { NULL, NULL }, *cpu_session = NULL;
	struct run cpu, runs[2];
	size_t size;

	ck_assert_msg(lib, "ONNX_PASS_LIBRARY must be set");
	bytes = test_read_file(path, &size);
	ck_assert_ptr_nonnull(bytes);
	sparse_path = transformed_file("transformer_ep", bytes, size, EP_CONFIG);
	ort_ok(ort->CreateSessionOptions(&ep_options), "CreateSessionOptions");
	ck_assert_msg(onnxpass_ort_append_ep(ort, env, ep_options, lib, NULL, &err) == 0, "%s",
		      err.message);
	ort_ok(ort->CreatePrepackedWeightsContainer(&container), "CreatePrepackedWeightsContainer");
	for (int i = 0; i < 2; i++)
		ort_ok(ort->CreateSessionWithPrepackedWeightsContainer(env, sparse_path, ep_options,
								       container, &sessions[i]),
		       sparse_path);
	ort_ok(ort->CreateSession(env, sparse_path, options, &cpu_session), sparse_path);
	cpu = session_run_release(cpu_session);
	for (int i = 0; i < 2; i++) {
		runs[i] = session_run_release(sessions[i]);
		check_ep_close(&runs[i], &cpu);
		run_free(&runs[i]);
	}
	run_free(&cpu);
	ort->ReleasePrepackedWeightsContainer(container);
	ort->ReleaseSessionOptions(ep_options);
	free(sparse_path);
	free(bytes);
	free(path);
}
END_TEST

START_TEST(test_ep_errors)
{
	struct onnxpass_error err = { 0 };

	ck_assert_int_eq(onnxpass_ort_append_ep(ort, env, NULL, NULL, NULL, &err), -EINVAL);
	ck_assert_int_lt(onnxpass_ort_append_ep(ort, env, options, "/nonexistent/libonnxpass.so",
						NULL, &err), 0);
	ck_assert_ptr_nonnull(strstr(err.message, "ONNX Runtime"));
}
END_TEST

START_TEST(test_mlp_gemm)
{
	check_model("mlp_gemm");
}
END_TEST

START_TEST(test_transformer_matmul)
{
	check_model("transformer_matmul");
}
END_TEST

/* external_data is mlp_gemm with every tensor in a side file. */
START_TEST(test_external_data)
{
	char *ext = model_path("external_data"), *mlp = model_path("mlp_gemm");
	struct run a, b;

	a = session_run_release(helper_session(ext, NULL, 0, PASSES, CONFIG));
	b = session_run_release(helper_session(mlp, NULL, 0, PASSES, CONFIG));
	ck_assert(run_equal(&a, &b));
	run_free(&a);
	run_free(&b);
	free(ext);
	free(mlp);
}
END_TEST

START_TEST(test_no_passes)
{
	char *path = model_path("mlp_gemm");
	struct run a, b, c;
	OrtSession *session;

	ort_ok(ort->CreateSession(env, path, options, &session), path);
	a = session_run_release(session);
	b = session_run_release(helper_session(path, NULL, 0, NULL, NULL));
	c = session_run_release(helper_session(path, NULL, 0, "", CONFIG));
	ck_assert(run_equal(&a, &b));
	ck_assert(run_equal(&a, &c));
	run_free(&a);
	run_free(&b);
	run_free(&c);
	free(path);
}
END_TEST

/* The helper fails with code (0: any) and a message containing want; no session. */
static void helper_fails(const char *path, const void *bytes, size_t size, const char *passes,
			 const char *config, int code, const char *want)
{
	struct onnxpass_error err = { 0 };
	OrtSession *session = (OrtSession *)0x1;
	int r;

	r = onnxpass_ort_create_session(ort, env, options, path, bytes, size, passes, config,
					&session, &err);
	ck_assert_msg(code ? r == code : r < 0, "expected %d, got %d (%s)", code, r, err.message);
	ck_assert_int_eq(err.code, r);
	ck_assert_ptr_eq(session, (OrtSession *)0x1);
	ck_assert_msg(strstr(err.message, want), "'%s' lacks '%s'", err.message, want);
}

START_TEST(test_errors)
{
	static const unsigned char garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3 };
	char *path = model_path("mlp_gemm"), *edge = model_path("edge_cases");
	char *missing = model_path("missing");
	struct onnxpass_error err = { 0 };
	OrtSession *session = NULL;

	helper_fails(path, NULL, 0, "sparsify,no-such-pass", CONFIG, -EINVAL, "no-such-pass");
	helper_fails(path, NULL, 0, PASSES, "{\"defaults\": {\"sparsity_level\": 2}}", -EINVAL,
		     "sparsity");
	helper_fails(NULL, NULL, 0, PASSES, CONFIG, -EINVAL, "no model");
	helper_fails(NULL, garbage, sizeof(garbage), PASSES, CONFIG, -EBADMSG, "ONNX");
	helper_fails(missing, NULL, 0, PASSES, CONFIG, -ENOENT, "missing");
	/* a model ONNX Runtime refuses (bf16 MatMul): its message comes through */
	helper_fails(edge, NULL, 0, NULL, NULL, 0, "ONNX Runtime: ");
	ck_assert_int_eq(onnxpass_ort_create_session(NULL, env, options, path, NULL, 0, NULL, NULL,
						     &session, &err), -EINVAL);
	ck_assert_ptr_null(session);
	free(path);
	free(edge);
	free(missing);
}
END_TEST

Suite *test_suite(void)
{
	Suite *suite = suite_create("ort");
	TCase *tc = tcase_create("create_session");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(tc, ort_setup, ort_teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_mlp_gemm);
	tcase_add_test(tc, test_transformer_matmul);
	tcase_add_test(tc, test_external_data);
	tcase_add_test(tc, test_no_passes);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_ep_two_sessions);
	tcase_add_test(tc, test_ep_shared_weights);
	tcase_add_test(tc, test_ep_errors);
	suite_add_tcase(suite, tc);
	return suite;
}
