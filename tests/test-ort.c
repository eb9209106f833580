/* SPDX-License-Identifier: MIT */
/*
 * onnxpass_ort_create_session (include/onnxpass/ort.h) against ONNX Runtime:
 * a session made by the helper (from a path or from bytes) computes exactly
 * what ORT's own CreateSession computes on the same transformed model.
 * onnxpass_ort_append_ep: two sessions with the OnnxPassSparse EP, created
 * and run at once from two threads, agree with the CPU EP alone, and ORT's
 * profile shows that the EP ran nodes.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <onnxpass/ort.h>

#include "ortlib.h"
#include "testlib.h"

#define PASSES "sparsify"
#define CONFIG "{\"defaults\": {\"sparsity_level\": 1, \"sparse_block_shape\": [1, 4], " \
	"\"zeros_per_block\": 2}, \"options\": {\"format\": \"coo\"}}"

static const OrtApi *ort;
static OrtEnv *env;
static OrtSessionOptions *options;

/* ORT's threads do not survive Check's fork: every test makes its own env. */
static void ort_setup(void)
{
	ck_assert_int_eq(ortlib_init("test-ort"), 0);
	ort = ortlib_api;
	ortlib_assert_ok(ort->CreateEnv(ORT_LOGGING_LEVEL_FATAL, "test-ort", &env), "CreateEnv");
	ortlib_assert_ok(ort->CreateSessionOptions(&options), "CreateSessionOptions");
	ortlib_assert_ok(ort->SetIntraOpNumThreads(options, 1), "SetIntraOpNumThreads");
}

static void ort_teardown(void)
{
	ort->ReleaseSessionOptions(options);
	ort->ReleaseEnv(env);
}

static int run_equal(const struct ortlib_run *a, const struct ortlib_run *b)
{
	return a->n_output == b->n_output && a->n_output > 0 &&
	       memcmp(a->output, b->output, a->n_output * sizeof(float)) == 0;
}

/* Run a session and release it. */
static struct ortlib_run session_run_release(OrtSession *session)
{
	struct ortlib_run run;

	ck_assert_int_eq(ortlib_run_fixed(session, &run), 0);
	ort->ReleaseSession(session);
	return run;
}

/* Whether the OnnxPassSparse EP ran a node of a session made with profiling
 * on: ORT's profile names each node's provider. Ends the profile. */
static bool session_ep_ran(OrtSession *session)
{
	OrtAllocator *alloc = NULL;
	char *path = NULL, *json;
	size_t size;
	bool ran;

	ortlib_assert_ok(ort->GetAllocatorWithDefaultOptions(&alloc), "GetAllocatorWithDefaultOptions");
	ortlib_assert_ok(ort->SessionEndProfiling(session, alloc, &path), "SessionEndProfiling");
	json = test_read_file(path, &size);
	ck_assert_msg(json, "%s: unreadable", path);
	ran = strstr(json, "\"provider\" : \"OnnxPassSparse\"") != NULL;
	unlink(path);
	free(json);
	alloc->Free(alloc, path);
	return ran;
}

/* Options with the EP appended and profiling on (prefix under the models' dir). */
static OrtSessionOptions *ep_options_new(const char *lib, int threads, const char *tag)
{
	struct onnxpass_error err = { 0 };
	OrtSessionOptions *o = NULL;
	char *prefix = NULL;

	ortlib_assert_ok(ort->CreateSessionOptions(&o), "CreateSessionOptions");
	ortlib_assert_ok(ort->SetIntraOpNumThreads(o, threads), "SetIntraOpNumThreads");
	ck_assert_int_ge(asprintf(&prefix, "%s/profile-%s", test_models_dir, tag), 0);
	ortlib_assert_ok(ort->EnableProfiling(o, prefix), "EnableProfiling");
	free(prefix);
	ck_assert_msg(onnxpass_ort_append_ep(ort, env, o, lib, NULL, &err) == 0, "%s", err.message);
	return o;
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
	struct onnxpass_error err = { 0 };
	char *out_path = NULL;
	void *out = NULL;
	size_t out_size = 0;
	FILE *f;

	ck_assert_msg(onnxpass_transform_bytes(model_bytes, size, PASSES, config, &out, &out_size,
					       NULL, &err) == 0, "%s: %s", name, err.message);
	ck_assert_int_ge(asprintf(&out_path, "%s/%s.sparse.onnx", test_models_dir, name), 0);
	f = fopen(out_path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(out, 1, out_size, f), out_size);
	ck_assert_int_eq(fclose(f), 0);
	onnxpass_free(out);
	return out_path;
}

