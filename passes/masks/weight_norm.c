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
	bool transposed;        /* the matrix is the view's transpose: ties
				 * between blocks go in column-major order */
};

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
	g->transposed = false;
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

/* Python round(): nearest integer, halves to even. x >= 0. */
static double wn_round_half_even(double x)
{
	double fl = floor(x), frac = x - fl;

	if (frac > 0.5 || (frac == 0.5 && fmod(fl, 2.0) != 0.0))
		return fl + 1.0;
	return fl;
}

/* The mask of whole pruned blocks: every element written, row by row. */
static void wn_zero_pruned(const struct wn_grid *g, const uint8_t *pruned, uint8_t *mask)
{
	if (g->bc == 1) {
		for (size_t r = 0; r < g->rows; r++) {
			const uint8_t *p = pruned + r / g->br * g->nbc;

			for (size_t c = 0; c < g->cols; c++)
				mask[r * g->cols + c] = !p[c];
		}
		return;
	}
	if (g->br == 1 && g->bc == 4 && g->cols % 4 == 0) {
		for (size_t b = 0; b < g->nb; b++) {
			uint32_t v = pruned[b] ? 0 : 0x01010101u;

			memcpy(mask + 4 * b, &v, 4);
		}
		return;
	}
	memset(mask, 1, g->rows * g->cols);
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

/* k = round(sparsity_level * nb) (Python round), clamped to [0, nb - 1]. */
static size_t wn_tensor_k(double sparsity_level, size_t nb)
{
	double k = wn_round_half_even(sparsity_level * (double)nb);

	return k > (double)(nb - 1) ? nb - 1 : (size_t)k;
}

#define WN_T float
#define WN_U uint32_t
#define WN_SIGN (UINT32_C(1) << 31)
#define WN_EXP_ONES UINT32_C(0x7f800000)
#define WN_ABS fabsf
#define WN_FN(name) wn_##name##_f32
#define WN_SELECT opass_select_smallest_f32_with
#define WN_SELECT_CM opass_select_smallest_f32_cm_with
#include "weight_norm_impl.h"
#undef WN_T
#undef WN_U
#undef WN_SIGN
#undef WN_EXP_ONES
#undef WN_ABS
#undef WN_FN
#undef WN_SELECT
#undef WN_SELECT_CM

#define WN_T double
#define WN_U uint64_t
#define WN_SIGN (UINT64_C(1) << 63)
#define WN_EXP_ONES UINT64_C(0x7ff0000000000000)
#define WN_ABS fabs
#define WN_FN(name) wn_##name##_f64
#define WN_SELECT opass_select_smallest_with
#define WN_SELECT_CM opass_select_smallest_cm_with
#include "weight_norm_impl.h"

/* 1 when the mask is all ones or all zeros (and written), 0 for the general
 * case, -EINVAL for invalid arguments. */
static int wn_trivial(const void *values, size_t rows, size_t cols,
		      const struct opass_weight_norm_args *args, uint8_t *ret_mask)
{
	int r = wn_check_args(args);

	if (r < 0)
		return r;
	if (cols > 0 && rows > SIZE_MAX / cols)
		return -EINVAL;
	if (rows == 0 || cols == 0)
		return 1;
	if (!values || !ret_mask)
		return -EINVAL;
	if (args->sparsity_level <= 0.0 || args->zeros_per_block == 0) {
		memset(ret_mask, 1, rows * cols);
		return 1;
	}
	if (args->sparsity_level >= 1.0 &&
	    args->zeros_per_block == args->block_rows * args->block_cols) {
		memset(ret_mask, 0, rows * cols);
		return 1;
	}
	return 0;
}

int opass_weight_norm_mask_f32_with(float *values, size_t rows, size_t cols,
				    const struct opass_weight_norm_args *args, uint32_t *scratch,
				    uint8_t *ret_mask)
{
	int r = wn_trivial(values, rows, cols, args, ret_mask);

	if (r != 0)
		return r < 0 ? r : 0;
	return wn_mask_f32(values, rows, cols, args, scratch, values, false, ret_mask);
}

int opass_weight_norm_mask_f32_transposed(const float *stored, size_t rows, size_t cols,
					  const struct opass_weight_norm_args *args, float *scores,
					  uint32_t *scratch, uint8_t *ret_mask)
{
	struct opass_weight_norm_args t;
	int r = wn_trivial(stored, rows, cols, args, ret_mask);

	if (r != 0)
		return r < 0 ? r : 0;
	if (args->block_rows != 1 && args->block_cols != 1)
		return -EINVAL;
	/* the view's blocks are the storage's, rows and columns swapped */
	t = *args;
	t.block_rows = args->block_cols;
	t.block_cols = args->block_rows;
	return wn_mask_f32(stored, cols, rows, &t, scratch, scores, true, ret_mask);
}

int opass_weight_norm_mask_f32(const float *values, size_t rows, size_t cols,
			       const struct opass_weight_norm_args *args, uint8_t *ret_mask)
{
	int r = wn_trivial(values, rows, cols, args, ret_mask);

	if (r != 0)
		return r < 0 ? r : 0;
	return wn_mask_f32(values, rows, cols, args, NULL, NULL, false, ret_mask);
}

int opass_weight_norm_mask(const double *values, size_t rows, size_t cols, bool wide,
			   const struct opass_weight_norm_args *args, uint8_t *ret_mask)
{
	int r = wn_trivial(values, rows, cols, args, ret_mask);
	float *f;

	if (r != 0)
		return r < 0 ? r : 0;
	if (wide)
		return wn_mask_f64(values, rows, cols, args, NULL, NULL, false, ret_mask);
	f = malloc(rows * cols * sizeof(*f));
	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < rows * cols; i++)
		f[i] = (float)values[i];
	r = wn_mask_f32(f, rows, cols, args, NULL, f, false, ret_mask);
	free(f);
	return r;
}
