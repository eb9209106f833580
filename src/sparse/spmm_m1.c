/* SPDX-License-Identifier: MIT */
/*
 * The one-row format of a weight (spmm_impl.h), built from its block rows.
 *
 * Why: a product of one row of A reads every nonzero once and does one
 * multiply-add with it, so it is bound by how fast the kernel finds the
 * nonzero's element of x. A CSR row takes it with a gather (on the Zen 5 one
 * 16-lane gather from L1 costs 18 cycles, 1.15 a nonzero); this format picks
 * 16 of them at a time out of x's 64-column window, held in four registers,
 * with two two-source permutes (0.1 cycle a lane). Lanes are output rows, so
 * no sum crosses lanes. The price is the empty lanes of a window's steps
 * (1.7 lanes per nonzero at 90 % zeros, 2.1 at 95 %), a byte each:
 * 5.7-6.1 bytes a nonzero against CSR's 6.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sparse_kernels.h"
#include "spmm_impl.h"

/* Calls fn(col, value, data) for every stored element of output row `row`
 * inside the weight (block order). */
static void row_elements(const struct opass_spmm *s, int64_t row,
			 void (*fn)(int64_t col, float value, void *data), void *data)
{
	int64_t i = row / s->br, r = row % s->br;

	for (int32_t b = s->row_ptr[i]; b < s->row_ptr[i + 1]; b++) {
		const float *v = s->values + (size_t)b * (size_t)(s->br * s->bc) +
				 (size_t)(r * s->bc);

		for (int64_t c = 0; c < s->bc && s->k0[b] + c < s->k; c++)
			fn(s->k0[b] + c, v[c], data);
	}
}

/* One slice's build state: counts[lane][window], then the steps it fills. */
struct m1_slice {
	const struct spmm_m1 *f;
	int lane;
	int64_t *counts;       /* [16][n_windows] */
	int64_t *first;        /* [n_windows]: the window's first step in the slice */
	uint8_t *idx;          /* the slice's steps, [steps][16] */
	float *vals;           /* the same, a value per lane */
};

static void count_element(int64_t col, float value, void *data)
{
	struct m1_slice *sl = data;

	(void)value;
	sl->counts[sl->lane * sl->f->n_windows + col / M1_WINDOW]++;
}

static void place_element(int64_t col, float value, void *data)
{
	struct m1_slice *sl = data;
	int64_t w = col / M1_WINDOW, *c = &sl->counts[sl->lane * sl->f->n_windows + w];
	size_t at = (size_t)(sl->first[w] + (*c)++) * 16 + (size_t)sl->lane;

	sl->idx[at] = (uint8_t)(col % M1_WINDOW);
	sl->vals[at] = value;
}

/* Steps of slice i: counts its lanes' elements per window into sl->counts and
 * their most into f->steps; -E2BIG when a window needs more than M1_STEPS_MAX
 * steps. */
static int slice_count(const struct opass_spmm *s, struct spmm_m1 *f, int64_t i,
		       struct m1_slice *sl, int64_t *ret_steps)
{
	int64_t total = 0, nw = f->n_windows;

	memset(sl->counts, 0, (size_t)(16 * nw) * sizeof(*sl->counts));
	for (sl->lane = 0; sl->lane < 16 && i * 16 + sl->lane < s->n; sl->lane++)
		row_elements(s, i * 16 + sl->lane, count_element, sl);
	for (int64_t w = 0; w < nw; w++) {
		int64_t most = 0;

		for (int lane = 0; lane < 16; lane++)
			most = sl->counts[lane * nw + w] > most ? sl->counts[lane * nw + w] : most;
		if (most > M1_STEPS_MAX)
			return -E2BIG;
		f->steps[i * nw + w] = (uint8_t)most;
		total += most;
	}
	*ret_steps = total;
	return 0;
}

/* Slice i's steps and values, at f->slice_step[i] and f->slice_value[i]; its
 * windows' step counts are those m1_size stored in f->steps. */
static void slice_fill(const struct opass_spmm *s, struct spmm_m1 *f, int64_t i,
		       struct m1_slice *sl)
{
	int64_t steps = f->slice_step[i + 1] - f->slice_step[i], at = 0;
	float *out = f->values + f->slice_value[i];

