/* SPDX-License-Identifier: MIT */
/* Sparse-weight products (layout and rationale: sparse_kernels.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SPMM_X86 1
#endif

#include "error.h"
#include "parallel.h"
#include "sparse_kernels.h"

#define TILE_M 64      /* rows of A per packed tile = accumulators of one output row */
#define CHUNK_N 64     /* outputs per work item (at most) */
#define PACK_K 64      /* columns of A transposed at a time */
#define SMALL_M 8      /* fewer rows: no packing, dot products against A's rows */
#define BLOCK_MAX 16

struct opass_spmm {
	int64_t n, k, k_pad;
	int br, bc;
	int64_t n_block_rows;
	int32_t *row_ptr;  /* [n_block_rows + 1] */
	int32_t *k0;       /* first column of each block */
	float *values;     /* [n_blocks * br * bc] */
};

/* Computes out[r * TILE_M + i] for the rows r of block row `row`. */
typedef void block_row_fn(const struct opass_spmm *s, int64_t row, const float *at, float *out);

/* dst[c][i] = src[i][c] (+ add[i]) for a 16 x 16 block; strides in floats. */
typedef void transpose16_fn(const float *src, size_t src_stride, float *dst, size_t dst_stride,
			    const float *add);

struct spmm_job {
	const struct opass_spmm *s;
	const float *a;
	const float *bias;
	size_t n_bias;
	float *y;
	int64_t m;
	float *at;                 /* packed tiles [tiles][k_pad][TILE_M] */
	int64_t rows_per_chunk;    /* block rows per work item */
	size_t n_chunks;
	block_row_fn *block_row;
	transpose16_fn *transpose16; /* or NULL: scalar copies */
};

static int64_t div_up(int64_t a, int64_t b)
{
	return (a + b - 1) / b;
}

/* ---- BSR from dense ---------------------------------------------------- */

static int64_t block_nonzeros(const float *bt, int64_t n, int64_t k, int64_t row, int64_t col,
			      int64_t br, int64_t bc)
{
	int64_t count = 0;

	for (int64_t r = row * br; r < (row + 1) * br && r < n; r++)
		for (int64_t c = col * bc; c < (col + 1) * bc && c < k; c++)
			count += bt[r * k + c] != 0.0f;
	return count;
}

void opass_bsr_count(const float *bt, int64_t n, int64_t k, int64_t br, int64_t bc,
		     int64_t *ret_blocks, int64_t *ret_nonzero)
{
	int64_t blocks = 0, nonzero = 0;

	for (int64_t i = 0; i < div_up(n, br); i++)
		for (int64_t j = 0; j < div_up(k, bc); j++) {
			int64_t nz = block_nonzeros(bt, n, k, i, j, br, bc);

			blocks += nz > 0;
			nonzero += nz;
		}
	*ret_blocks = blocks;
	*ret_nonzero = nonzero;
}

static void block_copy(const float *bt, int64_t n, int64_t k, int64_t row, int64_t col,
		       int64_t br, int64_t bc, float *out)
{
	for (int64_t r = 0; r < br; r++)
		for (int64_t c = 0; c < bc; c++) {
			int64_t rr = row * br + r, cc = col * bc + c;

			out[r * bc + c] = rr < n && cc < k ? bt[rr * k + cc] : 0.0f;
		}
}

static void bsr_fill(struct opass_bsr *bsr, const float *bt)
{
	int64_t b = 0, n = bsr->n, k = bsr->k, br = bsr->br, bc = bsr->bc;

	for (int64_t i = 0; i < div_up(n, br); i++) {
		bsr->row_ptr[i] = b;
		for (int64_t j = 0; j < div_up(k, bc); j++) {
			if (block_nonzeros(bt, n, k, i, j, br, bc) == 0)
				continue;
			bsr->col[b] = j;
			block_copy(bt, n, k, i, j, br, bc, bsr->values + b * br * bc);
			b++;
		}
	}
	bsr->row_ptr[div_up(n, br)] = b;
}

struct opass_bsr *opass_bsr_free(struct opass_bsr *bsr)
{
	if (!bsr)
		return NULL;
	free(bsr->values);
	free(bsr->col);
	free(bsr->row_ptr);
	free(bsr);
	return NULL;
}

