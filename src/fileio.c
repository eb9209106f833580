/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "fileio.h"

#define OPASS_WRITE_BUFFER (1u << 20)

/* A random number for temp names (not for security: linkat never replaces). */
static uint32_t random_u32(void)
{
	uint32_t v = 0;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
		v = (uint32_t)getpid() ^ (uint32_t)(uintptr_t)&v ^ (uint32_t)time(NULL);
	return v;
}
#define OPASS_WRITEBACK_CHUNK (16u << 20)

/* Read exactly size bytes from the start of fd; -ESTALE when it ends sooner. */
static int file_read_all(int fd, char *data, size_t size)
{
	for (size_t done = 0; done < size;) {
		ssize_t n = pread(fd, data + done, size - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ESTALE;
		done += (size_t)n;
	}
	return 0;
}

/* A file the caller named cannot be read: "PATH: why". */
static int unreadable(struct onnxpass_error *err, int code, const char *path, const char *why)
{
	return opass_error_from(err, ONNXPASS_ERROR_INPUT_FILE, code, "%s: %s", path, why);
}

int opass_file_map(const char *path, struct opass_mapped_file *ret_file, struct onnxpass_error *err)
{
	struct stat st;
	void *data;
	int fd, r = 0;

	/* O_NONBLOCK: a FIFO in place of the file must not block */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return unreadable(err, -errno, path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = unreadable(err, -errno, path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = unreadable(err, -EISDIR, path, "not a regular file");
		goto out;
	}
	/* read into private memory: a mapping of the file itself would raise
	 * SIGBUS if the file shrank while it is parsed */
	data = st.st_size ? mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
	if (data == MAP_FAILED) {
		r = unreadable(err, -errno, path, strerror(errno));
		goto out;
	}
	r = file_read_all(fd, data, (size_t)st.st_size);
	if (r < 0) {
		munmap(data, (size_t)st.st_size);
		r = r == -ESTALE ? unreadable(err, -EIO, path, "input changed while reading") :
				   unreadable(err, r, path, strerror(-r));
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

/* The process's umask, read without changing it (umask() would race with
 * other threads creating files); 022 when /proc is not there. */
static mode_t umask_read(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	unsigned mask = 022;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Umask: %o", &mask) == 1)
			break;
	if (f)
		fclose(f);
	return (mode_t)(mask & 0777);
}

/* Follow path's symlinks (dangling ones too, as cp does) to the name that
 * will be written; ret_st is that name's stat when it exists. */
static int target_resolve(const char *path, char **ret_path, struct stat *ret_st, bool *ret_exists)
{
	char *p = strdup(path);

	for (int hops = 0; p; hops++) {
		char link[4096], *dir, *next;
		ssize_t n;

		if (lstat(p, ret_st) < 0) {
			int r = errno == ENOENT ? 0 : -errno;

			*ret_exists = false;
			if (r == 0)
				*ret_path = p;
			else
				free(p);
			return r;
		}
		if (!S_ISLNK(ret_st->st_mode)) {
			*ret_exists = true;
			*ret_path = p;
			return 0;
		}
		n = readlink(p, link, sizeof(link) - 1);
		if (hops >= 40 || n <= 0) {
			free(p);
			return hops >= 40 ? -ELOOP : -errno;
		}
		link[n] = '\0';
		dir = dirname(p);
		if (link[0] == '/' || asprintf(&next, "%s/%s", dir, link) < 0)
			next = link[0] == '/' ? strdup(link) : NULL;
		free(p);
		p = next;
	}
	return -ENOMEM;
}

/* path (regular or new) gets an unnamed file in its folder (O_TMPFILE: a
 * kill leaves nothing), or where that is not supported a named temp file.
 * An existing file's mode and owner are carried over. */
static int atomic_create(struct opass_atomic_file *f, const struct stat *old)
{
	char *copy = strdup(f->path);
	const char *base = strrchr(f->path, '/') ? strrchr(f->path, '/') + 1 : f->path;
	char *dir = copy ? dirname(copy) : NULL;
	int r = 0;

	if (!copy)
		return -ENOMEM;
	/* the kernel applies the umask (and default ACLs) to 0666 */
	f->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
	if (f->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		if (asprintf(&f->tmp_path, "%s/.%s.XXXXXX", dir, base) < 0)
			f->tmp_path = NULL;
		f->fd = f->tmp_path ? mkostemp(f->tmp_path, O_CLOEXEC) : -1;
		if (f->fd >= 0 && !old)
			(void)fchmod(f->fd, 0666 & ~umask_read());
	}
	if (f->fd < 0) {
		r = -errno;
		free(f->tmp_path);
		f->tmp_path = NULL;
	}
	free(copy);
	if (r == 0 && old) {
		/* the owner where we may set it (root; a group we are in) */
		if (fchown(f->fd, old->st_uid, old->st_gid) < 0)
			(void)!fchown(f->fd, (uid_t)-1, old->st_gid);
		(void)fchmod(f->fd, old->st_mode & 07777);
	}
	return r;
}

/* "-", a character device, a FIFO or a socket is written as a stream. */
static int atomic_open_stream(struct opass_atomic_file *f, const char *target)
{
	f->stream = true;
	if (!target) {
		f->fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
		return f->fd < 0 ? -errno : 0;
	}
	f->fd = open(target, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	return f->fd < 0 ? -errno : 0;
}

int opass_atomic_open(const char *path, bool sync, struct opass_atomic_file *ret_file,
		      struct onnxpass_error *err)
{
	struct opass_atomic_file f = { .fd = -1, .sync = sync };
	struct stat st;
	bool exists = false;
	char *target = NULL;
	int r = 0;

	if (strcmp(path, "-") != 0)
		r = target_resolve(path, &target, &st, &exists);
	f.path = strdup(path);
	f.buf = malloc(OPASS_WRITE_BUFFER);
	if (r == 0 && (!f.path || !f.buf))
		r = -ENOMEM;
	if (r == 0 && exists && S_ISDIR(st.st_mode))
		r = -EISDIR;
	else if (r == 0 && (!target || (exists && !S_ISREG(st.st_mode))))
		r = atomic_open_stream(&f, target);
	else if (r == 0) {
		free(f.path);
		f.path = target;
		target = NULL;
		r = atomic_create(&f, exists ? &st : NULL);
	}
	free(target);
	if (r < 0) {
		opass_atomic_abort(&f);
		return opass_error_from(err, ONNXPASS_ERROR_OUTPUT, r, "%s: cannot %s: %s", path,
					r == -EISDIR ? "write" : "create", strerror(-r));
	}
	*ret_file = f;
	return 0;
}

int opass_atomic_adopt(const char *path, int fd, uint64_t offset, bool sync,
		       struct opass_atomic_file *ret_file, struct onnxpass_error *err)
{
	struct opass_atomic_file f;
	struct stat a, b;
	int r;

	r = opass_atomic_open(path, sync, &f, err);
	if (r < 0)
		return r;
	/* fd, unnamed, takes the place of the new unnamed file when it can
	 * be linked where that one would be */
	if (f.stream || f.tmp_path || fstat(f.fd, &a) < 0 || fstat(fd, &b) < 0 || a.st_dev != b.st_dev)
		r = -EXDEV;
	/* the mode and owner the new file got (from the old OUT, or new) */
	if (r == 0 && (a.st_uid != b.st_uid || a.st_gid != b.st_gid) &&
	    fchown(fd, a.st_uid, a.st_gid) < 0)
		(void)!fchown(fd, (uid_t)-1, a.st_gid);
	if (r == 0 && fchmod(fd, a.st_mode & 07777) < 0)
		r = -errno;
	if (r == 0) {
		close(f.fd);
		f.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (f.fd < 0)
			r = -errno;
	}
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

int opass_file_pwrite(int fd, const void *data, uint64_t size, uint64_t offset)
{
	const char *p = data;

	while (size > 0) {
		ssize_t n = pwrite(fd, p, size < ((uint64_t)1 << 30) ? (size_t)size : (size_t)1 << 30,
				   (off_t)offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		size -= (uint64_t)n;
		offset += (uint64_t)n;
	}
	return 0;
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
		r = opass_file_pwrite(out_fd, buf, (uint64_t)n, out_off);
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

/* Give the unnamed file a temp name next to path (just before the rename). */
static int atomic_link(struct opass_atomic_file *file)
{
	char proc[64], *copy = strdup(file->path);
	const char *base = strrchr(file->path, '/') ? strrchr(file->path, '/') + 1 : file->path;
	int r = copy ? -EEXIST : -ENOMEM;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", file->fd);
	for (int tries = 0; r == -EEXIST && tries < 100; tries++) {
		free(file->tmp_path);
		if (asprintf(&file->tmp_path, "%s/.%s.%08x", dirname(copy), base,
			     (unsigned)random_u32()) < 0) {
			file->tmp_path = NULL;
			r = -ENOMEM;
			break;
		}
		strcpy(copy, file->path);
		r = linkat(AT_FDCWD, proc, AT_FDCWD, file->tmp_path, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
	}
	if (r < 0) {
		free(file->tmp_path);
		file->tmp_path = NULL;
	}
	free(copy);
	return r;
}

int opass_atomic_link_as(struct opass_atomic_file *file, const char *name)
{
	char proc[64];
	int r = atomic_flush(file);

	if (r == 0 && file->sync && fsync(file->fd) < 0)
		r = -errno;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", file->fd);
	if (r == 0 && file->tmp_path)
		r = link(file->tmp_path, name) < 0 ? -errno : 0;
	else if (r == 0)
		r = linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
	return r;
}

int opass_atomic_commit(struct opass_atomic_file *file, struct onnxpass_error *err)
{
	int r = atomic_flush(file);

	/* a stream (pipe, tty) cannot be fsynced: only files are */
	if (r == 0 && file->sync && fsync(file->fd) < 0 && !(file->stream && errno == EINVAL))
		r = -errno;
	if (r == 0 && !file->stream && !file->tmp_path)
		r = atomic_link(file);
	if (r == 0 && close(file->fd) < 0)
		r = -errno;
	else if (r < 0)
		close(file->fd);
	file->fd = -1;
	if (r == 0 && !file->stream && rename(file->tmp_path, file->path) < 0)
		r = -errno;
	if (r == 0 && file->sync && !file->stream)
		r = dir_sync(file->path);
	if (r < 0) {
		opass_error_from(err, ONNXPASS_ERROR_OUTPUT, r, "%s: cannot write: %s", file->path,
				 strerror(-r));
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
