/* SPDX-License-Identifier: MIT */
/* onnxpass_compare: run two models in ONNX Runtime on the same inputs and
 * measure how far the candidate's outputs are from the reference's. */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "calib.h"
#include "error.h"
#include "half.h"
#include "model.h"
#include "ort_runtime.h"
#include "tensor.h"

#define DT(x) ONNX__TENSOR_PROTO__DATA_TYPE__##x

struct output_stats {
	const char *name;       /* the reference model's output name */
	int32_t dtype;
	uint64_t elements;
	double max_abs;         /* max |ref - cand| */
	double max_ref;         /* max |ref| over finite values */
	double dot, ref2, cand2;
	uint64_t positions;     /* argmax positions compared (top-1) */
	uint64_t agree;
	bool top1;              /* top-1 is defined (float, last dim > 1) */
};

static double element(const struct opass_calib_tensor *t, size_t i)
{
	const uint8_t *p = (const uint8_t *)t->data;

	switch (t->dtype) {
	case DT(FLOAT): { float v; memcpy(&v, p + 4 * i, 4); return v; }
	case DT(DOUBLE): { double v; memcpy(&v, p + 8 * i, 8); return v; }
	case DT(FLOAT16): { uint16_t v; memcpy(&v, p + 2 * i, 2); return opass_half_to_float(v); }
	case DT(BFLOAT16): { uint16_t v; memcpy(&v, p + 2 * i, 2); return opass_bf16_to_float(v); }
	case DT(INT8): return (int8_t)p[i];
	case DT(UINT8): return p[i];
	case DT(BOOL): return p[i] != 0;
	case DT(INT16): { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
	case DT(UINT16): { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
	case DT(INT32): { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
	case DT(UINT32): { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
	case DT(INT64): { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
	case DT(UINT64): { uint64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
	default: return NAN;
	}
}

/* Index of the largest non-NaN value of row[0..n) (first one on ties; 0 if all NaN). */
static size_t argmax(const struct opass_calib_tensor *t, size_t start, size_t n)
{
	size_t best = 0;
	double best_v = -INFINITY;
	bool found = false;

	for (size_t k = 0; k < n; k++) {
		double v = element(t, start + k);

		if (!isnan(v) && (!found || v > best_v)) {
			best = k;
			best_v = v;
			found = true;
		}
	}
	return best;
}

static void accumulate(struct output_stats *s, const struct opass_calib_tensor *a,
		       const struct opass_calib_tensor *b)
{
	size_t n = a->size / (opass_dtype_size(a->dtype) ? opass_dtype_size(a->dtype) : 1);

	for (size_t i = 0; i < n; i++) {
		double x = element(a, i), y = element(b, i), d;

		if (isnan(x) || isnan(y)) {
			d = isnan(x) && isnan(y) ? 0 : INFINITY;
		} else if (x == y) {
			d = 0;  /* also equal infinities */
		} else {
			d = fabs(x - y);
		}
		if (d > s->max_abs)
			s->max_abs = d;
		if (isfinite(x) && fabs(x) > s->max_ref)
			s->max_ref = fabs(x);
		if (isfinite(x) && isfinite(y)) {
			s->dot += x * y;
			s->ref2 += x * x;
			s->cand2 += y * y;
		}
	}
	s->elements += n;
	if (s->top1 && a->n_dims && a->dims[a->n_dims - 1] > 1) {
		size_t last = (size_t)a->dims[a->n_dims - 1];

		for (size_t row = 0; row + last <= n; row += last) {
			s->positions++;
			s->agree += argmax(a, row, last) == argmax(b, row, last);
		}
	}
}

static double max_rel(const struct output_stats *s)
{
	if (s->max_ref > 0)
		return s->max_abs / s->max_ref;
	return s->max_abs == 0 ? 0 : NAN;
}

static double cosine(const struct output_stats *s)
{
	if (s->ref2 == 0 && s->cand2 == 0)
		return 1;
	if (s->ref2 == 0 || s->cand2 == 0)
		return 0;
	return s->dot / (sqrt(s->ref2) * sqrt(s->cand2));
}

static double top1(const struct output_stats *s)
{
	return s->top1 && s->positions ? (double)s->agree / (double)s->positions : NAN;
}

static void format_dims(char *buf, size_t size, const struct opass_calib_tensor *t)
{
	size_t len = (size_t)snprintf(buf, size, "[");

	for (size_t i = 0; i < t->n_dims && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? "," : "",
					(long long)t->dims[i]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

/* Same output set in both models; outputs come in the reference's order. */
static int match_outputs(const char *ref_path, const Onnx__GraphProto *ref, const char *cand_path,
			 const Onnx__GraphProto *cand, struct onnxpass_error *err)
{
	for (size_t i = 0; i < ref->n_output; i++) {
		bool found = false;

		for (size_t k = 0; k < cand->n_output && !found; k++)
			found = strcmp(ref->output[i]->name, cand->output[k]->name) == 0;
		if (!found)
			return opass_error(err, -EINVAL, "%s: has no output '%s' (an output of %s)",
					   cand_path, ref->output[i]->name, ref_path);
	}
	for (size_t k = 0; k < cand->n_output; k++) {
		bool found = false;

		for (size_t i = 0; i < ref->n_output && !found; i++)
			found = strcmp(ref->output[i]->name, cand->output[k]->name) == 0;
		if (!found)
			return opass_error(err, -EINVAL, "%s: output '%s' is not an output of %s",
					   cand_path, cand->output[k]->name, ref_path);
	}
	return 0;
}

/* Load a model and create its session; messages start with path. */
static int open_model(const char *path, struct opass_ort *ort, struct onnxpass_model **ret_model,
		      struct opass_ort_session **ret_session, struct onnxpass_error *err)
{
	char prefix[PATH_MAX + 8];
	void *bytes = NULL;
	size_t size = 0;
	int r;

	snprintf(prefix, sizeof(prefix), "%s: ", path);
	r = onnxpass_model_load_file(path, ret_model, err);
	if (r == 0)
		r = onnxpass_model_save_bytes(*ret_model, &bytes, &size, err);
	if (r == 0 && size > INT_MAX)
		r = opass_error(err, -EFBIG, "the model is above 2 GiB");
	if (r == 0)
		r = opass_ort_session_new(ort, bytes, size, 0, NULL, ret_session, err);
	free(bytes);
	if (r < 0)
		opass_error_prefix(err, prefix);
	return r;
}

static cJSON *json_number_or_null(double v)
{
	return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static char *report_json(const char *ref_path, const char *cand_path, const char *inputs_path,
			 size_t batches, const struct output_stats *stats, size_t n)
{
	cJSON *doc = cJSON_CreateObject(), *outputs;
	char *text;

	cJSON_AddStringToObject(doc, "reference", ref_path);
	cJSON_AddStringToObject(doc, "candidate", cand_path);
	cJSON_AddStringToObject(doc, "inputs", inputs_path);
	cJSON_AddNumberToObject(doc, "batches", (double)batches);
	cJSON_AddStringToObject(doc, "max_rel_error_definition",
				"max|ref - cand| / max|ref| over all elements of all batches");
	outputs = cJSON_AddArrayToObject(doc, "outputs");
	for (size_t i = 0; i < n; i++) {
		const struct output_stats *s = &stats[i];
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "name", s->name);
		cJSON_AddStringToObject(o, "dtype", opass_dtype_name(s->dtype));
		cJSON_AddNumberToObject(o, "elements", (double)s->elements);
		cJSON_AddItemToObject(o, "max_abs_error", json_number_or_null(s->max_abs));
		cJSON_AddItemToObject(o, "max_rel_error", json_number_or_null(max_rel(s)));
		cJSON_AddItemToObject(o, "cosine_similarity", json_number_or_null(cosine(s)));
		cJSON_AddItemToObject(o, "top1_agreement", json_number_or_null(top1(s)));
		cJSON_AddNumberToObject(o, "top1_positions", (double)(s->top1 ? s->positions : 0));
		cJSON_AddItemToArray(outputs, o);
	}
	text = cJSON_Print(doc);
	cJSON_Delete(doc);
	if (!text)
		return NULL;
	/* one trailing newline, like the other reports */
	{
		size_t len = strlen(text);
		char *t = realloc(text, len + 2);

		if (!t) {
			free(text);
			return NULL;
		}
		t[len] = '\n';
		t[len + 1] = '\0';
		text = t;
	}
	return text;
}

static void cell(char *buf, size_t size, double v)
{
	if (isnan(v))
		snprintf(buf, size, "-");
	else if (isinf(v))
		snprintf(buf, size, "inf");
	else
		snprintf(buf, size, "%.6g", v);
}

static char *report_text(const char *ref_path, const char *cand_path, const char *inputs_path,
			 size_t batches, const struct output_stats *stats, size_t n)
{
	char *text = NULL;
	size_t len = 0, width = strlen("output");
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strlen(stats[i].name) > width)
			width = strlen(stats[i].name);
	fprintf(f, "reference: %s\ncandidate: %s\ninputs:    %s (%zu batch%s)\n"
		"max rel err = max|ref - cand| / max|ref|; cosine over all elements; "
		"top-1 = argmax agreement along the last axis\n\n",
		ref_path, cand_path, inputs_path, batches, batches == 1 ? "" : "es");
	fprintf(f, "%-*s  %-8s  %12s  %12s  %12s  %12s  %8s\n", (int)width, "output", "dtype",
		"elements", "max abs err", "max rel err", "cosine", "top-1");
	for (size_t i = 0; i < n; i++) {
		const struct output_stats *s = &stats[i];
		char c[4][32];

		cell(c[0], sizeof(c[0]), s->max_abs);
		cell(c[1], sizeof(c[1]), max_rel(s));
		cell(c[2], sizeof(c[2]), cosine(s));
		cell(c[3], sizeof(c[3]), top1(s));
		fprintf(f, "%-*s  %-8s  %12llu  %12s  %12s  %12s  %8s\n", (int)width, s->name,
			opass_dtype_name(s->dtype), (unsigned long long)s->elements, c[0], c[1], c[2],
			c[3]);
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* Run both sessions on every batch and accumulate stats. */
static int compare_batches(const char *ref_path, const char *cand_path,
			   const struct opass_calib_source *src, const Onnx__ModelProto *ref,
			   struct opass_ort_session *ref_s, struct opass_ort_session *cand_s,
			   const char **names, struct output_stats *stats, size_t n,
			   struct onnxpass_error *err)
{
	int r = 0;

	for (size_t b = 0; r == 0 && b < opass_calib_count(src); b++) {
		struct opass_calib_batch *batch = NULL;
		struct opass_calib_tensor *ro = NULL, *co = NULL;
		char prefix[2 * PATH_MAX + 16];

		r = opass_calib_read(src, b, ref, &batch, err);
		if (r < 0)
			break;
		snprintf(prefix, sizeof(prefix), "%s: batch %s: ", ref_path, batch->path);
		r = opass_ort_session_run(ref_s, batch, names, n, &ro, err);
		if (r < 0)
			opass_error_prefix(err, prefix);
		if (r == 0) {
			snprintf(prefix, sizeof(prefix), "%s: batch %s: ", cand_path, batch->path);
			r = opass_ort_session_run(cand_s, batch, names, n, &co, err);
			if (r < 0)
				opass_error_prefix(err, prefix);
		}
		for (size_t i = 0; r == 0 && i < n; i++) {
			char da[128], dc[128];

			if (b == 0) {
				stats[i].dtype = ro[i].dtype;
				stats[i].top1 = opass_dtype_is_float(ro[i].dtype);
			}
			if (ro[i].dtype != co[i].dtype || ro[i].dtype != stats[i].dtype) {
				r = opass_error(err, -EINVAL, "%s: output '%s' is %s, %s's is %s (batch %s)",
						cand_path, names[i], opass_dtype_name(co[i].dtype), ref_path,
						opass_dtype_name(ro[i].dtype), batch->path);
				break;
			}
			format_dims(da, sizeof(da), &ro[i]);
			format_dims(dc, sizeof(dc), &co[i]);
			if (strcmp(da, dc) != 0 || ro[i].size != co[i].size) {
				r = opass_error(err, -EINVAL, "%s: output '%s' has shape %s, %s's %s "
						"(batch %s)", cand_path, names[i], dc, ref_path, da,
						batch->path);
				break;
			}
			accumulate(&stats[i], &ro[i], &co[i]);
		}
		opass_calib_tensors_free(ro, ro ? n : 0);
		opass_calib_tensors_free(co, co ? n : 0);
		opass_calib_batch_free(batch);
	}
	return r;
}

ONNXPASS_EXPORT int onnxpass_compare(const char *ref_path, const char *cand_path,
				     const char *inputs_path, unsigned flags, char **ret_report,
				     struct onnxpass_error *err)
{
	struct onnxpass_model *ref = NULL, *cand = NULL;
	struct opass_ort_session *ref_s = NULL, *cand_s = NULL;
	struct opass_calib_source *src = NULL;
	struct output_stats *stats = NULL;
	struct opass_ort *ort = NULL;
	const char **names = NULL;
	size_t n = 0;
	char *report;
	int r;

	if (!ref_path || !cand_path || !inputs_path || !ret_report)
		return opass_error_usage(err, "compare: reference, candidate, inputs and report "
					 "pointer are required");
	if (flags & ~(unsigned)ONNXPASS_COMPARE_JSON)
		return opass_error_usage(err, "compare: unknown flags 0x%x", flags);
	r = opass_calib_open(inputs_path, &src, err);
	if (r == 0)
		r = opass_ort_open(&ort, err);
	if (r == 0)
		r = open_model(ref_path, ort, &ref, &ref_s, err);
	if (r == 0)
		r = open_model(cand_path, ort, &cand, &cand_s, err);
	if (r == 0)
		r = match_outputs(ref_path, ref->proto->graph, cand_path, cand->proto->graph, err);
	if (r == 0) {
		n = ref->proto->graph->n_output;
		names = calloc(n + 1, sizeof(*names));
		stats = calloc(n + 1, sizeof(*stats));
		if (!names || !stats)
			r = opass_error(err, -ENOMEM, "out of memory");
		for (size_t i = 0; r == 0 && i < n; i++)
			stats[i].name = names[i] = ref->proto->graph->output[i]->name;
	}
	if (r == 0)
		r = compare_batches(ref_path, cand_path, src, ref->proto, ref_s, cand_s, names, stats,
				    n, err);
	if (r == 0) {
		report = flags & ONNXPASS_COMPARE_JSON ?
			report_json(ref_path, cand_path, inputs_path, opass_calib_count(src), stats, n) :
			report_text(ref_path, cand_path, inputs_path, opass_calib_count(src), stats, n);
		if (!report)
			r = opass_error(err, -ENOMEM, "out of memory");
		else
			*ret_report = report;
	}
	free(names);
	free(stats);
	opass_ort_session_free(ref_s);
	opass_ort_session_free(cand_s);
	onnxpass_model_free(ref);
	onnxpass_model_free(cand);
	opass_ort_close(ort);
	opass_calib_free(src);
	return r;
}
