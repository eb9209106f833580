/* SPDX-License-Identifier: MIT */
/*
 * Tensor bytes that live in file mappings instead of the heap: the
 * external-data store (store.h) and the in-place copy of a model being
 * transformed into an output (inplace.h) map files and point raw_data into
 * them. They register each mapping here, so that code which drops a tensor
 * can tell such bytes from malloc'd ones (protobuf-c must not free them),
 * and so that a pass can drop a tensor's pages once it is done with it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "onnx.pb-c.h"

/* shared: a MAP_SHARED file mapping, whose pages may be dropped at any time
 * (their bytes stay in the file); else private (dropping would lose them). */
int opass_mapping_add(void *base, size_t size, bool shared);
void opass_mapping_set_shared(const void *base, bool shared);
void opass_mapping_remove(const void *base);

/* Forget t's raw_data when it lives in a mapping (before protobuf-c frees t
 * or before raw_data is replaced); no-op otherwise. */
void opass_tensor_detach(Onnx__TensorProto *t);

/* Drop the pages of t's bytes from memory when they live in a shared
 * mapping (no-op otherwise): a pass calls it when done with a tensor. */
void opass_tensor_release(const Onnx__TensorProto *t);

/* Detach every mapped tensor of the model. */
void opass_model_detach_mapped(Onnx__ModelProto *proto);
