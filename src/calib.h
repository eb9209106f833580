/* SPDX-License-Identifier: MIT */
/*
 * Calibration inputs (SPEC 12, --calibration PATH / compare --inputs PATH).
 *
 * PATH is one of:
 *   - a folder of ONNX test-data sets: test_data_set_N/input_M.pb (serialised
 *     TensorProtos, as in the ONNX model zoo); sets and inputs are sorted by
 *     their number; each set is one batch;
 *   - a folder holding input_M.pb directly (one set, one batch);
 *   - a folder of .npz files (arrays keyed by graph input name), sorted by
 *     file name (strcmp); each file is one batch;
 *   - one .npz file (one batch).
 * The .npz reader handles STORED and DEFLATE members (np.savez and
 * np.savez_compressed), .npy format versions 1-3, little-endian C-order
 * arrays of bool, int8-64, uint8-64, float16/32/64. Every size is checked
 * against the file's size before anything is allocated.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "onnx.pb-c.h"
#include "onnxpass/onnxpass.h"

struct opass_calib_tensor {
	char *name;            /* graph input name */
	int32_t dtype;         /* ONNX TensorProto data type (ONNX__TENSOR_PROTO__DATA_TYPE__*) */
	int64_t *dims;
	size_t n_dims;
	void *data;            /* C order, little-endian, malloc'd (may be NULL when size is 0) */
	size_t size;           /* bytes */
};

struct opass_calib_batch {
	struct opass_calib_tensor *tensors; /* in the order of the model's graph inputs */
	size_t n_tensors;
	char *path;            /* file (or test_data_set folder) it came from */
};

/* An opened PATH: the ordered list of batch files. */
struct opass_calib_source;

/* Open PATH (see above). Errors: -ENOENT (missing, or no batches in a
 * folder), -EBADMSG (not a recognised form), with "PATH: cause". */
int opass_calib_open(const char *path, struct opass_calib_source **ret_source,
		     struct onnxpass_error *err);
size_t opass_calib_count(const struct opass_calib_source *source);
/* Path of batch i (a file, or a test_data_set folder); NULL past the end. */
const char *opass_calib_path(const struct opass_calib_source *source, size_t i);

/*
 * Read batch i and check it against the model's graph inputs that are not
 * initializers: every such input present, no other names, dtype equal, rank
 * equal, fixed dims equal (symbolic or unknown dims match anything). Names:
 * .npz keys are input names; a test_data_set's input_M.pb uses the
 * TensorProto's name if set, else the M-th graph input. The batch's tensors
 * come in graph input order. Errors name the file and the input:
 * "FILE: input 'x': ..." (-EBADMSG for bad data, -EINVAL for a mismatch with
 * the model, -errno for I/O).
 */
int opass_calib_read(const struct opass_calib_source *source, size_t i,
		     const Onnx__ModelProto *model, struct opass_calib_batch **ret_batch,
		     struct onnxpass_error *err);

/* Read one file (.npz, or .pb: one TensorProto, named "" if it has no
 * name) without a model check: for tests and tools. */
int opass_calib_read_file(const char *path, struct opass_calib_batch **ret_batch,
			  struct onnxpass_error *err);

struct opass_calib_batch *opass_calib_batch_free(struct opass_calib_batch *batch);
struct opass_calib_source *opass_calib_free(struct opass_calib_source *source);

/* Free an array of n tensors and their contents (NULL-safe). */
void opass_calib_tensors_free(struct opass_calib_tensor *tensors, size_t n);

/* Element count of a tensor's dims (0 on overflow or negative dims). */
uint64_t opass_calib_tensor_numel(const struct opass_calib_tensor *t);

/* Limits: more batches, tensors per batch or dims per tensor are refused. */
#define OPASS_CALIB_MAX_BATCHES ((size_t)1 << 20)
#define OPASS_CALIB_MAX_TENSORS 4096
#define OPASS_CALIB_MAX_RANK 64
