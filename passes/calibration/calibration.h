/* SPDX-License-Identifier: MIT */
/*
 * Calibration-aware sparsifiers (SPEC 12), shared by their three parts:
 * sites.c (which layer input feeds each group, and the sequential waves),
 * collect.c (run the model in ONNX Runtime on the calibration set and
 * accumulate statistics) and prune.c (Wanda / SparseGPT per group, and the
 * sensitivity allocation of per-layer levels).
 */
#pragma once

#include <stdbool.h>

#include "calibration/stats.h"
#include "masks/masks.h"
#include "model.h"
#include "sparsity/sparsity.h"

enum opass_site_kind {
	OPASS_SITE_MATMUL,  /* rows of A[..., K] */
	OPASS_SITE_GEMM,    /* rows of A[M, K] (or of A^T with transA) */
	OPASS_SITE_CONV,    /* im2col patches of X[N, C, H, W] or X[N, C, L] */
};

/* One layer input that groups take their statistics from. */
struct opass_site {
	const char *value;            /* the activation's name in the model */
	enum opass_site_kind kind;
	bool trans_a;                 /* Gemm transA */
	bool conv1d;                  /* X[N, C, L]: seen as height 1 */
	struct opass_conv_geom geom;  /* Conv (channels set from each batch) */
	const char *auto_pad;         /* Conv auto_pad, NULL for NOTSET */
	size_t dim, n_groups;
	bool active;                  /* collect statistics in this run */
	struct opass_stats stats;
	/* sparsegpt: per Conv group, the factor of the current stats (NULL
	 * until needed), made with dampening factors_damp */
	struct opass_sparsegpt_factor *factors;
	double factors_damp;
};

/* The site's SparseGPT factors for percdamp, made once per statistics. */
int opass_site_factors(struct opass_site *site, double percdamp,
		       const struct opass_sparsegpt_factor **ret_factors);
/* Drop the statistics and factors. */
void opass_site_reset(struct opass_site *site);

struct opass_sites {
	struct opass_site *items;
	size_t n;
	size_t *of_group;   /* per state group: index of its site */
	unsigned *wave;     /* per state group: sequential wave (0 first) */
	unsigned n_waves;
	float *scratch;     /* while collecting: one full H of the widest site */
};

/* Resolve every group of a prepared model to the input of its consumer
 * (MatMul/Gemm/Conv of the main graph); groups sharing an input and a
 * geometry share a site. -ENOTSUP naming the group when its consumer is
 * inside a subgraph. */
int opass_sites_find(Onnx__ModelProto *model, const struct opass_state *state,
		     struct opass_sites *ret_sites, struct onnxpass_error *err);
void opass_sites_fini(struct opass_sites *sites);

/* prepare's mask nodes of groups whose mask keeps everything, left out of
 * the calibration copy (bypass.c). */
struct opass_bypass {
	Onnx__NodeProto **nodes;   /* the graph's own node array */
	size_t n_nodes;
	struct { char **slot; char *was; } *swaps;
	size_t n_swaps;
};

int opass_bypass_take(Onnx__GraphProto *g, const struct opass_state *state, struct opass_bypass *b);
void opass_bypass_restore(Onnx__GraphProto *g, struct opass_bypass *b);

/* How statistics are collected. */
struct opass_collect {
	struct onnxpass_model *model;
	const struct opass_state *state;
	const char *calibration;  /* --calibration PATH */
	unsigned threads;         /* ORT intra-op threads (0: ORT's default) */
	bool full;                /* H = X^T X, not only the column sums of squares */
};

struct opass_ort;
struct opass_ort_session;

/* The session collect runs: the model as it is now, with the active sites'
 * inputs (names) as extra outputs (session.c). */
int opass_calib_session_open(const struct opass_collect *how, struct opass_ort *ort,
			     const char **names, size_t n_names,
			     struct opass_ort_session **ret_session, struct onnxpass_error *err);

/* Run the model (as it is now) on every calibration batch and accumulate
 * the statistics of the active sites (reset first, finished after). */
int opass_sites_collect(struct opass_sites *sites, const struct opass_collect *how,
			struct onnxpass_error *err);

/* step for wanda / sparsegpt (prune.c): levels[i] is group i's level
 * (replaced by the allocated ones with "allocate": "sensitivity"). */
int opass_calibrated_step(struct onnxpass_model *model, struct opass_state *state,
			  const struct opass_config *config, double *levels,
			  struct onnxpass_error *err);
