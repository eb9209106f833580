/* SPDX-License-Identifier: MIT */
/*
 * The typed half of weight_norm.c, included once per accumulation type with:
 *   WN_T (float | double), WN_U (the same-width unsigned integer), WN_SIGN and
 *   WN_EXP_ONES (its sign bit and +inf's bits), WN_ABS (fabsf | fabs),
 *   WN_FN(name) (a suffixed name), WN_SELECT and WN_SELECT_CM (the selection
 *   functions: ties in index order, in column-major order).
 * Norms, block sums and block scores are all computed in WN_T, as torch does
 * in the weight's accumulation type.
 */

struct WN_FN(scratch) {
	WN_T *scores;           /* nb block scores */
	uint8_t *pruned;        /* nb: 1 where the tensor mask is zero */
	WN_T *keys;             /* br * bc norms of one block */
	uint8_t *chosen;        /* br * bc */
	WN_U *sel;              /* max(nb, br * bc) selection scratch */
	bool own_sel;           /* sel was allocated here */
	bool own_scores;        /* scores was allocated here */
};

static void WN_FN(scratch_free)(struct WN_FN(scratch) *s)
{
	if (s->own_scores)
		free(s->scores);
	free(s->pruned);
	free(s->keys);
	free(s->chosen);
	if (s->own_sel)
		free(s->sel);
}

/* sel: the caller's selection scratch (rows * cols entries), or NULL;
 * scores: where block scores may go, or NULL (allocated here). */
static int WN_FN(scratch_alloc)(struct WN_FN(scratch) *s, const struct wn_grid *g, WN_U *sel,
				WN_T *scores)
{
	size_t bs = g->br * g->bc;
	size_t nsel = g->nb > bs ? g->nb : bs;

	*s = (struct WN_FN(scratch)){
		.scores = scores ? scores : malloc(g->nb * sizeof(WN_T)),
		.own_scores = !scores,
		.pruned = malloc(g->nb),
		.keys = malloc(bs * sizeof(WN_T)),
		.chosen = malloc(bs),
		.sel = sel ? sel : malloc(nsel * sizeof(WN_U)),
		.own_sel = !sel,
	};
	if (!s->scores || !s->pruned || !s->keys || !s->chosen || !s->sel) {
		WN_FN(scratch_free)(s);
		return -ENOMEM;
	}
	return 0;
}

/* n(x): |x| (norm 1) or x * x (norm 2). */
static inline WN_T WN_FN(norm)(WN_T v, int norm)
{
	return norm == 1 ? WN_ABS(v) : v * v;
}

/* Add n(x) of one row to the running sums of the blocks it crosses. */
static void WN_FN(row_sums)(const WN_T *row, const struct wn_grid *g, int norm, WN_T *sums)
{
	if (g->bc == 1) {
		for (size_t c = 0; c < g->cols; c++)
			sums[c] += WN_FN(norm)(row[c], norm);
		return;
	}
	if (g->bc == 4 && g->cols % 4 == 0) {
		for (size_t bj = 0; bj < g->nbc; bj++) {
			const WN_T *p = row + 4 * bj;
			WN_T acc = sums[bj];

			acc += WN_FN(norm)(p[0], norm);
			acc += WN_FN(norm)(p[1], norm);
			acc += WN_FN(norm)(p[2], norm);
			acc += WN_FN(norm)(p[3], norm);
			sums[bj] = acc;
		}
		return;
	}
	for (size_t bj = 0, c0 = 0; c0 < g->cols; bj++, c0 += g->bc) {
		size_t c1 = wn_min(c0 + g->bc, g->cols);
		WN_T acc = sums[bj];

		for (size_t c = c0; c < c1; c++)
			acc += WN_FN(norm)(row[c], norm);
		sums[bj] = acc;
	}
}

/*
 * All block scores, streaming over the rows: each block's sum still runs over
 * its elements in row-major order, as avg_pool2d's does.
 */
