/* SPDX-License-Identifier: MIT */
/*
 * Collect the statistics of the active sites: the model, as it is now
 * (masks and earlier prunings included), runs in ONNX Runtime on every
 * calibration batch with each site's input added as a graph output; the
 * fetched activations are folded into the sites' sums and dropped, so
 * memory holds one batch's activations at a time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "calibration/calibration.h"
#include "error.h"
#include "half.h"
#include "ort_runtime.h"
#include "tensor.h"

static bool graph_has_input(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_input; i++)
		if (strcmp(g->input[i]->name, name) == 0)
			return true;
	return false;
}

/* The values to fetch: active sites' inputs that are not graph inputs,
 * each once. */
static int fetch_names(const struct opass_sites *sites, const Onnx__GraphProto *g,
		       const char ***ret_names, size_t *ret_n)
{
	const char **names = calloc(sites->n + 1, sizeof(*names));
	size_t n = 0;

	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < sites->n; i++) {
		const char *v = sites->items[i].value;
		bool seen = !sites->items[i].active || graph_has_input(g, v);

		for (size_t k = 0; !seen && k < n; k++)
			seen = strcmp(names[k], v) == 0;
		if (!seen)
			names[n++] = v;
	}
	*ret_names = names;
	*ret_n = n;
	return 0;
}

/* t's elements as float32: t's own data, or a converted copy in *ret_copy. */
static int tensor_floats(const struct opass_calib_tensor *t, const float **ret, float **ret_copy)
{
	uint64_t n = opass_calib_tensor_numel(t);
	float *f;

	*ret_copy = NULL;
	if (t->dtype == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
		*ret = t->data;
		return 0;
	}
	if (t->dtype != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16 &&
	    t->dtype != ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16 &&
	    t->dtype != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE)
		return -ENOTSUP;
	f = malloc((n ? n : 1) * sizeof(*f));
	if (!f)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		uint16_t h;

		if (t->dtype == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE) {
			f[i] = (float)((const double *)t->data)[i];
			continue;
		}
		memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
		f[i] = t->dtype == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16 ? opass_half_to_float(h) :
									   opass_bf16_to_float(h);
	}
	*ret = *ret_copy = f;
	return 0;
}

/* ONNX auto_pad SAME_UPPER / SAME_LOWER / VALID pads of one axis. */
static void auto_pads(const char *mode, int64_t in, int64_t k, int64_t s, int64_t d,
		      int64_t *begin, int64_t *end)
{
	int64_t out = (in + s - 1) / s, total = (out - 1) * s + (k - 1) * d + 1 - in;

	if (strcmp(mode, "VALID") == 0 || total < 0)
		total = 0;
	*begin = strcmp(mode, "SAME_LOWER") == 0 ? total - total / 2 : total / 2;
	*end = total - *begin;
	if (strcmp(mode, "VALID") == 0)
		*begin = *end = 0;
}

static int add_conv(struct opass_site *s, const float *x, const int64_t *dims, size_t n_dims,
		    float *scratch)
{
	int64_t d4[4];

	if (n_dims != (s->conv1d ? 3u : 4u))
		return -EINVAL;
	d4[0] = dims[0];
	d4[1] = dims[1];
	d4[2] = s->conv1d ? 1 : dims[2];
	d4[3] = dims[n_dims - 1];
	s->geom.channels = dims[1];
	for (int axis = 0; s->auto_pad && axis < 2; axis++)
		auto_pads(s->auto_pad, d4[2 + axis], s->geom.kernel[axis], s->geom.stride[axis],
			  s->geom.dilation[axis], &s->geom.pads[axis], &s->geom.pads[axis + 2]);
	return opass_stats_add_conv(&s->stats, &s->geom, x, d4, scratch);
}

static int add_gemm(struct opass_site *s, const float *x, const int64_t *dims, size_t n_dims,
		    float *scratch)
{
	size_t m, k;
	float *t;
	int r;

	if (n_dims != 2 || (uint64_t)dims[s->trans_a ? 0 : 1] != s->dim)
		return -EINVAL;
	if (!s->trans_a)
		return opass_stats_add_rows(&s->stats, 0, x, (size_t)dims[0], scratch);
	k = (size_t)dims[0];
	m = (size_t)dims[1];
	t = malloc((m * k > 0 ? m * k : 1) * sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < k; i++)
		for (size_t j = 0; j < m; j++)
			t[j * k + i] = x[i * m + j];
	r = opass_stats_add_rows(&s->stats, 0, t, m, scratch);
	free(t);
	return r;
}

