/* SPDX-License-Identifier: MIT */
/*
 * Iterative protobuf wire check (see wire.h). The rules follow what
 * protobuf-c's unpack accepts: tags and length prefixes are at most 5-byte
 * varints, values at most 10 bytes, groups (wire types 3, 4) are refused, a
 * known field must carry its type's wire type, and repeated scalars may come
 * packed (wire type 2) or one by one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>

#include "error.h"
#include "wire.h"

enum {
	WIRE_VARINT = 0,
	WIRE_64BIT = 1,
	WIRE_LENGTH = 2,
	WIRE_32BIT = 5,
};

/* Per-allocation overhead added to the memory estimate. */
#define MALLOC_OVERHEAD 16

struct frame {
	const ProtobufCMessageDescriptor *desc;
	size_t end;                           /* offset just past the message */
	const ProtobufCFieldDescriptor *last; /* last field seen (repeats are common) */
	bool counted;
};

struct wire {
	const uint8_t *data;
	size_t pos;
	const struct opass_wire_limits *limits;
	struct opass_wire_stats stats;
	struct frame *stack;
	unsigned depth;
	unsigned counted; /* frames of limits->counted on the stack */
	struct onnxpass_error *err;
};

static int wire_fail(struct wire *w, const char *what)
{
	return opass_error(w->err, -EBADMSG,
			   "truncated or corrupt protobuf at byte %zu: %s", w->pos, what);
}

/* Read a varint of at most max_bytes within [pos, end). */
static int varint_read(struct wire *w, size_t end, unsigned max_bytes, uint64_t *ret)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < max_bytes; i++) {
		uint8_t b;

		if (w->pos >= end)
			return wire_fail(w, "varint runs past the end of its message");
		b = w->data[w->pos++];
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*ret = v;
			return 0;
		}
	}
	return wire_fail(w, "varint too long");
}

static const ProtobufCFieldDescriptor *field_find(struct frame *f, uint32_t id)
{
	if (f->last && f->last->id == id)
		return f->last;
	for (unsigned i = 0; i < f->desc->n_fields; i++) {
		if (f->desc->fields[i].id == id) {
			f->last = &f->desc->fields[i];
			return f->last;
		}
	}
	return NULL;
}

/* The wire type a field's type is written with (not packed). */
static unsigned type_wire(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return WIRE_32BIT;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return WIRE_64BIT;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return WIRE_LENGTH;
	default:
		return WIRE_VARINT;
	}
}

/* Bytes one element takes in the unpacked struct or array. */
static uint64_t type_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_DOUBLE:
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return 8;
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return 4;
	}
}

static void memory_add(struct wire *w, uint64_t bytes)
{
	w->stats.memory = bytes > UINT64_MAX - w->stats.memory ? UINT64_MAX : w->stats.memory + bytes;
}

/* Elements of a packed payload [pos, pos + len); advances pos past it. */
static int packed_count(struct wire *w, ProtobufCType type, size_t len, uint64_t *ret_n)
{
	unsigned wire = type_wire(type);
	size_t end = w->pos + len;
	uint64_t n = 0;

	if (wire == WIRE_32BIT || wire == WIRE_64BIT) {
		size_t elem = wire == WIRE_32BIT ? 4 : 8;

		if (len % elem)
			return wire_fail(w, "packed field length is not a whole number of elements");
		w->pos = end;
		*ret_n = len / elem;
		return 0;
	}
	while (w->pos < end) {
		uint64_t v = 0;
		int r = varint_read(w, end, 10, &v);

		if (r < 0)
			return r;
		n++;
	}
	*ret_n = n;
	return 0;
}

static int frame_push(struct wire *w, const ProtobufCMessageDescriptor *desc, size_t end)
{
	const struct opass_wire_limits *l = w->limits;
	bool counted = l->counted && desc == l->counted;
	unsigned n_counted = w->counted + counted;

	if (counted && l->max_counted && n_counted > l->max_counted)
		return opass_error(w->err, -E2BIG, "%s nested deeper than %u",
				   l->counted_what ? l->counted_what : desc->short_name, l->max_counted);
	if (w->depth >= l->max_depth)
		return opass_error(w->err, -E2BIG, "protobuf messages nested deeper than %u",
				   l->max_depth);
	w->stack[w->depth++] = (struct frame){ .desc = desc, .end = end, .counted = counted };
	w->counted = n_counted;
	if (w->depth > w->stats.depth)
		w->stats.depth = w->depth;
	if (n_counted > w->stats.counted)
		w->stats.counted = n_counted;
	w->stats.messages++;
	memory_add(w, desc->sizeof_message + MALLOC_OVERHEAD);
	return 0;
}

