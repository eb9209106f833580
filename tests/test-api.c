/* SPDX-License-Identifier: MIT */
/*
 * The public bytes API (onnxpass_transform_bytes), linked against the shared
 * library only: concurrent calls from several threads give exactly the
 * single-threaded result; failures return an error text and no output.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onnxpass/onnxpass.h>

#include "testlib.h"

#define N_THREADS 6
#define N_ROUNDS 3
#define PASSES "prepare,step,convert"
#define CONFIG "{\"defaults\": {\"sparsity_level\": 0.5, \"sparse_block_shape\": [1, 4], " \
	"\"zeros_per_block\": 2}, \"options\": {\"format\": \"coo\"}}"
#define INSPECT_CONFIG "{\"options\": {\"json\": true}}"

struct blob {
	char *data;
	size_t size;
};

/* One input model with its single-threaded results. */
struct sample {
	const char *name;
	struct blob model;
	struct blob converted;    /* PASSES + CONFIG */
	char *inspect_report;     /* PASSES + inspect with INSPECT_CONFIG's options */
};

static struct sample samples[] = {
	{ .name = "mlp_gemm" },
	{ .name = "transformer_matmul" },
};
#define N_SAMPLES (sizeof(samples) / sizeof(samples[0]))

/* Read the models main generated (test_models_want in test_suite). */
static void models_read(void)
{
	for (size_t i = 0; i < N_SAMPLES; i++) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/%s.onnx", test_models_dir, samples[i].name);
		samples[i].model.data = test_read_file(path, &samples[i].model.size);
		ck_assert_msg(samples[i].model.data, "cannot read %s", path);
	}
}

static void samples_free(void)
{
	for (size_t i = 0; i < N_SAMPLES; i++) {
		free(samples[i].model.data);
		onnxpass_free(samples[i].converted.data);
		onnxpass_free(samples[i].inspect_report);
	}
}

static int transform(const struct blob *in, const char *passes, const char *config,
		     struct blob *ret_out, char **ret_report, struct onnxpass_error *err)
{
	void *out = NULL;
	size_t size = 0;
	int r;

	r = onnxpass_transform_bytes(in->data, in->size, passes, config, &out, &size, ret_report,
				     err);
	if (r == 0) {
		ret_out->data = out;
		ret_out->size = size;
	}
	return r;
}

/* The single-threaded results every concurrent call is compared with. */
static void references_compute(void)
{
	for (size_t i = 0; i < N_SAMPLES; i++) {
		struct sample *s = &samples[i];
		struct blob inspected = { 0 };
		struct onnxpass_error err = { 0 };
		char *report = NULL;

		ck_assert_msg(transform(&s->model, PASSES, CONFIG, &s->converted, &report, &err) == 0,
			      "%s: %s", s->name, err.message);
		ck_assert_ptr_null(report);
		ck_assert_msg(transform(&s->model, PASSES ",inspect", INSPECT_CONFIG, &inspected,
					&s->inspect_report, &err) == 0, "%s: %s", s->name, err.message);
		ck_assert_ptr_nonnull(s->inspect_report);
		onnxpass_free(inspected.data);
	}
}

static void setup(void)
{
	models_read();
	references_compute();
}

static int blob_equal(const struct blob *a, const struct blob *b)
{
	return a->size == b->size && memcmp(a->data, b->data, a->size) == 0;
}

START_TEST(test_reference_sane)
{
	for (size_t i = 0; i < N_SAMPLES; i++) {
		struct sample *s = &samples[i];
		struct blob again = { 0 };
		struct onnxpass_error err = { 0 };

		ck_assert_uint_gt(s->converted.size, 0);
		/* the passes changed the model (masks folded, sparse initializers) */
		ck_assert(!blob_equal(&s->model, &s->converted));
		/* the output is a model the library reads back */
		ck_assert_msg(transform(&s->converted, "inspect", NULL, &again, NULL, &err) == 0,
			      "%s: %s", s->name, err.message);
		onnxpass_free(again.data);
		ck_assert_msg(strstr(s->inspect_report, "{") != NULL, "%s", s->inspect_report);
	}
	ck_assert(!blob_equal(&samples[0].converted, &samples[1].converted));
}
END_TEST

struct worker {
	unsigned index;
	unsigned mismatches;
	unsigned failures;
	char message[ONNXPASS_ERROR_MAX + 128];
};

static void worker_note(struct worker *w, const char *what, const char *name)
{
	if (!w->message[0])
		snprintf(w->message, sizeof(w->message), "thread %u: %s: %s", w->index, name, what);
}

