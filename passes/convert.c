/* SPDX-License-Identifier: MIT */
/*
 * convert: torch.ao.pruning convert(): squash, then store weights sparse.
 *
 * Before:   W ─► Mul(W, Cast(W_mask)) ─► consumers          (prepared model)
 *
 * After:    sparse_initializer W { values [NNZ], indices INT64 [NNZ], dims }
 *           ─► consumers
 *
 * Conditions: the model is prepared; options.format is "auto" (default:
 * sparse when COO is smaller than dense), "coo" (always), "dense" (never)
 * or "ort-sparse" (MatMul/Gemm weights with at least options.min_sparsity
 * zeros, default 0.5, become ai.onnx_pass::SparseMatMul: see ort_sparse.c).
 * A weight stays dense when it lives in a Constant node or a subgraph, or
 * when the model's IR version is below 6 (no sparse_initializer). Indices
 * are linear (row-major over the weight's dims), strictly increasing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graph.h"
#include "parallel.h"
#include "ort_sparse.h"
#include "passes.h"
#include "tensor.h"

enum convert_format { FORMAT_AUTO, FORMAT_COO, FORMAT_DENSE, FORMAT_ORT_SPARSE };

static int convert_format(const struct opass_config *config, enum convert_format *ret,
			  struct onnxpass_error *err)
{
	const cJSON *f = opass_config_option(config, "format");

	if (!f || cJSON_IsNull(f) || (cJSON_IsString(f) && strcmp(f->valuestring, "auto") == 0))
		*ret = FORMAT_AUTO;
	else if (cJSON_IsString(f) && strcmp(f->valuestring, "coo") == 0)
		*ret = FORMAT_COO;
	else if (cJSON_IsString(f) && strcmp(f->valuestring, "dense") == 0)
		*ret = FORMAT_DENSE;
	else if (cJSON_IsString(f) && strcmp(f->valuestring, "ort-sparse") == 0)
		*ret = FORMAT_ORT_SPARSE;
	else
		return opass_error_usage(err, "options: format must be auto, coo, dense or "
					 "ort-sparse");
	return 0;
}

/* options.min_sparsity (ort-sparse): a fraction of zeros in [0, 1], default 0.5. */
static int convert_min_sparsity(const struct opass_config *config, double *ret,
				struct onnxpass_error *err)
{
	const cJSON *v = opass_config_option(config, "min_sparsity");

	if (!v || cJSON_IsNull(v)) {
		*ret = 0.5;
		return 0;
	}
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0 && v->valuedouble <= 1.0))
		return opass_error_usage(err, "options: min_sparsity must be a number in [0, 1]");
	*ret = v->valuedouble;
	return 0;
}

/* Element i of a float tensor in its little-endian storage encoding. */
static void element_bytes(const Onnx__TensorProto *t, uint64_t i, size_t elem, uint8_t *out)
{
	if (t->has_raw_data) {
		memcpy(out, t->raw_data.data + elem * i, elem);
	} else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
		memcpy(out, &t->float_data[i], 4);
	} else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE) {
		memcpy(out, &t->double_data[i], 8);
	} else {
		uint16_t h = (uint16_t)t->int32_data[i];

		memcpy(out, &h, 2);
	}
}

/* Copy the nonzero elements and their linear indices (little-endian INT64). */
static void sparse_fill(const Onnx__TensorProto *w, uint64_t numel, uint64_t nnz, size_t elem,
			uint8_t *values, uint8_t *indices)
{
	uint64_t k = 0;

	if (w->has_raw_data && elem == 4) {
		const uint8_t *raw = w->raw_data.data;
		uint8_t spare[12];

		/* branch-free: every element is written, k advances on nonzeros;
		 * once all nnz are out, the rest (zeros) go to spare */
		for (uint64_t i = 0; i < numel; i++) {
			uint8_t *v = k < nnz ? values + 4 * k : spare;
			uint8_t *x = k < nnz ? indices + 8 * k : spare + 4;
			int64_t index = (int64_t)i;
			uint32_t u;

			memcpy(&u, raw + 4 * i, 4);
			memcpy(v, &u, 4);
			memcpy(x, &index, 8);
			k += (u & 0x7fffffffu) != 0;
		}
		return;
	}
	for (uint64_t i = 0; i < numel; i++) {
		int64_t index = (int64_t)i;

		if (opass_tensor_is_zero(w, i))
			continue;
		element_bytes(w, i, elem, values + k * elem);
		memcpy(indices + k * 8, &index, 8);
		k++;
	}
}

static Onnx__SparseTensorProto *sparse_new(const Onnx__TensorProto *w, uint64_t numel, uint64_t nnz)
{
	size_t elem = opass_dtype_size(w->data_type);
	Onnx__SparseTensorProto *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	onnx__sparse_tensor_proto__init(s);
	s->values = opass_tensor_new(w->name, w->data_type, (const int64_t[]){ (int64_t)nnz }, 1);
	s->indices = opass_tensor_new(NULL, ONNX__TENSOR_PROTO__DATA_TYPE__INT64,
				      (const int64_t[]){ (int64_t)nnz }, 1);
	s->dims = malloc((w->n_dims ? w->n_dims : 1) * sizeof(*s->dims));
	if (!s->values || !s->indices || !s->dims) {
		onnx__sparse_tensor_proto__free_unpacked(s, NULL);
		return NULL;
	}
	s->n_dims = w->n_dims;
	memcpy(s->dims, w->dims, w->n_dims * sizeof(*s->dims));
	sparse_fill(w, numel, nnz, elem, s->values->raw_data.data, s->indices->raw_data.data);
	return s;
}

