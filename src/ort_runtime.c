/* SPDX-License-Identifier: MIT */
/* ONNX Runtime through dlopen (see ort_runtime.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ort_runtime.h"
#include "tensor.h"

#ifdef ONNXPASS_HAVE_ORT

#include <dlfcn.h>
#include <onnxruntime_c_api.h>

/* Oldest OrtApi version tried: everything used here exists in it. */
#define ORT_MIN_API_VERSION 11

struct opass_ort {
	void *handle;
	const OrtApi *api;
	OrtEnv *env;
	char *path;
};

struct opass_ort_session {
	struct opass_ort *ort;
	OrtSession *session;
	OrtMemoryInfo *memory;
	OrtValue **shared;   /* initializers read in place (AddInitializer) */
	size_t n_shared;
};

/* ORT's log goes nowhere: the library never prints. */
static void ORT_API_CALL ort_log_drop(void *param, OrtLoggingLevel severity, const char *category,
				      const char *logid, const char *code_location,
				      const char *message)
{
}

int opass_ort_code_errno(int code)
{
	switch ((OrtErrorCode)code) {
	case ORT_NO_SUCHFILE:
		return -ENOENT;
	case ORT_INVALID_ARGUMENT:
	case ORT_INVALID_PROTOBUF:
	case ORT_INVALID_GRAPH:
		return -EINVAL;
	case ORT_NOT_IMPLEMENTED:
		return -ENOTSUP;
	default:
		return -EIO;
	}
}

/* Turn a failed status into err (one line) and release it. */
static int ort_fail(const OrtApi *api, OrtStatus *status, const char *what,
		    struct onnxpass_error *err)
{
	char msg[ONNXPASS_ERROR_MAX];
	int r = opass_ort_code_errno(api->GetErrorCode(status));

	snprintf(msg, sizeof(msg), "%s", api->GetErrorMessage(status));
	api->ReleaseStatus(status);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return opass_error(err, r, "ONNX Runtime: %s%s%s", what ? what : "", what ? ": " : "", msg);
}

static int ort_load(const char *path, struct opass_ort *ort, char *why, size_t why_size)
{
	const OrtApiBase *(*get_base)(void);
	const OrtApiBase *base;
	const char *e;

	dlerror();
	ort->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!ort->handle) {
		e = dlerror();
		snprintf(why, why_size, "%s", e ? e : path);
		return -ENOENT;
	}
	*(void **)&get_base = dlsym(ort->handle, "OrtGetApiBase");
	base = get_base ? get_base() : NULL;
	if (!base) {
		snprintf(why, why_size, "%s: no OrtGetApiBase (not ONNX Runtime)", path);
		goto fail;
	}
	for (uint32_t v = ORT_API_VERSION; !ort->api && v >= ORT_MIN_API_VERSION; v--)
		ort->api = base->GetApi(v);
	if (!ort->api) {
		snprintf(why, why_size, "%s: ONNX Runtime %s is too old", path,
			 base->GetVersionString ? base->GetVersionString() : "?");
		goto fail;
	}
	ort->path = strdup(path);
	if (!ort->path) {
		snprintf(why, why_size, "out of memory");
		goto fail;
	}
	return 0;
fail:
	dlclose(ort->handle);  /* not ONNX Runtime, or too old to be used */
	ort->handle = NULL;
	ort->api = NULL;
	return -ENOENT;
}