static void WN_FN(block_scores)(const WN_T *v, const struct wn_grid *g, int norm, WN_T *scores)
{
	if (g->br == 1 && g->bc == 1) {
		for (size_t i = 0; i < g->nb; i++)
			scores[i] = WN_FN(norm)(v[i], norm);
		return;
	}
	for (size_t bi = 0; bi < g->nbr; bi++) {
		WN_T *sums = scores + bi * g->nbc;
		size_t r0 = bi * g->br, r1 = wn_min(r0 + g->br, g->rows);

		for (size_t bj = 0; bj < g->nbc; bj++)
			sums[bj] = 0;
		for (size_t r = r0; r < r1; r++)
			WN_FN(row_sums)(v + r * g->cols, g, norm, sums);
		for (size_t bj = 0; bj < g->nbc; bj++) {
			size_t c0 = bj * g->bc;
			size_t count = (r1 - r0) * (wn_min(c0 + g->bc, g->cols) - c0);

			sums[bj] = sums[bj] / (WN_T)count;
		}
	}
}

/* Tensor mask: s->pruned[b] = 1 for the blocks whose tensor-mask value is zero. */
static void WN_FN(tensor_mask)(const WN_T *v, const struct wn_grid *g,
			       const struct opass_weight_norm_args *a, struct WN_FN(scratch) *s)
{
	size_t k;

	if (a->sparsity_level >= 1.0) {
		memset(s->pruned, 1, g->nb);
		return;
	}
	k = wn_tensor_k(a->sparsity_level, g->nb);
	if (k > 0)
		WN_FN(block_scores)(v, g, a->norm, s->scores);
	/* k <= nb - 1 < nb: cannot fail */
	if (g->transposed)
		(void)WN_SELECT_CM(s->scores, g->nb, g->nbc, k, s->sel, s->pruned);
	else
		(void)WN_SELECT(s->scores, g->nb, k, s->sel, s->pruned);
}

/* Order-preserving integer key of a norm (norms are >= +0 or NaN): the bits
 * without the sign, every NaN mapped above +inf and equal to each other. */
static inline WN_U WN_FN(key)(WN_T n)
{
	WN_U u;

	memcpy(&u, &n, sizeof(u));
	u &= ~WN_SIGN;
	return u > WN_EXP_ONES ? (WN_U)~(WN_U)0 : u;
}

/* How many of a block's four keys rank before each (ties: lower index
 * first); element j is kept when at least z rank before it, or when the
 * block is not pruned. Branch-free, so that loops over blocks vectorize. */
static inline void WN_FN(rank_4)(WN_U k0, WN_U k1, WN_U k2, WN_U k3, size_t z, uint8_t keep,
				 uint8_t *m0, uint8_t *m1, uint8_t *m2, uint8_t *m3)
{
	size_t b0 = (size_t)(k1 < k0) + (k2 < k0) + (k3 < k0);
	size_t b1 = (size_t)(k0 <= k1) + (k2 < k1) + (k3 < k1);
	size_t b2 = (size_t)(k0 <= k2) + (k1 <= k2) + (k3 < k2);
	size_t b3 = (size_t)(k0 <= k3) + (k1 <= k3) + (k2 <= k3);

	*m0 = keep | (b0 >= z);
	*m1 = keep | (b1 >= z);
	*m2 = keep | (b2 >= z);
	*m3 = keep | (b3 >= z);
}

/* Block masks of nb 1 x 4 blocks, block b being v[4b .. 4b + 3]. */
static void WN_FN(block_masks_1x4)(const WN_T *v, size_t nb, int norm, size_t z,
				   const uint8_t *pruned, uint8_t *mask)
{
	for (size_t b = 0; b < nb; b++) {
		const WN_T *p = v + 4 * b;
		uint8_t *m = mask + 4 * b;

		WN_FN(rank_4)(WN_FN(key)(WN_FN(norm)(p[0], norm)), WN_FN(key)(WN_FN(norm)(p[1], norm)),
			      WN_FN(key)(WN_FN(norm)(p[2], norm)), WN_FN(key)(WN_FN(norm)(p[3], norm)),
			      z, !pruned[b], m, m + 1, m + 2, m + 3);
	}
}

/* Block masks of the 4 x 1 blocks of rows v[0 .. 3] (cols each): block c
 * is column c. */
