/* SPDX-License-Identifier: MIT */
/*
 * SparseGPT (Frantar & Alistarh 2023, "Massive Language Models Can Be
 * Accurately Pruned in One-Shot"): optimal-brain-surgeon pruning with
 * reconstruction of the kept weights, one column at a time, using the
 * upper Cholesky factor U of H^-1 (H^-1 = U^T U): pruning column i moves
 * its error e = (w - q) / U_ii onto the later columns through row i of U.
 * Updates inside a block of columns are immediate; the block's effect on
 * the columns after it is applied once, as one GEMM (lazy batch updates).
 */
#include <cblas.h>
#include <errno.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "masks/masks.h"
#include "select.h"

/* How many times the dampening may grow tenfold before H is declared
 * singular. */
#define DAMP_RETRIES 4

/* a := H with dead columns' diagonal set to 1 and damp added; dead[j] set
 * where H_jj == 0. Returns mean(diag) after the dead fix. */
static double hessian_load(const float *h, size_t n, double *a, uint8_t *dead)
{
	double mean = 0;

	for (size_t i = 0; i < n * n; i++)
		a[i] = h[i];
	for (size_t j = 0; j < n; j++) {
		dead[j] = a[j * n + j] == 0.0;
		if (dead[j])
			a[j * n + j] = 1.0;
		mean += a[j * n + j];
	}
	return mean / (double)n;
}

/* U (float, upper, lower part zero) with (H + damp I)^-1 = U^T U. */
static int hessian_inverse_factor(const float *h, size_t n, double percdamp, uint8_t *dead,
				  float *ret_u)
{
	double *a = malloc(n * n * sizeof(*a));
	double damp;
	int r = -EDOM;

	if (!a)
		return -ENOMEM;
	damp = percdamp * hessian_load(h, n, a, dead);
	for (int attempt = 0; attempt <= DAMP_RETRIES && r == -EDOM; attempt++, damp *= 10) {
		if (attempt)
			hessian_load(h, n, a, dead);
		for (size_t j = 0; j < n; j++)
			a[j * n + j] += damp;
		if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, a, (lapack_int)n) != 0 ||
		    LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, a, (lapack_int)n) != 0)
			continue;
		/* H^-1 is in the lower triangle: mirror it, factor it as U^T U */
		for (size_t i = 0; i < n; i++)
			for (size_t j = i + 1; j < n; j++)
				a[i * n + j] = a[j * n + i];
		if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, a, (lapack_int)n) != 0)
			continue;
		r = 0;
	}
	for (size_t i = 0; r == 0 && i < n; i++)
		for (size_t j = 0; j < n; j++)
			ret_u[i * n + j] = j >= i ? (float)a[i * n + j] : 0.0f;
	free(a);
	return r;
}

struct sgpt {
	float *w;            /* [rows][cols], updated */
	size_t rows, cols;
	const float *u;      /* [cols][cols] */
	const struct opass_sparsegpt_args *args;
	float *w1, *err1, *keys;   /* [rows][blocksize] */
	uint8_t *prune1;           /* [rows][blocksize]: 1 = pruned */
	uint8_t *mask;             /* [rows][cols]: 1 = kept */
};

/* Unstructured: the block's lowest w^2 / U_jj^2 over all its rows. */
static int block_choose(struct sgpt *s, size_t i1, size_t count)
{
	size_t n = s->rows * count;
	uint32_t *scratch = malloc((n ? n : 1) * sizeof(*scratch));

	if (!scratch)
		return -ENOMEM;
	for (size_t r = 0; r < s->rows; r++)
		for (size_t j = 0; j < count; j++) {
			float d = s->u[(i1 + j) * s->cols + i1 + j], v = s->w1[r * count + j];

			s->keys[r * count + j] = v * v / (d * d);
		}
	opass_select_smallest_f32_with(s->keys, n, (size_t)((double)n * s->args->pattern.sparsity_level),
				       scratch, s->prune1);
	free(scratch);
	return 0;
}

/* N:M: the group of columns [i, i + len) of the block, row by row (len
 * <= m <= 64): the min(n, len) lowest w^2 / U_jj^2 of each row go. */
