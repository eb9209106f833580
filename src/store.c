/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fileio.h"
#include "store.h"

static uint64_t page_round_up(uint64_t n)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	return (n + page - 1) / page * page;
}

/* An unnamed file in dir; -errno on failure. */
static int work_file_in(const char *dir)
{
	char *path = NULL;
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd >= 0 ? fd : -errno;
	/* no O_TMPFILE here: a named file, unlinked at once */
	if (asprintf(&path, "%s/.onnx-pass-work-XXXXXX", dir) < 0)
		return -ENOMEM;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	free(path);
	return fd >= 0 ? fd : -errno;
}

static int work_file_open(const char *dir)
{
	const char *dirs[] = { dir, getenv("TMPDIR"), "/tmp" };
	int fd = -ENOENT;

	for (size_t i = 0; fd < 0 && i < sizeof(dirs) / sizeof(*dirs); i++)
		if (dirs[i] && *dirs[i])
			fd = work_file_in(dirs[i]);
	return fd;
}

static int src_copy(const struct opass_store_src *src, int fd, uint64_t offset)
{
	if (src->fd < 0)
		return opass_file_pwrite(fd, src->tensor->raw_data.data, src->length, offset);
	return opass_file_copy_range(src->fd, src->offset, fd, offset, src->length);
}

int opass_store_fill(struct opass_store *store, const char *dir, const struct opass_store_src *srcs,
		     size_t n_srcs)
{
	uint64_t *offsets = calloc(n_srcs + 1, sizeof(*offsets)), total = 0;
	uint8_t *base = MAP_FAILED;
	int fd = -1, r = 0;

	if (!offsets)
		return -ENOMEM;
	for (size_t i = 0; i < n_srcs; i++) {
		offsets[i] = total;
		total += page_round_up(srcs[i].length);
	}
	if (total == 0)
		goto out;
	fd = work_file_open(dir);
	r = fd < 0 ? fd : ftruncate(fd, (off_t)total) < 0 ? -errno : 0;
	for (size_t i = 0; r == 0 && i < n_srcs; i++)
		r = src_copy(&srcs[i], fd, offsets[i]);
	if (r == 0) {
		base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		r = base == MAP_FAILED ? -errno : 0;
	}
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n_srcs; i++) {
		Onnx__TensorProto *t = srcs[i].tensor;

		free(t->raw_data.data);
		t->raw_data.data = base + offsets[i];
		t->raw_data.len = srcs[i].length;
		t->has_raw_data = true;
	}
	*store = (struct opass_store){
		.fd = fd,
		.map = { .base = base, .size = total, .shared = true },
		.n_tensors = n_srcs,
	};
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	free(offsets);
	return r;
}

uint64_t opass_store_offset(const struct opass_store *store, const Onnx__TensorProto *t)
{
	return (uint64_t)(t->raw_data.data - store->map.base);
}

int opass_store_published(struct opass_store *store)
{
	if (mmap(store->map.base, store->map.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
		 store->fd, 0) == MAP_FAILED)
		return -errno;
	store->map.shared = false;
	return 0;
}

bool opass_store_is_published(const struct opass_store *store)
{
	return store->fd >= 0 && !store->map.shared;
}

void opass_store_fini(struct opass_store *store)
{
	if (!store || store->fd < 0)
		return;
	munmap(store->map.base, store->map.size);
	close(store->fd);
	*store = (struct opass_store){ .fd = -1 };
}
