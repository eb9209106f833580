/* SPDX-License-Identifier: MIT */
/* The bounded protobuf pre-check (src/wire.c) and the load limits it sets. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "proto_walk.h"
#include "testlib.h"
#include "weights.h"
#include "wire.h"

static const struct opass_wire_limits model_limits = {
	.max_depth = OPASS_MAX_MESSAGE_DEPTH,
	.counted = &onnx__graph_proto__descriptor,
	.max_counted = OPASS_MAX_GRAPH_DEPTH,
	.counted_what = "subgraphs",
};

/* --- building wire data back to front ------------------------------------- */

/* Data lives in buf[pos, cap): prepending is cheap, so nesting is linear. */
struct rbuf {
	uint8_t *buf;
	size_t cap;
	size_t pos;
};

static void rb_init(struct rbuf *b, size_t cap)
{
	b->buf = malloc(cap);
	ck_assert_ptr_nonnull(b->buf);
	b->cap = cap;
	b->pos = cap;
}

static size_t rb_len(const struct rbuf *b)
{
	return b->cap - b->pos;
}

static void rb_bytes(struct rbuf *b, const void *p, size_t n)
{
	ck_assert_uint_ge(b->pos, n);
	b->pos -= n;
	memcpy(b->buf + b->pos, p, n);
}

static void rb_varint(struct rbuf *b, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;

	do {
		tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	rb_bytes(b, tmp, n);
}

/* Everything written after mark (an rb_len value) becomes field's payload. */
static void rb_wrap(struct rbuf *b, unsigned field, size_t mark)
{
	rb_varint(b, rb_len(b) - mark);
	rb_varint(b, (uint64_t)field << 3 | 2);
}

static void rb_int(struct rbuf *b, unsigned field, uint64_t v)
{
	rb_varint(b, v);
	rb_varint(b, (uint64_t)field << 3);
}

static void rb_string(struct rbuf *b, unsigned field, const char *s)
{
	size_t mark = rb_len(b);

	rb_bytes(b, s, strlen(s));
	rb_wrap(b, field, mark);
}

/* ModelProto { ir_version 7, opset 13, graph = what the buffer holds }. */
static void rb_model(struct rbuf *b)
{
	size_t mark;

	rb_wrap(b, 7, 0);
	mark = rb_len(b);
	rb_int(b, 2, 13);
	rb_wrap(b, 8, mark);
	rb_int(b, 1, 7);
}

/* levels graphs, each but the innermost holding one If node whose
 * then_branch is the next: the main graph is level 1. */
static void nested_if_model(struct rbuf *b, size_t levels)
{
	rb_init(b, levels * 48 + 64);
	for (size_t i = 1; i < levels; i++) {
		rb_wrap(b, 6, 0);             /* AttributeProto.g */
		rb_int(b, 20, 5);             /* AttributeProto.type = GRAPH */
		rb_string(b, 1, "then_branch");
		rb_wrap(b, 5, 0);             /* NodeProto.attribute */
		rb_string(b, 4, "If");
		rb_wrap(b, 1, 0);             /* GraphProto.node */
	}
	rb_model(b);
}

static int load(const struct rbuf *b, struct onnxpass_model **ret, struct onnxpass_error *err)
{
	return onnxpass_model_load_bytes(b->buf + b->pos, rb_len(b), NULL, ret, err);
}

/* --- tests ------------------------------------------------------------------ */

static int count_graph(Onnx__GraphProto *g, void *userdata)
{
	(void)g;
	(*(size_t *)userdata)++;
	return 0;
}

START_TEST(test_deep_if_refused)
{
	static const size_t levels[] = { OPASS_MAX_GRAPH_DEPTH + 1, 10000, 100000 };

	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		struct onnxpass_model *model = NULL;
		struct onnxpass_error err = { 0 };
		char expect[64];
		struct rbuf b;
		int r;

		nested_if_model(&b, levels[i]);
		r = load(&b, &model, &err);
		ck_assert_int_eq(r, -E2BIG);
		ck_assert_ptr_null(model);
		snprintf(expect, sizeof(expect), "subgraphs nested deeper than %d", OPASS_MAX_GRAPH_DEPTH);
		ck_assert_str_eq(err.message, expect);
		free(b.buf);
	}
}
END_TEST

/* At the limit the model loads and every walk reaches the innermost graph. */
START_TEST(test_deep_if_at_limit)
{
	struct onnxpass_model *model = NULL;
	struct onnxpass_error err = { 0 };
	struct opass_weights *weights = NULL;
	size_t graphs = 0;
	struct rbuf b;

	nested_if_model(&b, OPASS_MAX_GRAPH_DEPTH);
	ck_assert_msg(load(&b, &model, &err) == 0, "%s", err.message);
	ck_assert_int_eq(opass_proto_foreach_graph(model->proto, count_graph, &graphs), 0);
	ck_assert_uint_eq(graphs, OPASS_MAX_GRAPH_DEPTH);
	ck_assert_msg(opass_weights_find(model->proto, &weights, &err) == 0, "%s", err.message);
	ck_assert_uint_eq(weights->n, 0);
	opass_weights_free(weights);
	onnxpass_model_free(model);
	free(b.buf);
}
END_TEST

