/* SPDX-License-Identifier: MIT */
/* External data (data_location = EXTERNAL): side files next to the model. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "onnx.pb-c.h"
#include "onnxpass/onnxpass.h"
#include "store.h"

/* Resolve every external tensor of proto (paths checked against base_dir,
 * the model folder, which may be NULL: no absolute paths, no '..', no
 * symlink escapes): large initializers are mapped through store, the
 * others read into raw_data. *ret_had_external: some tensor was external. */
int opass_external_load(Onnx__ModelProto *proto, const char *base_dir, struct opass_store *store,
			bool *ret_had_external, struct onnxpass_error *err);

/* Serialise the model into a new buffer (the store's tensors inline). */
int opass_external_pack(Onnx__ModelProto *proto, const struct opass_store *store, void **ret_data,
			size_t *ret_size, struct onnxpass_error *err);

/* Save the model to path with large tensors in "<path>.data", both files
 * written atomically (and fsynced when sync). The in-memory model is
 * unchanged afterwards (the store may become its side file). */
int opass_external_save(Onnx__ModelProto *proto, struct opass_store *store, const char *path,
			bool sync, struct onnxpass_error *err);
