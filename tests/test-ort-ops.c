/* SPDX-License-Identifier: MIT */
/*
 * RegisterCustomOps (plugin/ort_ops.c) in ONNX Runtime: registration called
 * directly and through RegisterCustomOpsLibrary_V2, and sessions of models
 * converted with `onnx-pass sparsify --format ort-sparse` computing what the
 * same pruned models stored dense compute, with 1 and 2 intra-op threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onnxpass/ort.h>

#include "testlib.h"

#define MAX_RANK 8

static const OrtApi *ort;
static OrtEnv *env;
static char *models_dir;

static void ort_ok(OrtStatus *status, const char *what)
{
	test_ort_ok(ort, status, what);
}

static char *model_path(const char *name)
{
	return test_model_path(models_dir, name);
}

/* Two torch models, each pruned once and stored dense and as ort-sparse. */
static void setup(void)
{
	const char *python = getenv("PYTHON"), *srcdir = getenv("SRCDIR");
	const char *onnx_pass = getenv("ONNX_PASS");
	static const char *const models[] = { "mlp_gemm", "transformer_matmul" };

	ck_assert_msg(python && srcdir && onnx_pass, "PYTHON, SRCDIR and ONNX_PASS must be set");
	models_dir = test_tmpdir();
	ck_assert_ptr_nonnull(models_dir);
	ck_assert_int_eq(test_system("'%s' '%s/tests/models/make_models.py' '%s' mlp_gemm "
				     "transformer_matmul >/dev/null 2>&1", python, srcdir,
				     models_dir), 0);
	for (size_t i = 0; i < 2; i++)
		for (int sparse = 0; sparse < 2; sparse++)
			ck_assert_int_eq(test_system("'%s' sparsify '%s/%s.onnx' -o '%s/%s.%s.onnx' "
						     "--sparsity 0.8 --block 1x1 --format %s",
						     onnx_pass, models_dir, models[i], models_dir,
						     models[i], sparse ? "sparse" : "dense",
						     sparse ? "ort-sparse" : "dense"), 0);
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
	ort_ok(ort->CreateEnv(ORT_LOGGING_LEVEL_FATAL, "test-ort-ops", &env), "CreateEnv");
}

static void ort_teardown(void)
{
	ort->ReleaseEnv(env);
}

static OrtSessionOptions *options_new(int threads, int register_ops)
{
	OrtSessionOptions *options;

	ort_ok(ort->CreateSessionOptions(&options), "CreateSessionOptions");
	ort_ok(ort->SetIntraOpNumThreads(options, threads), "SetIntraOpNumThreads");
	if (register_ops)
		ort_ok(RegisterCustomOps(options, OrtGetApiBase()), "RegisterCustomOps");
	return options;
}

/* Output 0 of a session on a fixed input (symbolic dimensions: 3). */
static float *session_run(OrtSession *session, size_t *ret_n)
{
	int64_t dims[MAX_RANK];
	size_t rank, n = 1, n_out;
	OrtTypeInfo *type;
	const OrtTensorTypeAndShapeInfo *tensor;
	OrtTensorTypeAndShapeInfo *info;
	OrtMemoryInfo *meminfo;
	OrtAllocator *alloc;
	OrtValue *in = NULL, *out = NULL;
	char *in_name, *out_name;
	float *x, *y, *copy;

	ort_ok(ort->SessionGetInputTypeInfo(session, 0, &type), "SessionGetInputTypeInfo");
	ort_ok(ort->CastTypeInfoToTensorInfo(type, &tensor), "CastTypeInfoToTensorInfo");
	ort_ok(ort->GetDimensionsCount(tensor, &rank), "GetDimensionsCount");
	ck_assert_uint_le(rank, MAX_RANK);
	ort_ok(ort->GetDimensions(tensor, dims, rank), "GetDimensions");
	ort->ReleaseTypeInfo(type);
	for (size_t i = 0; i < rank; i++) {
		dims[i] = dims[i] < 1 ? 3 : dims[i];
		n *= (size_t)dims[i];
	}
	x = malloc(n * sizeof(*x));
	ck_assert_ptr_nonnull(x);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)sin((double)i * 0.37) * 2.0f;
	ort_ok(ort->GetAllocatorWithDefaultOptions(&alloc), "GetAllocator");
	ort_ok(ort->SessionGetInputName(session, 0, alloc, &in_name), "SessionGetInputName");
	ort_ok(ort->SessionGetOutputName(session, 0, alloc, &out_name), "SessionGetOutputName");
	ort_ok(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &meminfo), "meminfo");
	ort_ok(ort->CreateTensorWithDataAsOrtValue(meminfo, x, n * sizeof(*x), dims, rank,
						   ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in), "input");
	ort_ok(ort->Run(session, NULL, (const char *const[]){ in_name }, (const OrtValue *const *)&in,
			1, (const char *const[]){ out_name }, 1, &out), "Run");
	ort_ok(ort->GetTensorTypeAndShape(out, &info), "GetTensorTypeAndShape");
	ort_ok(ort->GetTensorShapeElementCount(info, &n_out), "GetTensorShapeElementCount");
	ort->ReleaseTensorTypeAndShapeInfo(info);
	ort_ok(ort->GetTensorMutableData(out, (void **)&y), "GetTensorMutableData");
	copy = malloc((n_out + 1) * sizeof(*copy));
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, y, n_out * sizeof(*copy));
	ort->ReleaseValue(out);
	ort->ReleaseValue(in);
	ort->ReleaseMemoryInfo(meminfo);
	ort_ok(ort->AllocatorFree(alloc, in_name), "AllocatorFree");
	ort_ok(ort->AllocatorFree(alloc, out_name), "AllocatorFree");
	free(x);
	*ret_n = n_out;
	return copy;
}

