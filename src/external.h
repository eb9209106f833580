/* SPDX-License-Identifier: MIT */
/* External data (data_location = EXTERNAL): side files next to the model. */
#pragma once

#include "model.h"

/* Read every external tensor into raw_data (paths checked against the
 * model folder: no absolute paths, no '..', no symlink escapes). */
int opass_external_load(struct onnxpass_model *model, struct onnxpass_error *err);

/* Save the model to path with large tensors in "<path>.data", both files
 * written atomically (and fsynced when sync). The in-memory model is
 * unchanged afterwards. */
int opass_external_save(struct onnxpass_model *model, const char *path, bool sync,
			struct onnxpass_error *err);
