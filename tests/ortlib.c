/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ortlib.h"

const OrtApi *ortlib_api;
static const char *prog = "ortlib";

int ortlib_init(const char *name)
{
	prog = name;
	ortlib_api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
	if (!ortlib_api) {
		fprintf(stderr, "%s: ONNX Runtime does not provide API version %d\n", prog,
			ORT_API_VERSION);
		return -ENOTSUP;
	}
	return 0;
}

int ortlib_check(OrtStatus *status, const char *what)
{
	if (!status)
		return 0;
	fprintf(stderr, "%s: %s: %s\n", prog, what, ortlib_api->GetErrorMessage(status));
	ortlib_api->ReleaseStatus(status);
	return -EIO;
}

void ortlib_options_init(struct ortlib_options *o)
{
	*o = (struct ortlib_options){ .optimize = 1, .threads = 1 };
}

/* KEY=VALUE, split in place. */
static int pair_add(const char **keys, const char **values, size_t *n, size_t max,
		    char *entry)
{
	char *eq = strchr(entry, '=');

	if (!eq || *n == max)
		return -EINVAL;
	*eq = 0;
	keys[*n] = entry;
	values[(*n)++] = eq + 1;
	return 1;
}

static int list_add(const char **list, size_t *n, size_t max, const char *value)
{
	if (*n == max)
		return -EINVAL;
	list[(*n)++] = value;
	return 1;
}

int ortlib_options_parse(struct ortlib_options *o, const char *name, char *value)
{
	if (strcmp(name, "--custom-ops") == 0)
		return list_add(o->custom_ops, &o->n_custom_ops, ORTLIB_MAX_LIBS, value);
	if (strcmp(name, "--config") == 0)
		return pair_add(o->config_keys, o->config_values, &o->n_config,
				ORTLIB_MAX_CONFIG, value);
	if (strcmp(name, "--ep-option") == 0)
		return pair_add(o->ep_keys, o->ep_values, &o->n_ep_options,
				ORTLIB_MAX_EP_OPTIONS, value);
	if (strcmp(name, "--ep") == 0) {
		o->ep_lib = value;
		return 1;
	}
	if (strcmp(name, "--threads") == 0) {
		o->threads = atoi(value);
		return o->threads >= 1 ? 1 : -EINVAL;
	}
	return 0;
}

static int env_shared_open(OrtEnv **ret, OrtLoggingLevel level, int threads)
{
	OrtThreadingOptions *t = NULL;
	int k = ortlib_check(ortlib_api->CreateThreadingOptions(&t), "CreateThreadingOptions");

	if (k == 0)
		k = ortlib_check(ortlib_api->SetGlobalIntraOpNumThreads(t, threads),
				 "SetGlobalIntraOpNumThreads");
	if (k == 0)
		k = ortlib_check(ortlib_api->CreateEnvWithGlobalThreadPools(level, prog, t, ret),
				 "CreateEnvWithGlobalThreadPools");
	if (t)
		ortlib_api->ReleaseThreadingOptions(t);
	return k;
}

int ortlib_env_open(OrtEnv **ret, OrtLoggingLevel level, const struct ortlib_options *o)
{
	int k = o->shared_pool ? env_shared_open(ret, level, o->threads)
			       : ortlib_check(ortlib_api->CreateEnv(level, prog, ret), "CreateEnv");

	if (k == 0 && o->ep_lib)
		k = ortlib_check(ortlib_api->RegisterExecutionProviderLibrary(*ret, "onnx_pass",
									     o->ep_lib), o->ep_lib);
	return k;
}

/* Append the OnnxPassSparse device of the EP library o->ep_lib. */
static int ep_append(struct ortlib_session *s, OrtEnv *env, const struct ortlib_options *o)
{
	const OrtEpDevice *const *devices = NULL;
	size_t n = 0;
	int k;

	k = ortlib_check(ortlib_api->GetEpDevices(env, &devices, &n), "GetEpDevices");
	for (size_t i = 0; k == 0 && i < n; i++)
		if (strcmp(ortlib_api->EpDevice_EpName(devices[i]), "OnnxPassSparse") == 0)
			return ortlib_check(ortlib_api->SessionOptionsAppendExecutionProvider_V2(
					    s->options, env, &devices[i], 1, o->ep_keys,
					    o->ep_values, o->n_ep_options),
					    "SessionOptionsAppendExecutionProvider_V2");
	if (k == 0)
		fprintf(stderr, "%s: %s: no OnnxPassSparse device\n", prog, o->ep_lib);
	return -ENOENT;
}