/* A length-delimited value of field f (NULL: unknown field) of len bytes. */
static int value_length(struct wire *w, const ProtobufCFieldDescriptor *f, size_t len)
{
	bool repeated = f && f->label == PROTOBUF_C_LABEL_REPEATED;
	uint64_t n = 0;
	int r;

	if (!f) {
		memory_add(w, len + 2 * MALLOC_OVERHEAD);
		w->pos += len;
		return 0;
	}
	switch (f->type) {
	case PROTOBUF_C_TYPE_MESSAGE:
		memory_add(w, repeated ? 8 : 0);
		return frame_push(w, f->descriptor, w->pos + len);
	case PROTOBUF_C_TYPE_STRING:
		memory_add(w, (repeated ? 8 : 0) + len + 1 + MALLOC_OVERHEAD);
		break;
	case PROTOBUF_C_TYPE_BYTES:
		memory_add(w, (repeated ? sizeof(ProtobufCBinaryData) : 0) + len + MALLOC_OVERHEAD);
		break;
	default:
		if (!repeated)
			return wire_fail(w, "length-delimited data in a scalar field");
		r = packed_count(w, f->type, len, &n);
		if (r == 0)
			memory_add(w, n * type_size(f->type));
		return r;
	}
	w->pos += len;
	return 0;
}

static int field_next(struct wire *w, struct frame *top)
{
	const ProtobufCFieldDescriptor *f;
	uint64_t tag = 0, v = 0;
	unsigned wire;
	int r;

	r = varint_read(w, top->end, 5, &tag);
	if (r < 0)
		return r;
	if (tag > UINT32_MAX || (tag >> 3) == 0)
		return wire_fail(w, "invalid field number");
	wire = tag & 7;
	f = field_find(top, (uint32_t)(tag >> 3));
	if (f && wire != type_wire(f->type) &&
	    !(wire == WIRE_LENGTH && f->label == PROTOBUF_C_LABEL_REPEATED))
		return opass_error(w->err, -EBADMSG,
				   "corrupt protobuf at byte %zu: field %s.%s has wire type %u, expected %u",
				   w->pos, top->desc->short_name, f->name, wire, type_wire(f->type));
	if (f && f->label == PROTOBUF_C_LABEL_REPEATED && wire != WIRE_LENGTH)
		memory_add(w, type_size(f->type));
	if (!f && wire != WIRE_LENGTH)
		memory_add(w, 24 + MALLOC_OVERHEAD);
	switch (wire) {
	case WIRE_VARINT:
		return varint_read(w, top->end, 10, &v);
	case WIRE_64BIT:
	case WIRE_32BIT:
		if (top->end - w->pos < (wire == WIRE_64BIT ? 8u : 4u))
			return wire_fail(w, "fixed-size value runs past the end of its message");
		w->pos += wire == WIRE_64BIT ? 8 : 4;
		return 0;
	case WIRE_LENGTH:
		r = varint_read(w, top->end, 5, &v);
		if (r == 0 && v > top->end - w->pos)
			return wire_fail(w, "length runs past the end of its message");
		return r < 0 ? r : value_length(w, f, (size_t)v);
	default:
		return wire_fail(w, "unsupported wire type (group or reserved)");
	}
}

int opass_wire_check(const ProtobufCMessageDescriptor *desc, const void *data, size_t size,
		     const struct opass_wire_limits *limits, struct opass_wire_stats *stats,
		     struct onnxpass_error *err)
{
	struct wire w = { .data = data, .limits = limits, .err = err };
	int r;

	if (limits->max_depth == 0)
		return opass_error(err, -EINVAL, "wire check: max_depth must be at least 1");
	w.stack = calloc(limits->max_depth, sizeof(*w.stack));
	if (!w.stack)
		return opass_error(err, -ENOMEM, "out of memory");
	r = frame_push(&w, desc, size);
	while (r == 0 && w.depth > 0) {
		struct frame *top = &w.stack[w.depth - 1];

		if (w.pos == top->end) {
			w.counted -= top->counted;
			w.depth--;
		} else
			r = field_next(&w, top);
	}
	free(w.stack);
	if (r == 0 && limits->max_memory && w.stats.memory > limits->max_memory)
		r = opass_error(err, -E2BIG, "loading would need about %" PRIu64
				" bytes of memory for %zu bytes of protobuf (limit %" PRIu64 ")",
				w.stats.memory, size, limits->max_memory);
	if (r == 0 && stats)
		*stats = w.stats;
	return r;
}
