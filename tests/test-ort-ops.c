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

#include <check.h>
#include <onnxpass/ort.h>

#include "ortlib.h"
#include "testlib.h"


static const OrtApi *ort;
static OrtEnv *env;

/* The two torch models (test_models_want), each pruned once and stored dense
 * and as ort-sparse. */
static void setup(void)
{
	const char *onnx_pass = getenv("ONNX_PASS");
	static const char *const models[] = { "mlp_gemm", "transformer_matmul" };

	ck_assert_msg(onnx_pass, "ONNX_PASS must be set");
	for (size_t i = 0; i < 2; i++)
		for (int sparse = 0; sparse < 2; sparse++)
			ck_assert_int_eq(test_system("'%s' sparsify '%s/%s.onnx' -o '%s/%s.%s.onnx' "
						     "--sparsity 0.8 --block 1x1 --format %s",
						     onnx_pass, test_models_dir, models[i], test_models_dir,
						     models[i], sparse ? "sparse" : "dense",
						     sparse ? "ort-sparse" : "dense"), 0);
}

/* ORT's threads do not survive Check's fork: every test makes its own env. */
static void ort_setup(void)
{
	ck_assert_int_eq(ortlib_init("test-ort-ops"), 0);
	ort = ortlib_api;
	ortlib_assert_ok(ort->CreateEnv(ORT_LOGGING_LEVEL_FATAL, "test-ort-ops", &env), "CreateEnv");
}

static void ort_teardown(void)
{
	ort->ReleaseEnv(env);
}

static OrtSessionOptions *options_new(int threads, int register_ops)
{
	OrtSessionOptions *options;

	ortlib_assert_ok(ort->CreateSessionOptions(&options), "CreateSessionOptions");
	ortlib_assert_ok(ort->SetIntraOpNumThreads(options, threads), "SetIntraOpNumThreads");
	if (register_ops)
		ortlib_assert_ok(RegisterCustomOps(options, OrtGetApiBase()), "RegisterCustomOps");
	return options;
}

/* Output 0 of the model NAME on fixed inputs. */
static struct ortlib_run model_run(const char *name, OrtSessionOptions *options)
{
	char *path = test_model_path(name);
	struct ortlib_run run;
	OrtSession *session;

	ortlib_assert_ok(ort->CreateSession(env, path, options, &session), path);
	ck_assert_int_eq(ortlib_run_fixed(session, &run), 0);
	ort->ReleaseSession(session);
	free(path);
	return run;
}

START_TEST(test_register)
{
	OrtSessionOptions *options;
	OrtStatus *status;

	ortlib_assert_ok(ort->CreateSessionOptions(&options), "CreateSessionOptions");
	ortlib_assert_ok(RegisterCustomOps(options, OrtGetApiBase()), "first registration");
	ortlib_assert_ok(RegisterCustomOps(options, OrtGetApiBase()), "second registration");
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
	struct ortlib_run run;

	ck_assert_msg(lib, "ONNX_PASS_LIBRARY must be set");
	ortlib_assert_ok(ort->RegisterCustomOpsLibrary_V2(options, lib), lib);
	run = model_run("mlp_gemm.sparse", options);
	ck_assert_uint_eq(run.n_output, 4 * 10);
	ortlib_run_free(&run);
	ort->ReleaseSessionOptions(options);
}
END_TEST

START_TEST(test_unregistered)
{
	OrtSessionOptions *options = options_new(1, 0);
	char *path = test_model_path("mlp_gemm.sparse");
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
		struct ortlib_run dense = model_run(dense_name, plain);
		struct ortlib_run sparse = model_run(sparse_name, with_ops);
		const float *d = dense.output, *sp = sparse.output;
		double scale = 0;

		ck_assert_uint_eq(dense.n_output, sparse.n_output);
		ck_assert_uint_gt(dense.n_output, 0);
		for (size_t i = 0; i < dense.n_output; i++)
			scale = fmax(scale, fabs(d[i]));
		ck_assert(scale > 0);
		for (size_t i = 0; i < dense.n_output; i++)
			ck_assert_msg(fabs((double)d[i] - sp[i]) <= 1e-5 * scale,
				      "%s, %d threads: element %zu is %g, dense %g", name, threads, i,
				      (double)sp[i], (double)d[i]);
		ortlib_run_free(&dense);
		ortlib_run_free(&sparse);
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

	test_models_want("mlp_gemm transformer_matmul");
	tcase_add_unchecked_fixture(tc, setup, NULL);
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