static void check_model(const char *name)
{
	char *path = test_model_path(name), *bytes, *sparse_path;
	struct ortlib_run by_path, by_bytes, reference, dense;
	OrtSession *session;
	size_t size;

	bytes = test_read_file(path, &size);
	ck_assert_ptr_nonnull(bytes);
	sparse_path = transformed_file(name, bytes, size, CONFIG);
	ortlib_assert_ok(ort->CreateSession(env, sparse_path, options, &session), sparse_path);
	reference = session_run_release(session);
	by_path = session_run_release(helper_session(path, NULL, 0, PASSES, CONFIG));
	by_bytes = session_run_release(helper_session(NULL, bytes, size, PASSES, CONFIG));
	ortlib_assert_ok(ort->CreateSession(env, path, options, &session), path);
	dense = session_run_release(session);
	ck_assert_msg(run_equal(&by_path, &reference), "%s: helper (path) differs", name);
	ck_assert_msg(run_equal(&by_bytes, &reference), "%s: helper (bytes) differs", name);
	/* the passes ran: 2:4 weights change the result */
	ck_assert_uint_eq(dense.n_output, reference.n_output);
	ck_assert_msg(!run_equal(&dense, &reference), "%s: sparsify changed nothing", name);
	ortlib_run_free(&by_path);
	ortlib_run_free(&by_bytes);
	ortlib_run_free(&reference);
	ortlib_run_free(&dense);
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
	struct ortlib_run run;
	bool ep_ran;
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
	if (t->r == 0) {
		ck_assert_int_eq(ortlib_run_fixed(session, &t->run), 0);
		t->ep_ran = session_ep_ran(session);
		ort->ReleaseSession(session);
	}
	return NULL;
}

/* Within 1e-5 of b's largest magnitude. (Bit-identical outputs do not show
 * that the EP did not run: a kernel that adds a row's few products in k
 * order with FMAs rounds exactly as MLAS does; the profile tells.) */
static void check_ep_close(const struct ortlib_run *a, const struct ortlib_run *b)
{
	double scale = 1e-30, err = 0;

	ck_assert_uint_eq(a->n_output, b->n_output);
	for (size_t i = 0; i < b->n_output; i++) {
		scale = fmax(scale, fabs(b->output[i]));
		err = fmax(err, fabs((double)a->output[i] - b->output[i]));
	}
	ck_assert_msg(err <= 1e-5 * scale, "EP output differs by %g (scale %g)", err, scale);
}

