/* SPDX-License-Identifier: MIT */
/*
 * ModelProto unpacking that keeps peak memory near one copy of the model.
 *
 * protobuf-c copies every bytes field out of the input, so unpacking a mapped
 * file holds the file's pages and their copies at once (2x the model). Here
 * the main graph's initializers, which hold nearly all the bytes, are unpacked
 * one by one and the mapping's pages behind them are dropped as we go; the
 * rest of the graph and of the model (small) is unpacked from copies without
 * the initializer and graph fields. The result equals a plain unpack: the
 * same fields, initializers in their order, unknown fields kept.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "unpack.h"

#define FIELD_MODEL_GRAPH 7
#define FIELD_GRAPH_INITIALIZER 5
#define WIRE_LEN 2

/* A field of a message: its tag and value span [start, end) in the input. */
struct field {
	uint32_t number;
	int wire;
	size_t start;     /* first byte of the tag */
	size_t value;     /* first byte of a length-delimited value */
	size_t end;       /* one past the field */
};

static int read_varint(const uint8_t *p, size_t size, size_t *pos, uint64_t *ret)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64 && *pos < size; shift += 7) {
		uint8_t b = p[(*pos)++];

		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*ret = v;
			return 0;
		}
	}
	return -EBADMSG;
}

/* The field starting at *pos of p[0, size); *pos moves past it. */
static int next_field(const uint8_t *p, size_t size, size_t *pos, struct field *f)
{
	uint64_t tag, len = 0;

	f->start = *pos;
	if (read_varint(p, size, pos, &tag) < 0)
		return -EBADMSG;
	f->number = (uint32_t)(tag >> 3);
	f->wire = (int)(tag & 7);
	f->value = *pos;
	switch (f->wire) {
	case 0:
		if (read_varint(p, size, pos, &len) < 0)
			return -EBADMSG;
		break;
	case 1:
		*pos += 8;
		break;
	case 5:
		*pos += 4;
		break;
	case WIRE_LEN:
		if (read_varint(p, size, pos, &len) < 0 || len > size - *pos)
			return -EBADMSG;
		f->value = *pos;
		*pos += (size_t)len;
		break;
	default:
		return -EBADMSG;
	}
	if (*pos > size)
		return -EBADMSG;
	f->end = *pos;
	return 0;
}

/* Copy p[0, size) without the fields numbered `skip` (length-delimited). */
static uint8_t *copy_without(const uint8_t *p, size_t size, uint32_t skip, size_t *ret_size)
{
	uint8_t *out = malloc(size ? size : 1);
	size_t pos = 0, n = 0;
	struct field f;

	while (out && pos < size) {
		if (next_field(p, size, &pos, &f) < 0) {
			free(out);
			return NULL;
		}
		if (f.number == skip && f.wire == WIRE_LEN)
			continue;
		memcpy(out + n, p + f.start, f.end - f.start);
		n += f.end - f.start;
	}
	*ret_size = n;
	return out;
}

/* Drop the mapping's whole pages in [*released, upto). */
static void release_pages(const uint8_t *base, size_t *released, size_t upto)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t from = ((uintptr_t)base + *released + page - 1) & ~(uintptr_t)(page - 1);
	uintptr_t to = ((uintptr_t)base + upto) & ~(uintptr_t)(page - 1);

	if (to > from)
		madvise((void *)from, to - from, MADV_DONTNEED);
	if (upto > *released)
		*released = upto;
}

/* The graph: everything but its initializers from a copy, then each
 * initializer straight from the input. */
static Onnx__GraphProto *graph_unpack(const uint8_t *base, size_t g0, size_t g1, bool release,
				      size_t *released)
{
	const uint8_t *p = base + g0;
	size_t size = g1 - g0, rest_size, pos = 0, n = 0;
	uint8_t *rest = copy_without(p, size, FIELD_GRAPH_INITIALIZER, &rest_size);
	Onnx__GraphProto *graph = rest ? onnx__graph_proto__unpack(NULL, rest_size, rest) : NULL;
	struct field f;

	free(rest);
	if (!graph)
		return NULL;
	while (pos < size && next_field(p, size, &pos, &f) == 0)
		n += f.number == FIELD_GRAPH_INITIALIZER && f.wire == WIRE_LEN;
	graph->initializer = calloc(n ? n : 1, sizeof(*graph->initializer));
	if (!graph->initializer) {
		onnx__graph_proto__free_unpacked(graph, NULL);
		return NULL;
	}
	for (pos = 0; pos < size && next_field(p, size, &pos, &f) == 0;) {
		Onnx__TensorProto *t;

		if (f.number != FIELD_GRAPH_INITIALIZER || f.wire != WIRE_LEN)
			continue;
		t = onnx__tensor_proto__unpack(NULL, f.end - f.value, p + f.value);
		if (!t) {
			onnx__graph_proto__free_unpacked(graph, NULL);
			return NULL;
		}
		graph->initializer[graph->n_initializer++] = t;
		if (release)
			release_pages(base, released, g0 + f.end);
	}
	return graph;
}

Onnx__ModelProto *opass_model_unpack(const void *data, size_t size, bool release)
{
	const uint8_t *p = data;
	size_t pos = 0, graphs = 0, g0 = 0, g1 = 0, rest_size, released = 0;
	Onnx__ModelProto *model;
	uint8_t *rest;
	struct field f;

	while (pos < size) {
		if (next_field(p, size, &pos, &f) < 0)
			return NULL;
		if (f.number == FIELD_MODEL_GRAPH && f.wire == WIRE_LEN) {
			graphs++;
			g0 = f.value;
			g1 = f.end;
		}
	}
	/* a repeated graph field merges: leave that to protobuf-c */
	if (graphs != 1)
		return onnx__model_proto__unpack(NULL, size, data);
	rest = copy_without(p, size, FIELD_MODEL_GRAPH, &rest_size);
	model = rest ? onnx__model_proto__unpack(NULL, rest_size, rest) : NULL;
	free(rest);
	if (!model)
		return NULL;
	model->graph = graph_unpack(p, g0, g1, release, &released);
	if (!model->graph) {
		onnx__model_proto__free_unpacked(model, NULL);
		return NULL;
	}
	return model;
}