int opass_bsr_from_dense(const float *bt, int64_t n, int64_t k, int64_t br, int64_t bc,
			 struct opass_bsr **ret_bsr, struct onnxpass_error *err)
{
	struct opass_bsr *bsr;
	int64_t blocks, nonzero;

	if (n < 0 || k < 0 || br < 1 || bc < 1 || br > BLOCK_MAX || bc > BLOCK_MAX)
		return opass_error(err, -EINVAL, "bad BSR shape [%lld, %lld] with %lldx%lld blocks",
				   (long long)n, (long long)k, (long long)br, (long long)bc);
	opass_bsr_count(bt, n, k, br, bc, &blocks, &nonzero);
	bsr = calloc(1, sizeof(*bsr));
	if (!bsr)
		return opass_error(err, -ENOMEM, "out of memory");
	*bsr = (struct opass_bsr){ .n = n, .k = k, .br = br, .bc = bc, .n_blocks = blocks };
	bsr->values = malloc((size_t)(blocks * br * bc + 1) * sizeof(float));
	bsr->col = malloc((size_t)(blocks + 1) * sizeof(int64_t));
	bsr->row_ptr = malloc((size_t)(div_up(n, br) + 1) * sizeof(int64_t));
	if (!bsr->values || !bsr->col || !bsr->row_ptr) {
		opass_bsr_free(bsr);
		return opass_error(err, -ENOMEM, "out of memory");
	}
	bsr_fill(bsr, bt);
	*ret_bsr = bsr;
	return 0;
}

/* ---- the kernel's weight ----------------------------------------------- */

static int64_t index_at(const void *p, bool index64, size_t i)
{
	return index64 ? ((const int64_t *)p)[i] : ((const int32_t *)p)[i];
}

struct opass_spmm *opass_spmm_free(struct opass_spmm *spmm)
{
	if (!spmm)
		return NULL;
	free(spmm->row_ptr);
	free(spmm->k0);
	free(spmm->values);
	free(spmm);
	return NULL;
}

static int spmm_check_shape(int64_t n, int64_t k, int64_t br, int64_t bc, size_t n_values,
			    size_t n_col, size_t n_row_ptr, struct onnxpass_error *err)
{
	if (n < 0 || k < 0 || n > INT32_MAX || k > INT32_MAX / TILE_M)
		return opass_error(err, -EINVAL, "bad weight shape N=%lld K=%lld",
				   (long long)n, (long long)k);
	if (br < 1 || bc < 1 || br > BLOCK_MAX || bc > BLOCK_MAX)
		return opass_error(err, -EINVAL, "block shape %lldx%lld: each side must be 1..%d",
				   (long long)br, (long long)bc, BLOCK_MAX);
	if (n_row_ptr != (size_t)div_up(n, br) + 1)
		return opass_error(err, -EINVAL, "row_ptr has %zu entries, expected %lld "
				   "(ceil(N / block_rows) + 1)", n_row_ptr,
				   (long long)div_up(n, br) + 1);
	if (n_col > INT32_MAX || n_values != n_col * (size_t)(br * bc))
		return opass_error(err, -EINVAL, "%zu values for %zu blocks of %lldx%lld",
				   n_values, n_col, (long long)br, (long long)bc);
	return 0;
}

static int spmm_check_rows(const void *row_ptr, size_t n_row_ptr, size_t n_col, bool index64,
			   struct onnxpass_error *err)
{
	if (index_at(row_ptr, index64, 0) != 0)
		return opass_error(err, -EINVAL, "row_ptr must start at 0");
	for (size_t i = 1; i < n_row_ptr; i++)
		if (index_at(row_ptr, index64, i) < index_at(row_ptr, index64, i - 1))
			return opass_error(err, -EINVAL, "row_ptr decreases at %zu", i);
	if (index_at(row_ptr, index64, n_row_ptr - 1) != (int64_t)n_col)
		return opass_error(err, -EINVAL, "row_ptr ends at %lld, but there are %zu blocks",
				   (long long)index_at(row_ptr, index64, n_row_ptr - 1), n_col);
	return 0;
}

