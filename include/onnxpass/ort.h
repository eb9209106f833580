/* SPDX-License-Identifier: MIT */
/*
 * onnx-pass for ONNX Runtime hosts: run passes on a model and open the result
 * as an OrtSession, without a temporary file.
 *
 * The library does not link ONNX Runtime: the caller passes its OrtApi
 * (OrtGetApiBase()->GetApi(ORT_API_VERSION)), so any ONNX Runtime whose
 * OrtApi has CreateSessionFromArray works. Only built when the library was
 * configured with ONNX Runtime's headers (meson option 'ort').
 */
#ifndef ONNXPASS_ORT_H
#define ONNXPASS_ORT_H

#include <onnxruntime_c_api.h>

#include "onnxpass.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Load a model (model_path, or else model_bytes/model_size), run the
 * comma-separated passes (NULL or "" for none) with config_json (may be NULL;
 * see onnxpass_registry_run) using the built-in passes, and create a session
 * from the result with api->CreateSessionFromArray(env, ..., options).
 *
 * A model loaded from a path may use external data: it is read in and the
 * session gets one self-contained model (which must stay under 2 GiB).
 * On success *ret_session is the caller's (api->ReleaseSession); on failure
 * err gets the library's or ONNX Runtime's message and nothing is returned.
 */
ONNXPASS_EXPORT int onnxpass_ort_create_session(const OrtApi *api, const OrtEnv *env,
						const OrtSessionOptions *options,
						const char *model_path,
						const void *model_bytes, size_t model_size,
						const char *passes, const char *config_json,
						OrtSession **ret_session,
						struct onnxpass_error *err);

/*
 * Append the OnnxPassSparse execution provider to options, before ORT's CPU
 * EP: registers library_path (NULL: "libonnxpass.so", found by the dynamic
 * loader) with api->RegisterExecutionProviderLibrary(env, "onnx_pass", ...)
 * unless env already has the OnnxPassSparse device, and appends that device
 * with SessionOptionsAppendExecutionProvider_V2. claim is the EP's option
 * (NULL or "auto": nodes the cost model predicts a win for; "all": every
 * supported node). Then create sessions from options, e.g. with
 * onnxpass_ort_create_session(); the model stays standard ONNX. Needs ORT
 * 1.24 or newer (API 24). Returns 0 or a negative errno with err set.
 */
ONNXPASS_EXPORT int onnxpass_ort_append_ep(const OrtApi *api, OrtEnv *env,
					   OrtSessionOptions *options, const char *library_path,
					   const char *claim, struct onnxpass_error *err);

/*
 * ONNX Runtime's custom-op library entry point: registers the custom-op
 * domain "ai.onnx_pass" (SparseMatMul, which models converted with
 * `--format ort-sparse` use) in options. ORT calls it when the library is
 * loaded with RegisterCustomOpsLibrary_V2(options, "libonnxpass.so") or
 * Python's SessionOptions.register_custom_ops_library(); an application
 * linked with the library may call it itself with OrtGetApiBase(). The
 * domain lives until the process exits. Returns NULL or ORT's error status.
 */
ONNXPASS_EXPORT OrtStatus *ORT_API_CALL RegisterCustomOps(OrtSessionOptions *options,
							  const OrtApiBase *api_base);

#ifdef __cplusplus
}
#endif

#endif
