/* SPDX-License-Identifier: MIT */
/*
 * Protobuf wire reader and iterative check (see wire.h). The check follows
 * what protobuf-c's unpack accepts: the reader's rules, a known field must
 * carry its type's wire type, and repeated scalars may come packed (wire
 * type 2) or one by one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>

#include "error.h"
#include "wire.h"

/* Per-allocation overhead added to the memory estimate. */
#define MALLOC_OVERHEAD 16

struct frame {
	const ProtobufCMessageDescriptor *desc;
	size_t end;                           /* offset just past the message */
	const ProtobufCFieldDescriptor *last; /* last field seen (repeats are common) */
	bool counted;
};

struct wire {
	struct opass_wire_reader in;
	const struct opass_wire_limits *limits;
	struct opass_wire_stats stats;
	struct frame *stack;
	unsigned depth;
	unsigned counted; /* frames of limits->counted on the stack */
	struct onnxpass_error *err;
};

static int reader_fail(struct opass_wire_reader *reader, const char *what)
{
	reader->what = what;
	return -EBADMSG;
}

int opass_wire_read_varint(struct opass_wire_reader *reader, size_t end, unsigned max_bytes,
			   uint64_t *ret)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < max_bytes; i++) {
		uint8_t b;

		if (reader->pos >= end)
			return reader_fail(reader, "varint runs past the end of its message");
		b = reader->data[reader->pos++];
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*ret = v;
			return 0;
		}
	}
	return reader_fail(reader, "varint too long");
}

int opass_wire_read_tag(struct opass_wire_reader *reader, size_t end, uint32_t *ret_number,
			unsigned *ret_wire)
{
	uint64_t tag = 0;
	int r = opass_wire_read_varint(reader, end, 5, &tag);

	if (r < 0)
		return r;
	if (tag > UINT32_MAX || (tag >> 3) == 0)
		return reader_fail(reader, "invalid field number");
	*ret_number = (uint32_t)(tag >> 3);
	*ret_wire = tag & 7;
	return 0;
}

int opass_wire_read_value(struct opass_wire_reader *reader, size_t end, unsigned wire,
			  uint64_t *ret)
{
	uint64_t v = 0;
	int r;

	switch (wire) {
	case OPASS_WIRE_VARINT:
		return opass_wire_read_varint(reader, end, 10, ret);
	case OPASS_WIRE_64BIT:
	case OPASS_WIRE_32BIT:
		if (end - reader->pos < (wire == OPASS_WIRE_64BIT ? 8u : 4u))
			return reader_fail(reader, "fixed-size value runs past the end of its message");
		reader->pos += wire == OPASS_WIRE_64BIT ? 8 : 4;
		*ret = 0;
		return 0;
	case OPASS_WIRE_LENGTH:
		r = opass_wire_read_varint(reader, end, 5, &v);
		if (r < 0)
			return r;
		if (v > end - reader->pos)
			return reader_fail(reader, "length runs past the end of its message");
		*ret = v;
		return 0;
	default:
		return reader_fail(reader, "unsupported wire type (group or reserved)");
	}
}

int opass_wire_read_field(struct opass_wire_reader *reader, size_t end,
			  struct opass_wire_field *ret_field)
{
	struct opass_wire_field f = { .start = reader->pos };
	uint64_t v = 0;
	int r;

	r = opass_wire_read_tag(reader, end, &f.number, &f.wire);
	f.value = reader->pos;
	if (r == 0)
		r = opass_wire_read_value(reader, end, f.wire, &v);
	if (r < 0)
		return r;
	if (f.wire == OPASS_WIRE_LENGTH) {
		f.value = reader->pos;
		reader->pos += (size_t)v;
	}
	f.end = reader->pos;
	*ret_field = f;
	return 0;
}

/* --- the check ------------------------------------------------------------- */

static int wire_fail(struct wire *w, const char *what)
{
	return opass_error(w->err, -EBADMSG,
			   "truncated or corrupt protobuf at byte %zu: %s", w->in.pos, what);
}

/* A read failed: its reason. */
static int wire_read_fail(struct wire *w)
{
	return wire_fail(w, w->in.what);
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
		return OPASS_WIRE_32BIT;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return OPASS_WIRE_64BIT;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return OPASS_WIRE_LENGTH;
	default:
		return OPASS_WIRE_VARINT;
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
	size_t end = w->in.pos + len;
	uint64_t n = 0;

	if (wire == OPASS_WIRE_32BIT || wire == OPASS_WIRE_64BIT) {
		size_t elem = wire == OPASS_WIRE_32BIT ? 4 : 8;

		if (len % elem)
			return wire_fail(w, "packed field length is not a whole number of elements");
		w->in.pos = end;
		*ret_n = len / elem;
		return 0;
	}
	while (w->in.pos < end) {
		uint64_t v = 0;

		if (opass_wire_read_varint(&w->in, end, 10, &v) < 0)
			return wire_read_fail(w);
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
		w->in.pos += len;
		return 0;
	}
	switch (f->type) {
	case PROTOBUF_C_TYPE_MESSAGE:
		memory_add(w, repeated ? 8 : 0);
		return frame_push(w, f->descriptor, w->in.pos + len);
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
	w->in.pos += len;
	return 0;
}

static int field_next(struct wire *w, struct frame *top)
{
	const ProtobufCFieldDescriptor *f;
	uint32_t number = 0;
	unsigned wire = 0;
	uint64_t v = 0;

	if (opass_wire_read_tag(&w->in, top->end, &number, &wire) < 0)
		return wire_read_fail(w);
	f = field_find(top, number);
	if (f && wire != type_wire(f->type) &&
	    !(wire == OPASS_WIRE_LENGTH && f->label == PROTOBUF_C_LABEL_REPEATED))
		return opass_error(w->err, -EBADMSG,
				   "corrupt protobuf at byte %zu: field %s.%s has wire type %u, expected %u",
				   w->in.pos, top->desc->short_name, f->name, wire, type_wire(f->type));
	if (f && f->label == PROTOBUF_C_LABEL_REPEATED && wire != OPASS_WIRE_LENGTH)
		memory_add(w, type_size(f->type));
	if (!f && wire != OPASS_WIRE_LENGTH)
		memory_add(w, 24 + MALLOC_OVERHEAD);
	if (opass_wire_read_value(&w->in, top->end, wire, &v) < 0)
		return wire_read_fail(w);
	return wire == OPASS_WIRE_LENGTH ? value_length(w, f, (size_t)v) : 0;
}

int opass_wire_check(const ProtobufCMessageDescriptor *desc, const void *data, size_t size,
		     const struct opass_wire_limits *limits, struct opass_wire_stats *stats,
		     struct onnxpass_error *err)
{
	struct wire w = { .in = { .data = data }, .limits = limits, .err = err };
	int r;

	if (limits->max_depth == 0)
		return opass_error(err, -EINVAL, "wire check: max_depth must be at least 1");
	w.stack = calloc(limits->max_depth, sizeof(*w.stack));
	if (!w.stack)
		return opass_error(err, -ENOMEM, "out of memory");
	r = frame_push(&w, desc, size);
	while (r == 0 && w.depth > 0) {
		struct frame *top = &w.stack[w.depth - 1];

		if (w.in.pos == top->end) {
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