/* Elements of a block past the weight's edge (last block row/column) must be 0. */
static bool block_padding_zero(const struct opass_spmm *s, int64_t row, int64_t b)
{
	const float *v = s->values + b * s->br * s->bc;

	for (int64_t r = 0; r < s->br; r++)
		for (int64_t c = 0; c < s->bc; c++)
			if ((row * s->br + r >= s->n || s->k0[b] + c >= s->k) && v[r * s->bc + c] != 0.0f)
				return false;
	return true;
}

static int spmm_fill(struct opass_spmm *s, const void *col, const void *row_ptr, bool index64,
		     struct onnxpass_error *err)
{
	int64_t block_cols = div_up(s->k, s->bc);

	for (int64_t i = 0; i <= s->n_block_rows; i++)
		s->row_ptr[i] = (int32_t)index_at(row_ptr, index64, (size_t)i);
	for (int64_t i = 0; i < s->n_block_rows; i++)
		for (int32_t b = s->row_ptr[i]; b < s->row_ptr[i + 1]; b++) {
			int64_t j = index_at(col, index64, (size_t)b);

			if (j < 0 || j >= block_cols)
				return opass_error(err, -EINVAL, "block column %lld out of range "
						   "[0, %lld)", (long long)j, (long long)block_cols);
			s->k0[b] = (int32_t)(j * s->bc);
			if (!block_padding_zero(s, i, b))
				return opass_error(err, -EINVAL, "block %d reaches past the weight's "
						   "edge with nonzero values", b);
		}
	return 0;
}

int opass_spmm_new(int64_t n, int64_t k, int64_t br, int64_t bc,
		   const float *values, size_t n_values,
		   const void *col, size_t n_col, const void *row_ptr, size_t n_row_ptr,
		   bool index64, struct opass_spmm **ret_spmm, struct onnxpass_error *err)
{
	struct opass_spmm *s;
	int r;

	r = spmm_check_shape(n, k, br, bc, n_values, n_col, n_row_ptr, err);
	if (r == 0)
		r = spmm_check_rows(row_ptr, n_row_ptr, n_col, index64, err);
	if (r < 0)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s)
		return opass_error(err, -ENOMEM, "out of memory");
	*s = (struct opass_spmm){ .n = n, .k = k, .k_pad = div_up(k, bc) * bc, .br = (int)br,
				  .bc = (int)bc, .n_block_rows = div_up(n, br) };
	s->row_ptr = malloc(n_row_ptr * sizeof(*s->row_ptr));
	s->k0 = malloc((n_col + 1) * sizeof(*s->k0));
	s->values = malloc((n_values + 1) * sizeof(*s->values));
	if (!s->row_ptr || !s->k0 || !s->values)
		r = opass_error(err, -ENOMEM, "out of memory");
	if (r == 0) {
		memcpy(s->values, values, n_values * sizeof(*values));
		r = spmm_fill(s, col, row_ptr, index64, err);
	}
	if (r < 0) {
		opass_spmm_free(s);
		return r;
	}
	*ret_spmm = s;
	return 0;
}

int opass_spmm_from_dense(const float *bt, int64_t n, int64_t k, int64_t br, int64_t bc,
			  struct opass_spmm **ret_spmm, struct onnxpass_error *err)
{
	struct opass_bsr *bsr = NULL;
	int r;

	r = opass_bsr_from_dense(bt, n, k, br, bc, &bsr, err);
	if (r < 0)
		return r;
	r = opass_spmm_new(n, k, br, bc, bsr->values, (size_t)(bsr->n_blocks * br * bc),
			   bsr->col, (size_t)bsr->n_blocks, bsr->row_ptr,
			   (size_t)((n + br - 1) / br + 1), true, ret_spmm, err);
	opass_bsr_free(bsr);
	return r;
}

/* ---- block rows: generic C ------------------------------------------------ */

static void row_generic(const struct opass_spmm *s, int64_t row, int r, const float *at,
			float *out)
{
	size_t stride = (size_t)s->br * (size_t)s->bc;
	float acc[TILE_M] = { 0 };

	for (int32_t b = s->row_ptr[row]; b < s->row_ptr[row + 1]; b++) {
		const float *v = s->values + b * stride + (size_t)r * (size_t)s->bc;
		const float *x = at + (size_t)s->k0[b] * TILE_M;

		for (int c = 0; c < s->bc; c++, x += TILE_M)
			for (int i = 0; i < TILE_M; i++)
				acc[i] += v[c] * x[i];
	}
	memcpy(out, acc, sizeof(acc));
}

