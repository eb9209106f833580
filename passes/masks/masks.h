/* SPDX-License-Identifier: MIT */
/*
 * Mask algorithms of torch.ao.pruning on a 2-D view V[rows][cols]
 * (row-major, already gathered from the weight's own layout).
 * Masks are row-major uint8: 1 keeps an element, 0 prunes it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct opass_weight_norm_args {
	double sparsity_level;     /* torch sparsity_level */
	int64_t block_rows;        /* sparse_block_shape[0] >= 1 */
	int64_t block_cols;        /* sparse_block_shape[1] >= 1 */
	int64_t zeros_per_block;   /* 0 .. block_rows * block_cols */
	int norm;                  /* 1: |x|, 2: x*x */
};

/*
 * WeightNormSparsifier.update_mask (SPEC 6). values are the currently
 * masked weight (W * mask) widened to double; wide is true for float64
 * weights (norms and block scores computed in double), false for
 * float32/float16/bfloat16 (norms and block scores rounded to float32).
 * Returns 0, -EINVAL for invalid args, -ENOMEM.
 */
int opass_weight_norm_mask(const double *values, size_t rows, size_t cols, bool wide,
			   const struct opass_weight_norm_args *args, uint8_t *ret_mask);

/* The same for float32 values (weights of dtype float32, float16 or
 * bfloat16, widened exactly): norms and scores in float32. */
int opass_weight_norm_mask_f32(const float *values, size_t rows, size_t cols,
			       const struct opass_weight_norm_args *args, uint8_t *ret_mask);

/* The same with the caller's selection scratch (rows * cols entries), so
 * that a worker reuses one buffer across weights; values are overwritten. */
int opass_weight_norm_mask_f32_with(float *values, size_t rows, size_t cols,
				    const struct opass_weight_norm_args *args, uint32_t *scratch,
				    uint8_t *ret_mask);

/* The same for a weight stored transposed (stored[j][i] = V[i][j]; rows and
 * cols are V's), without gathering V: ret_mask comes out in stored's order.
 * Blocks must be lines (block_rows or block_cols 1, else -EINVAL), so that
 * each block sums its norms in V's order; ties follow V's order. scores
 * (rows * cols floats, not aliasing stored, or NULL) and scratch (rows * cols)
 * are the caller's; stored is only read. */
int opass_weight_norm_mask_f32_transposed(const float *stored, size_t rows, size_t cols,
					  const struct opass_weight_norm_args *args, float *scores,
					  uint32_t *scratch, uint8_t *ret_mask);

/* NearlyDiagonalSparsifier.update_mask: ones where |r - c| <= nearliness / 2,
 * all zeros if nearliness <= 0. -EINVAL for even nearliness or
 * nearliness / 2 >= min(rows, cols). */
int opass_nearly_diagonal_mask(size_t rows, size_t cols, int64_t nearliness, uint8_t *ret_mask);
