/* SPDX-License-Identifier: MIT */
/*
 * How far the model's outputs move when its weights change: the model as
 * it is now runs in ONNX Runtime on the first few calibration batches, and
 * its float outputs are compared with those of the model it was when the
 * evaluator was opened. Used by the sensitivity allocation (allocate.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "calibration/allocate.h"
#include "error.h"
#include "ort_runtime.h"

/* Batches the evaluation runs on: enough to rank layers, few enough to
 * run once per layer and candidate level. */
#define EVAL_BATCHES 2

struct opass_eval {
	struct opass_collect how;
	struct opass_ort *ort;
	struct opass_calib_batch *batches[EVAL_BATCHES];
	size_t n_batches;
	const char **names;       /* the graph's outputs */
	size_t n_names;
	struct opass_calib_tensor *ref[EVAL_BATCHES];
};

static bool is_float(int32_t dtype)
{
	return dtype == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
}

struct eval_sum {
	const struct opass_calib_tensor *ref;
	double diff, norm;
};

static int eval_fold(size_t i, const struct opass_calib_tensor *t, void *userdata)
{
	struct eval_sum *sum = userdata;
	const struct opass_calib_tensor *ref = &sum->ref[i];
	size_t n = t->size / sizeof(float);

	if (!is_float(t->dtype) || !is_float(ref->dtype) || t->size != ref->size)
		return 0;
	for (size_t k = 0; k < n; k++) {
		double a = ((const float *)ref->data)[k], b = ((const float *)t->data)[k];

		sum->diff += (a - b) * (a - b);
		sum->norm += a * a;
	}
	return 0;
}

int opass_eval_error(struct opass_eval *ev, double *ret_error, struct onnxpass_error *err)
{
	struct opass_ort_session *session = NULL;
	double diff = 0, norm = 0;
	int r = opass_calib_session_open(&ev->how, ev->ort, NULL, 0, &session, err);

	for (size_t b = 0; r == 0 && b < ev->n_batches; b++) {
		struct eval_sum sum = { .ref = ev->ref[b] };

		r = opass_ort_session_visit(session, ev->batches[b], ev->names, ev->n_names, eval_fold,
					    &sum, err);
		diff += sum.diff;
		norm += sum.norm;
	}
	opass_ort_session_free(session);
	if (r == 0)
		*ret_error = norm > 0 ? diff / norm : diff;
	return r;
}

static int eval_reference(struct opass_eval *ev, struct onnxpass_error *err)
{
	struct opass_ort_session *session = NULL;
	int r = opass_calib_session_open(&ev->how, ev->ort, NULL, 0, &session, err);

	for (size_t b = 0; r == 0 && b < ev->n_batches; b++)
		r = opass_ort_session_run(session, ev->batches[b], ev->names, ev->n_names, &ev->ref[b],
					  err);
	opass_ort_session_free(session);
	return r;
}

int opass_eval_open(const struct opass_collect *how, struct opass_eval **ret_eval,
		    struct onnxpass_error *err)
{
	const Onnx__GraphProto *g = how->model->proto->graph;
	struct opass_calib_source *source = NULL;
	struct opass_eval *ev = calloc(1, sizeof(*ev));
	int r = ev ? 0 : opass_error(err, -ENOMEM, "out of memory");

	if (r == 0) {
		ev->how = *how;
		ev->names = calloc(g->n_output + 1, sizeof(*ev->names));
		r = ev->names ? opass_calib_open(how->calibration, &source, err) :
				opass_error(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; r == 0 && i < g->n_output; i++)
		ev->names[ev->n_names++] = g->output[i]->name;
	if (r == 0)
		r = opass_ort_open(&ev->ort, err);
	for (size_t b = 0; r == 0 && b < EVAL_BATCHES && b < opass_calib_count(source); b++) {
		r = opass_calib_read(source, b, how->model->proto, &ev->batches[b], err);
		ev->n_batches += r == 0;
	}
	if (r == 0)
		r = eval_reference(ev, err);
	opass_calib_free(source);
	if (r < 0) {
		opass_eval_free(ev);
		return r;
	}
	*ret_eval = ev;
	return 0;
}

struct opass_eval *opass_eval_free(struct opass_eval *ev)
{
	if (!ev)
		return NULL;
	for (size_t b = 0; b < EVAL_BATCHES; b++) {
		opass_calib_batch_free(ev->batches[b]);
		opass_calib_tensors_free(ev->ref[b], ev->ref[b] ? ev->n_names : 0);
	}
	opass_ort_close(ev->ort);
	free(ev->names);
	free(ev);
	return NULL;
}
