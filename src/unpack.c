/* SPDX-License-Identifier: MIT */
/*
 * ModelProto unpacking that keeps peak memory near one copy of the model.
 *
 * protobuf-c copies every bytes field out of the input, so unpacking a mapped
 * file holds the file's pages and their copies at once (2x the model). Here
 * the main graph's initializers, which hold nearly all the bytes, are unpacked
 * one by one and the mapping's pages behind them are dropped as we go; the
 * rest of the graph and of the model (small) is unpacked from copies without
 * the initializer and graph fields. Initializers are unpacked on all cores.
 * The result equals a plain unpack: the
 * same fields, initializers in their order, unknown fields kept.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "filemap.h"
#include "parallel.h"
#include "unpack.h"
#include "wire.h"

#define FIELD_MODEL_GRAPH 7
#define FIELD_GRAPH_INITIALIZER 5

/* Is f a length-delimited field numbered number? */
static bool field_is(const struct opass_wire_field *f, uint32_t number)
{
	return f->number == number && f->wire == OPASS_WIRE_LENGTH;
}

/* Copy p[0, size) without the fields numbered `skip` (length-delimited). */
static uint8_t *copy_without(const uint8_t *p, size_t size, uint32_t skip, size_t *ret_size)
{
	uint8_t *out = malloc(size ? size : 1);
	struct opass_wire_reader in = { .data = p };
	struct opass_wire_field f;
	size_t n = 0;

	while (out && in.pos < size) {
		if (opass_wire_read_field(&in, size, &f) < 0) {
			free(out);
			return NULL;
		}
		if (field_is(&f, skip))
			continue;
		memcpy(out + n, p + f.start, f.end - f.start);
		n += f.end - f.start;
	}
	*ret_size = n;
	return out;
}

/* The graph's initializers, unpacked in parallel (they hold nearly all bytes). */
struct init_job {
	const uint8_t *p;          /* the graph's bytes */
	const struct opass_wire_field *spans; /* one per initializer */
	Onnx__TensorProto **out;
	bool release;
};

static int init_unpack(size_t i, unsigned thread, void *userdata)
{
	struct init_job *job = userdata;
	const struct opass_wire_field *f = &job->spans[i];

	(void)thread;
	job->out[i] = onnx__tensor_proto__unpack(NULL, f->end - f->value, job->p + f->value);
	if (job->release)
		opass_filemap_drop_pages(job->p + f->value, job->p + f->end);
	return job->out[i] ? 0 : -EBADMSG;
}

/* The initializer fields of a graph, in order (*ret_n of them). */
static struct opass_wire_field *init_spans(const uint8_t *p, size_t size, size_t *ret_n)
{
	struct opass_wire_reader in = { .data = p };
	struct opass_wire_field f, *spans;
	size_t n = 0;

	while (in.pos < size && opass_wire_read_field(&in, size, &f) == 0)
		n += field_is(&f, FIELD_GRAPH_INITIALIZER);
	spans = calloc(n ? n : 1, sizeof(*spans));
	in.pos = 0;
	for (n = 0; spans && in.pos < size && opass_wire_read_field(&in, size, &f) == 0;)
		if (field_is(&f, FIELD_GRAPH_INITIALIZER))
			spans[n++] = f;
	*ret_n = n;
	return spans;
}

/* The graph: everything but its initializers from a copy, then each
 * initializer straight from the input. */
static Onnx__GraphProto *graph_unpack(const uint8_t *p, size_t size, bool release)
{
	size_t rest_size, n = 0;
	uint8_t *rest = copy_without(p, size, FIELD_GRAPH_INITIALIZER, &rest_size);
	Onnx__GraphProto *graph = rest ? onnx__graph_proto__unpack(NULL, rest_size, rest) : NULL;
	struct init_job job = { .p = p, .release = release };
	int r;

	free(rest);
	if (!graph)
		return NULL;
	job.spans = init_spans(p, size, &n);
	graph->initializer = calloc(n ? n : 1, sizeof(*graph->initializer));
	job.out = graph->initializer;
	r = job.spans && job.out ? opass_parallel_for(n, 0, init_unpack, &job) : -ENOMEM;
	free((void *)job.spans);
	if (r < 0) {
		for (size_t i = 0; job.out && i < n; i++)
			if (job.out[i])
				onnx__tensor_proto__free_unpacked(job.out[i], NULL);
		onnx__graph_proto__free_unpacked(graph, NULL);
		return NULL;
	}
	graph->n_initializer = n;
	return graph;
}

Onnx__ModelProto *opass_model_unpack(const void *data, size_t size, bool release)
{
	const uint8_t *p = data;
	struct opass_wire_reader in = { .data = p };
	size_t graphs = 0, g0 = 0, g1 = 0, rest_size;
	struct opass_wire_field f;
	Onnx__ModelProto *model;
	uint8_t *rest;

	while (in.pos < size) {
		if (opass_wire_read_field(&in, size, &f) < 0)
			return NULL;
		if (field_is(&f, FIELD_MODEL_GRAPH)) {
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
	model->graph = graph_unpack(p + g0, g1 - g0, release);
	if (!model->graph) {
		onnx__model_proto__free_unpacked(model, NULL);
		return NULL;
	}
	return model;
}
