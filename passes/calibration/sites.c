/* SPDX-License-Identifier: MIT */
/*
 * Which layer input feeds each group of a prepared model. In the prepared
 * graph a weight reaches its consumer through prepare's Mul (the group's
 * "output"), perhaps then a Transpose(perm=[1, 0]):
 *
 *   X ─────────────────────────────► MatMul / Gemm / Conv ─► Y
 *   W ─► Mul(W, Cast(mask)) [─► Transpose] ─┘
 *
 * The site is X with the consumer's geometry. Sequential waves number the
 * groups so that a group's input depends only on groups of earlier waves.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibration/calibration.h"
#include "error.h"
#include "graph.h"
#include "strmap.h"

/* The first main-graph consumer of every value. */
static int consumers_index(const Onnx__GraphProto *g, struct opass_strmap *map)
{
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_input; k++) {
			const char *in = g->node[i]->input[k];

			if (*in && !opass_strmap_get(map, in, NULL) && opass_strmap_put(map, in, g->node[i]) < 0)
				return -ENOMEM;
		}
	return 0;
}

static const Onnx__NodeProto *group_consumer(const struct opass_strmap *consumers, const char *out)
{
	void *node = NULL;

	if (!out || !opass_strmap_get(consumers, out, &node))
		return NULL;
	if (opass_node_is(node, "Transpose") && ((Onnx__NodeProto *)node)->n_output == 1 &&
	    !opass_strmap_get(consumers, ((Onnx__NodeProto *)node)->output[0], &node))
		return NULL;
	return node;
}

/* ints attribute name into v[n] (values kept when absent). */
static int attr_ints(const Onnx__NodeProto *node, const char *name, int64_t *v, size_t n)
{
	const Onnx__AttributeProto *a = opass_node_attr(node, name);

	if (!a)
		return 0;
	if (a->n_ints != n)
		return -EINVAL;
	memcpy(v, a->ints, n * sizeof(*v));
	return 0;
}

/* Conv attributes; 1-D convs become 2-D of height 1. */
static int site_conv(struct opass_site *s, const Onnx__NodeProto *node, const Onnx__TensorProto *w)
{
	const Onnx__AttributeProto *pad = opass_node_attr(node, "auto_pad");
	int64_t k[2] = { 1, 1 }, st[2] = { 1, 1 }, dil[2] = { 1, 1 }, pads[4] = { 0, 0, 0, 0 };
	size_t nd = w->n_dims - 2, off = 2 - nd;

	if (w->n_dims != 3 && w->n_dims != 4)
		return -ENOTSUP;
	s->conv1d = nd == 1;
	memcpy(k + off, w->dims + 2, nd * sizeof(*k));
	if (attr_ints(node, "strides", st + off, nd) < 0 || attr_ints(node, "dilations", dil + off, nd) < 0)
		return -EINVAL;
	if (nd == 2 && attr_ints(node, "pads", pads, 4) < 0)
		return -EINVAL;
	if (nd == 1 && (attr_ints(node, "pads", pads + 1, 2) < 0))
		return -EINVAL;
	if (nd == 1) { /* [begin, end] of the one axis -> top, left, bottom, right */
		pads[3] = pads[2];
		pads[2] = 0;
	}
	s->geom = (struct opass_conv_geom){
		.groups = opass_node_attr_int(node, "group", 1),
		.kernel = { k[0], k[1] }, .stride = { st[0], st[1] }, .dilation = { dil[0], dil[1] },
		.pads = { pads[0], pads[1], pads[2], pads[3] },
	};
	if (pad && pad->has_s && pad->s.len && strncmp((const char *)pad->s.data, "NOTSET", pad->s.len))
		s->auto_pad = strndup((const char *)pad->s.data, pad->s.len);
	s->n_groups = (size_t)s->geom.groups;
	return s->geom.groups >= 1 ? 0 : -EINVAL;
}

static int site_init(struct opass_site *s, const Onnx__NodeProto *node, const struct opass_group *g)
{
	*s = (struct opass_site){ .value = node->input[0], .dim = (size_t)g->map.cols, .n_groups = 1 };
	if (opass_node_is(node, "MatMul")) {
		s->kind = OPASS_SITE_MATMUL;
	} else if (opass_node_is(node, "Gemm")) {
		s->kind = OPASS_SITE_GEMM;
		s->trans_a = opass_node_attr_int(node, "transA", 0) != 0;
	} else if (opass_node_is(node, "Conv")) {
		s->kind = OPASS_SITE_CONV;
		return site_conv(s, node, g->weight.tensor);
	} else {
		return -ENOTSUP;
	}
	return 0;
}

static bool site_same(const struct opass_site *a, const struct opass_site *b)
{
	return strcmp(a->value, b->value) == 0 && a->kind == b->kind && a->trans_a == b->trans_a &&
	       a->dim == b->dim && a->n_groups == b->n_groups && a->conv1d == b->conv1d &&
	       memcmp(&a->geom, &b->geom, sizeof(a->geom)) == 0 &&
	       (a->auto_pad == b->auto_pad ||
		(a->auto_pad && b->auto_pad && strcmp(a->auto_pad, b->auto_pad) == 0));
}

