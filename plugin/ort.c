/* SPDX-License-Identifier: MIT */
/* ONNX Runtime helper: passes, then an OrtSession from the serialised result. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "onnxpass/ort.h"
#include "ort_runtime.h"

static int ort_status_error(const OrtApi *api, OrtStatus *status, struct onnxpass_error *err)
{
	int r;

	if (!status)
		return 0;
	r = opass_error(err, opass_ort_code_errno(api->GetErrorCode(status)), "ONNX Runtime: %s",
			api->GetErrorMessage(status));
	api->ReleaseStatus(status);
	return r;
}

static int ort_model_load(const char *path, const void *bytes, size_t size,
			  struct onnxpass_model **ret_model, struct onnxpass_error *err)
{
	if (path)
		return onnxpass_model_load_file(path, ret_model, err);
	if (!bytes)
		return opass_error_usage(err, "no model given (path or bytes)");
	return onnxpass_model_load_bytes(bytes, size, NULL, ret_model, err);
}

static int ort_model_transform(struct onnxpass_model *model, const char *passes,
			       const char *config_json, struct onnxpass_error *err)
{
	struct onnxpass_registry *registry = NULL;
	int r;

	if (!passes || !*passes)
		return 0;
	r = onnxpass_registry_new(&registry, err);
	if (r == 0)
		r = onnxpass_registry_run(registry, model, passes, config_json, NULL, err);
	onnxpass_registry_free(registry);
	return r;
}

static int ort_session_from_bytes(const OrtApi *api, const OrtEnv *env,
				  const OrtSessionOptions *options, const void *data, size_t size,
				  OrtSession **ret_session, struct onnxpass_error *err)
{
	OrtSession *session = NULL;
	int r;

	r = ort_status_error(api, api->CreateSessionFromArray(env, data, size, options, &session),
			     err);
	if (r == 0)
		*ret_session = session;
	return r;
}

ONNXPASS_EXPORT int onnxpass_ort_create_session(const OrtApi *api, const OrtEnv *env,
						const OrtSessionOptions *options,
						const char *model_path,
						const void *model_bytes, size_t model_size,
						const char *passes, const char *config_json,
						OrtSession **ret_session,
						struct onnxpass_error *err)
{
	struct onnxpass_model *model = NULL;
	void *data = NULL;
	size_t size = 0;
	int r;

	if (!api || !env || !options || !ret_session)
		return opass_error_usage(err, "ONNX Runtime API, env, options and session "
					 "pointer are required");
	r = ort_model_load(model_path, model_bytes, model_size, &model, err);
	if (r == 0)
		r = ort_model_transform(model, passes, config_json, err);
	if (r == 0)
		r = onnxpass_model_save_bytes(model, &data, &size, err);
	onnxpass_model_free(model);
	if (r == 0)
		r = ort_session_from_bytes(api, env, options, data, size, ret_session, err);
	free(data);
	return r;
}

/* ---- the OnnxPassSparse execution provider --------------------------------- */

/* env's OnnxPassSparse device, or NULL. */
static int ort_ep_device(const OrtApi *api, OrtEnv *env, const OrtEpDevice **ret,
			 struct onnxpass_error *err)
{
	const OrtEpDevice *const *devices = NULL;
	size_t n = 0;
	int r;

	*ret = NULL;
	r = ort_status_error(api, api->GetEpDevices(env, &devices, &n), err);
	for (size_t i = 0; r == 0 && i < n; i++)
		if (strcmp(api->EpDevice_EpName(devices[i]), "OnnxPassSparse") == 0)
			*ret = devices[i];
	return r;
}

ONNXPASS_EXPORT int onnxpass_ort_append_ep(const OrtApi *api, OrtEnv *env,
					   OrtSessionOptions *options, const char *library_path,
					   const char *claim, struct onnxpass_error *err)
{
	const char *keys[] = { "claim" }, *values[] = { claim };
	const OrtEpDevice *device = NULL;
	int r;

	if (!api || !env || !options)
		return opass_error_usage(err, "ONNX Runtime API, env and options are required");
	r = ort_ep_device(api, env, &device, err);
	if (r == 0 && !device)
		r = ort_status_error(api, api->RegisterExecutionProviderLibrary(env, "onnx_pass",
					library_path ? library_path : "libonnxpass.so"), err);
	if (r == 0 && !device)
		r = ort_ep_device(api, env, &device, err);
	if (r == 0 && !device)
		r = opass_error(err, -ENODEV, "ONNX Runtime offers no OnnxPassSparse device");
	if (r == 0)
		r = ort_status_error(api, api->SessionOptionsAppendExecutionProvider_V2(
					options, env, &device, 1, keys, values, claim ? 1 : 0), err);
	return r;
}