static void block_row_generic(const struct opass_spmm *s, int64_t row, const float *at, float *out)
{
	for (int r = 0; r < s->br; r++)
		row_generic(s, row, r, at, out + r * TILE_M);
}

/* ---- block rows: AVX2 and AVX-512 (x86-64, chosen at run time) ----------- */

#ifdef SPMM_X86
__attribute__((target("avx2,fma")))
static void row_avx2(const struct opass_spmm *s, int64_t row, int r, const float *at, float *out)
{
	size_t stride = (size_t)s->br * (size_t)s->bc;
	__m256 acc[TILE_M / 8];

	for (int j = 0; j < TILE_M / 8; j++)
		acc[j] = _mm256_setzero_ps();
	for (int32_t b = s->row_ptr[row]; b < s->row_ptr[row + 1]; b++) {
		const float *v = s->values + b * stride + (size_t)r * (size_t)s->bc;
		const float *x = at + (size_t)s->k0[b] * TILE_M;

		for (int c = 0; c < s->bc; c++, x += TILE_M) {
			__m256 w = _mm256_set1_ps(v[c]);

#pragma GCC unroll 8
			for (int j = 0; j < TILE_M / 8; j++)
				acc[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 8 * j), acc[j]);
		}
	}
	for (int j = 0; j < TILE_M / 8; j++)
		_mm256_storeu_ps(out + 8 * j, acc[j]);
}

__attribute__((target("avx2,fma")))
static void block_row_avx2(const struct opass_spmm *s, int64_t row, const float *at, float *out)
{
	for (int r = 0; r < s->br; r++)
		row_avx2(s, row, r, at, out + r * TILE_M);
}

__attribute__((target("avx512f")))
static void row_avx512(const struct opass_spmm *s, int64_t row, int r, const float *at,
		       float *out)
{
	size_t stride = (size_t)s->br * (size_t)s->bc;
	__m512 acc[TILE_M / 16];

	for (int j = 0; j < TILE_M / 16; j++)
		acc[j] = _mm512_setzero_ps();
	for (int32_t b = s->row_ptr[row]; b < s->row_ptr[row + 1]; b++) {
		const float *v = s->values + b * stride + (size_t)r * (size_t)s->bc;
		const float *x = at + (size_t)s->k0[b] * TILE_M;

		for (int c = 0; c < s->bc; c++, x += TILE_M) {
			__m512 w = _mm512_set1_ps(v[c]);

#pragma GCC unroll 4
			for (int j = 0; j < TILE_M / 16; j++)
				acc[j] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + 16 * j), acc[j]);
		}
	}
	for (int j = 0; j < TILE_M / 16; j++)
		_mm512_storeu_ps(out + 16 * j, acc[j]);
}

/* 4x1 blocks: four outputs share each packed row of A. */
__attribute__((target("avx512f")))
static void rows4_avx512(const struct opass_spmm *s, int64_t row, const float *at, float *out)
{
	__m512 acc[4][TILE_M / 16];

	for (int r = 0; r < 4; r++)
		for (int j = 0; j < TILE_M / 16; j++)
			acc[r][j] = _mm512_setzero_ps();
	for (int32_t b = s->row_ptr[row]; b < s->row_ptr[row + 1]; b++) {
		const float *v = s->values + 4 * (size_t)b;
		const float *x = at + (size_t)s->k0[b] * TILE_M;
		__m512 xs[TILE_M / 16];

#pragma GCC unroll 4
		for (int j = 0; j < TILE_M / 16; j++)
			xs[j] = _mm512_loadu_ps(x + 16 * j);
#pragma GCC unroll 4
		for (int r = 0; r < 4; r++) {
			__m512 w = _mm512_set1_ps(v[r]);

#pragma GCC unroll 4
			for (int j = 0; j < TILE_M / 16; j++)
				acc[r][j] = _mm512_fmadd_ps(w, xs[j], acc[r][j]);
		}
	}
	for (int r = 0; r < 4; r++)
		for (int j = 0; j < TILE_M / 16; j++)
			_mm512_storeu_ps(out + r * TILE_M + 16 * j, acc[r][j]);
}

