/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fileio.h"

#define OPASS_WRITE_BUFFER (1u << 20)
#define OPASS_WRITEBACK_CHUNK (16u << 20)

int opass_file_map(const char *path, struct opass_mapped_file *ret_file, struct onnxpass_error *err)
{
	struct stat st;
	void *data;
	int fd, r = 0;

	/* O_NONBLOCK: a FIFO in place of the file must not block */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return opass_error(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = opass_error(err, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = opass_error(err, -EISDIR, "%s: not a regular file", path);
		goto out;
	}
	data = st.st_size ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	if (data == MAP_FAILED) {
		r = opass_error(err, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	ret_file->data = data;
	ret_file->size = (size_t)st.st_size;
out:
	close(fd);
	return r;
}

void opass_file_unmap(struct opass_mapped_file *file)
{
	if (file && file->data)
		munmap(file->data, file->size);
	if (file)
		file->data = NULL;
}

/* The process's umask (read by setting it back at once). */
static mode_t umask_get(void)
{
	mode_t mask = umask(0);

	umask(mask);
	return mask;
}

int opass_atomic_open(const char *path, bool sync, struct opass_atomic_file *ret_file,
		      struct onnxpass_error *err)
{
	struct opass_atomic_file f = { .fd = -1, .sync = sync };
	char *copy = strdup(path), *dir, *base;

	if (!copy)
		return opass_error(err, -ENOMEM, "out of memory");
	dir = dirname(copy);
	base = strrchr(path, '/') ? strrchr(path, '/') + 1 : (char *)path;
	f.path = strdup(path);
	if (f.path && asprintf(&f.tmp_path, "%s/.%s.XXXXXX", dir, base) < 0)
		f.tmp_path = NULL;
	free(copy);
	f.buf = malloc(OPASS_WRITE_BUFFER);
	if (!f.path || !f.tmp_path || !f.buf) {
		opass_atomic_abort(&f);
		return opass_error(err, -ENOMEM, "out of memory");
	}
	f.fd = mkostemp(f.tmp_path, O_CLOEXEC);
	if (f.fd < 0) {
		int r = opass_error(err, -errno, "%s: cannot create: %s", path, strerror(errno));

		free(f.tmp_path);
		f.tmp_path = NULL;
		opass_atomic_abort(&f);
		return r;
	}
	(void)fchmod(f.fd, 0666 & ~umask_get());
	*ret_file = f;
	return 0;
}

int opass_atomic_adopt(const char *path, int fd, uint64_t offset, bool sync,
		       struct opass_atomic_file *ret_file, struct onnxpass_error *err)
{
	struct opass_atomic_file f;
	char proc[64];
	int r;

	r = opass_atomic_open(path, sync, &f, err);
	if (r < 0)
		return r;
	/* the temp name, now free, becomes a link to fd's file */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	close(f.fd);
	f.fd = -1;
	r = unlink(f.tmp_path) < 0 ? -errno : 0;
	if (r == 0 && linkat(AT_FDCWD, proc, AT_FDCWD, f.tmp_path, AT_SYMLINK_FOLLOW) < 0) {
		r = -errno;
		free(f.tmp_path);   /* nothing of ours under that name */
		f.tmp_path = NULL;
	}
	if (r == 0 && (f.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
		r = -errno;
	if (r == 0 && fchmod(f.fd, 0666 & ~umask_get()) < 0)
		r = -errno;
	if (r == 0 && lseek(f.fd, (off_t)offset, SEEK_SET) < 0)
		r = -errno;
	if (r < 0) {
		opass_atomic_abort(&f);
		return r;
	}
	f.offset = offset;
	f.queued = offset;
	*ret_file = f;
	return 0;
}

static int atomic_flush(struct opass_atomic_file *file)
{
	size_t done = 0;

	while (file->error == 0 && done < file->buf_len) {
		ssize_t n = write(file->fd, file->buf + done, file->buf_len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			file->error = n < 0 ? -errno : -EIO;
		else
			done += (size_t)n;
	}
	file->buf_len = 0;
	return file->error;
}

/* Start the disk writes of what has been written so far, without waiting,
 * so that the fsync at commit has less left to wait for. */
static void atomic_writeback(struct opass_atomic_file *file)
{
	uint64_t written = file->offset - file->buf_len;

	if (written - file->queued < OPASS_WRITEBACK_CHUNK)
		return;
	(void)sync_file_range(file->fd, (off_t)file->queued, (off_t)(written - file->queued),
			      SYNC_FILE_RANGE_WRITE);
	file->queued = written;
}

int opass_atomic_truncate(struct opass_atomic_file *file)
{
	if (atomic_flush(file) == 0 && ftruncate(file->fd, (off_t)file->offset) < 0)
		file->error = -errno;
	return file->error;
}

/* Write straight from the caller's memory (large chunks skip the buffer). */
static int atomic_write_direct(struct opass_atomic_file *file, const char *p, size_t size)
{
	if (atomic_flush(file) < 0)
		return file->error;
	while (size > 0 && file->error == 0) {
		ssize_t n = write(file->fd, p, size);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			file->error = n < 0 ? -errno : -EIO;
		else {
			p += n;
			size -= (size_t)n;
			file->offset += (uint64_t)n;
		}
	}
	atomic_writeback(file);
	return file->error;
}

int opass_atomic_write(struct opass_atomic_file *file, const void *data, size_t size)
{
	const char *p = data;

	if (size >= OPASS_WRITE_BUFFER)
		return atomic_write_direct(file, p, size);

	while (size > 0 && file->error == 0) {
		size_t n = OPASS_WRITE_BUFFER - file->buf_len;

		if (n > size)
			n = size;
		memcpy(file->buf + file->buf_len, p, n);
		file->buf_len += n;
		file->offset += n;
		p += n;
		size -= n;
		if (file->buf_len == OPASS_WRITE_BUFFER) {
			atomic_flush(file);
			atomic_writeback(file);
		}
	}
	return file->error;
}

/* fsync the folder holding path, so that a rename in it is durable. */
static int dir_sync(const char *path)
{
	char *copy = strdup(path);
	int fd, r = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return r;
}

static int copy_fallback(int in_fd, uint64_t in_off, int out_fd, uint64_t out_off, uint64_t size)
{
	size_t cap = OPASS_WRITE_BUFFER;
	char *buf = malloc(cap);
	int r = buf ? 0 : -ENOMEM;

	while (r == 0 && size > 0) {
		ssize_t n = pread(in_fd, buf, size < cap ? (size_t)size : cap, (off_t)in_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		for (ssize_t done = 0, w; r == 0 && done < n; done += w) {
			w = pwrite(out_fd, buf + done, (size_t)(n - done), (off_t)(out_off + (uint64_t)done));
			if (w < 0 && errno == EINTR)
				w = 0;
			else if (w <= 0)
				r = w < 0 ? -errno : -EIO;
		}
		in_off += (uint64_t)n;
		out_off += (uint64_t)n;
		size -= (uint64_t)n;
	}
	free(buf);
	return r;
}

int opass_file_copy_range(int in_fd, uint64_t in_off, int out_fd, uint64_t out_off, uint64_t size)
{
	while (size > 0) {
		loff_t in = (loff_t)in_off, out = (loff_t)out_off;
		ssize_t n = copy_file_range(in_fd, &in, out_fd, &out, size, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP))
			return copy_fallback(in_fd, in_off, out_fd, out_off, size);
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		in_off += (uint64_t)n;
		out_off += (uint64_t)n;
		size -= (uint64_t)n;
	}
	return 0;
}

int opass_atomic_copy(struct opass_atomic_file *file, int fd, uint64_t offset, uint64_t size)
{
	if (atomic_flush(file) < 0)
		return file->error;
	file->error = opass_file_copy_range(fd, offset, file->fd, file->offset, size);
	if (file->error == 0) {
		file->offset += size;
		if (lseek(file->fd, (off_t)file->offset, SEEK_SET) < 0)
			file->error = -errno;
	}
	atomic_writeback(file);
	return file->error;
}

int opass_atomic_commit(struct opass_atomic_file *file, struct onnxpass_error *err)
{
	int r = atomic_flush(file);

	if (r == 0 && file->sync && fsync(file->fd) < 0)
		r = -errno;
	if (r == 0 && close(file->fd) < 0)
		r = -errno;
	else if (r < 0)
		close(file->fd);
	file->fd = -1;
	if (r == 0 && rename(file->tmp_path, file->path) < 0)
		r = -errno;
	if (r == 0 && file->sync)
		r = dir_sync(file->path);
	if (r < 0) {
		opass_error(err, r, "%s: cannot write: %s", file->path, strerror(-r));
		opass_atomic_abort(file);
		return r;
	}
	free(file->tmp_path);
	file->tmp_path = NULL;
	opass_atomic_abort(file);
	return 0;
}

void opass_atomic_abort(struct opass_atomic_file *file)
{
	if (!file)
		return;
	if (file->fd >= 0)
		close(file->fd);
	if (file->tmp_path)
		unlink(file->tmp_path);
	free(file->tmp_path);
	free(file->path);
	free(file->buf);
	*file = (struct opass_atomic_file){ .fd = -1 };
}

/* protobuf-c output sink that streams into an atomic file. */
struct file_sink {
	ProtobufCBuffer base;
	struct opass_atomic_file *file;
};

static void file_sink_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data)
{
	struct file_sink *sink = (struct file_sink *)buffer;

	opass_atomic_write(sink->file, data, len);
}

int opass_atomic_write_proto(struct opass_atomic_file *file, const ProtobufCMessage *msg)
{
	struct file_sink sink = { .base.append = file_sink_append, .file = file };

	protobuf_c_message_pack_to_buffer(msg, &sink.base);
	return file->error;
}

int opass_file_write_proto(const char *path, const ProtobufCMessage *msg, bool sync,
			   struct onnxpass_error *err)
{
	struct opass_atomic_file file;
	int r;

	r = opass_atomic_open(path, sync, &file, err);
	if (r < 0)
		return r;
	opass_atomic_write_proto(&file, msg);
	return opass_atomic_commit(&file, err);
}