static float *model_run(const char *name, OrtSessionOptions *options, size_t *ret_n)
{
	char *path = model_path(name);
	OrtSession *session;
	float *y;

	ort_ok(ort->CreateSession(env, path, options, &session), path);
	y = session_run(session, ret_n);
	ort->ReleaseSession(session);
	free(path);
	return y;
}

START_TEST(test_register)
{
	OrtSessionOptions *options;
	OrtStatus *status;

	ort_ok(ort->CreateSessionOptions(&options), "CreateSessionOptions");
	ort_ok(RegisterCustomOps(options, OrtGetApiBase()), "first registration");
	ort_ok(RegisterCustomOps(options, OrtGetApiBase()), "second registration");
	status = RegisterCustomOps(NULL, OrtGetApiBase());
	ck_assert_ptr_nonnull(status);
	ck_assert_int_eq(ort->GetErrorCode(status), ORT_INVALID_ARGUMENT);
	ck_assert_ptr_nonnull(strstr(ort->GetErrorMessage(status), "no session options"));
	ort->ReleaseStatus(status);
	ort->ReleaseSessionOptions(options);
}
END_TEST

START_TEST(test_register_library)
{
	const char *lib = getenv("ONNX_PASS_LIBRARY");
	OrtSessionOptions *options = options_new(1, 0);
	float *y;
	size_t n;

	ck_assert_msg(lib, "ONNX_PASS_LIBRARY must be set");
	ort_ok(ort->RegisterCustomOpsLibrary_V2(options, lib), lib);
	y = model_run("mlp_gemm.sparse", options, &n);
	ck_assert_uint_eq(n, 4 * 10);
	free(y);
	ort->ReleaseSessionOptions(options);
}
END_TEST

START_TEST(test_unregistered)
{
	OrtSessionOptions *options = options_new(1, 0);
	char *path = model_path("mlp_gemm.sparse");
	OrtSession *session = NULL;
	OrtStatus *status;

	status = ort->CreateSession(env, path, options, &session);
	ck_assert_ptr_nonnull(status);
	ck_assert_ptr_nonnull(strstr(ort->GetErrorMessage(status), "SparseMatMul"));
	ort->ReleaseStatus(status);
	ort->ReleaseSessionOptions(options);
	free(path);
}
END_TEST

/* The converted model equals the dense one (relative 1e-5), with 1 and 2 threads. */
static void check_model(const char *name)
{
	char dense_name[64], sparse_name[64];

	snprintf(dense_name, sizeof(dense_name), "%s.dense", name);
	snprintf(sparse_name, sizeof(sparse_name), "%s.sparse", name);
	for (int threads = 1; threads <= 2; threads++) {
		OrtSessionOptions *plain = options_new(threads, 0), *with_ops = options_new(threads, 1);
		size_t n_dense, n_sparse;
		float *dense = model_run(dense_name, plain, &n_dense);
		float *sparse = model_run(sparse_name, with_ops, &n_sparse);
		double scale = 0;

		ck_assert_uint_eq(n_dense, n_sparse);
		ck_assert_uint_gt(n_dense, 0);
		for (size_t i = 0; i < n_dense; i++)
			scale = fmax(scale, fabs(dense[i]));
		ck_assert(scale > 0);
		for (size_t i = 0; i < n_dense; i++)
			ck_assert_msg(fabs((double)dense[i] - sparse[i]) <= 1e-5 * scale,
				      "%s, %d threads: element %zu is %g, dense %g", name, threads, i,
				      (double)sparse[i], (double)dense[i]);
		free(dense);
		free(sparse);
		ort->ReleaseSessionOptions(plain);
		ort->ReleaseSessionOptions(with_ops);
	}
}

START_TEST(test_converted_mlp_gemm)
{
	check_model("mlp_gemm");
}
END_TEST

START_TEST(test_converted_transformer)
{
	check_model("transformer_matmul");
}
END_TEST

Suite *test_suite(void)
{
	Suite *s = suite_create("ort-ops");
	TCase *tc = tcase_create("ort-ops");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(tc, ort_setup, ort_teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_register);
	tcase_add_test(tc, test_register_library);
	tcase_add_test(tc, test_unregistered);
	tcase_add_test(tc, test_converted_mlp_gemm);
	tcase_add_test(tc, test_converted_transformer);
	suite_add_tcase(s, tc);
	return s;
}