/* TypeProto sequence(sequence(...)) nests messages without any subgraph. */
START_TEST(test_deep_messages_refused)
{
	struct onnxpass_model *model = NULL;
	struct onnxpass_error err = { 0 };
	struct rbuf b;
	char expect[64];

	rb_init(&b, 1 << 16);
	rb_int(&b, 1, 1);                     /* innermost TypeProto.Tensor.elem_type */
	rb_wrap(&b, 1, 0);                    /* TypeProto.tensor_type */
	for (size_t i = 0; i < 200; i++) {
		rb_wrap(&b, 1, 0);            /* TypeProto.Sequence.elem_type */
		rb_wrap(&b, 4, 0);            /* TypeProto.sequence_type */
	}
	rb_wrap(&b, 2, 0);                    /* ValueInfoProto.type */
	rb_string(&b, 1, "x");
	rb_wrap(&b, 11, 0);                   /* GraphProto.input */
	rb_model(&b);
	ck_assert_int_eq(load(&b, &model, &err), -E2BIG);
	snprintf(expect, sizeof(expect), "protobuf messages nested deeper than %d", OPASS_MAX_MESSAGE_DEPTH);
	ck_assert_str_eq(err.message, expect);
	free(b.buf);
}
END_TEST

struct bad_case {
	const char *what;
	const uint8_t *data;
	size_t size;
	const char *message; /* substring of the error */
};

#define BAD(what, msg, ...) { what, (const uint8_t[]){ __VA_ARGS__ }, \
			      sizeof((const uint8_t[]){ __VA_ARGS__ }), msg }

