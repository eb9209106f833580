/* SPDX-License-Identifier: MIT */
/*
 * WeightNormSparsifier.update_mask of torch 1.13 (SPEC 6), in linear time.
 *
 * Block scores follow torch's avg_pool2d(ceil_mode=True) on CPU exactly: the
 * norms of a block's in-bounds elements are summed in row-major order in the
 * weight's accumulation type (float32, or double when wide), then divided by
 * their count in that type.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "masks/masks.h"
#include "select.h"

struct wn_grid {
	size_t rows, cols;
	size_t br, bc;          /* block dims clamped to the matrix */
	size_t nbr, nbc, nb;    /* blocks per column, per row, total */
};

struct wn_scratch {
	double *scores;         /* nb block scores */
	uint8_t *pruned;        /* nb: 1 where the tensor mask is zero */
	double *keys;           /* br * bc norms of one block */
	uint8_t *chosen;        /* br * bc */
	uint64_t *sel;          /* max(nb, br * bc) for opass_select_smallest_with */
};

static void wn_scratch_free(struct wn_scratch *s)
{
	if (!s)
		return;
	free(s->scores);
	free(s->pruned);
	free(s->keys);
	free(s->chosen);
	free(s->sel);
}

static int wn_scratch_alloc(struct wn_scratch *s, const struct wn_grid *g)
{
	size_t bs = g->br * g->bc;
	size_t nsel = g->nb > bs ? g->nb : bs;

	*s = (struct wn_scratch){
		.scores = malloc(g->nb * sizeof(double)),
		.pruned = malloc(g->nb),
		.keys = malloc(bs * sizeof(double)),
		.chosen = malloc(bs),
		.sel = malloc(nsel * sizeof(uint64_t)),
	};
	if (!s->scores || !s->pruned || !s->keys || !s->chosen || !s->sel) {
		wn_scratch_free(s);
		return -ENOMEM;
	}
	return 0;
}

static int wn_check_args(const struct opass_weight_norm_args *a)
{
	if (!a || isnan(a->sparsity_level))
		return -EINVAL;
	if (a->block_rows < 1 || a->block_cols < 1 || a->block_rows > INT64_MAX / a->block_cols)
		return -EINVAL;
	if (a->zeros_per_block < 0 || a->zeros_per_block > a->block_rows * a->block_cols)
		return -EINVAL;
	if (a->norm != 1 && a->norm != 2)
		return -EINVAL;
	return 0;
}

static size_t wn_clamp_dim(int64_t block, size_t dim)
{
	return (uint64_t)block < dim ? (size_t)block : dim;
}

static void wn_grid_init(struct wn_grid *g, size_t rows, size_t cols,
			 const struct opass_weight_norm_args *a)
{
	g->rows = rows;
	g->cols = cols;
	g->br = wn_clamp_dim(a->block_rows, rows);
	g->bc = wn_clamp_dim(a->block_cols, cols);
	g->nbr = (rows + g->br - 1) / g->br;
	g->nbc = (cols + g->bc - 1) / g->bc;
	g->nb = g->nbr * g->nbc;
}

/* n(x) in the weight's accumulation type, returned widened. */
static double wn_norm(double v, bool wide, int norm)
{
	float f, n;

	if (wide)
		return norm == 1 ? fabs(v) : v * v;
	f = (float)v;
	n = norm == 1 ? fabsf(f) : f * f;
	return n;
}

