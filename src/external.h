/* SPDX-License-Identifier: MIT */
/* External data (data_location = EXTERNAL): side files next to the model. */
#pragma once

#include "model.h"

/* Resolve every external tensor (paths checked against the model folder:
 * no absolute paths, no '..', no symlink escapes): large initializers are
 * mapped through model->store, the others read into raw_data. */
int opass_external_load(struct onnxpass_model *model, struct onnxpass_error *err);

/* Serialise the model into a new buffer (mapped tensors inline). */
int opass_external_pack(struct onnxpass_model *model, void **ret_data, size_t *ret_size,
			struct onnxpass_error *err);

/* Save the model to path with large tensors in "<path>.data", both files
 * written atomically (and fsynced when sync). The in-memory model is
 * unchanged afterwards. */
int opass_external_save(struct onnxpass_model *model, const char *path, bool sync,
			struct onnxpass_error *err);