/* 16 x 16 transpose in registers: pairs, then 4x4 blocks within 128-bit lanes,
 * then the lanes themselves. */
__attribute__((target("avx512f")))
static void transpose16_avx512(const float *src, size_t src_stride, float *dst,
			       size_t dst_stride, const float *add)
{
	__m512 r[16], t[16];

#pragma GCC unroll 16
	for (int i = 0; i < 16; i++)
		r[i] = _mm512_loadu_ps(src + (size_t)i * src_stride);
#pragma GCC unroll 8
	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
	}
	/* r[4g + e], lane L: column 4L + e of rows 4g..4g+3 */
#pragma GCC unroll 4
	for (int i = 0; i < 16; i += 4) {
		r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
		r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
		r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
		r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
	}
#pragma GCC unroll 4
	for (int e = 0; e < 4; e++) {
		__m512 v0 = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x88);
		__m512 v1 = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xdd);
		__m512 v2 = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x88);
		__m512 v3 = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xdd);

		t[e] = _mm512_shuffle_f32x4(v0, v2, 0x88);
		t[4 + e] = _mm512_shuffle_f32x4(v1, v3, 0x88);
		t[8 + e] = _mm512_shuffle_f32x4(v0, v2, 0xdd);
		t[12 + e] = _mm512_shuffle_f32x4(v1, v3, 0xdd);
	}
#pragma GCC unroll 16
	for (int c = 0; c < 16; c++) {
		__m512 v = add ? _mm512_add_ps(t[c], _mm512_loadu_ps(add)) : t[c];

		_mm512_storeu_ps(dst + (size_t)c * dst_stride, v);
	}
}

__attribute__((target("avx512f")))
static void block_row_avx512(const struct opass_spmm *s, int64_t row, const float *at, float *out)
{
	if (s->br == 4 && s->bc == 1) {
		rows4_avx512(s, row, at, out);
		return;
	}
	for (int r = 0; r < s->br; r++)
		row_avx512(s, row, r, at, out + r * TILE_M);
}
#endif

bool opass_spmm_isa_supported(enum opass_spmm_isa isa)
{
	switch (isa) {
	case OPASS_SPMM_ISA_AUTO:
	case OPASS_SPMM_ISA_GENERIC:
		return true;
#ifdef SPMM_X86
	case OPASS_SPMM_ISA_AVX2:
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	case OPASS_SPMM_ISA_AVX512:
		return __builtin_cpu_supports("avx512f");
#endif
	default:
		return false;
	}
}

/* The job's kernels for an ISA; -ENOTSUP when the CPU lacks it. */
static int kernels_pick(enum opass_spmm_isa isa, struct spmm_job *job)
{
	if (isa == OPASS_SPMM_ISA_AUTO) {
		if (opass_spmm_isa_supported(OPASS_SPMM_ISA_AVX512))
			isa = OPASS_SPMM_ISA_AVX512;
		else if (opass_spmm_isa_supported(OPASS_SPMM_ISA_AVX2))
			isa = OPASS_SPMM_ISA_AVX2;
	}
	if (!opass_spmm_isa_supported(isa))
		return -ENOTSUP;
	job->block_row = block_row_generic;
#ifdef SPMM_X86
	if (isa == OPASS_SPMM_ISA_AVX512) {
		job->block_row = block_row_avx512;
		job->transpose16 = transpose16_avx512;
	} else if (isa == OPASS_SPMM_ISA_AVX2) {
		job->block_row = block_row_avx2;
	}
#endif
	return 0;
}

/* ---- running: pack A, then (tile, chunk) work items ---------------------- */

static float bias_at(const struct spmm_job *job, int64_t n)
{
	if (!job->bias)
		return 0.0f;
	return job->bias[job->n_bias == 1 ? 0 : n];
}

/* at[k][i] = a[m0 + i][k] for one tile; rows past m and columns past K are 0.
 * Transposed in 16x16 blocks so that reads and writes both stay in L1. */