static size_t wn_min(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* The in-bounds rectangle of block b: rows [*r0, *r1), cols [*c0, *c1). */
static void wn_block_bounds(const struct wn_grid *g, size_t b, size_t *r0, size_t *r1,
			    size_t *c0, size_t *c1)
{
	*r0 = b / g->nbc * g->br;
	*c0 = b % g->nbc * g->bc;
	*r1 = wn_min(*r0 + g->br, g->rows);
	*c1 = wn_min(*c0 + g->bc, g->cols);
}

/* Add n(x) of one row to the running sums of the blocks it crosses. */
static void wn_row_sums(const double *row, const struct wn_grid *g, bool wide, int norm,
			double *sums)
{
	for (size_t bj = 0, c0 = 0; c0 < g->cols; bj++, c0 += g->bc) {
		size_t c1 = wn_min(c0 + g->bc, g->cols);

		if (wide) {
			double acc = sums[bj];

			for (size_t c = c0; c < c1; c++)
				acc += wn_norm(row[c], true, norm);
			sums[bj] = acc;
		} else {
			float acc = (float)sums[bj];   /* holds a float32 value exactly */

			for (size_t c = c0; c < c1; c++)
				acc += (float)wn_norm(row[c], false, norm);
			sums[bj] = acc;
		}
	}
}

/*
 * All block scores, streaming over the rows: each block's sum still runs over
 * its elements in row-major order, as avg_pool2d's does.
 */
static void wn_block_scores(const double *v, const struct wn_grid *g, bool wide, int norm,
			    double *scores)
{
	for (size_t bi = 0; bi < g->nbr; bi++) {
		double *sums = scores + bi * g->nbc;
		size_t r0 = bi * g->br, r1 = wn_min(r0 + g->br, g->rows);

		for (size_t bj = 0; bj < g->nbc; bj++)
			sums[bj] = 0.0;
		for (size_t r = r0; r < r1; r++)
			wn_row_sums(v + r * g->cols, g, wide, norm, sums);
		for (size_t bj = 0; bj < g->nbc; bj++) {
			size_t c0 = bj * g->bc;
			size_t count = (r1 - r0) * (wn_min(c0 + g->bc, g->cols) - c0);

			if (wide)
				sums[bj] = sums[bj] / (double)count;
			else
				sums[bj] = (float)sums[bj] / (float)count;
		}
	}
}

/* Python round(): nearest integer, halves to even. x >= 0. */
static double wn_round_half_even(double x)
{
	double fl = floor(x), frac = x - fl;

	if (frac > 0.5 || (frac == 0.5 && fmod(fl, 2.0) != 0.0))
		return fl + 1.0;
	return fl;
}

/* Tensor mask: s->pruned[b] = 1 for the blocks whose tensor-mask value is zero. */
static void wn_tensor_mask(const double *v, const struct wn_grid *g, bool wide,
			   const struct opass_weight_norm_args *a, struct wn_scratch *s)
{
	double k;

	if (a->sparsity_level >= 1.0) {
		memset(s->pruned, 1, g->nb);
		return;
	}
	k = wn_round_half_even(a->sparsity_level * (double)g->nb);
	if (k > (double)(g->nb - 1))
		k = (double)(g->nb - 1);
	if (k > 0)
		wn_block_scores(v, g, wide, a->norm, s->scores);
	/* k <= nb - 1 < nb: cannot fail */
	(void)opass_select_smallest_with(s->scores, g->nb, (size_t)k, s->sel, s->pruned);
}

/* Block mask restricted to block b: zero its zeros_per_block smallest in-bounds norms. */
static void wn_block_mask(const double *v, const struct wn_grid *g, size_t b, bool wide,
			  const struct opass_weight_norm_args *a, struct wn_scratch *s,
			  uint8_t *mask)
{
	size_t r0, r1, c0, c1, m = 0, z = (size_t)a->zeros_per_block;

	wn_block_bounds(g, b, &r0, &r1, &c0, &c1);
	for (size_t r = r0; r < r1; r++)
		for (size_t c = c0; c < c1; c++)
			s->keys[m++] = wn_norm(v[r * g->cols + c], wide, a->norm);
	if (z > m)
		z = m;
	(void)opass_select_smallest_with(s->keys, m, z, s->sel, s->chosen);
	m = 0;
	for (size_t r = r0; r < r1; r++)
		for (size_t c = c0; c < c1; c++)
			mask[r * g->cols + c] = !s->chosen[m++];
}

/* Zero every element of the pruned blocks, row by row. */
static void wn_zero_pruned(const struct wn_grid *g, const uint8_t *pruned, uint8_t *mask)
{
	for (size_t r = 0; r < g->rows; r++) {
		const uint8_t *p = pruned + r / g->br * g->nbc;
		uint8_t *row = mask + r * g->cols;

		for (size_t bj = 0, c0 = 0; c0 < g->cols; bj++, c0 += g->bc) {
			if (!p[bj])
				continue;
			for (size_t c = c0, c1 = wn_min(c0 + g->bc, g->cols); c < c1; c++)
				row[c] = 0;
		}
	}
}

int opass_weight_norm_mask(const double *values, size_t rows, size_t cols, bool wide,
			   const struct opass_weight_norm_args *args, uint8_t *ret_mask)
{
	struct wn_scratch s;
	struct wn_grid g;
	int64_t bs;
	int r;

	r = wn_check_args(args);
	if (r < 0)
		return r;
	if (cols > 0 && rows > SIZE_MAX / cols)
		return -EINVAL;
	if (rows == 0 || cols == 0)
		return 0;
	if (!values || !ret_mask)
		return -EINVAL;
	bs = args->block_rows * args->block_cols;
	if (args->sparsity_level <= 0.0 || args->zeros_per_block == 0) {
		memset(ret_mask, 1, rows * cols);
		return 0;
	}
	if (args->sparsity_level >= 1.0 && args->zeros_per_block == bs) {
		memset(ret_mask, 0, rows * cols);
		return 0;
	}

	wn_grid_init(&g, rows, cols, args);
	r = wn_scratch_alloc(&s, &g);
	if (r < 0)
		return r;
	wn_tensor_mask(values, &g, wide, args, &s);
	/* mask = T OR B: only blocks pruned by T can lose elements. */
	memset(ret_mask, 1, rows * cols);
	if (args->zeros_per_block == bs)
		wn_zero_pruned(&g, s.pruned, ret_mask);
	else
		for (size_t b = 0; b < g.nb; b++)
			if (s.pruned[b])
				wn_block_mask(values, &g, b, wide, args, &s, ret_mask);
	wn_scratch_free(&s);
	return 0;
}