/* Fold one fetched activation into site s. */
static int site_add_tensor(struct opass_site *s, const struct opass_calib_tensor *t,
			   const char *file, float *scratch, struct onnxpass_error *err)
{
	uint64_t n = opass_calib_tensor_numel(t);
	const float *x;
	float *copy;
	int r = tensor_floats(t, &x, &copy);

	if (r == -ENOTSUP)
		return opass_error_from(err, ONNXPASS_ERROR_DATA, -EINVAL,
					"calibration: %s: value '%s' is %s, not a float tensor",
					file, s->value, opass_dtype_name(t->dtype));
	if (r < 0)
		return opass_error(err, r, "out of memory");
	if (s->kind == OPASS_SITE_CONV)
		r = add_conv(s, x, t->dims, t->n_dims, scratch);
	else if (s->kind == OPASS_SITE_GEMM)
		r = add_gemm(s, x, t->dims, t->n_dims, scratch);
	else if (t->n_dims < 1 || (uint64_t)t->dims[t->n_dims - 1] != s->dim)
		r = -EINVAL;
	else
		r = opass_stats_add_rows(&s->stats, 0, x, (size_t)(n / s->dim), scratch);
	free(copy);
	if (r == -EINVAL)
		return opass_error_from(err, ONNXPASS_ERROR_DATA, r, "calibration: %s: value '%s' "
					"(rank %zu) does not fit its layer (%zu input features)",
					file, s->value, t->n_dims, s->dim);
	return r < 0 ? opass_error(err, r, "out of memory") : 0;
}

/* Fold t into every active site that reads it. */
static int fold_value(struct opass_sites *sites, const struct opass_calib_tensor *t,
		      const char *file, struct onnxpass_error *err)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < sites->n; i++)
		if (sites->items[i].active && strcmp(sites->items[i].value, t->name) == 0)
			r = site_add_tensor(&sites->items[i], t, file, sites->scratch, err);
	return r;
}

struct batch_visit {
	struct opass_sites *sites;
	const char *file;
	struct onnxpass_error *err;
};

static int fold_output(size_t i, const struct opass_calib_tensor *t, void *userdata)
{
	struct batch_visit *v = userdata;

	return fold_value(v->sites, t, v->file, v->err);
}

/* Run every batch through the session (none when every active site reads
 * a graph input) and fold each activation in as ORT hands it over; the
 * sites that read graph inputs take them from the batch. */
static int run_batches(struct opass_sites *sites, struct opass_ort_session *session,
		       const struct opass_calib_source *source, const Onnx__ModelProto *proto,
		       const char **names, size_t n_names, struct onnxpass_error *err)
{
	int r = 0;

	for (size_t b = 0; r == 0 && b < opass_calib_count(source); b++) {
		struct opass_calib_batch *batch = NULL;
		struct batch_visit v = { .sites = sites, .err = err };

		r = opass_calib_read(source, b, proto, &batch, err);
		if (r == 0 && session) {
			v.file = batch->path;
			r = opass_ort_session_visit(session, batch, names, n_names, fold_output, &v, err);
		}
		for (size_t i = 0; r == 0 && i < batch->n_tensors; i++)
			r = fold_value(sites, &batch->tensors[i], batch->path, err);
		opass_calib_batch_free(batch);
	}
	return r;
}

/* Fresh statistics for the active sites, and the folding scratch (one
 * full H of the widest). */
static int sites_reset(struct opass_sites *sites, bool full)
{
	size_t widest = 1;

	for (size_t i = 0; i < sites->n; i++) {
		struct opass_site *s = &sites->items[i];

		opass_site_reset(s);
		if (s->active && opass_stats_init(&s->stats, s->dim, s->n_groups, full) < 0)
			return -ENOMEM;
		if (s->active && full && s->dim > widest)
			widest = s->dim;
	}
	free(sites->scratch);
	sites->scratch = malloc(widest * widest * sizeof(*sites->scratch));
	return sites->scratch ? 0 : -ENOMEM;
}

int opass_sites_collect(struct opass_sites *sites, const struct opass_collect *how,
			struct onnxpass_error *err)
{
	struct opass_calib_source *source = NULL;
	struct opass_ort_session *session = NULL;
	struct opass_ort *ort = NULL;
	const char **names = NULL;
	size_t n_names = 0;
	int r;

	if (!how->calibration)
		return opass_error_usage(err,
					 "calibration: wanda and sparsegpt need calibration inputs (--calibration PATH)");
	r = opass_calib_open(how->calibration, &source, err);
	if (r == 0)
		r = opass_ort_open(&ort, err);
	if (r == 0 && (sites_reset(sites, how->full) < 0 ||
		       fetch_names(sites, how->model->proto->graph, &names, &n_names) < 0))
		r = opass_error(err, -ENOMEM, "out of memory");
	if (r == 0 && n_names)
		r = opass_calib_session_open(how, ort, names, n_names, &session, err);
	if (r == 0)
		r = run_batches(sites, session, source, how->model->proto, names, n_names, err);
	for (size_t i = 0; r == 0 && i < sites->n; i++) {
		const struct opass_site *s = &sites->items[i];

		if (s->active && s->stats.rows == 0)
			r = opass_error_from(err, ONNXPASS_ERROR_DATA, -EINVAL,
					     "calibration: layer input '%s' got no rows from %s",
					s->value, how->calibration);
	}
	free(sites->scratch);
	sites->scratch = NULL;
	opass_ort_session_free(session);
	opass_ort_close(ort);
	opass_calib_free(source);
	free(names);
	return r;
}