static void tile_pack(void *data, size_t t)
{
	const struct spmm_job *job = data;
	int64_t k = job->s->k, k_pad = job->s->k_pad, m0 = (int64_t)t * TILE_M;
	int64_t rows = job->m - m0 < TILE_M ? job->m - m0 : TILE_M;
	float *at = job->at + (size_t)t * (size_t)k_pad * TILE_M;

	for (int64_t c0 = 0; c0 < k; c0 += 16) {
		int64_t c1 = c0 + 16 < k ? c0 + 16 : k;

		for (int64_t i0 = 0; i0 < rows; i0 += 16) {
			int64_t i1 = i0 + 16 < rows ? i0 + 16 : rows;

			if (job->transpose16 && c1 - c0 == 16 && i1 - i0 == 16) {
				job->transpose16(job->a + (m0 + i0) * k + c0, (size_t)k,
						 at + c0 * TILE_M + i0, TILE_M, NULL);
				continue;
			}
			for (int64_t c = c0; c < c1; c++)
				for (int64_t i = i0; i < i1; i++)
					at[c * TILE_M + i] = job->a[(m0 + i) * k + c];
		}
		for (int64_t c = c0; rows < TILE_M && c < c1; c++)
			memset(at + c * TILE_M + rows, 0, (size_t)(TILE_M - rows) * sizeof(float));
	}
	memset(at + k * TILE_M, 0, (size_t)(k_pad - k) * TILE_M * sizeof(float));
}

/* y[m0 + i][n0 + j] = out[j][i] + bias, in 16x16 blocks. */
static void tile_store(const struct spmm_job *job, int64_t m0, int64_t n0, int64_t n_out,
		       const float *out)
{
	int64_t rows = job->m - m0 < TILE_M ? job->m - m0 : TILE_M, n = job->s->n;
	float bias[CHUNK_N];

	for (int64_t j = 0; j < n_out; j++)
		bias[j] = bias_at(job, n0 + j);
	for (int64_t i0 = 0; i0 < rows; i0 += 16) {
		int64_t i1 = i0 + 16 < rows ? i0 + 16 : rows;

		for (int64_t j0 = 0; j0 < n_out; j0 += 16) {
			int64_t j1 = j0 + 16 < n_out ? j0 + 16 : n_out;

			if (job->transpose16 && i1 - i0 == 16 && j1 - j0 == 16) {
				job->transpose16(out + j0 * TILE_M + i0, TILE_M,
						 job->y + (m0 + i0) * n + n0 + j0, (size_t)n,
						 bias + j0);
				continue;
			}
			for (int64_t i = i0; i < i1; i++) {
				float *y = job->y + (m0 + i) * n + n0;

				for (int64_t j = j0; j < j1; j++)
					y[j] = out[j * TILE_M + i] + bias[j];
			}
		}
	}
}

static void tile_chunk(void *data, size_t item)
{
	const struct spmm_job *job = data;
	const struct opass_spmm *s = job->s;
	size_t t = item / job->n_chunks, c = item % job->n_chunks;
	int64_t row0 = (int64_t)c * job->rows_per_chunk, row1 = row0 + job->rows_per_chunk;
	const float *at = job->at + t * (size_t)s->k_pad * TILE_M;
	float out[CHUNK_N * TILE_M] __attribute__((aligned(64)));
	int64_t n0 = row0 * s->br, n_out;

	if (row1 > s->n_block_rows)
		row1 = s->n_block_rows;
	for (int64_t row = row0; row < row1; row++)
		job->block_row(s, row, at, out + (row - row0) * s->br * TILE_M);
	n_out = row1 * s->br < s->n ? row1 * s->br - n0 : s->n - n0;
	tile_store(job, (int64_t)t * TILE_M, n0, n_out, out);
}

