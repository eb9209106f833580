/* SPDX-License-Identifier: MIT */
/*
 * ONNX Runtime helpers shared by tests/ort-run.c, bench/ort-bench.c and the
 * Check suites that run ORT (tests/test-ort*.c): the command line's session
 * options, opening a session with them, the graph's input/output names, and
 * one run of a session on fixed float inputs. Errors are printed on stderr as
 * "PROG: WHAT: message" and returned as a negative errno.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <onnxruntime_c_api.h>

#define ORTLIB_MAX_LIBS 16
#define ORTLIB_MAX_CONFIG 16
#define ORTLIB_MAX_EP_OPTIONS 8
#define ORTLIB_MAX_RANK 8

/* The API ortlib_init found (NULL before). */
extern const OrtApi *ortlib_api;

/* Session options given on the command line. */
struct ortlib_options {
	const char *custom_ops[ORTLIB_MAX_LIBS];
	size_t n_custom_ops;
	const char *ep_lib;
	const char *ep_keys[ORTLIB_MAX_EP_OPTIONS], *ep_values[ORTLIB_MAX_EP_OPTIONS];
	size_t n_ep_options;
	const char *config_keys[ORTLIB_MAX_CONFIG], *config_values[ORTLIB_MAX_CONFIG];
	size_t n_config;
	const char *profile;
	int optimize, threads;
	bool shared_pool;   /* sessions share the env's intra-op pool */
};

/* An open session and its graph's input and output names. */
struct ortlib_session {
	OrtSessionOptions *options;
	OrtSession *session;
	OrtMemoryInfo *meminfo;
	char **input_names, **output_names;
	size_t n_inputs, n_outputs;
};

/* Output 0 of a session run on fixed inputs (see ortlib_run_fixed). */
struct ortlib_run {
	float *input;
	size_t n_input;
	float *output;
	size_t n_output;
};

/* Get the API (ORT_API_VERSION); PROG prefixes the messages. 0 or -ENOTSUP. */
int ortlib_init(const char *prog);

/* 0 for no status; else print and release it, -EIO. */
int ortlib_check(OrtStatus *status, const char *what);

/* Defaults: optimize, 1 thread. */
void ortlib_options_init(struct ortlib_options *o);
/* Take the command-line option NAME VALUE (--custom-ops LIB, --ep LIB,
 * --ep-option KEY=VALUE, --threads N, --config KEY=VALUE; KEY=VALUE is split
 * in place): 1 when taken, 0 when NAME is none of these, -EINVAL for a bad or
 * one too many value. */
int ortlib_options_parse(struct ortlib_options *o, const char *name, char *value);

/* An env logging at LEVEL, with the EP library o->ep_lib registered when set;
 * with o->shared_pool, it owns one pool of o->threads intra-op threads that
 * every session opened with these options uses (sessions timed one after the
 * other then do not compete with each other's idle, spinning threads). */
int ortlib_env_open(OrtEnv **ret, OrtLoggingLevel level, const struct ortlib_options *o);

/* Open MODEL with the options (and o->ep_lib's OnnxPassSparse device, which
 * ortlib_env_open registered); s is zeroed first. ortlib_session_close frees
 * what was made, also after a failure. */
int ortlib_session_open(struct ortlib_session *s, OrtEnv *env, const char *model,
			const struct ortlib_options *o);
void ortlib_session_close(struct ortlib_session *s);

/* Input INDEX's float shape: dims below 1 (symbolic) become SYMBOLIC, or
 * -EINVAL when SYMBOLIC is 0; *ret_numel their product. */
int ortlib_input_shape(OrtSession *session, size_t index, int64_t symbolic, int64_t *dims,
		       size_t *ret_rank, size_t *ret_numel);

/* N fixed pseudo-random values in [-1, 1), continuing from *seed. */
void ortlib_fill(float *x, size_t n, uint64_t *seed);

/* A malloc'd copy of a float tensor's values. */
int ortlib_value_floats(OrtValue *value, float **ret, size_t *ret_n);

/* Run a session with one float input (symbolic dims 2, values of ortlib_fill)
 * and keep a copy of output 0 (float). */
int ortlib_run_fixed(OrtSession *session, struct ortlib_run *ret);
void ortlib_run_free(struct ortlib_run *run);

#ifdef ck_assert_msg /* check.h was included first: for the Check suites */
/* Fail the test with ORT's message when status is an error. */
static inline void ortlib_assert_ok(OrtStatus *status, const char *what)
{
	const char *message = status ? ortlib_api->GetErrorMessage(status) : NULL;

	ck_assert_msg(!status, "%s: %s", what, message);
}
#endif