START_TEST(test_malformed)
{
	const struct bad_case cases[] = {
		BAD("ir_version as bytes", "field ModelProto.ir_version has wire type 2, expected 0",
		    0x0a, 0x01, 0x00),
		BAD("graph as varint", "field ModelProto.graph has wire type 0, expected 2", 0x38, 0x01),
		BAD("group", "unsupported wire type", 0xa3, 0x06, 0xa4, 0x06),
		BAD("field 0", "invalid field number", 0x00, 0x01),
		BAD("truncated varint", "varint runs past the end", 0x08, 0x80),
		BAD("11-byte varint", "varint too long", 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0xff, 0xff, 0xff, 0xff, 0x01),
		BAD("6-byte tag", "varint too long", 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		BAD("length past end", "length runs past the end", 0x3a, 0x05, 0x00),
		BAD("nested length past parent", "length runs past the end",
		    0x3a, 0x03, 0x0a, 0x05, 0x00),
		BAD("fixed64 cut", "fixed-size value runs past the end", 0xa1, 0x06, 0x00, 0x00),
		/* graph { initializer { float_data packed, 5 bytes } } */
		BAD("packed float remainder", "whole number of elements",
		    0x3a, 0x09, 0x2a, 0x07, 0x22, 0x05, 0x00, 0x00, 0x80, 0x3f, 0x00),
		/* graph { initializer { dims packed, last varint open } } */
		BAD("packed varint cut", "varint runs past the end",
		    0x3a, 0x06, 0x2a, 0x04, 0x0a, 0x02, 0x01, 0x80),
		/* graph { initializer { data_type as bytes } } */
		BAD("scalar as bytes", "has wire type 2",
		    0x3a, 0x05, 0x2a, 0x03, 0x12, 0x01, 0x00),
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		struct onnxpass_model *model = NULL;
		struct onnxpass_error err = { 0 };
		int r = onnxpass_model_load_bytes(c->data, c->size, NULL, &model, &err);

		ck_assert_msg(r == -EBADMSG, "%s: %d (%s)", c->what, r, err.message);
		ck_assert_msg(strstr(err.message, c->message) && strstr(err.message, "not a valid ONNX model"),
			      "%s: message '%s'", c->what, err.message);
		ck_assert_msg(onnx__model_proto__unpack(NULL, c->size, c->data) == NULL,
			      "%s: protobuf-c accepts it", c->what);
	}
}
END_TEST

/* Unknown fields are skipped (kept by protobuf-c), whatever their wire type. */
START_TEST(test_unknown_fields_pass)
{
	static const uint8_t data[] = {
		0x08, 0x07,                         /* ir_version 7 */
		0xf8, 0x07, 0x01,                   /* field 127 varint */
		0xf9, 0x07, 1, 2, 3, 4, 5, 6, 7, 8, /* field 127 fixed64 */
		0xfd, 0x07, 1, 2, 3, 4,             /* field 127 fixed32 */
		0xfa, 0x07, 0x02, 0xff, 0xff,       /* field 127 bytes (not parsed) */
		0x3a, 0x00,                         /* graph {} */
	};
	struct opass_wire_stats stats = { 0 };
	struct onnxpass_error err = { 0 };
	Onnx__ModelProto *proto;

	ck_assert_int_eq(opass_wire_check(&onnx__model_proto__descriptor, data, sizeof(data),
					  &model_limits, &stats, &err), 0);
	ck_assert_uint_eq(stats.messages, 2);
	ck_assert_uint_eq(stats.depth, 2);
	ck_assert_uint_eq(stats.counted, 1);
	proto = onnx__model_proto__unpack(NULL, sizeof(data), data);
	ck_assert_ptr_nonnull(proto);
	ck_assert_uint_eq(proto->base.n_unknown_fields, 4);
	onnx__model_proto__free_unpacked(proto, NULL);
}
END_TEST

/* Many empty nodes: the estimate grows per node, and a low limit refuses. */
START_TEST(test_memory_limit)
{
	struct opass_wire_limits limits = model_limits;
	struct opass_wire_stats stats = { 0 };
	struct onnxpass_error err = { 0 };
	struct rbuf b;

	rb_init(&b, 1 << 20);
	for (size_t i = 0; i < 100000; i++)
		rb_wrap(&b, 1, rb_len(&b));   /* GraphProto.node {} */
	rb_model(&b);
	ck_assert_int_eq(opass_wire_check(&onnx__model_proto__descriptor, b.buf + b.pos, rb_len(&b),
					  &limits, &stats, &err), 0);
	ck_assert_uint_eq(stats.messages, 100000 + 3);
	ck_assert_uint_ge(stats.memory, 100000 * (uint64_t)sizeof(Onnx__NodeProto));
	limits.max_memory = stats.memory - 1;
	ck_assert_int_eq(opass_wire_check(&onnx__model_proto__descriptor, b.buf + b.pos, rb_len(&b),
					  &limits, NULL, &err), -E2BIG);
	ck_assert_msg(strstr(err.message, "loading would need about"), "%s", err.message);
	free(b.buf);
}
END_TEST

static char *read_model(const char *name, size_t *ret_size)
{
	char path[4096];
	char *data;

	snprintf(path, sizeof(path), "%s/%s", test_models_dir, name);
	data = test_read_file(path, ret_size);
	ck_assert_msg(data, "cannot read %s", path);
	return data;
}

/* The generated models pass, with a modest memory estimate. */
START_TEST(test_models_pass)
{
	static const char *const names[] = { "constants_if.onnx", "edge_cases.onnx",
					     "unknown_fields.onnx" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct opass_wire_stats stats = { 0 };
		struct onnxpass_error err = { 0 };
		size_t size;
		char *data = read_model(names[i], &size);

		ck_assert_msg(opass_wire_check(&onnx__model_proto__descriptor, data, size, &model_limits,
					       &stats, &err) == 0, "%s: %s", names[i], err.message);
		ck_assert_uint_ge(stats.counted, 1);
		ck_assert_uint_gt(stats.memory, size / 2);
		ck_assert_msg(stats.memory < 16 * (uint64_t)size, "%s: estimate %llu for %zu bytes",
			      names[i], (unsigned long long)stats.memory, size);
		free(data);
	}
}
END_TEST

/* Whatever the check accepts, protobuf-c unpacks, and the other way round. */
static void assert_agrees(const uint8_t *data, size_t size, const char *what, size_t at)
{
	struct onnxpass_error err = { 0 };
	Onnx__ModelProto *proto = onnx__model_proto__unpack(NULL, size, data);
	int r = opass_wire_check(&onnx__model_proto__descriptor, data, size, &model_limits, NULL, &err);

	ck_assert_msg((r == 0) == (proto != NULL), "%s at %zu: check %d (%s), protobuf-c %s",
		      what, at, r, err.message, proto ? "accepts" : "refuses");
	if (proto)
		onnx__model_proto__free_unpacked(proto, NULL);
}

START_TEST(test_agrees_with_protobuf_c)
{
	static const uint8_t flips[] = { 0x80, 0x01, 0xff, 0x07 };
	size_t size;
	uint8_t *data = (uint8_t *)read_model("constants_if.onnx", &size);
	uint8_t *copy = malloc(size);

	ck_assert_ptr_nonnull(copy);
	for (size_t n = 0; n <= size; n++)
		assert_agrees(data, n, "prefix", n);
	for (size_t i = 0; i < size; i++) {
		for (size_t k = 0; k < sizeof(flips); k++) {
			memcpy(copy, data, size);
			copy[i] ^= flips[k];
			assert_agrees(copy, size, "flip", i);
		}
	}
	free(copy);
	free(data);
}
END_TEST

Suite *test_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc = tcase_create("wire");

	test_models_want("constants_if edge_cases unknown_fields");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_deep_if_refused);
	tcase_add_test(tc, test_deep_if_at_limit);
	tcase_add_test(tc, test_deep_messages_refused);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_unknown_fields_pass);
	tcase_add_test(tc, test_memory_limit);
	tcase_add_test(tc, test_models_pass);
	tcase_add_test(tc, test_agrees_with_protobuf_c);
	suite_add_tcase(s, tc);
	return s;
}
