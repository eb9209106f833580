/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mapping.h"
#include "proto_walk.h"

/* Few mappings live at once (one or two per loaded model): a locked array. */
struct mapping {
	uint8_t *base;
	size_t size;
	bool shared;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct mapping *mappings;
static size_t n_mappings;

int opass_mapping_add(void *base, size_t size, bool shared)
{
	struct mapping *m;
	int r = 0;

	pthread_mutex_lock(&lock);
	m = realloc(mappings, (n_mappings + 1) * sizeof(*m));
	if (m) {
		mappings = m;
		mappings[n_mappings++] = (struct mapping){ .base = base, .size = size, .shared = shared };
	} else {
		r = -ENOMEM;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

static struct mapping *mapping_of(const void *p)
{
	const uint8_t *q = p;

	for (size_t i = 0; q && i < n_mappings; i++)
		if (q >= mappings[i].base && q < mappings[i].base + mappings[i].size)
			return &mappings[i];
	return NULL;
}

void opass_mapping_set_shared(const void *base, bool shared)
{
	struct mapping *m;

	pthread_mutex_lock(&lock);
	m = mapping_of(base);
	if (m)
		m->shared = shared;
	pthread_mutex_unlock(&lock);
}

void opass_mapping_remove(const void *base)
{
	struct mapping *m;

	pthread_mutex_lock(&lock);
	m = mapping_of(base);
	if (m) {
		*m = mappings[--n_mappings];
		if (n_mappings == 0) {
			free(mappings);
			mappings = NULL;
		}
	}
	pthread_mutex_unlock(&lock);
}

/* 1: in a shared mapping, 2: in a private one, 0: not mapped. */
static int mapped_kind(const void *p)
{
	struct mapping *m;
	int kind;

	pthread_mutex_lock(&lock);
	m = mapping_of(p);
	kind = !m ? 0 : m->shared ? 1 : 2;
	pthread_mutex_unlock(&lock);
	return kind;
}

void opass_tensor_detach(Onnx__TensorProto *t)
{
	if (!t->has_raw_data || !mapped_kind(t->raw_data.data))
		return;
	t->raw_data = (ProtobufCBinaryData){ 0 };
	t->has_raw_data = false;
}

void opass_tensor_release(const Onnx__TensorProto *t)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a, b;

	if (!t->has_raw_data || !t->raw_data.len || mapped_kind(t->raw_data.data) != 1)
		return;
	/* the whole pages inside the tensor (neighbours may share the edges) */
	a = ((uintptr_t)t->raw_data.data + page - 1) & ~(page - 1);
	b = ((uintptr_t)t->raw_data.data + t->raw_data.len) & ~(page - 1);
	if (b > a)
		(void)madvise((void *)a, b - a, MADV_DONTNEED);
}

static int detach_one(Onnx__TensorProto *t, void *userdata)
{
	(void)userdata;
	opass_tensor_detach(t);
	return 0;
}

void opass_model_detach_mapped(Onnx__ModelProto *proto)
{
	if (proto)
		opass_proto_foreach_tensor(proto, detach_one, NULL);
}
