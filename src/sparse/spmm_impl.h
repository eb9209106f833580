/* SPDX-License-Identifier: MIT */
/*
 * Internals of the sparse x dense kernels (sparse_kernels.c: formats and
 * running; spmm_rows.c: the per-ISA block-row kernels).
 *
 * A call packs A into tiles of up to TILE_MAX rows, transposed: at[k][w] with
 * w the tile's width, its row count rounded up to a width class (1, 4, 8, 16,
 * 32, 48 or 64), so that a small M is not padded to 64 rows. A block-rows
 * kernel of width w computes, for every output row r of the block rows
 * row0 <= row < row1, out[((row - row0) * br + r) * w + i] = sum over the
 * row's nonzeros w(r, k) * at[k][i]. A 1x1 convolution with stride 1 and no
 * padding needs no packing: its full tiles read x in place (at[k] is the
 * tile's 64 positions of input channel k); nor does a convolution that reads
 * a zero-padded copy of x (at + off[nonzero], ld 1: sparse_kernels.c).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#define TILE_MAX 64

/*
 * The one-row format (products of one to M1_ROWS rows of A, AVX-512), kept beside the
 * block rows: output rows in slices of 16, a lane each, and columns in
 * windows of M1_WINDOW. A step gives every lane one element of its row within
 * the window (the column's offset in it) or none (M1_EMPTY); slice s runs
 * steps[s * n_windows + w] steps in window w, windows in order, its steps
 * from slice_step[s] on. The values of the elements there follow one another
 * in step and lane order from slice_value[s] on. Stored elements past the
 * weight's edge (zeros) are left out.
 */
#define M1_WINDOW 64
#define M1_EMPTY 0xff
#define M1_STEPS_MAX 255
#define M1_ROWS 4     /* products of up to this many rows of A use it */

struct spmm_m1 {
	int64_t n_slices, n_windows, n_steps, n_values;
	int64_t *slice_step;   /* [n_slices + 1] */
	int64_t *slice_value;  /* [n_slices + 1] */
	uint8_t *steps;        /* [n_slices * n_windows] */
	uint8_t *idx;          /* [n_steps * 16] */
	float *values;         /* [n_values] */
};

struct opass_spmm {
	int64_t n, k, k_pad;
	int br, bc;
	int64_t n_block_rows;
	int32_t *row_ptr;  /* [n_block_rows + 1] */
	int32_t *k0;       /* first column of each block */
	uint16_t *k16;     /* the same in 16 bits when k_pad <= 65536, else NULL */
	float *values;     /* [n_blocks * br * bc] */
	int64_t n_blocks;
	struct spmm_m1 m1; /* steps NULL: none (no AVX-512, or too many duplicates) */
	bool borrowed;     /* the arrays live in a flat buffer owned elsewhere */
};

/* s->m1 built from s's block rows (left empty where the CPU has no AVX-512,
 * or a window holds more than M1_STEPS_MAX elements of a row); -ENOMEM. */
int spmm_m1_build(struct opass_spmm *s);
void spmm_m1_free(struct spmm_m1 *m1);

enum spmm_width {
	SPMM_W1,
	SPMM_W4,
	SPMM_W8,
	SPMM_W16,
	SPMM_W32,
	SPMM_W48,
	SPMM_W64,
	_SPMM_W_MAX,
};

/* at's packed rows lie ld floats apart: the tile's width when packed, the
 * plane size when a 1x1 convolution's tile reads x in place. */
typedef void spmm_block_rows_fn(const struct opass_spmm *s, int64_t row0, int64_t row1,
				const float *at, size_t ld, float *out);

/* dst[c][i] = src[i][c] (+ add[i]; then max(0, .) when relu) for a 16 x 16
 * block; strides in floats. */
typedef void spmm_transpose16_fn(const float *src, size_t src_stride, float *dst,
				 size_t dst_stride, const float *add, bool relu);

/* dst[i] = src[i] + add (+ res[i] when res is not NULL; then max(0, .) when
 * relu) for i < n. */
typedef void spmm_row_add_fn(float *dst, const float *src, float add, const float *res,
			     bool relu, size_t n);

/* out[((s - s0) * 16 + lane) * ldo + r] = output row 16 s + lane of the
 * product with row r of x (rows < M1_ROWS rows of K = k floats, ldx floats
 * apart; ldo 1 for one row), for slices s0 <= s < s1 of the one-row format. */
typedef void spmm_m1_fn(const struct spmm_m1 *f, int64_t k, int64_t s0, int64_t s1,
			const float *x, size_t ldx, int rows, float *out, size_t ldo);

/* dst[i] = src[idx[i]], or 0 where idx[i] < 0, for i < n. */
typedef void spmm_gather_fn(float *dst, const float *src, const int32_t *idx, size_t n);

/* dst[i] = src[2 * i] for i < n (reading no element past src[2 * n - 2]). */
typedef void spmm_gather2_fn(float *dst, const float *src, size_t n);

struct spmm_kernels {
	spmm_block_rows_fn *block_rows[_SPMM_W_MAX];
	spmm_transpose16_fn *transpose16;    /* or NULL: scalar copies */
	spmm_row_add_fn *row_add;
	spmm_gather2_fn *gather2;            /* or NULL: a scalar loop */
	spmm_gather_fn *gather;              /* or NULL: packed convs copy by row segments */
	spmm_m1_fn *m1;                      /* or NULL: the one-row format unused */
};

/* Floats per packed row of a width class. */
int spmm_width_floats(enum spmm_width w);

void spmm_kernels_generic(struct spmm_kernels *k);
void spmm_kernels_avx2(struct spmm_kernels *k);
void spmm_kernels_avx512(struct spmm_kernels *k);