struct convert_job {
	Onnx__ModelProto *model;
	const struct opass_state *state;
	enum convert_format format;
	Onnx__SparseTensorProto **built;   /* per group, NULL when it stays dense */
	struct onnxpass_error *errors;
};

/* Build the sparse form of group i when it is eligible and worth it. */
static int group_build(size_t i, unsigned thread, void *userdata)
{
	struct convert_job *job = userdata;
	const struct opass_group *g = &job->state->groups[i];
	const Onnx__TensorProto *w = g->weight.tensor;
	size_t elem = opass_dtype_size(w->data_type);
	uint64_t numel, nnz;
	int r;

	(void)thread;
	if (job->format == FORMAT_DENSE || g->weight.node || g->weight.graph != job->model->graph ||
	    job->model->ir_version < 6)
		return 0;
	r = opass_tensor_check(w, &numel, &job->errors[i]);
	if (r < 0)
		return r;
	nnz = g->nnz >= 0 ? (uint64_t)g->nnz : opass_tensor_count_nonzero(w, numel);
	if (job->format == FORMAT_COO || nnz * (elem + 8) < numel * elem) {
		job->built[i] = sparse_new(w, numel, nnz);
		if (!job->built[i])
			r = opass_error(&job->errors[i], -ENOMEM, "out of memory");
	}
	opass_state_release_weight(job->state, i);
	return r;
}

/* Swap the dense initializers for the built sparse ones (graph order kept). */
static int groups_splice(struct convert_job *job, size_t n, struct onnxpass_error *err)
{
	Onnx__GraphProto *graph = job->model->graph;
	struct opass_strmap dense = { 0 };   /* the initializers they replace */
	Onnx__SparseTensorProto **list;
	size_t add = 0;
	int r = 0;

	for (size_t i = 0; i < n; i++)
		add += job->built[i] != NULL;
	list = realloc(graph->sparse_initializer, (graph->n_sparse_initializer + add + 1) * sizeof(*list));
	if (!list)
		return opass_error(err, -ENOMEM, "out of memory");
	graph->sparse_initializer = list;
	for (size_t i = 0; r == 0 && i < n; i++) {
		char key[32];

		opass_ptr_key(key, job->state->groups[i].weight.tensor);
		if (job->built[i])
			r = opass_strmap_put_copy(&dense, key, NULL);
	}
	if (r < 0) {
		opass_strmap_fini(&dense);
		return opass_error(err, r, "out of memory");
	}
	opass_graph_remove_marked(graph, opass_state_filemap(job->state), &dense, NULL);
	opass_strmap_fini(&dense);
	for (size_t i = 0; i < n; i++) {
		if (!job->built[i])
			continue;
		list[graph->n_sparse_initializer++] = job->built[i];
		job->built[i] = NULL;
	}
	return 0;
}

static int groups_convert(Onnx__ModelProto *model, const struct opass_state *state,
			  const struct opass_config *config, enum convert_format format,
			  struct onnxpass_error *err)
{
	size_t n = state->n_groups;
	struct convert_job job = { .model = model, .state = state, .format = format };
	unsigned threads = 0;
	int r;

	job.built = calloc(n + 1, sizeof(*job.built));
	job.errors = calloc(n + 1, sizeof(*job.errors));
	if (!job.built || !job.errors)
		r = opass_error(err, -ENOMEM, "out of memory");
	else
		r = opass_config_threads(config, &threads, err);
	if (r == 0)
		r = opass_parallel_for(n, threads, group_build, &job);
	for (size_t i = 0; r < 0 && err && job.errors && i < n; i++)
		if (job.errors[i].code) {
			*err = job.errors[i];
			break;
		}
	if (r == 0)
		r = groups_splice(&job, n, err);
	for (size_t i = 0; job.built && i < n; i++)
		if (job.built[i])
			onnx__sparse_tensor_proto__free_unpacked(job.built[i], NULL);
	free(job.built);
	free(job.errors);
	return r;
}

int opass_convert_apply(Onnx__ModelProto *model, struct opass_state *state,
			const struct opass_config *config, struct onnxpass_error *err)
{
	enum convert_format format = FORMAT_AUTO;
	double min_sparsity = 0.5;
	int r;

	r = convert_format(config, &format, err);
	if (r == 0)
		r = convert_min_sparsity(config, &min_sparsity, err);
	if (r == 0)
		r = opass_squash_apply(model, state, config, err);
	if (r == 0 && format == FORMAT_ORT_SPARSE)
		r = opass_ort_sparse_apply(model, state, min_sparsity, err);
	else if (r == 0)
		r = groups_convert(model, state, config, format, err);
	return r;
}

/* A model pruned elsewhere (torch prune, squash_mask, export) has no state:
 * its weights are taken as they are, the mask being W != 0 (prepare's
 * groups with the masks left in the weights, as sparsify does). */
static int convert_unprepared(struct onnxpass_model *model, struct onnxpass_context *ctx,
			      struct onnxpass_error *err)
{
	struct opass_config *config = NULL;
	struct opass_state *state = NULL;
	int r;

	r = opass_context_config(ctx, &config, err);
	if (r == 0)
		r = opass_prepare_state(model, config, true, &state, err);
	if (r == 0)
		r = opass_convert_apply(model->proto, state, config, err);
	opass_state_free(state);
	opass_config_free(config);
	return r;
}

int opass_pass_convert(struct onnxpass_model *model, struct onnxpass_context *ctx, struct onnxpass_error *err)
{
	if (!opass_model_get_metadata(model->proto, OPASS_STATE_KEY))
		return convert_unprepared(model, ctx, err);
	return opass_state_run(model, ctx, opass_convert_apply, err);
}