static void group_choose(struct sgpt *s, size_t i1, size_t count, size_t i, size_t len)
{
	size_t k = (size_t)s->args->pattern.n < len ? (size_t)s->args->pattern.n : len;
	float keys[64];
	uint32_t scratch[64];
	uint8_t selected[64];

	for (size_t row = 0; row < s->rows; row++) {
		for (size_t j = 0; j < len; j++) {
			float d = s->u[(i1 + i + j) * s->cols + i1 + i + j];
			float v = s->w1[row * count + i + j];

			keys[j] = v * v / (d * d);
		}
		opass_select_smallest_f32_with(keys, len, k, scratch, selected);
		memcpy(s->prune1 + row * count + i, selected, len);
	}
}

/* Prune column i of the block and spread its error over columns > i. */
static void column_update(struct sgpt *s, size_t i1, size_t count, size_t i)
{
	const float *urow = s->u + (i1 + i) * s->cols + i1;
	float d = urow[i];

	for (size_t r = 0; r < s->rows; r++) {
		float *row = s->w1 + r * count;
		float q = s->prune1[r * count + i] ? 0.0f : row[i];
		float e = (row[i] - q) / d;

		s->err1[r * count + i] = e;
		row[i] = q;
		for (size_t j = i + 1; j < count; j++)
			row[j] -= e * urow[j];
	}
}

static int block_run(struct sgpt *s, size_t i1, size_t count)
{
	size_t m = (size_t)s->args->pattern.m, i2 = i1 + count;
	int r = 0;

	for (size_t row = 0; row < s->rows; row++)
		memcpy(s->w1 + row * count, s->w + row * s->cols + i1, count * sizeof(*s->w1));
	if (m == 1)
		r = block_choose(s, i1, count);
	for (size_t i = 0; r == 0 && i < count; i++) {
		if (m > 1 && i % m == 0)
			group_choose(s, i1, count, i, count - i < m ? count - i : m);
		column_update(s, i1, count, i);
	}
	if (r < 0)
		return r;
	for (size_t row = 0; row < s->rows; row++)
		for (size_t j = 0; j < count; j++) {
			s->w[row * s->cols + i1 + j] = s->w1[row * count + j];
			s->mask[row * s->cols + i1 + j] = !s->prune1[row * count + j];
		}
	if (i2 < s->cols && s->rows)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s->rows, (int)(s->cols - i2),
			    (int)count, -1.0f, s->err1, (int)count, s->u + i1 * s->cols + i2, (int)s->cols,
			    1.0f, s->w + i2, (int)s->cols);
	return 0;
}

static int args_check(size_t rows, size_t cols, const struct opass_sparsegpt_args *a)
{
	int r = opass_prune_pattern_check(&a->pattern);

	if (r < 0)
		return r;
	if (a->blocksize < 1 || (a->pattern.m > 1 && a->blocksize % (size_t)a->pattern.m) ||
	    a->pattern.m > 64 || isnan(a->percdamp) || a->percdamp < 0)
		return -EINVAL;
	if (rows > INT32_MAX || cols > INT32_MAX || (cols && rows > SIZE_MAX / cols / sizeof(float)))
		return -EINVAL;
	return 0;
}

int opass_sparsegpt_prune(float *w, size_t rows, size_t cols, const float *h,
			  const struct opass_sparsegpt_args *args, uint8_t *ret_mask)
{
	struct sgpt s = { .w = w, .rows = rows, .cols = cols, .args = args, .mask = ret_mask };
	size_t bs = args->blocksize < cols ? args->blocksize : cols;
	size_t nb = rows * (bs ? bs : 1);
	float *u = NULL;
	uint8_t *dead = NULL;
	int r = args_check(rows, cols, args);

	if (r < 0 || cols == 0 || rows == 0)
		return r;
	u = malloc(cols * cols * sizeof(*u));
	dead = malloc(cols);
	s.w1 = malloc(nb * sizeof(float));
	s.err1 = malloc(nb * sizeof(float));
	s.keys = malloc(nb * sizeof(float));
	s.prune1 = malloc(nb);
	if (!u || !dead || !s.w1 || !s.err1 || !s.keys || !s.prune1)
		r = -ENOMEM;
	if (r == 0)
		r = hessian_inverse_factor(h, cols, args->percdamp, dead, u);
	for (size_t i = 0; r == 0 && i < rows; i++)
		for (size_t j = 0; j < cols; j++)
			if (dead[j])
				w[i * cols + j] = 0.0f;
	s.u = u;
	for (size_t i1 = 0; r == 0 && i1 < cols; i1 += bs)
		r = block_run(&s, i1, cols - i1 < bs ? cols - i1 : bs);
	free(u);
	free(dead);
	free(s.w1);
	free(s.err1);
	free(s.keys);
	free(s.prune1);
	return r;
}
