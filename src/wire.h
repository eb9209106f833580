/* SPDX-License-Identifier: MIT */
/*
 * Bounded pre-check of protobuf wire data, driven by protobuf-c descriptors,
 * before protobuf-c's (recursive) unpack runs on it. Iterative: an explicit
 * stack of messages, no recursion, so no input can overflow the C stack here,
 * and input that passes cannot make unpack recurse deeper than the limits.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "onnxpass/onnxpass.h"

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