/* libonnxruntime cannot be loaded: the environment's fault, not the model's. */
static int missing(struct onnxpass_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int missing(struct onnxpass_error *err, int code, const char *fmt, ...)
{
	char why[ONNXPASS_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return opass_error_from(err, ONNXPASS_ERROR_RUNTIME, code, "ONNX Runtime not found: %s", why);
}

int opass_ort_open(struct opass_ort **ret_ort, struct onnxpass_error *err)
{
	const char *env = getenv("ONNX_PASS_ORT_LIBRARY");
	const char *candidates[] = {
#ifdef ONNXPASS_ORT_DIR
		ONNXPASS_ORT_DIR,
#endif
#ifdef ONNXPASS_ORT_SOURCE_DIR
		ONNXPASS_ORT_SOURCE_DIR,
#endif
		"libonnxruntime.so.1",
		"libonnxruntime.so",
	};
	struct opass_ort *ort = calloc(1, sizeof(*ort));
	char why[512] = "";
	OrtStatus *status;
	int r = -ENOENT;

	if (!ort)
		return opass_error(err, -ENOMEM, "out of memory");
	if (env && *env) {
		r = ort_load(env, ort, why, sizeof(why));
		if (r < 0) {
			free(ort);
			return missing(err, r, "ONNX_PASS_ORT_LIBRARY=%s does not load (%s)", env, why);
		}
	} else {
		char first[512] = "";

		for (size_t i = 0; r < 0 && i < sizeof(candidates) / sizeof(candidates[0]); i++) {
			r = ort_load(candidates[i], ort, why, sizeof(why));
			if (r < 0 && !*first)
				snprintf(first, sizeof(first), "%s", why);
		}
		if (r < 0) {
			free(ort);
			return missing(err, r, "set ONNX_PASS_ORT_LIBRARY to the path of libonnxruntime.so "
				       "(%s)", first);
		}
	}
	status = ort->api->CreateEnvWithCustomLogger(ort_log_drop, NULL, ORT_LOGGING_LEVEL_FATAL,
						     "onnx-pass", &ort->env);
	if (status) {
		r = ort_fail(ort->api, status, "cannot create the environment", err);
		opass_ort_close(ort);
		return r;
	}
	*ret_ort = ort;
	return 0;
}

struct opass_ort *opass_ort_close(struct opass_ort *ort)
{
	if (!ort)
		return NULL;
	if (ort->env)
		ort->api->ReleaseEnv(ort->env);
	/* ORT is never unloaded (dlclose): its static state and threads are not
	 * made for it, and leak reports would lose its symbols. A later open
	 * finds it loaded. */
	free(ort->path);
	free(ort);
	return NULL;
}

const char *opass_ort_library(const struct opass_ort *ort)
{
	return ort ? ort->path : NULL;
}

/* The shared initializers as OrtValues over the caller's bytes, added to
 * options: ORT does not copy them (its kernels may still prepack them:
 * without that, MatMul repacks its weight on every run, 2.6 times slower
 * on the BERT-base calibration run). */
static OrtStatus *session_share(struct opass_ort_session *s, OrtSessionOptions *options,
				const struct opass_ort_shared *shared)
{
	const OrtApi *api = s->ort->api;
	OrtStatus *status;

	s->shared = calloc(shared->n + 1, sizeof(*s->shared));
	if (!s->shared)
		return api->CreateStatus(ORT_FAIL, "out of memory");
	status = api->AddSessionConfigEntry(options, "session.model_external_initializers_file_folder_path",
					    shared->folder);
	/* graph optimizers read initializers from the model, not from AddInitializer */
	if (!status)
		status = api->SetSessionGraphOptimizationLevel(options, ORT_DISABLE_ALL);
	for (size_t i = 0; i < shared->n && !status; i++) {
		const struct opass_calib_tensor *t = &shared->tensors[i];

		status = api->CreateTensorWithDataAsOrtValue(s->memory, t->data, t->size, t->dims,
							     t->n_dims, (ONNXTensorElementDataType)t->dtype,
							     &s->shared[i]);
		if (!status)
			s->n_shared++;
		if (!status)
			status = api->AddInitializer(options, t->name, s->shared[i]);
	}
	return status;
}

int opass_ort_session_new(struct opass_ort *ort, const void *model, size_t size, unsigned threads,
			  const struct opass_ort_shared *shared,
			  struct opass_ort_session **ret_session, struct onnxpass_error *err)
{
	const OrtApi *api = ort->api;
	struct opass_ort_session *s;
	OrtSessionOptions *options = NULL;
	OrtStatus *status;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return opass_error(err, -ENOMEM, "out of memory");
	s->ort = ort;
	status = api->CreateSessionOptions(&options);
	if (!status && threads)
		status = api->SetIntraOpNumThreads(options, (int)threads);
	if (!status)
		status = api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &s->memory);
	if (!status && shared && shared->n)
		status = session_share(s, options, shared);
	if (!status)
		status = api->CreateSessionFromArray(ort->env, model, size, options, &s->session);
	if (options)
		api->ReleaseSessionOptions(options);
	if (status) {
		r = ort_fail(api, status, NULL, err);
		opass_ort_session_free(s);
		return r;
	}
	*ret_session = s;
	return 0;
}

struct opass_ort_session *opass_ort_session_free(struct opass_ort_session *session)
{
	if (!session)
		return NULL;
	if (session->session)
		session->ort->api->ReleaseSession(session->session);
	for (size_t i = 0; i < session->n_shared; i++)
		session->ort->api->ReleaseValue(session->shared[i]);
	free(session->shared);
	if (session->memory)
		session->ort->api->ReleaseMemoryInfo(session->memory);
	free(session);
	return NULL;
}

/* Copy an output OrtValue into t. */
static int ort_copy_out(const OrtApi *api, OrtValue *value, const char *name, bool copy,
			struct opass_calib_tensor *t, struct onnxpass_error *err)
{
	OrtTensorTypeAndShapeInfo *info = NULL;
	ONNXTensorElementDataType type;
	size_t rank = 0, numel = 0, es;
	void *data = NULL;
	OrtStatus *status;
	int is_tensor = 0;

	status = api->IsTensor(value, &is_tensor);
	if (!status && !is_tensor)
		return opass_error(err, -ENOTSUP, "output '%s' is not a tensor", name);
	if (!status)
		status = api->GetTensorTypeAndShape(value, &info);
	if (!status)
		status = api->GetTensorElementType(info, &type);
	if (!status)
		status = api->GetDimensionsCount(info, &rank);
	if (!status && rank > OPASS_CALIB_MAX_RANK) {
		api->ReleaseTensorTypeAndShapeInfo(info);
		return opass_error(err, -E2BIG, "output '%s': rank %zu", name, rank);
	}
	if (!status) {
		t->dims = malloc((rank ? rank : 1) * sizeof(*t->dims));
		if (!t->dims) {
			api->ReleaseTensorTypeAndShapeInfo(info);
			return opass_error(err, -ENOMEM, "out of memory");
		}
		t->n_dims = rank;
		status = api->GetDimensions(info, t->dims, rank);
	}
	if (!status)
		status = api->GetTensorShapeElementCount(info, &numel);
	if (info)
		api->ReleaseTensorTypeAndShapeInfo(info);
	if (status)
		return ort_fail(api, status, name, err);
	es = opass_dtype_size((int32_t)type);
	if (!es || type == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING)
		return opass_error(err, -ENOTSUP, "output '%s': dtype %s is not supported", name,
				   opass_dtype_name((int32_t)type));
	t->dtype = (int32_t)type;
	if (numel > SIZE_MAX / es)
		return opass_error(err, -EOVERFLOW, "output '%s' is too large", name);
	t->size = numel * es;
	if (!t->size)
		return 0;
	status = api->GetTensorMutableData(value, &data);
	if (status)
		return ort_fail(api, status, name, err);
	if (!copy) {
		t->data = data;
		return 0;
	}
	t->data = malloc(t->size);
	if (!t->data)
		return opass_error(err, -ENOMEM, "out of memory");
	memcpy(t->data, data, t->size);
	return 0;
}

/* Feed the batch, run, and hand each output value to fn (which releases
 * nothing); the values are released as soon as fn is done with them. */
static int session_run_each(struct opass_ort_session *session, const struct opass_calib_batch *feeds,
			    const char *const *output_names, size_t n_outputs,
			    int (*fn)(size_t i, OrtValue *value, void *userdata), void *userdata,
			    struct onnxpass_error *err)
{
	uint8_t empty[8] = { 0 }; /* the data of empty inputs (ORT wants a pointer) */
	const OrtApi *api = session->ort->api;
	size_t n_in = feeds ? feeds->n_tensors : 0;
	const char **in_names = calloc(n_in + 1, sizeof(*in_names));
	OrtValue **in_values = calloc(n_in + 1, sizeof(*in_values));
	OrtValue **out_values = calloc(n_outputs + 1, sizeof(*out_values));
	OrtStatus *status = NULL;
	int r = 0;

	if (!in_names || !in_values || !out_values) {
		r = opass_error(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_in && !status; i++) {
		const struct opass_calib_tensor *t = &feeds->tensors[i];

		in_names[i] = t->name;
		status = api->CreateTensorWithDataAsOrtValue(session->memory,
							     t->size ? t->data : empty, t->size,
							     t->dims, t->n_dims,
							     (ONNXTensorElementDataType)t->dtype,
							     &in_values[i]);
		if (status) {
			r = ort_fail(api, status, t->name, err);
			goto out;
		}
	}
	status = api->Run(session->session, NULL, in_names, (const OrtValue *const *)in_values, n_in,
			  output_names, n_outputs, out_values);
	if (status) {
		r = ort_fail(api, status, NULL, err);
		goto out;
	}
	for (size_t i = 0; i < n_outputs && r == 0; i++) {
		r = fn(i, out_values[i], userdata);
		api->ReleaseValue(out_values[i]);
		out_values[i] = NULL;
	}
out:
	for (size_t i = 0; in_values && i < n_in; i++)
		if (in_values[i])
			api->ReleaseValue(in_values[i]);
	for (size_t i = 0; out_values && i < n_outputs; i++)
		if (out_values[i])
			api->ReleaseValue(out_values[i]);
	free(in_names);
	free(in_values);
	free(out_values);
	return r;
}

struct run_copy {
	const OrtApi *api;
	const char *const *names;
	struct opass_calib_tensor *outputs;
	struct onnxpass_error *err;
};

static int run_copy_one(size_t i, OrtValue *value, void *userdata)
{
	struct run_copy *c = userdata;

	c->outputs[i].name = strdup(c->names[i]);
	if (!c->outputs[i].name)
		return opass_error(c->err, -ENOMEM, "out of memory");
	return ort_copy_out(c->api, value, c->names[i], true, &c->outputs[i], c->err);
}

int opass_ort_session_run(struct opass_ort_session *session, const struct opass_calib_batch *feeds,
			  const char *const *output_names, size_t n_outputs,
			  struct opass_calib_tensor **ret_outputs, struct onnxpass_error *err)
{
	struct run_copy c = { .api = session->ort->api, .names = output_names, .err = err,
			      .outputs = calloc(n_outputs + 1, sizeof(*c.outputs)) };
	int r = c.outputs ? session_run_each(session, feeds, output_names, n_outputs, run_copy_one,
					     &c, err) :
			    opass_error(err, -ENOMEM, "out of memory");

	if (r < 0) {
		opass_calib_tensors_free(c.outputs, c.outputs ? n_outputs : 0);
		return r;
	}
	*ret_outputs = c.outputs;
	return 0;
}

struct run_visit {
	const OrtApi *api;
	const char *const *names;
	int (*visit)(size_t i, const struct opass_calib_tensor *t, void *userdata);
	void *userdata;
	struct onnxpass_error *err;
};

static int run_visit_one(size_t i, OrtValue *value, void *userdata)
{
	struct run_visit *v = userdata;
	struct opass_calib_tensor t = { .name = (char *)v->names[i] };
	int r = ort_copy_out(v->api, value, v->names[i], false, &t, v->err);

	if (r == 0)
		r = v->visit(i, &t, v->userdata);
	free(t.dims);
	return r;
}

int opass_ort_session_visit(struct opass_ort_session *session, const struct opass_calib_batch *feeds,
			    const char *const *output_names, size_t n_outputs,
			    int (*visit)(size_t i, const struct opass_calib_tensor *t, void *userdata),
			    void *userdata, struct onnxpass_error *err)
{
	struct run_visit v = { .api = session->ort->api, .names = output_names, .visit = visit,
			       .userdata = userdata, .err = err };

	return session_run_each(session, feeds, output_names, n_outputs, run_visit_one, &v, err);
}

#else /* !ONNXPASS_HAVE_ORT */

struct opass_ort {
	int unused;
};

struct opass_ort_session {
	int unused;
};

int opass_ort_open(struct opass_ort **ret_ort, struct onnxpass_error *err)
{
	return opass_error_from(err, ONNXPASS_ERROR_RUNTIME, -ENOTSUP,
				"ONNX Runtime support was not built (configure with "
				"-Dort=enabled and ONNX Runtime's headers)");
}

struct opass_ort *opass_ort_close(struct opass_ort *ort)
{
	free(ort);
	return NULL;
}

const char *opass_ort_library(const struct opass_ort *ort)
{
	return NULL;
}

int opass_ort_session_new(struct opass_ort *ort, const void *model, size_t size, unsigned threads,
			  const struct opass_ort_shared *shared,
			  struct opass_ort_session **ret_session, struct onnxpass_error *err)
{
	return opass_error(err, -ENOTSUP, "ONNX Runtime support was not built");
}

struct opass_ort_session *opass_ort_session_free(struct opass_ort_session *session)
{
	free(session);
	return NULL;
}

int opass_ort_session_run(struct opass_ort_session *session, const struct opass_calib_batch *feeds,
			  const char *const *output_names, size_t n_outputs,
			  struct opass_calib_tensor **ret_outputs, struct onnxpass_error *err)
{
	return opass_error(err, -ENOTSUP, "ONNX Runtime support was not built");
}

int opass_ort_session_visit(struct opass_ort_session *session, const struct opass_calib_batch *feeds,
			    const char *const *output_names, size_t n_outputs,
			    int (*visit)(size_t i, const struct opass_calib_tensor *t, void *userdata),
			    void *userdata, struct onnxpass_error *err)
{
	return opass_error(err, -ENOTSUP, "ONNX Runtime support was not built");
}

#endif
