/* SPDX-License-Identifier: MIT */
/*
 * Tensor bytes that live in a file mapping instead of the heap. The
 * external-data store (store.h) maps its work file and points raw_data into
 * it; the mapping is described here, per model, so that code which drops a
 * tensor can tell such bytes from malloc'd ones (protobuf-c must not free
 * them), and so that a pass can drop a tensor's pages once it is done with
 * it. The functions on tensors take the model's map; NULL stands for a model
 * without one (no tensor is mapped).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "onnx.pb-c.h"

struct opass_filemap {
	uint8_t *base;  /* NULL: nothing is mapped */
	uint64_t size;
	/* a MAP_SHARED file mapping, whose pages may be dropped at any time
	 * (their bytes stay in the file); else private (dropping would lose them) */
	bool shared;
};

/* Does t's raw_data lie in the mapping? */
bool opass_filemap_holds(const struct opass_filemap *map, const Onnx__TensorProto *t);

/* Forget t's raw_data when it lives in the mapping (before protobuf-c frees
 * t or before raw_data is replaced); no-op otherwise. */
void opass_filemap_detach(const struct opass_filemap *map, Onnx__TensorProto *t);

/* Drop the pages of t's bytes from memory when they live in the mapping and
 * it is shared (no-op otherwise): a pass calls it when done with a tensor. */
void opass_filemap_release(const struct opass_filemap *map, const Onnx__TensorProto *t);

/* Drop the whole pages inside [from, to) of a file mapping from memory
 * (MADV_DONTNEED; the pages at the edges may hold other bytes and stay). A
 * shared mapping's bytes stay in the file, a private one's revert to it. */
void opass_filemap_drop_pages(const void *from, const void *to);

/* Detach every tensor of the model that lives in the mapping. */
void opass_filemap_detach_all(const struct opass_filemap *map, Onnx__ModelProto *proto);