/* Few rows of A: sparse dot products straight from A (no packing). */
static void small_chunk(void *data, size_t c)
{
	const struct spmm_job *job = data;
	const struct opass_spmm *s = job->s;
	int64_t row0 = (int64_t)c * job->rows_per_chunk, row1 = row0 + job->rows_per_chunk;
	size_t stride = (size_t)s->br * (size_t)s->bc;

	for (int64_t row = row0; row < row1 && row < s->n_block_rows; row++)
		for (int64_t r = 0; r < s->br && row * s->br + r < s->n; r++)
			for (int64_t m = 0; m < job->m; m++) {
				const float *a = job->a + m * s->k;
				float sum = 0.0f;

				for (int32_t b = s->row_ptr[row]; b < s->row_ptr[row + 1]; b++) {
					const float *v = s->values + b * stride + r * s->bc;
					int64_t width = s->k - s->k0[b] < s->bc ? s->k - s->k0[b] : s->bc;

					for (int64_t x = 0; x < width; x++)
						sum += v[x] * a[s->k0[b] + x];
				}
				job->y[m * s->n + row * s->br + r] = sum + bias_at(job, row * s->br + r);
			}
}

struct trampoline {
	void (*fn)(void *data, size_t i);
	void *data;
};

static int trampoline_run(size_t i, unsigned thread, void *userdata)
{
	const struct trampoline *t = userdata;

	(void)thread;
	t->fn(t->data, i);
	return 0;
}

static void run_parallel(const struct opass_spmm_exec *exec, void (*fn)(void *data, size_t i),
			 size_t n, void *data)
{
	struct trampoline t = { .fn = fn, .data = data };

	if (exec && exec->parallel_for) {
		exec->parallel_for(exec->ctx, fn, n, data);
		return;
	}
	/* opass_parallel_for fails only before running anything */
	if (opass_parallel_for(n, exec ? exec->threads : 0, trampoline_run, &t) < 0)
		for (size_t i = 0; i < n; i++)
			fn(data, i);
}

static void *scratch_alloc(const struct opass_spmm_exec *exec, size_t size)
{
	if (exec && exec->alloc)
		return exec->alloc(exec->ctx, size);
	return aligned_alloc(64, (size + 63) / 64 * 64);
}

static void scratch_release(const struct opass_spmm_exec *exec, void *p)
{
	if (exec && exec->alloc)
		exec->release(exec->ctx, p);
	else
		free(p);
}

static int run_tiled(struct spmm_job *job, const struct opass_spmm_exec *exec)
{
	size_t tiles = (size_t)div_up(job->m, TILE_M);
	size_t size = tiles * (size_t)job->s->k_pad * TILE_M * sizeof(float);

	job->at = scratch_alloc(exec, size ? size : 64);
	if (!job->at)
		return -ENOMEM;
	run_parallel(exec, tile_pack, tiles, job);
	run_parallel(exec, tile_chunk, tiles * job->n_chunks, job);
	scratch_release(exec, job->at);
	return 0;
}

int opass_spmm_run(const struct opass_spmm *spmm, const float *a, int64_t m,
		   const float *bias, size_t n_bias, float *y,
		   const struct opass_spmm_exec *exec)
{
	struct spmm_job job = { .s = spmm, .a = a, .bias = bias, .n_bias = n_bias, .y = y, .m = m };

	if (!spmm || m < 0 || (bias && n_bias != 1 && n_bias != (size_t)spmm->n))
		return -EINVAL;
	if (kernels_pick(exec ? exec->isa : OPASS_SPMM_ISA_AUTO, &job) < 0)
		return -ENOTSUP;
	if (m == 0 || spmm->n == 0)
		return 0;
	job.rows_per_chunk = CHUNK_N / spmm->br;
	job.n_chunks = (size_t)div_up(spmm->n_block_rows, job.rows_per_chunk);
	if (m < SMALL_M) {
		run_parallel(exec, small_chunk, job.n_chunks, &job);
		return 0;
	}
	return run_tiled(&job, exec);
}

/* ---- cost model -------------------------------------------------------------- */

/*
 * Measured (bench/ep.py, 2 threads): the sparse kernel's time per nonzero and
 * row of A is about SPARSE_COST times a dense GEMM's per weight and row, at
 * every m; below that density it wins. A margin keeps nodes near the break-even
 * point on the CPU EP.
 */
#define SPARSE_COST 3.0
#define MARGIN 1.2

bool opass_spmm_predict_win(int64_t m, int64_t k, int64_t n, int64_t nonzero)
{
	double dense, sparse;

	(void)m;
	if (k <= 0 || n <= 0 || nonzero < 0)
		return false;
	dense = (double)k * (double)n;
	sparse = (double)nonzero * SPARSE_COST;
	return sparse * MARGIN < dense;
}