START_TEST(test_ep_two_sessions)
{
	const char *lib = getenv("ONNX_PASS_LIBRARY");
	char *path = test_model_path("transformer_matmul");
	struct ep_thread threads[2];
	pthread_t ids[2];
	struct ortlib_run cpu;

	ck_assert_msg(lib, "ONNX_PASS_LIBRARY must be set");
	cpu = session_run_release(helper_session(path, NULL, 0, "sparsify", EP_CONFIG));
	/* options each: the profiles of two sessions made in the same second
	 * would share a file name */
	for (int i = 0; i < 2; i++) {
		threads[i] = (struct ep_thread){ .options = ep_options_new(lib, 2, i ? "b" : "a"),
						 .path = path };
		ck_assert_int_eq(pthread_create(&ids[i], NULL, ep_thread_main, &threads[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(pthread_join(ids[i], NULL), 0);
		ck_assert_msg(threads[i].r == 0, "session %d: %s", i, threads[i].message);
		check_ep_close(&threads[i].run, &cpu);
		ck_assert_msg(threads[i].ep_ran, "session %d: the EP ran no node", i);
		ortlib_run_free(&threads[i].run);
		ort->ReleaseSessionOptions(threads[i].options);
	}
	ortlib_run_free(&cpu);
	free(path);
}
END_TEST

/* Two sessions sharing one prepacked-weights container: ORT hands the EP's
 * kernels the one flat copy of each packed weight (SetSharedPrePackedWeight). */
START_TEST(test_ep_shared_weights)
{
	const char *lib = getenv("ONNX_PASS_LIBRARY");
	char *path = test_model_path("transformer_matmul"), *bytes, *sparse_path;
	OrtPrepackedWeightsContainer *container = NULL;
	OrtSessionOptions *ep_options[2] = { NULL, NULL };
	OrtSession *sessions[2] = { NULL, NULL }, *cpu_session = NULL;
	struct ortlib_run cpu, runs[2];
	size_t size;

	ck_assert_msg(lib, "ONNX_PASS_LIBRARY must be set");
	bytes = test_read_file(path, &size);
	ck_assert_ptr_nonnull(bytes);
	sparse_path = transformed_file("transformer_ep", bytes, size, EP_CONFIG);
	ortlib_assert_ok(ort->CreatePrepackedWeightsContainer(&container),
			 "CreatePrepackedWeightsContainer");
	for (int i = 0; i < 2; i++) {
		ep_options[i] = ep_options_new(lib, 1, i ? "shared-b" : "shared-a");
		ortlib_assert_ok(ort->CreateSessionWithPrepackedWeightsContainer(env, sparse_path,
										ep_options[i],
										container,
										&sessions[i]),
				 sparse_path);
	}
	ortlib_assert_ok(ort->CreateSession(env, sparse_path, options, &cpu_session), sparse_path);
	cpu = session_run_release(cpu_session);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(ortlib_run_fixed(sessions[i], &runs[i]), 0);
		ck_assert_msg(session_ep_ran(sessions[i]), "session %d: the EP ran no node", i);
		ort->ReleaseSession(sessions[i]);
		check_ep_close(&runs[i], &cpu);
		ortlib_run_free(&runs[i]);
		ort->ReleaseSessionOptions(ep_options[i]);
	}
	ortlib_run_free(&cpu);
	ort->ReleasePrepackedWeightsContainer(container);
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
	char *ext = test_model_path("external_data"), *mlp = test_model_path("mlp_gemm");
	struct ortlib_run a, b;

	a = session_run_release(helper_session(ext, NULL, 0, PASSES, CONFIG));
	b = session_run_release(helper_session(mlp, NULL, 0, PASSES, CONFIG));
	ck_assert(run_equal(&a, &b));
	ortlib_run_free(&a);
	ortlib_run_free(&b);
	free(ext);
	free(mlp);
}
END_TEST

START_TEST(test_no_passes)
{
	char *path = test_model_path("mlp_gemm");
	struct ortlib_run a, b, c;
	OrtSession *session;

	ortlib_assert_ok(ort->CreateSession(env, path, options, &session), path);
	a = session_run_release(session);
	b = session_run_release(helper_session(path, NULL, 0, NULL, NULL));
	c = session_run_release(helper_session(path, NULL, 0, "", CONFIG));
	ck_assert(run_equal(&a, &b));
	ck_assert(run_equal(&a, &c));
	ortlib_run_free(&a);
	ortlib_run_free(&b);
	ortlib_run_free(&c);
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
	char *path = test_model_path("mlp_gemm"), *edge = test_model_path("edge_cases");
	char *missing = test_model_path("missing");
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

	test_models_want("mlp_gemm transformer_matmul external_data edge_cases");
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
