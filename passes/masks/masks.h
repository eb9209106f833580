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

/*
 * Calibration-aware sparsifiers (SPEC 12) on a weight's view W[rows][cols]
 * = [out, in_features]. A pattern is unstructured (m == 1: the level is
 * the fraction pruned) or N:M (n zeros in every m consecutive inputs of a
 * row, from column 0; in a last partial group of len < m columns the m -
 * len missing ones count as pruned first: it loses max(0, n - (m - len)),
 * as if padded with zeros to m).
 * Ties go to the lower index; NaN scores are never pruned before numbers.
 */
struct opass_prune_pattern {
	double sparsity_level;
	int64_t n, m;
};

/* Wanda (Sun et al. 2023): score |W_ij| * sqrt(sq_j), sq_j = sum of x_j^2
 * over the calibration rows; per output row, the floor(cols * level)
 * lowest scores are pruned (unstructured), or N:M. */
int opass_wanda_mask(const float *w, size_t rows, size_t cols, const double *sq,
		     const struct opass_prune_pattern *pattern, uint8_t *ret_mask);

struct opass_sparsegpt_args {
	struct opass_prune_pattern pattern;
	size_t blocksize;   /* lazy-update column block (a multiple of m) */
};

/* What SparseGPT sweeps with, from H = X^T X (n x n, symmetric): columns
 * whose H_jj is 0 are dead (zeroed in W, H_jj taken as 1); percdamp *
 * mean(diag(H)) is added to the diagonal (ten times more, up to four
 * times, while the Cholesky factorisation fails); u is the upper factor of
 * (H + damp I)^-1 = U^T U, from LAPACK (float32). One factor serves every
 * weight that reads the same input. */
struct opass_sparsegpt_factor {
	float *u;        /* [n][n], row-major, lower part zero */
	uint8_t *dead;   /* [n] */
	size_t n;
};

/* -EINVAL, -ENOMEM, or -EDOM when H stays singular after dampening. */
int opass_sparsegpt_factor(const float *h, size_t n, double percdamp,
			   struct opass_sparsegpt_factor *ret_factor);
void opass_sparsegpt_factor_fini(struct opass_sparsegpt_factor *factor);

/*
 * SparseGPT (Frantar & Alistarh 2023): OBS pruning with reconstruction
 * from the factor of H (cols x cols). Dead columns are zeroed first; the
 * upper Cholesky factor U of H^-1 drives the column-by-column updates,
 * lazily applied per block of blocksize columns with BLAS. Unstructured: at the
 * start of each column block, the floor(rows * block_cols * level) lowest
 * w^2 / [H^-1]_jj^2 of the block are pruned. N:M: chosen per row group of
 * m columns when the sweep reaches it. w is updated in place (pruned
 * elements +0.0); ret_mask[i] is 1 where kept. -EINVAL for bad args or a
 * factor of another size, -ENOMEM.
 */
int opass_sparsegpt_prune(float *w, size_t rows, size_t cols,
			  const struct opass_sparsegpt_factor *factor,
			  const struct opass_sparsegpt_args *args, uint8_t *ret_mask);

/* 0 when the pattern is valid (level in [0, 1]; m >= 1; 0 <= n < m for N:M). */
int opass_prune_pattern_check(const struct opass_prune_pattern *pattern);

/* How many of a (possibly partial) N:M group of len <= m columns go. */
size_t opass_nm_prunes(const struct opass_prune_pattern *pattern, size_t len);

/* Per-row pruning of keys[rows][cols] by a pattern (the lowest keys go),
 * into mask (1 = keep). */
int opass_prune_rows(const float *keys, size_t rows, size_t cols,
		     const struct opass_prune_pattern *pattern, uint8_t *mask);