/* Add the site of group i (or share an equal one). */
static int site_add(struct opass_sites *sites, size_t i, const Onnx__NodeProto *node,
		    const struct opass_group *g, struct onnxpass_error *err)
{
	struct opass_site s;
	int r = site_init(&s, node, g);

	if (r < 0)
		return opass_error(err, r, "calibration: group '%s': %s consumer %s is not supported",
				   g->name, node->op_type, r == -EINVAL ? "with invalid attributes" :
				   "of this rank or kind");
	if (s.kind == OPASS_SITE_CONV && (size_t)g->map.rows % s.n_groups)
		return opass_error(err, -EINVAL, "calibration: group '%s': %" PRId64
				   " output channels are not divisible into %zu groups", g->name,
				   g->map.rows, s.n_groups);
	for (size_t k = 0; k < sites->n; k++)
		if (site_same(&sites->items[k], &s)) {
			free((char *)s.auto_pad);
			sites->of_group[i] = k;
			return 0;
		}
	sites->of_group[i] = sites->n;
	sites->items[sites->n++] = s;
	return 0;
}

static void ptr_key(char key[32], const void *p)
{
	snprintf(key, 32, "%p", p);
}

/* Waves: a value's wave is the number of group consumers on its longest
 * path from the inputs; a group's wave is that of its input. */
static int sites_waves(const Onnx__GraphProto *g, const struct opass_state *state,
		       struct opass_sites *sites, const Onnx__NodeProto **nodes)
{
	struct opass_strmap level = { 0 }, group_of = { 0 };
	char key[32];
	int r = 0;

	for (size_t i = 0; r == 0 && i < state->n_groups; i++) {
		ptr_key(key, nodes[i]);
		r = opass_strmap_put_copy(&group_of, key, (void *)(uintptr_t)(i + 1));
	}
	for (size_t n = 0; r == 0 && n < g->n_node; n++) {
		const Onnx__NodeProto *node = g->node[n];
		uintptr_t in = 0, out;
		void *v;

		for (size_t k = 0; k < node->n_input; k++)
			if (opass_strmap_get(&level, node->input[k], &v) && (uintptr_t)v > in)
				in = (uintptr_t)v;
		out = in;
		ptr_key(key, node);
		if (opass_strmap_get(&group_of, key, &v)) {
			sites->wave[(uintptr_t)v - 1] = (unsigned)in;
			out = in + 1;
			if (out > sites->n_waves)
				sites->n_waves = (unsigned)out;
		}
		for (size_t k = 0; r == 0 && k < node->n_output; k++)
			r = opass_strmap_put(&level, node->output[k], (void *)out);
	}
	opass_strmap_fini(&level);
	opass_strmap_fini(&group_of);
	return r;
}

int opass_sites_find(Onnx__ModelProto *model, const struct opass_state *state,
		     struct opass_sites *ret_sites, struct onnxpass_error *err)
{
	struct opass_sites sites = { 0 };
	struct opass_strmap consumers = { 0 };
	const Onnx__NodeProto **nodes = calloc(state->n_groups + 1, sizeof(*nodes));
	int r = 0;

	sites.items = calloc(state->n_groups + 1, sizeof(*sites.items));
	sites.of_group = calloc(state->n_groups + 1, sizeof(*sites.of_group));
	sites.wave = calloc(state->n_groups + 1, sizeof(*sites.wave));
	if (!nodes || !sites.items || !sites.of_group || !sites.wave ||
	    consumers_index(model->graph, &consumers) < 0)
		r = opass_error(err, -ENOMEM, "out of memory");
	for (size_t i = 0; r == 0 && i < state->n_groups; i++) {
		const struct opass_group *g = &state->groups[i];

		nodes[i] = group_consumer(&consumers, opass_json_string(g->json, "output"));
		if (!nodes[i] || g->weight.graph != model->graph)
			r = opass_error(err, -ENOTSUP,
					"calibration: group '%s' is used inside a subgraph (If/Loop/Scan body), "
					"which calibration cannot observe: exclude it", g->name);
		else
			r = site_add(&sites, i, nodes[i], g, err);
	}
	if (r == 0 && sites_waves(model->graph, state, &sites, nodes) < 0)
		r = opass_error(err, -ENOMEM, "out of memory");
	opass_strmap_fini(&consumers);
	free(nodes);
	if (r < 0) {
		opass_sites_fini(&sites);
		return r;
	}
	*ret_sites = sites;
	return 0;
}

static void site_factors_free(struct opass_site *site)
{
	for (size_t k = 0; site->factors && k < site->n_groups; k++)
		opass_sparsegpt_factor_fini(&site->factors[k]);
	free(site->factors);
	site->factors = NULL;
}

void opass_site_reset(struct opass_site *site)
{
	site_factors_free(site);
	opass_stats_fini(&site->stats);
}

int opass_site_factors(struct opass_site *site, double percdamp,
		       const struct opass_sparsegpt_factor **ret_factors)
{
	size_t d = site->dim;
	float *full;
	int r = 0;

	if (site->factors && site->factors_damp == percdamp) {
		*ret_factors = site->factors;
		return 0;
	}
	site_factors_free(site);
	site->factors = calloc(site->n_groups, sizeof(*site->factors));
	if (!site->factors || !site->stats.h)
		return site->factors ? -EINVAL : -ENOMEM;
	full = malloc(d * d * sizeof(*full));
	if (!full)
		r = -ENOMEM;
	for (size_t k = 0; r == 0 && k < site->n_groups; k++) {
		opass_stats_unpack(&site->stats, k, full);
		r = opass_sparsegpt_factor(full, d, percdamp, &site->factors[k]);
	}
	free(full);
	site->factors_damp = percdamp;
	if (r < 0) {
		site_factors_free(site);
		return r;
	}
	*ret_factors = site->factors;
	return 0;
}

void opass_sites_fini(struct opass_sites *sites)
{
	for (size_t i = 0; sites && i < sites->n; i++) {
		free((char *)sites->items[i].auto_pad);
		opass_site_reset(&sites->items[i]);
	}
	if (sites) {
		free(sites->items);
		free(sites->scratch);
		free(sites->of_group);
		free(sites->wave);
		*sites = (struct opass_sites){ 0 };
	}
}
