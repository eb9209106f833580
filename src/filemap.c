/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "filemap.h"
#include "proto_walk.h"

bool opass_filemap_holds(const struct opass_filemap *map, const Onnx__TensorProto *t)
{
	return map && map->base && t->has_raw_data && t->raw_data.data >= map->base &&
	       t->raw_data.len <= map->size &&
	       (uint64_t)(t->raw_data.data - map->base) <= map->size - t->raw_data.len;
}

void opass_filemap_detach(const struct opass_filemap *map, Onnx__TensorProto *t)
{
	if (!opass_filemap_holds(map, t))
		return;
	t->raw_data = (ProtobufCBinaryData){ 0 };
	t->has_raw_data = false;
}

void opass_filemap_drop_pages(const void *from, const void *to)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = ((uintptr_t)from + page - 1) & ~(page - 1);
	uintptr_t b = (uintptr_t)to & ~(page - 1);

	if (b > a)
		(void)madvise((void *)a, b - a, MADV_DONTNEED);
}

void opass_filemap_release(const struct opass_filemap *map, const Onnx__TensorProto *t)
{
	/* neighbours may share the edge pages: only the whole pages inside */
	if (opass_filemap_holds(map, t) && map->shared && t->raw_data.len)
		opass_filemap_drop_pages(t->raw_data.data, t->raw_data.data + t->raw_data.len);
}

static int detach_one(Onnx__TensorProto *t, void *userdata)
{
	opass_filemap_detach(userdata, t);
	return 0;
}

void opass_filemap_detach_all(const struct opass_filemap *map, Onnx__ModelProto *proto)
{
	if (proto && map && map->base)
		opass_proto_foreach_tensor(proto, detach_one, (void *)map);
}
