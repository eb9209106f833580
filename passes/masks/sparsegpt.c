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
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "masks/masks.h"
#include "select.h"

/* How many times the dampening may grow tenfold before H is declared
 * singular. */
#define DAMP_RETRIES 4

/* a := H with dead columns' diagonal set to 1 (dead[j] marks H_jj == 0)
 * plus damp on the diagonal. */
static void hessian_load(const float *h, size_t n, float *a, uint8_t *dead, double damp)
{
	memcpy(a, h, n * n * sizeof(*a));
	for (size_t j = 0; j < n; j++) {
		dead[j] = a[j * n + j] == 0.0f;
		if (dead[j])
			a[j * n + j] = 1.0f;
		a[j * n + j] += (float)damp;
	}
}

/* Mean of H's diagonal once dead columns count 1. */
static double hessian_mean_diag(const float *h, size_t n)
{
	double mean = 0;

	for (size_t j = 0; j < n; j++)
		mean += h[j * n + j] == 0.0f ? 1.0 : h[j * n + j];
	return mean / (double)n;
}

/* a (symmetric) := the upper factor U of a^-1 = U^T U, row-major, lower
 * part zero. LAPACK works column-major: a symmetric matrix is its own
 * transpose, and the column-major lower factor M of a^-1 = M M^T read
 * row-major is U = M^T. */
static int inverse_factor(float *a, size_t n)
{
	lapack_int ln = (lapack_int)n;

	if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', ln, a, ln) != 0 ||
	    LAPACKE_spotri_work(LAPACK_COL_MAJOR, 'L', ln, a, ln) != 0)
		return -EDOM;
	for (size_t c = 0; c < n; c++)          /* column-major lower -> full */
		for (size_t r = c + 1; r < n; r++)
			a[r * n + c] = a[c * n + r];
	if (LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', ln, a, ln) != 0)
		return -EDOM;
	for (size_t r = 0; r < n; r++)
		for (size_t c = 0; c < r; c++)
			a[r * n + c] = 0.0f;
	return 0;
}

int opass_sparsegpt_factor(const float *h, size_t n, double percdamp,
			   struct opass_sparsegpt_factor *ret_factor)
{
	struct opass_sparsegpt_factor f = { .n = n };
	double damp = percdamp * hessian_mean_diag(h, n);
	int r = -EDOM;

	if (n == 0 || n > INT32_MAX || n > SIZE_MAX / n / sizeof(float) || isnan(percdamp) || percdamp < 0)
		return -EINVAL;
	f.u = malloc(n * n * sizeof(*f.u));
	f.dead = malloc(n);
	if (!f.u || !f.dead) {
		opass_sparsegpt_factor_fini(&f);
		return -ENOMEM;
	}
	for (int attempt = 0; attempt <= DAMP_RETRIES && r == -EDOM; attempt++) {
		hessian_load(h, n, f.u, f.dead, damp);
		r = inverse_factor(f.u, n);
		damp = damp > 0 ? damp * 10 : 1e-6 * hessian_mean_diag(h, n);
	}
	if (r < 0) {
		opass_sparsegpt_factor_fini(&f);
		return r;
	}
	*ret_factor = f;
	return 0;
}

void opass_sparsegpt_factor_fini(struct opass_sparsegpt_factor *factor)
{
	if (!factor)
		return;
	free(factor->u);
	free(factor->dead);
	*factor = (struct opass_sparsegpt_factor){ 0 };
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
 * <= m <= 64): the opass_nm_prunes(n, m, len) lowest w^2 / U_jj^2 of
 * each row go. */
static void group_choose(struct sgpt *s, size_t i1, size_t count, size_t i, size_t len)
{
	size_t k = opass_nm_prunes(&s->args->pattern, len);
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
	    a->pattern.m > 64)
		return -EINVAL;
	if (rows > INT32_MAX || cols > INT32_MAX || (cols && rows > SIZE_MAX / cols / sizeof(float)))
		return -EINVAL;
	return 0;
}

int opass_sparsegpt_prune(float *w, size_t rows, size_t cols,
			  const struct opass_sparsegpt_factor *factor,
			  const struct opass_sparsegpt_args *args, uint8_t *ret_mask)
{
	struct sgpt s = { .w = w, .rows = rows, .cols = cols, .u = factor->u, .args = args,
			  .mask = ret_mask };
	size_t bs = args->blocksize < cols ? args->blocksize : cols;
	size_t nb = rows * (bs ? bs : 1);
	int r = args_check(rows, cols, args);

	if (r < 0 || cols == 0 || rows == 0)
		return r;
	if (factor->n != cols)
		return -EINVAL;
	s.w1 = malloc(nb * sizeof(float));
	s.err1 = malloc(nb * sizeof(float));
	s.keys = malloc(nb * sizeof(float));
	s.prune1 = malloc(nb);
	if (!s.w1 || !s.err1 || !s.keys || !s.prune1)
		r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < rows; i++)
		for (size_t j = 0; j < cols; j++)
			if (factor->dead[j])
				w[i * cols + j] = 0.0f;
	for (size_t i1 = 0; r == 0 && i1 < cols; i1 += bs)
		r = block_run(&s, i1, cols - i1 < bs ? cols - i1 : bs);
	free(s.w1);
	free(s.err1);
	free(s.keys);
	free(s.prune1);
	return r;
}
