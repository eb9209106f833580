/* SPDX-License-Identifier: MIT */
/*
 * Where large external tensors live while a model is loaded: the bytes of
 * each external initializer are copied (in the kernel) into one unnamed
 * work file, which is mapped shared, and raw_data points into that map.
 * Passes read and modify them in place like heap tensors; a pass that is
 * done with a tensor releases it, which drops its pages from the process
 * (modified pages stay in the page cache). Peak memory is then what the
 * passes hold at once, not the model's size. Saving copies the bytes on to
 * the output side file in the kernel too, or, when every tensor the work
 * file holds is still in the model and the output is on its filesystem,
 * links the work file itself as the output side file (no copy at all).
 *
 * Such a tensor keeps data_location = EXTERNAL (and its external_data
 * entries) next to has_raw_data; the store's map (filemap.h) tells it by
 * its address.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "onnx.pb-c.h"
#include "filemap.h"
#include "onnxpass/onnxpass.h"

struct opass_store {
	int fd;          /* the work file, -1 when there is none */
	/* all of it, mapped shared; private once it became a saved side file */
	struct opass_filemap map;
	size_t n_tensors; /* tensors it holds */
};

/* External tensors at least this large are mapped; smaller ones are read. */
#define OPASS_STORE_MIN_BYTES ((uint64_t)64 << 10)

/* A source range for opass_store_fill: length bytes at offset of fd, or
 * with fd -1 the tensor's own (malloc'd) raw_data, offset 0. */
struct opass_store_src {
	Onnx__TensorProto *tensor;
	int fd;
	uint64_t offset;
	uint64_t length;
};

/* Create the work file (unnamed, in dir or else in $TMPDIR or /tmp), copy
 * every source range into it and point the tensors at the mapping. On
 * failure nothing is changed and the caller reads the tensors itself. */
int opass_store_fill(struct opass_store *store, const char *dir, const struct opass_store_src *srcs,
		     size_t n_srcs);

/* Where the bytes of a tensor the store holds are in the work file. */
uint64_t opass_store_offset(const struct opass_store *store, const Onnx__TensorProto *t);

/* After the work file was saved as a side file (linked under its name):
 * map it private, so that later changes stay in memory. On failure the
 * mapping may be gone: the caller must detach the tensors. */
int opass_store_published(struct opass_store *store);

/* Was the work file saved as a side file (opass_store_published)? */
bool opass_store_is_published(const struct opass_store *store);

/* Unmap and close (the tensors must be detached first). */
void opass_store_fini(struct opass_store *store);