static int options_make(struct ortlib_session *s, OrtEnv *env, const struct ortlib_options *o)
{
	const OrtApi *ort = ortlib_api;
	GraphOptimizationLevel level = o->optimize ? ORT_ENABLE_ALL : ORT_DISABLE_ALL;
	int k;

	k = ortlib_check(ort->CreateSessionOptions(&s->options), "CreateSessionOptions");
	if (k == 0)
		k = ortlib_check(ort->SetSessionGraphOptimizationLevel(s->options, level),
				 "SetSessionGraphOptimizationLevel");
	if (k == 0 && o->shared_pool)
		k = ortlib_check(ort->DisablePerSessionThreads(s->options),
				 "DisablePerSessionThreads");
	else if (k == 0)
		k = ortlib_check(ort->SetIntraOpNumThreads(s->options, o->threads),
				 "SetIntraOpNumThreads");
	for (size_t i = 0; k == 0 && i < o->n_custom_ops; i++)
		k = ortlib_check(ort->RegisterCustomOpsLibrary_V2(s->options, o->custom_ops[i]),
				 o->custom_ops[i]);
	for (size_t i = 0; k == 0 && i < o->n_config; i++)
		k = ortlib_check(ort->AddSessionConfigEntry(s->options, o->config_keys[i],
							    o->config_values[i]), o->config_keys[i]);
	if (k == 0 && o->profile)
		k = ortlib_check(ort->EnableProfiling(s->options, o->profile), "EnableProfiling");
	if (k == 0 && o->ep_lib)
		k = ep_append(s, env, o);
	return k;
}

static void names_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

static int names_get(OrtSession *session, int outputs, char ***ret, size_t *ret_n)
{
	const OrtApi *ort = ortlib_api;
	OrtAllocator *alloc;
	char **names, *name;
	size_t n;
	int k;

	k = ortlib_check(ort->GetAllocatorWithDefaultOptions(&alloc), "GetAllocator");
	if (k == 0)
		k = ortlib_check(outputs ? ort->SessionGetOutputCount(session, &n) :
				 ort->SessionGetInputCount(session, &n), "SessionGetCount");
	if (k < 0)
		return k;
	names = calloc(n ? n : 1, sizeof(*names));
	if (!names)
		return -ENOMEM;
	for (size_t i = 0; k == 0 && i < n; i++) {
		k = ortlib_check(outputs ? ort->SessionGetOutputName(session, i, alloc, &name) :
				 ort->SessionGetInputName(session, i, alloc, &name),
				 "SessionGetName");
		if (k < 0)
			break;
		names[i] = strdup(name);
		k = ortlib_check(ort->AllocatorFree(alloc, name), "AllocatorFree");
		if (k == 0 && !names[i])
			k = -ENOMEM;
	}
	if (k < 0) {
		names_free(names, n);
		return k;
	}
	*ret = names;
	*ret_n = n;
	return 0;
}

int ortlib_session_open(struct ortlib_session *s, OrtEnv *env, const char *model,
			const struct ortlib_options *o)
{
	const OrtApi *ort = ortlib_api;
	int k;

	*s = (struct ortlib_session){ 0 };
	k = options_make(s, env, o);
	if (k == 0)
		k = ortlib_check(ort->CreateSession(env, model, s->options, &s->session), model);
	if (k == 0)
		k = ortlib_check(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault,
							  &s->meminfo), "CreateCpuMemoryInfo");
	if (k == 0)
		k = names_get(s->session, 0, &s->input_names, &s->n_inputs);
	if (k == 0)
		k = names_get(s->session, 1, &s->output_names, &s->n_outputs);
	return k;
}

void ortlib_session_close(struct ortlib_session *s)
{
	names_free(s->input_names, s->n_inputs);
	names_free(s->output_names, s->n_outputs);
	if (s->meminfo)
		ortlib_api->ReleaseMemoryInfo(s->meminfo);
	if (s->session)
		ortlib_api->ReleaseSession(s->session);
	if (s->options)
		ortlib_api->ReleaseSessionOptions(s->options);
	*s = (struct ortlib_session){ 0 };
}

static int dims_fix(int64_t *dims, size_t rank, int64_t symbolic, size_t *ret_numel)
{
	*ret_numel = 1;
	for (size_t d = 0; d < rank; d++) {
		if (dims[d] < 1 && symbolic < 1)
			return -EINVAL;
		if (dims[d] < 1)
			dims[d] = symbolic;
		*ret_numel *= (size_t)dims[d];
	}
	return 0;
}

