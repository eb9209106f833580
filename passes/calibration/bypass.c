/* SPDX-License-Identifier: MIT */
/*
 * The calibration copy of a prepared graph runs without ORT's graph
 * optimizers (they would read the weights that ORT gets in place from the
 * model's placeholder instead), so prepare's mask nodes would run on every
 * batch. Where a group's mask still keeps everything they change nothing:
 *
 * Before:   W ─► Mul(W, Cast(W_mask)) ─► MatMul / Gemm / Conv [or Transpose]
 * After:    W ─────────────────────────► MatMul / Gemm / Conv [or Transpose]
 *
 * Conditions: the mask is all true, or this run's SparseGPT step wrote W with
 * its mask applied (a masked weight stays constant, so ORT prepacks it and
 * computes no Mul per batch); the Mul output has exactly one reader
 * in the main graph; the Mul and Cast are prepare's. Everything is put back
 * by opass_bypass_restore (names are swapped, not copied).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "calibration/calibration.h"
#include "graph.h"
#include "strmap.h"

static bool mask_changes_nothing(const struct opass_group *g)
{
	if (g->mask_in_weight)
		return false;
	if (g->weight_masked)
		return true;
	for (size_t i = 0; i < g->mask->raw_data.len; i++)
		if (!g->mask->raw_data.data[i])
			return false;
	return true;
}

struct group_nodes {
	size_t mul, cast;    /* node index + 1, or 0 */
	char **slot;      /* the one reader's input */
	size_t readers;
};

/* Index prepare's nodes and the readers of each bypassable group. */
static int nodes_find(const Onnx__GraphProto *g, const struct opass_state *state,
		      struct group_nodes *gn)
{
	struct opass_strmap out = { 0 }, cast = { 0 };
	void *v;
	int r = 0;

	for (size_t i = 0; r == 0 && i < state->n_groups; i++) {
		const struct opass_group *grp = &state->groups[i];
		const char *o = opass_json_string(grp->json, "output");
		const char *c = opass_json_string(grp->json, "cast_output");

		if (o && c && grp->weight.graph == g && mask_changes_nothing(grp))
			r = opass_strmap_put(&out, o, (void *)(i + 1)) < 0 ||
			    opass_strmap_put(&cast, c, (void *)(i + 1)) < 0 ? -ENOMEM : 0;
	}
	for (size_t n = 0; r == 0 && n < g->n_node; n++) {
		Onnx__NodeProto *node = g->node[n];

		for (size_t k = 0; k < node->n_input; k++)
			if (opass_strmap_get(&out, node->input[k], &v)) {
				gn[(size_t)v - 1].readers++;
				gn[(size_t)v - 1].slot = &node->input[k];
			}
		if (node->n_output != 1)
			continue;
		if (opass_node_is(node, "Mul") && opass_strmap_get(&out, node->output[0], &v))
			gn[(size_t)v - 1].mul = n + 1;
		if (opass_node_is(node, "Cast") && opass_strmap_get(&cast, node->output[0], &v))
			gn[(size_t)v - 1].cast = n + 1;
	}
	opass_strmap_fini(&out);
	opass_strmap_fini(&cast);
	return r;
}

int opass_bypass_take(Onnx__GraphProto *g, const struct opass_state *state, struct opass_bypass *b)
{
	struct group_nodes *gn = calloc(state->n_groups + 1, sizeof(*gn));
	Onnx__NodeProto **kept = calloc(g->n_node + 1, sizeof(*kept));
	bool *drop = calloc(g->n_node + 1, sizeof(*drop));
	size_t n_kept = 0;
	int r = gn && kept && drop ? nodes_find(g, state, gn) : -ENOMEM;

	*b = (struct opass_bypass){ .swaps = calloc(state->n_groups + 1, sizeof(*b->swaps)) };
	if (r == 0 && !b->swaps)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < state->n_groups; i++) {
		if (gn[i].readers != 1 || !gn[i].mul || !gn[i].cast)
			continue;
		b->swaps[b->n_swaps].slot = gn[i].slot;
		b->swaps[b->n_swaps++].was = *gn[i].slot;
		*gn[i].slot = (char *)opass_json_string(state->groups[i].json, "weight");
		drop[gn[i].mul - 1] = drop[gn[i].cast - 1] = true;
	}
	for (size_t n = 0; r == 0 && n < g->n_node; n++)
		if (!drop[n])
			kept[n_kept++] = g->node[n];
	if (r == 0) {
		b->nodes = g->node;
		b->n_nodes = g->n_node;
		g->node = kept;
		g->n_node = n_kept;
		kept = NULL;
	}
	free(kept);
	free(drop);
	free(gn);
	return r;
}

void opass_bypass_restore(Onnx__GraphProto *g, struct opass_bypass *b)
{
	for (size_t i = 0; i < b->n_swaps; i++)
		*b->swaps[i].slot = b->swaps[i].was;
	if (b->nodes) {
		free(g->node);
		g->node = b->nodes;
		g->n_node = b->n_nodes;
	}
	free(b->swaps);
	*b = (struct opass_bypass){ 0 };
}