static void worker_round(struct worker *w, const struct sample *s, unsigned round)
{
	struct blob out = { 0 };
	struct onnxpass_error err = { 0 };
	char *report = NULL;
	int inspect = (w->index + round) % 2;
	int r;

	r = transform(&s->model, inspect ? PASSES ",inspect" : PASSES,
		      inspect ? INSPECT_CONFIG : CONFIG, &out, &report, &err);
	if (r < 0) {
		w->failures++;
		worker_note(w, err.message, s->name);
	} else if (inspect ? !report || strcmp(report, s->inspect_report) != 0 :
		   report || !blob_equal(&out, &s->converted)) {
		w->mismatches++;
		worker_note(w, inspect ? "report differs" : "bytes differ", s->name);
	}
	onnxpass_free(out.data);
	onnxpass_free(report);
	/* a failing call in between must not disturb the others */
	err = (struct onnxpass_error){ 0 };
	r = transform(&s->model, "prepare,no-such-pass", CONFIG, &out, NULL, &err);
	if (r != -EINVAL || err.code != r || !strstr(err.message, "no-such-pass")) {
		w->failures++;
		worker_note(w, "error path did not fail as expected", s->name);
	}
}

static void *worker_main(void *userdata)
{
	struct worker *w = userdata;

	for (unsigned round = 0; round < N_ROUNDS; round++)
		worker_round(w, &samples[(w->index + round) % N_SAMPLES], round);
	return NULL;
}

START_TEST(test_concurrent_identical)
{
	pthread_t threads[N_THREADS];
	struct worker workers[N_THREADS] = { 0 };

	for (unsigned i = 0; i < N_THREADS; i++) {
		workers[i].index = i;
		ck_assert_int_eq(pthread_create(&threads[i], NULL, worker_main, &workers[i]), 0);
	}
	for (unsigned i = 0; i < N_THREADS; i++)
		ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
	for (unsigned i = 0; i < N_THREADS; i++) {
		ck_assert_msg(workers[i].failures == 0, "%s", workers[i].message);
		ck_assert_msg(workers[i].mismatches == 0, "%s", workers[i].message);
	}
}
END_TEST

/* A failed call: negative errno, an error text, out-parameters untouched. */
static struct onnxpass_error transform_fails(const void *in, size_t size, const char *passes,
					     const char *config)
{
	struct onnxpass_error err = { 0 };
	void *out = (void *)0x1;
	size_t out_size = 12345;
	char *report = (char *)0x2;
	int r;

	r = onnxpass_transform_bytes(in, size, passes, config, &out, &out_size, &report, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_int_eq(err.code, r);
	ck_assert_ptr_eq(out, (void *)0x1);
	ck_assert_uint_eq(out_size, 12345);
	ck_assert_ptr_eq(report, (char *)0x2);
	ck_assert_uint_gt(strlen(err.message), 0);
	ck_assert_msg(!strchr(err.message, '\n'), "multi-line error: %s", err.message);
	/* without an error struct the failure is still reported by the return value */
	ck_assert_int_eq(onnxpass_transform_bytes(in, size, passes, config, &out, &out_size,
						  NULL, NULL), r);
	ck_assert_ptr_eq(out, (void *)0x1);
	return err;
}

START_TEST(test_errors)
{
	static const unsigned char garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34, 0x56,
						 0x78, 0x9a, 0xbc, 0xde, 0xf0 };
	const struct sample *s = &samples[0];
	struct onnxpass_error err;

	/* each failure says what it is about (the CLI's exit code and blame) */
	err = transform_fails(garbage, sizeof(garbage), PASSES, CONFIG);
	ck_assert_int_eq(err.source, ONNXPASS_ERROR_MODEL);
	err = transform_fails(s->model.data, s->model.size, "prepare,no-such-pass", CONFIG);
	ck_assert_msg(strstr(err.message, "no-such-pass"), "%s", err.message);
	ck_assert_int_eq(err.source, ONNXPASS_ERROR_USAGE);
	err = transform_fails(s->model.data, s->model.size, "", CONFIG);
	ck_assert_int_eq(err.source, ONNXPASS_ERROR_USAGE);
	err = transform_fails(s->model.data, s->model.size, PASSES, "{\"defaults\": [");
	ck_assert_int_eq(err.source, ONNXPASS_ERROR_CONFIG);
	err = transform_fails(s->model.data, s->model.size, PASSES,
			      "{\"defaults\": {\"sparse_block_shape\": [1, 4], "
			      "\"zeros_per_block\": 5}}");
	ck_assert_msg(strstr(err.message, "zeros"), "%s", err.message);
	ck_assert_int_eq(err.source, ONNXPASS_ERROR_CONFIG);
	err = transform_fails(s->model.data, s->model.size, PASSES,
			      "{\"options\": {\"format\": \"csr\"}}");
	ck_assert_int_eq(err.source, ONNXPASS_ERROR_USAGE);
}
END_TEST

Suite *test_suite(void)
{
	Suite *suite = suite_create("api");
	TCase *tc = tcase_create("transform_bytes");

	test_models_want("mlp_gemm transformer_matmul");
	tcase_add_unchecked_fixture(tc, setup, samples_free);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_reference_sane);
	tcase_add_test(tc, test_concurrent_identical);
	tcase_add_test(tc, test_errors);
	suite_add_tcase(suite, tc);
	return suite;
}
