/* SPDX-License-Identifier: MIT */
/* File input and atomic file output (temp file in the target folder,
 * optional fsync, rename): on failure nothing is left behind. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "onnxpass/onnxpass.h"

/* A read-only view of a whole file (mmap'd). */
struct opass_mapped_file {
	void *data;
	size_t size;
};

int opass_file_map(const char *path, struct opass_mapped_file *ret_file, struct onnxpass_error *err);
void opass_file_unmap(struct opass_mapped_file *file);

/* A file being written: becomes visible at path only on commit. */
struct opass_atomic_file {
	int fd;
	char *path;
	char *tmp_path;
	int error;      /* first write error (negative errno) */
	char *buf;      /* write buffer */
	size_t buf_len;
	uint64_t offset; /* bytes written so far */
	uint64_t queued; /* bytes handed to writeback so far */
	bool sync;       /* fsync the file and its folder at commit */
	bool stream;     /* fd is the target itself ("-", a device, a FIFO): no rename */
};

/* path: "-" is stdout; a symlink is followed (its target is replaced, the
 * link stays); a character device, FIFO or socket is written as a stream;
 * a regular file is replaced by rename, keeping its mode and (where the
 * process may set it) its owner; a new file gets 0666 & ~umask. Until the
 * commit the data lives in an unnamed file (O_TMPFILE).
 * sync: make the data durable before the rename (fsync of the file, then
 * of its folder after the rename); without it the rename is still atomic
 * for other processes, as with cp or onnx.save. */
int opass_atomic_open(const char *path, bool sync, struct opass_atomic_file *ret_file,
		      struct onnxpass_error *err);
/* An atomic file at path whose first offset bytes are already those of fd,
 * an unnamed file (O_TMPFILE) on path's filesystem: it is linked under the
 * temp name and written on from offset. -errno (nothing left behind) when
 * it cannot be linked there; err is set only for other failures. */
int opass_atomic_adopt(const char *path, int fd, uint64_t offset, bool sync,
		       struct opass_atomic_file *ret_file, struct onnxpass_error *err);
/* Flush (and fsync when sync) the file and give it a second name, name, which
 * must not exist; the file stays open. */
int opass_atomic_link_as(struct opass_atomic_file *file, const char *name);
int opass_atomic_write(struct opass_atomic_file *file, const void *data, size_t size);
/* End the file where the writes ended (an adopted file may be longer). */
int opass_atomic_truncate(struct opass_atomic_file *file);
/* flush, fsync (when sync), rename over path; frees the file's resources either way */
int opass_atomic_commit(struct opass_atomic_file *file, struct onnxpass_error *err);
/* remove the temp file and free (NULL-safe on a zeroed struct) */
void opass_atomic_abort(struct opass_atomic_file *file);

/* Append size bytes at offset of fd (copied in the kernel when it can). */
int opass_atomic_copy(struct opass_atomic_file *file, int fd, uint64_t offset, uint64_t size);

/* Write all size bytes of data at offset of fd (pwrite, retried on EINTR
 * and short writes); -errno, or -EIO when nothing could be written. */
int opass_file_pwrite(int fd, const void *data, uint64_t size, uint64_t offset);

/* Copy size bytes from in_fd at in_off to out_fd at out_off: copy_file_range,
 * or pread/pwrite where the kernel or filesystem cannot. */
int opass_file_copy_range(int in_fd, uint64_t in_off, int out_fd, uint64_t out_off, uint64_t size);

/* Serialise a message into an open atomic file. */
int opass_atomic_write_proto(struct opass_atomic_file *file, const ProtobufCMessage *msg);

/* Serialise a message into a new atomic file at path. */
int opass_file_write_proto(const char *path, const ProtobufCMessage *msg, bool sync,
			   struct onnxpass_error *err);