static void WN_FN(block_masks_4x1)(const WN_T *v, size_t cols, int norm, size_t z,
				   const uint8_t *pruned, uint8_t *mask)
{
	for (size_t c = 0; c < cols; c++)
		WN_FN(rank_4)(WN_FN(key)(WN_FN(norm)(v[c], norm)),
			      WN_FN(key)(WN_FN(norm)(v[cols + c], norm)),
			      WN_FN(key)(WN_FN(norm)(v[2 * cols + c], norm)),
			      WN_FN(key)(WN_FN(norm)(v[3 * cols + c], norm)),
			      z, !pruned[c], mask + c, mask + cols + c, mask + 2 * cols + c,
			      mask + 3 * cols + c);
}

/* Block mask restricted to block b: zero its zeros_per_block smallest in-bounds norms. */
static void WN_FN(block_mask)(const WN_T *v, const struct wn_grid *g, size_t b,
			      const struct opass_weight_norm_args *a, struct WN_FN(scratch) *s,
			      uint8_t *mask)
{
	size_t r0, r1, c0, c1, m = 0, z = (size_t)a->zeros_per_block;

	wn_block_bounds(g, b, &r0, &r1, &c0, &c1);
	for (size_t r = r0; r < r1; r++)
		for (size_t c = c0; c < c1; c++)
			s->keys[m++] = WN_FN(norm)(v[r * g->cols + c], a->norm);
	if (z > m)
		z = m;
	(void)WN_SELECT(s->keys, m, z, s->sel, s->chosen);
	m = 0;
	for (size_t r = r0; r < r1; r++)
		for (size_t c = c0; c < c1; c++)
			mask[r * g->cols + c] = !s->chosen[m++];
}

/* Block masks of every block the tensor mask prunes. */
static void WN_FN(block_masks)(const WN_T *values, const struct wn_grid *g,
			       const struct opass_weight_norm_args *args, struct WN_FN(scratch) *s,
			       uint8_t *mask)
{
	size_t z = (size_t)args->zeros_per_block;

	if (g->br == 1 && g->bc == 4 && g->cols % 4 == 0) {
		WN_FN(block_masks_1x4)(values, g->nb, args->norm, z, s->pruned, mask);
		return;
	}
	if (g->br == 4 && g->bc == 1 && g->rows % 4 == 0) {
		/* block (bi, c) is column c of rows 4 bi .. 4 bi + 3 */
		for (size_t bi = 0; bi < g->nbr; bi++)
			WN_FN(block_masks_4x1)(values + bi * 4 * g->cols, g->cols, args->norm, z,
					       s->pruned + bi * g->cols, mask + bi * 4 * g->cols);
		return;
	}
	for (size_t b = 0; b < g->nb; b++)
		if (s->pruned[b])
			WN_FN(block_mask)(values, g, b, args, s, mask);
}

/*
 * The general case (not all ones, not all zeros). scores (NULL, or
 * rows * cols entries) may hold the block scores; it may be values itself
 * only for 1x1 blocks, whose block masks never read the values again.
 * transposed: values is the view's transpose (args already swapped), the
 * mask comes out in that order and ties between blocks follow the view.
 */
static int WN_FN(mask)(const WN_T *values, size_t rows, size_t cols,
		       const struct opass_weight_norm_args *args, WN_U *sel, WN_T *scores,
		       bool transposed, uint8_t *ret_mask)
{
	int64_t bs = args->block_rows * args->block_cols;
	struct WN_FN(scratch) s;
	struct wn_grid g;
	int r;

	wn_grid_init(&g, rows, cols, args);
	g.transposed = transposed;
	if (scores == values && !(g.br == 1 && g.bc == 1))
		scores = NULL;
	r = WN_FN(scratch_alloc)(&s, &g, sel, scores);
	if (r < 0)
		return r;
	WN_FN(tensor_mask)(values, &g, args, &s);
	/* mask = T OR B: only blocks pruned by T can lose elements. */
	if (args->zeros_per_block == bs) {
		wn_zero_pruned(&g, s.pruned, ret_mask);
	} else {
		memset(ret_mask, 1, rows * cols);
		WN_FN(block_masks)(values, &g, args, &s, ret_mask);
	}
	WN_FN(scratch_free)(&s);
	return 0;
}
