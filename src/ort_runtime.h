/* SPDX-License-Identifier: MIT */
/*
 * ONNX Runtime loaded at run time (dlopen): the library never links
 * libonnxruntime, and works without it until a calibration run or compare
 * needs it. Built with ORT's headers (meson option 'ort'); without them
 * opass_ort_open() fails with -ENOTSUP.
 */
#pragma once

#include <stddef.h>

#include "calib.h"
#include "onnxpass/onnxpass.h"

/* A loaded runtime: its OrtApi and one OrtEnv (ORT's log goes nowhere). */
struct opass_ort;

/*
 * Load ONNX Runtime. Lookup order: $ONNX_PASS_ORT_LIBRARY (when set, only
 * it), the build's ort_dir (ONNXPASS_ORT_DIR, .../lib/libonnxruntime.so),
 * third_party/onnxruntime/lib of the source tree (ONNXPASS_ORT_SOURCE_DIR),
 * then "libonnxruntime.so.1" and "libonnxruntime.so" through the loader's
 * path. -ENOENT with "ONNX Runtime not found: set ONNX_PASS_ORT_LIBRARY ..."
 * when none loads; -ENOTSUP when the library was built without ORT headers.
 */
int opass_ort_open(struct opass_ort **ret_ort, struct onnxpass_error *err);
/* Releases the env; the library itself stays loaded (ORT is not made to be
 * unloaded), so a later open is cheap. */
struct opass_ort *opass_ort_close(struct opass_ort *ort);
/* The file the runtime was loaded from. */
const char *opass_ort_library(const struct opass_ort *ort);

struct opass_ort_session;

/* A negative errno for an OrtErrorCode (ENOENT, EINVAL, ENOTSUP, else EIO). */
int opass_ort_code_errno(int code);

/* Initializers ORT reads in place (AddInitializer) instead of the model's:
 * the serialised model gives them as external data in a file of folder
 * (which must exist, e.g. sparse, but is never read). Their bytes must
 * outlive the session. Graph optimizations are off for such sessions (the
 * optimizers would read the placeholder). */
struct opass_ort_shared {
	const struct opass_calib_tensor *tensors;
	size_t n;
	const char *folder;
};

/* threads: intra-op threads (0 = ORT default). model: a serialised model
 * (copied by ORT; may be freed after the call). shared may be NULL. */
int opass_ort_session_new(struct opass_ort *ort, const void *model, size_t size, unsigned threads,
			  const struct opass_ort_shared *shared,
			  struct opass_ort_session **ret_session, struct onnxpass_error *err);
struct opass_ort_session *opass_ort_session_free(struct opass_ort_session *session);

/*
 * Run with the batch's tensors as feeds and fetch the named outputs (any of
 * the model's graph outputs). *ret_outputs: a malloc'd array of n_outputs
 * tensors (name, dtype, dims, data copied out), to free with
 * opass_calib_tensors_free(outputs, n_outputs). Errors carry ORT's message
 * ("ONNX Runtime: ..."). String (and other non-fixed-size) outputs are
 * refused with -ENOTSUP. Thread-safe for one session (ORT's Run is).
 */
int opass_ort_session_run(struct opass_ort_session *session, const struct opass_calib_batch *feeds,
			  const char *const *output_names, size_t n_outputs,
			  struct opass_calib_tensor **ret_outputs, struct onnxpass_error *err);

/* The same, without copies: visit(i, t, userdata) sees output i with t->data
 * pointing into ONNX Runtime's buffer (valid during the call only); each
 * output is released right after its visit. A nonzero return of visit
 * stops and is returned. */
int opass_ort_session_visit(struct opass_ort_session *session, const struct opass_calib_batch *feeds,
			    const char *const *output_names, size_t n_outputs,
			    int (*visit)(size_t i, const struct opass_calib_tensor *t, void *userdata),
			    void *userdata, struct onnxpass_error *err);