	for (int64_t w = 0; w < f->n_windows; w++) {
		sl->first[w] = at;
		at += f->steps[i * f->n_windows + w];
	}
	sl->idx = f->idx + f->slice_step[i] * 16;
	memset(sl->idx, M1_EMPTY, (size_t)steps * 16);
	memset(sl->counts, 0, (size_t)(16 * f->n_windows) * sizeof(*sl->counts));
	for (sl->lane = 0; sl->lane < 16 && i * 16 + sl->lane < s->n; sl->lane++)
		row_elements(s, i * 16 + sl->lane, place_element, sl);
	for (size_t j = 0; j < (size_t)steps * 16; j++)
		if (sl->idx[j] != M1_EMPTY)
			*out++ = sl->vals[j];
}

/* First pass: every slice's step and value counts, into slice_step and
 * slice_value (as running sums). */
static int m1_size(const struct opass_spmm *s, struct spmm_m1 *f, struct m1_slice *sl)
{
	f->slice_step[0] = f->slice_value[0] = 0;
	for (int64_t i = 0; i < f->n_slices; i++) {
		int64_t steps, values = 0;
		int r = slice_count(s, f, i, sl, &steps);

		if (r < 0)
			return r;
		for (int64_t j = 0; j < 16 * f->n_windows; j++)
			values += sl->counts[j];
		f->slice_step[i + 1] = f->slice_step[i] + steps;
		f->slice_value[i + 1] = f->slice_value[i] + values;
	}
	f->n_steps = f->slice_step[f->n_slices];
	f->n_values = f->slice_value[f->n_slices];
	return 0;
}

static int m1_fill(const struct opass_spmm *s, struct spmm_m1 *f, struct m1_slice *sl)
{
	int64_t most = 0;

	for (int64_t i = 0; i < f->n_slices; i++) {
		int64_t steps = f->slice_step[i + 1] - f->slice_step[i];

		most = steps > most ? steps : most;
	}
	sl->vals = malloc((size_t)(most * 16 + 1) * sizeof(float));
	f->idx = malloc((size_t)(f->n_steps * 16 + 1));
	f->values = malloc((size_t)(f->n_values + 1) * sizeof(float));
	if (!sl->vals || !f->idx || !f->values)
		return -ENOMEM;
	for (int64_t i = 0; i < f->n_slices; i++)
		slice_fill(s, f, i, sl);
	return 0;
}

void spmm_m1_free(struct spmm_m1 *m1)
{
	free(m1->slice_step);
	free(m1->slice_value);
	free(m1->steps);
	free(m1->idx);
	free(m1->values);
	*m1 = (struct spmm_m1){ 0 };
}

int spmm_m1_build(struct opass_spmm *s)
{
	struct spmm_m1 f = { .n_slices = (s->n + 15) / 16,
			     .n_windows = (s->k + M1_WINDOW - 1) / M1_WINDOW };
	struct m1_slice sl = { .f = &f };
	int r = -ENOMEM;

	if (!opass_spmm_isa_supported(OPASS_SPMM_ISA_AVX512) || s->n == 0 || s->k == 0)
		return 0;
	f.slice_step = malloc((size_t)(f.n_slices + 1) * sizeof(int64_t));
	f.slice_value = malloc((size_t)(f.n_slices + 1) * sizeof(int64_t));
	f.steps = malloc((size_t)(f.n_slices * f.n_windows));
	sl.counts = malloc((size_t)(16 * f.n_windows) * sizeof(int64_t));
	sl.first = malloc((size_t)f.n_windows * sizeof(int64_t));
	if (f.slice_step && f.slice_value && f.steps && sl.counts && sl.first)
		r = m1_size(s, &f, &sl);
	if (r == 0)
		r = m1_fill(s, &f, &sl);
	free(sl.counts);
	free(sl.first);
	free(sl.vals);
	if (r < 0) {
		spmm_m1_free(&f);
		return r == -E2BIG ? 0 : r;
	}
	s->m1 = f;
	return 0;
}

void opass_spmm_one_row_drop(struct opass_spmm *spmm)
{
	if (!spmm->borrowed)
		spmm_m1_free(&spmm->m1);
	spmm->m1 = (struct spmm_m1){ 0 };
}
