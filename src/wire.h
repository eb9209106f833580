/* SPDX-License-Identifier: MIT */
/*
 * Protobuf wire data: the one reader of tags, varints, fixed-size values and
 * length prefixes, every read bounded by the end of its message; and on top
 * of it a bounded pre-check driven by protobuf-c descriptors, run before
 * protobuf-c's (recursive) unpack. The check is iterative: an explicit stack
 * of messages, no recursion, so no input can overflow the C stack here, and
 * input that passes cannot make unpack recurse deeper than the limits.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "onnxpass/onnxpass.h"

enum opass_wire_type {
	OPASS_WIRE_VARINT = 0,
	OPASS_WIRE_64BIT = 1,
	OPASS_WIRE_LENGTH = 2,
	OPASS_WIRE_32BIT = 5,
};

/* Reads move pos forward, never past the end given with each read (the end
 * of the enclosing message). On -EBADMSG, pos is where reading stopped and
 * what says why. The rules are protobuf-c's: tags and length prefixes are
 * varints of at most 5 bytes, values of at most 10, groups (wire types 3,
 * 4) are refused. */
struct opass_wire_reader {
	const uint8_t *data;
	size_t pos;
	const char *what;
};

/* A varint of at most max_bytes. */
int opass_wire_read_varint(struct opass_wire_reader *reader, size_t end, unsigned max_bytes,
			   uint64_t *ret);

/* A field's tag: its number (1 to UINT32_MAX) and wire type. */
int opass_wire_read_tag(struct opass_wire_reader *reader, size_t end, uint32_t *ret_number,
			unsigned *ret_wire);

/* The value after a tag of wire type wire: a varint is read into *ret, a
 * fixed-size value skipped, and of a length-delimited value the length
 * (checked against end) is read into *ret and pos left at its first byte. */
int opass_wire_read_value(struct opass_wire_reader *reader, size_t end, unsigned wire,
			  uint64_t *ret);

/* A whole field and where its parts are in data. */
struct opass_wire_field {
	uint32_t number;
	unsigned wire;
	size_t start; /* first byte of the tag */
	size_t value; /* first byte of the value (past a length prefix) */
	size_t end;   /* one past the field */
};

int opass_wire_read_field(struct opass_wire_reader *reader, size_t end,
			  struct opass_wire_field *ret_field);

/* Protobuf messages nested deeper than this are refused (the main graph's
 * nodes sit at level 3, each subgraph adds 3 levels). */
#define OPASS_MAX_MESSAGE_DEPTH 256

struct opass_wire_limits {
	unsigned max_depth;                        /* message nesting, outermost = 1 */
	const ProtobufCMessageDescriptor *counted; /* a message type whose nesting is */
	unsigned max_counted;                      /* limited separately (0: none) */
	const char *counted_what;                  /* its name in messages ("subgraphs") */
	uint64_t max_memory;                       /* estimated unpacked bytes (0: none) */
};

/* What a successful check learnt. */
struct opass_wire_stats {
	uint64_t memory;     /* estimated bytes protobuf-c's unpack allocates */
	unsigned depth;      /* deepest message nesting */
	unsigned counted;    /* deepest nesting of limits->counted */
	uint64_t messages;   /* message instances */
};

/*
 * Check that data is a well-formed serialisation of desc: every tag, varint,
 * fixed-size value and length prefix lies within its enclosing message, known
 * fields carry their declared wire type (packed or not for repeated scalars),
 * packed payloads hold whole elements, and the limits hold. -EBADMSG with the
 * byte offset on malformed data, -E2BIG when a limit is exceeded. stats may be
 * NULL.
 */
int opass_wire_check(const ProtobufCMessageDescriptor *desc, const void *data, size_t size,
		     const struct opass_wire_limits *limits, struct opass_wire_stats *stats,
		     struct onnxpass_error *err);