int ortlib_input_shape(OrtSession *session, size_t index, int64_t symbolic, int64_t *dims,
		       size_t *ret_rank, size_t *ret_numel)
{
	const OrtApi *ort = ortlib_api;
	const OrtTensorTypeAndShapeInfo *info;
	ONNXTensorElementDataType elem;
	OrtTypeInfo *type = NULL;
	int k;

	k = ortlib_check(ort->SessionGetInputTypeInfo(session, index, &type),
			 "SessionGetInputTypeInfo");
	if (k == 0)
		k = ortlib_check(ort->CastTypeInfoToTensorInfo(type, &info),
				 "CastTypeInfoToTensorInfo");
	if (k == 0)
		k = ortlib_check(ort->GetTensorElementType(info, &elem), "GetTensorElementType");
	if (k == 0)
		k = ortlib_check(ort->GetDimensionsCount(info, ret_rank), "GetDimensionsCount");
	if (k == 0 && (elem != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || *ret_rank > ORTLIB_MAX_RANK))
		k = -EINVAL;
	if (k == 0)
		k = ortlib_check(ort->GetDimensions(info, dims, *ret_rank), "GetDimensions");
	if (k == 0)
		k = dims_fix(dims, *ret_rank, symbolic, ret_numel);
	if (k == -EINVAL)
		fprintf(stderr, "%s: input %zu: not a float tensor of %s shape\n", prog, index,
			symbolic ? "known rank" : "fixed");
	if (type)
		ort->ReleaseTypeInfo(type);
	return k;
}

void ortlib_fill(float *x, size_t n, uint64_t *seed)
{
	for (size_t i = 0; i < n; i++) {
		*seed = *seed * 6364136223846793005u + 1442695040888963407u;
		x[i] = (float)(*seed >> 40) / (float)(1 << 23) - 1.0f;
	}
}

int ortlib_value_floats(OrtValue *value, float **ret, size_t *ret_n)
{
	const OrtApi *ort = ortlib_api;
	OrtTensorTypeAndShapeInfo *info = NULL;
	void *data = NULL;
	int k;

	k = ortlib_check(ort->GetTensorTypeAndShape(value, &info), "GetTensorTypeAndShape");
	if (k == 0)
		k = ortlib_check(ort->GetTensorShapeElementCount(info, ret_n),
				 "GetTensorShapeElementCount");
	if (info)
		ort->ReleaseTensorTypeAndShapeInfo(info);
	if (k == 0)
		k = ortlib_check(ort->GetTensorMutableData(value, &data), "GetTensorMutableData");
	if (k == 0 && !(*ret = malloc((*ret_n ? *ret_n : 1) * sizeof(float))))
		k = -ENOMEM;
	if (k == 0)
		memcpy(*ret, data, *ret_n * sizeof(float));
	return k;
}

static int run_first_output(OrtSession *session, OrtValue *in, const char *in_name,
			    const char *out_name, struct ortlib_run *run)
{
	OrtValue *out = NULL;
	int k;

	k = ortlib_check(ortlib_api->Run(session, NULL, &in_name, (const OrtValue *const *)&in, 1,
					 &out_name, 1, &out), "Run");
	if (k == 0)
		k = ortlib_value_floats(out, &run->output, &run->n_output);
	if (out)
		ortlib_api->ReleaseValue(out);
	return k;
}

int ortlib_run_fixed(OrtSession *session, struct ortlib_run *ret)
{
	struct ortlib_session s = { .session = session };
	int64_t dims[ORTLIB_MAX_RANK];
	uint64_t seed = 0x9e3779b97f4a7c15u;
	OrtValue *in = NULL;
	size_t rank;
	int k;

	*ret = (struct ortlib_run){ 0 };
	k = names_get(session, 0, &s.input_names, &s.n_inputs);
	if (k == 0)
		k = names_get(session, 1, &s.output_names, &s.n_outputs);
	if (k == 0 && (s.n_inputs != 1 || s.n_outputs < 1))
		k = -EINVAL;
	if (k == 0)
		k = ortlib_input_shape(session, 0, 2, dims, &rank, &ret->n_input);
	if (k == 0 && !(ret->input = malloc((ret->n_input ? ret->n_input : 1) * sizeof(float))))
		k = -ENOMEM;
	if (k == 0) {
		ortlib_fill(ret->input, ret->n_input, &seed);
		k = ortlib_check(ortlib_api->CreateCpuMemoryInfo(OrtArenaAllocator,
								 OrtMemTypeDefault, &s.meminfo),
				 "CreateCpuMemoryInfo");
	}
	if (k == 0)
		k = ortlib_check(ortlib_api->CreateTensorWithDataAsOrtValue(
				 s.meminfo, ret->input, ret->n_input * sizeof(float), dims, rank,
				 ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in), "input");
	if (k == 0)
		k = run_first_output(session, in, s.input_names[0], s.output_names[0], ret);
	if (in)
		ortlib_api->ReleaseValue(in);
	s.session = NULL; /* the caller's */
	ortlib_session_close(&s);
	return k;
}

void ortlib_run_free(struct ortlib_run *run)
{
	free(run->input);
	free(run->output);
	*run = (struct ortlib_run){ 0 };
}
