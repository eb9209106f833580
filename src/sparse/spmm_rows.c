/* SPDX-License-Identifier: MIT */
/*
 * Block-row kernels of the sparse x dense product, one per tile width and
 * ISA (layout: spmm_impl.h). Each nonzero w(r, k) is one broadcast
 * multiply-add of w by the packed row at[k] (the tile's w rows of A at
 * column k) into output row r's accumulators, which stay in registers.
 * CSR rows (1x1 blocks) alternate two sets of accumulators so that
 * consecutive nonzeros do not wait on each other's FMA; 16-bit column
 * indices (k16) halve the index traffic, which is what limits small tiles.
 * AVX-512 runs products of one to four rows of A from the one-row format
 * instead (spmm_impl.h, spmm_m1.c; the m1_ kernels below).
 */
#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SPMM_X86 1
#endif

#include "spmm_impl.h"

#define INLINE static inline __attribute__((always_inline))
#define PREFETCH_AHEAD 6  /* nonzeros: wide tiles prefetch that nonzero's packed row */
#define IN_FLIGHT 8       /* independent sums a narrow tile's CSR row keeps going */
#define WEIGHT_PREFETCH 256 /* nonzeros ahead */
#define GATHER_TAIL_MIN 4 /* one-row kernel: a tail this long or longer in one masked gather */

/* Column of block b's first element. */
#define KAT(s, b, idx16) ((size_t)((idx16) ? (s)->k16[b] : (uint32_t)(s)->k0[b]))

int spmm_width_floats(enum spmm_width w)
{
	static const int floats[_SPMM_W_MAX] = { 1, 4, 8, 16, 32, 48, 64 };

	return floats[w];
}

/* ---- generic C ------------------------------------------------------------- */

INLINE void rows_generic(const struct opass_spmm *s, int64_t row, const float *at, size_t ld,
			 float *out, const int w)
{
	size_t stride = (size_t)s->br * (size_t)s->bc;

	for (int r = 0; r < s->br; r++) {
		float acc[TILE_MAX] = { 0 };

		for (int32_t b = s->row_ptr[row]; b < s->row_ptr[row + 1]; b++) {
			const float *v = s->values + b * stride + (size_t)r * (size_t)s->bc;
			const float *x = at + (size_t)s->k0[b] * ld;

			for (int c = 0; c < s->bc; c++, x += ld)
				for (int i = 0; i < w; i++)
					acc[i] += v[c] * x[i];
		}
		memcpy(out + r * w, acc, (size_t)w * sizeof(float));
	}
}

#define GENERIC_WIDTH(W) \
	static void rows_generic_##W(const struct opass_spmm *s, int64_t row0, int64_t row1, \
				     const float *at, size_t ld, float *out) \
	{ \
		for (int64_t row = row0; row < row1; row++, out += s->br * W) \
			rows_generic(s, row, at, ld, out, W); \
	}
GENERIC_WIDTH(1)
GENERIC_WIDTH(4)
GENERIC_WIDTH(8)
GENERIC_WIDTH(16)
GENERIC_WIDTH(32)
GENERIC_WIDTH(48)
GENERIC_WIDTH(64)

static void row_add_generic(float *dst, const float *src, float add, const float *res,
			    bool relu, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float v = src[i] + add + (res ? res[i] : 0.0f);

		dst[i] = relu && !(v > 0.0f) ? 0.0f : v;
	}
}

void spmm_kernels_generic(struct spmm_kernels *k)
{
	*k = (struct spmm_kernels){ .block_rows = { rows_generic_1, rows_generic_4, rows_generic_8,
						    rows_generic_16, rows_generic_32,
						    rows_generic_48, rows_generic_64 },
				    .row_add = row_add_generic };
}

#ifdef SPMM_X86
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f")))

/* The weight's values and columns WEIGHT_PREFETCH nonzeros past b on their
 * way to L1: the hardware prefetchers alone left the streamed encoder's
 * kernels 13 % slower at 16 rows of A (session 14). */
INLINE void weight_prefetch(const struct opass_spmm *s, int32_t b, const bool idx16)
{
	_mm_prefetch((const char *)(s->values + b + WEIGHT_PREFETCH), _MM_HINT_T0);
	_mm_prefetch(idx16 ? (const char *)(s->k16 + b + WEIGHT_PREFETCH)
			   : (const char *)(s->k0 + b + WEIGHT_PREFETCH), _MM_HINT_T0);
}

/* ---- AVX2: 1 row (scalar), 4 rows (xmm), 8 x nv rows (ymm) ------------------- */

/* One row of A: a sparse dot product, four independent sums. */
AVX2 INLINE void csr_scalar(const struct opass_spmm *s, int64_t row, const float *at, size_t ld,
			    float *out, const bool idx16)
{
	float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
	int32_t b = s->row_ptr[row], e = s->row_ptr[row + 1];
	const float *v = s->values;

	for (; b + 3 < e; b += 4) {
		a0 = __builtin_fmaf(v[b], at[KAT(s, b, idx16) * ld], a0);
		a1 = __builtin_fmaf(v[b + 1], at[KAT(s, b + 1, idx16) * ld], a1);
		a2 = __builtin_fmaf(v[b + 2], at[KAT(s, b + 2, idx16) * ld], a2);
		a3 = __builtin_fmaf(v[b + 3], at[KAT(s, b + 3, idx16) * ld], a3);
	}
	for (; b < e; b++)
		a0 = __builtin_fmaf(v[b], at[KAT(s, b, idx16) * ld], a0);
	out[0] = (a0 + a1) + (a2 + a3);
}

AVX2 static void rows_avx2_1(const struct opass_spmm *s, int64_t row0, int64_t row1,
			    const float *at, size_t ld, float *out)
{
	for (int64_t row = row0; s->br == 1 && s->bc == 1 && s->k16 && row < row1; row++)
		csr_scalar(s, row, at, ld, out++, true);
	for (int64_t row = row0; s->br == 1 && s->bc == 1 && !s->k16 && row < row1; row++)
		csr_scalar(s, row, at, ld, out++, false);
	for (int64_t row = row0; (s->br != 1 || s->bc != 1) && row < row1; row++, out += s->br)
		rows_generic(s, row, at, ld, out, 1);
}

AVX2 INLINE void csr_xmm(const struct opass_spmm *s, int64_t row, const float *at, size_t ld,
			 float *out, const bool idx16)
{
	__m128 acc[IN_FLIGHT];
	int32_t b = s->row_ptr[row], e = s->row_ptr[row + 1];
	const float *v = s->values;

#pragma GCC unroll 8
	for (int i = 0; i < IN_FLIGHT; i++)
		acc[i] = _mm_setzero_ps();
	for (; b + IN_FLIGHT <= e; b += IN_FLIGHT) {
		weight_prefetch(s, b, idx16);
#pragma GCC unroll 8
		for (int i = 0; i < IN_FLIGHT; i++)
			acc[i] = _mm_fmadd_ps(_mm_set1_ps(v[b + i]),
					      _mm_loadu_ps(at + ld * KAT(s, b + i, idx16)), acc[i]);
	}
	for (; b < e; b++)
		acc[0] = _mm_fmadd_ps(_mm_set1_ps(v[b]), _mm_loadu_ps(at + ld * KAT(s, b, idx16)),
				      acc[0]);
#pragma GCC unroll 8
	for (int h = IN_FLIGHT / 2; h > 0; h /= 2)
#pragma GCC unroll 8
		for (int i = 0; i < h; i++)
			acc[i] = _mm_add_ps(acc[i], acc[i + h]);
	_mm_storeu_ps(out, acc[0]);
}

AVX2 static void rows_avx2_4(const struct opass_spmm *s, int64_t row0, int64_t row1,
			    const float *at, size_t ld, float *out)
{
	for (int64_t row = row0; s->br == 1 && s->bc == 1 && s->k16 && row < row1; row++, out += 4)
		csr_xmm(s, row, at, ld, out, true);
	for (int64_t row = row0; s->br == 1 && s->bc == 1 && !s->k16 && row < row1; row++, out += 4)
		csr_xmm(s, row, at, ld, out, false);
	for (int64_t row = row0; (s->br != 1 || s->bc != 1) && row < row1; row++, out += 4 * s->br)
		rows_generic(s, row, at, ld, out, 4);
}

/* CSR, nv ymm per packed row. Narrow tiles keep u nonzeros in flight, u x nv =
 * IN_FLIGHT independent sums (FMA latency, not throughput, bounds a chain);
 * wide ones (nv > 4) have enough in one, and prefetch the packed rows ahead. */
AVX2 INLINE void csr_ymm(const struct opass_spmm *s, int64_t row, const float *at, size_t ld,
			 float *out,
			 const int nv, const bool idx16)
{
	const int u = nv <= 4 ? IN_FLIGHT / nv : 1;
	__m256 acc[IN_FLIGHT];
	int32_t b = s->row_ptr[row], e = s->row_ptr[row + 1];
	const float *v = s->values;

#pragma GCC unroll 8
	for (int j = 0; j < u * nv; j++)
		acc[j] = _mm256_setzero_ps();
	for (; u > 1 && b + u <= e; b += u) {
		const float *x[IN_FLIGHT];
		__m256 w[IN_FLIGHT];

		weight_prefetch(s, b, idx16);

#pragma GCC unroll 8
		for (int i = 0; i < u; i++) {
			x[i] = at + KAT(s, b + i, idx16) * ld;
			w[i] = _mm256_set1_ps(v[b + i]);
		}
#pragma GCC unroll 8
		for (int j = 0; j < nv; j++)
#pragma GCC unroll 8
			for (int i = 0; i < u; i++)
				acc[i * nv + j] = _mm256_fmadd_ps(w[i], _mm256_loadu_ps(x[i] + 8 * j),
								  acc[i * nv + j]);
	}
	for (; b < e; b++) {
		const float *x0 = at + KAT(s, b, idx16) * ld;
		__m256 w0 = _mm256_set1_ps(v[b]);

		if (u == 1 && b + PREFETCH_AHEAD < e) {
			const char *pf = (const char *)(at + KAT(s, b + PREFETCH_AHEAD, idx16) * ld);

			for (int j = 0; j < nv / 2; j++)
				_mm_prefetch(pf + 64 * j, _MM_HINT_T0);
		}
#pragma GCC unroll 8
		for (int j = 0; j < nv; j++)
			acc[j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x0 + 8 * j), acc[j]);
	}
#pragma GCC unroll 8
	for (int i = 1; i < u; i++)
#pragma GCC unroll 8
		for (int j = 0; j < nv; j++)
			acc[j] = _mm256_add_ps(acc[j], acc[i * nv + j]);
#pragma GCC unroll 8
	for (int j = 0; j < nv; j++)
		_mm256_storeu_ps(out + 8 * j, acc[j]);
}

/* Any block shape: one output row r of the block row. */
AVX2 INLINE void bsr_ymm(const struct opass_spmm *s, int64_t row, int r, const float *at, size_t ld,
			 float *out, const int nv)
{
	const size_t stride = (size_t)s->br * (size_t)s->bc;
	__m256 acc[8];

	for (int j = 0; j < nv; j++)
		acc[j] = _mm256_setzero_ps();
	for (int32_t b = s->row_ptr[row]; b < s->row_ptr[row + 1]; b++) {
		const float *v = s->values + b * stride + (size_t)r * (size_t)s->bc;
		const float *x = at + (size_t)s->k0[b] * ld;

		for (int c = 0; c < s->bc; c++, x += ld) {
			__m256 wv = _mm256_set1_ps(v[c]);

#pragma GCC unroll 8
			for (int j = 0; j < nv; j++)
				acc[j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + 8 * j), acc[j]);
		}
	}
#pragma GCC unroll 8
	for (int j = 0; j < nv; j++)
		_mm256_storeu_ps(out + 8 * j, acc[j]);
}

AVX2 INLINE void rows_ymm(const struct opass_spmm *s, int64_t row0, int64_t row1,
			  const float *at, size_t ld, float *out, const int nv)
{
	const int64_t w = 8 * nv;

	if (s->br == 1 && s->bc == 1 && s->k16)
		for (int64_t row = row0; row < row1; row++, out += w)
			csr_ymm(s, row, at, ld, out, nv, true);
	else if (s->br == 1 && s->bc == 1)
		for (int64_t row = row0; row < row1; row++, out += w)
			csr_ymm(s, row, at, ld, out, nv, false);
	else
		for (int64_t row = row0; row < row1; row++)
			for (int r = 0; r < s->br; r++, out += w)
				bsr_ymm(s, row, r, at, ld, out, nv);
}

#define AVX2_WIDTH(W) \
	AVX2 static void rows_avx2_##W(const struct opass_spmm *s, int64_t row0, int64_t row1, \
				       const float *at, size_t ld, float *out) \
	{ \
		rows_ymm(s, row0, row1, at, ld, out, W / 8); \
	}
AVX2_WIDTH(8)
AVX2_WIDTH(16)
AVX2_WIDTH(32)
AVX2_WIDTH(48)
AVX2_WIDTH(64)

AVX2 static void row_add_avx2(float *dst, const float *src, float add, const float *res,
			      bool relu, size_t n)
{
	__m256 a = _mm256_set1_ps(add), zero = _mm256_setzero_ps();
	size_t i = 0;

	if (!res && !relu) {
		for (; i + 8 <= n; i += 8)
			_mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(src + i), a));
	} else {
		for (; i + 8 <= n; i += 8) {
			__m256 v = _mm256_add_ps(_mm256_loadu_ps(src + i), a);

			if (res)
				v = _mm256_add_ps(v, _mm256_loadu_ps(res + i));
			_mm256_storeu_ps(dst + i, relu ? _mm256_max_ps(v, zero) : v);
		}
	}
	row_add_generic(dst + i, src + i, add, res ? res + i : NULL, relu, n - i);
}

/* 8 x 8 transpose: pairs, then 2x2 blocks of pairs, then the 128-bit lanes;
 * dst[c][i] = src[i][c] (+ add[i]; then max(0, .) when relu: NaN gives 0, as
 * row_add's). */
AVX2 INLINE void transpose8_avx2(const float *src, size_t src_stride, float *dst,
				 size_t dst_stride, const float *add, bool relu)
{
	__m256 r[8], t[8];

#pragma GCC unroll 8
	for (int i = 0; i < 8; i++)
		r[i] = _mm256_loadu_ps(src + (size_t)i * src_stride);
#pragma GCC unroll 4
	for (int i = 0; i < 8; i += 2) {
		t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
		t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
	}
#pragma GCC unroll 2
	for (int i = 0; i < 8; i += 4) {
		r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
		r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
		r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
		r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
	}
#pragma GCC unroll 4
	for (int c = 0; c < 4; c++) {
		t[c] = _mm256_permute2f128_ps(r[c], r[c + 4], 0x20);
		t[c + 4] = _mm256_permute2f128_ps(r[c], r[c + 4], 0x31);
	}
#pragma GCC unroll 8
	for (int c = 0; c < 8; c++) {
		__m256 v = add ? _mm256_add_ps(t[c], _mm256_loadu_ps(add)) : t[c];

		/* max(v, 0) is 0 when v is NaN (the second operand) */
		_mm256_storeu_ps(dst + (size_t)c * dst_stride,
				 relu ? _mm256_max_ps(v, _mm256_setzero_ps()) : v);
	}
}

AVX2 static void transpose16_avx2(const float *src, size_t src_stride, float *dst,
				  size_t dst_stride, const float *add, bool relu)
{
	for (size_t bi = 0; bi < 16; bi += 8)
		for (size_t bj = 0; bj < 16; bj += 8)
			transpose8_avx2(src + bi * src_stride + bj, src_stride,
					dst + bj * dst_stride + bi, dst_stride, add ? add + bi : NULL,
					relu);
}

void spmm_kernels_avx2(struct spmm_kernels *k)
{
	*k = (struct spmm_kernels){ .block_rows = { rows_avx2_1, rows_avx2_4, rows_avx2_8,
						    rows_avx2_16, rows_avx2_32, rows_avx2_48,
						    rows_avx2_64 },
				    .transpose16 = transpose16_avx2, .row_add = row_add_avx2 };
}

/* ---- AVX-512: 16 x nv rows (zmm) ---------------------------------------------- */

/* CSR, nv zmm per packed row: wide tiles (nv >= 3) two nonzeros at a time,
 * narrow ones u at a time, u x nv = IN_FLIGHT independent sums (the same
 * scheme for wide tiles ran 5-10 % slower at 48 and 128 rows on a Zen 5). */
AVX512 INLINE void csr_zmm_pairs(const struct opass_spmm *s, int64_t row, const float *at,
				 size_t ld, float *out, const int nv, const bool idx16)
{
	__m512 a0[4], a1[4];
	int32_t b = s->row_ptr[row], e = s->row_ptr[row + 1];
	const float *v = s->values;

	for (int j = 0; j < nv; j++)
		a0[j] = a1[j] = _mm512_setzero_ps();
	for (; b + 1 < e; b += 2) {
		const float *x0 = at + KAT(s, b, idx16) * ld, *x1 = at + KAT(s, b + 1, idx16) * ld;
		__m512 w0 = _mm512_set1_ps(v[b]), w1 = _mm512_set1_ps(v[b + 1]);

		weight_prefetch(s, b, idx16);

#pragma GCC unroll 4
		for (int j = 0; j < nv; j++) {
			a0[j] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x0 + 16 * j), a0[j]);
			a1[j] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x1 + 16 * j), a1[j]);
		}
	}
	if (b < e) {
		const float *x0 = at + KAT(s, b, idx16) * ld;
		__m512 w0 = _mm512_set1_ps(v[b]);

#pragma GCC unroll 4
		for (int j = 0; j < nv; j++)
			a0[j] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x0 + 16 * j), a0[j]);
	}
#pragma GCC unroll 4
	for (int j = 0; j < nv; j++)
		_mm512_storeu_ps(out + 16 * j, _mm512_add_ps(a0[j], a1[j]));
}

/* The last e - b < u nonzeros of a row, one into each sum (not one chain into
 * the first): the u slots run masked, those past e read nonzero e - 1 and
 * leave their sums as they are. */
AVX512 INLINE void acc_tail(const struct opass_spmm *s, int32_t b, int32_t e, const float *at,
			    size_t ld, __m512 *acc, const int nv, const int u, const bool idx16)
{
#pragma GCC unroll 8
	for (int i = 0; i < u; i++) {
		int32_t c = b + i < e ? b + i : e - 1;
		__mmask16 k = (__mmask16)-(b + i < e);
		const float *x = at + KAT(s, c, idx16) * ld;
		__m512 w = _mm512_set1_ps(s->values[c]);

#pragma GCC unroll 4
		for (int j = 0; j < nv; j++)
			acc[i * nv + j] = _mm512_mask3_fmadd_ps(w, _mm512_maskz_loadu_ps(k, x + 16 * j),
								acc[i * nv + j], k);
	}
}

AVX512 INLINE void csr_zmm(const struct opass_spmm *s, int64_t row, const float *at, size_t ld,
			   float *out, const int nv, const bool idx16)
{
	const int u = IN_FLIGHT / nv;
	__m512 acc[IN_FLIGHT];
	int32_t b = s->row_ptr[row], e = s->row_ptr[row + 1];
	const float *v = s->values;

#pragma GCC unroll 8
	for (int j = 0; j < u * nv; j++)
		acc[j] = _mm512_setzero_ps();
	for (; b + u <= e; b += u) {
		const float *x[IN_FLIGHT];
		__m512 w[IN_FLIGHT];

		weight_prefetch(s, b, idx16);

#pragma GCC unroll 8
		for (int i = 0; i < u; i++) {
			x[i] = at + KAT(s, b + i, idx16) * ld;
			w[i] = _mm512_set1_ps(v[b + i]);
		}
#pragma GCC unroll 4
		for (int j = 0; j < nv; j++)
#pragma GCC unroll 8
			for (int i = 0; i < u; i++)
				acc[i * nv + j] = _mm512_fmadd_ps(w[i], _mm512_loadu_ps(x[i] + 16 * j),
								  acc[i * nv + j]);
	}
	if (b < e)
		acc_tail(s, b, e, at, ld, acc, nv, u, idx16);
#pragma GCC unroll 8
	for (int i = 1; i < u; i++)
#pragma GCC unroll 4
		for (int j = 0; j < nv; j++)
			acc[j] = _mm512_add_ps(acc[j], acc[i * nv + j]);
#pragma GCC unroll 4
	for (int j = 0; j < nv; j++)
		_mm512_storeu_ps(out + 16 * j, acc[j]);
}

AVX512 INLINE void bsr_zmm(const struct opass_spmm *s, int64_t row, int r, const float *at, size_t ld,
			   float *out, const int nv)
{
	const size_t stride = (size_t)s->br * (size_t)s->bc;
	__m512 acc[4];

	for (int j = 0; j < nv; j++)
		acc[j] = _mm512_setzero_ps();
	for (int32_t b = s->row_ptr[row]; b < s->row_ptr[row + 1]; b++) {
		const float *v = s->values + b * stride + (size_t)r * (size_t)s->bc;
		const float *x = at + (size_t)s->k0[b] * ld;

		for (int c = 0; c < s->bc; c++, x += ld) {
			__m512 wv = _mm512_set1_ps(v[c]);

#pragma GCC unroll 4
			for (int j = 0; j < nv; j++)
				acc[j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + 16 * j), acc[j]);
		}
	}
#pragma GCC unroll 4
	for (int j = 0; j < nv; j++)
		_mm512_storeu_ps(out + 16 * j, acc[j]);
}

/* 4x1 blocks: four outputs share each packed row of A. */
AVX512 INLINE void rows4_zmm(const struct opass_spmm *s, int64_t row, const float *at, size_t ld,
			     float *out,
			     const int nv)
{
	const size_t w = 16 * (size_t)nv;
	__m512 acc[4][4];

	for (int r = 0; r < 4; r++)
		for (int j = 0; j < nv; j++)
			acc[r][j] = _mm512_setzero_ps();
	for (int32_t b = s->row_ptr[row]; b < s->row_ptr[row + 1]; b++) {
		const float *v = s->values + 4 * (size_t)b;
		const float *x = at + (size_t)s->k0[b] * ld;
		__m512 xs[4];

#pragma GCC unroll 4
		for (int j = 0; j < nv; j++)
			xs[j] = _mm512_loadu_ps(x + 16 * j);
#pragma GCC unroll 4
		for (int r = 0; r < 4; r++) {
			__m512 wv = _mm512_set1_ps(v[r]);

#pragma GCC unroll 4
			for (int j = 0; j < nv; j++)
				acc[r][j] = _mm512_fmadd_ps(wv, xs[j], acc[r][j]);
		}
	}
	for (int r = 0; r < 4; r++)
		for (int j = 0; j < nv; j++)
			_mm512_storeu_ps(out + r * w + 16 * j, acc[r][j]);
}

AVX512 INLINE void rows_zmm(const struct opass_spmm *s, int64_t row0, int64_t row1,
			  const float *at, size_t ld, float *out, const int nv)
{
	const int64_t w = 16 * nv;
	const bool csr = s->br == 1 && s->bc == 1;

	if (csr && nv >= 3 && s->k16)
		for (int64_t row = row0; row < row1; row++, out += w)
			csr_zmm_pairs(s, row, at, ld, out, nv, true);
	else if (csr && nv >= 3)
		for (int64_t row = row0; row < row1; row++, out += w)
			csr_zmm_pairs(s, row, at, ld, out, nv, false);
	else if (csr && s->k16)
		for (int64_t row = row0; row < row1; row++, out += w)
			csr_zmm(s, row, at, ld, out, nv, true);
	else if (csr)
		for (int64_t row = row0; row < row1; row++, out += w)
			csr_zmm(s, row, at, ld, out, nv, false);
	else if (s->br == 4 && s->bc == 1)
		for (int64_t row = row0; row < row1; row++, out += 4 * w)
			rows4_zmm(s, row, at, ld, out, nv);
	else
		for (int64_t row = row0; row < row1; row++)
			for (int r = 0; r < s->br; r++, out += w)
				bsr_zmm(s, row, r, at, ld, out, nv);
}

/* The 16 packed-row offsets of nonzeros b .. b + 15 (column times ld). */
AVX512 INLINE __m512i csr_offsets16(const struct opass_spmm *s, int32_t b, size_t ld,
				    const bool idx16)
{
	__m512i i = idx16 ? _mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)(s->k16 + b)))
			  : _mm512_loadu_si512(s->k0 + b);

	return ld == 1 ? i : _mm512_mullo_epi32(i, _mm512_set1_epi32((int)ld));
}

/* acc + values[b .. b + 15] x their packed-row elements of at, one gather. */
AVX512 INLINE __m512 csr_fma16(const struct opass_spmm *s, int32_t b, const float *at, size_t ld,
			       __m512 acc, const bool idx16)
{
	return _mm512_fmadd_ps(_mm512_loadu_ps(s->values + b),
			       _mm512_i32gather_ps(csr_offsets16(s, b, ld, idx16), at, 4), acc);
}

/* One row of A (CSR): sixteen nonzeros per gather, two sums; the last
 * nonzeros (GATHER_TAIL_MIN or more) in one masked gather whose offsets end
 * at the row's end (rows before it are read, not used), not in a scalar
 * chain; fewer take the scalar loop, cheaper than a gather for them. On
 * the Intel Xeon (one thread) 1.5-2.9x faster than csr_scalar, in cache and
 * streamed (768x3072 at 80-95 %); session 6's gather kernel on the Zen 5 ran
 * 6 % slower in cache, 4-6 % faster on the encoder streamed. */
AVX512 INLINE void csr_gather(const struct opass_spmm *s, int64_t row, const float *at, size_t ld,
			      float *out, const bool idx16)
{
	__m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
	int32_t b = s->row_ptr[row], e = s->row_ptr[row + 1];
	const float *v = s->values;
	float tail = 0.0f;

	for (; b + 32 <= e; b += 32) {
		a0 = csr_fma16(s, b, at, ld, a0, idx16);
		a1 = csr_fma16(s, b + 16, at, ld, a1, idx16);
	}
	if (b + 16 <= e) {
		a0 = csr_fma16(s, b, at, ld, a0, idx16);
		b += 16;
	}
	if (e - b >= GATHER_TAIL_MIN && e >= 16) {
		__mmask16 k = (__mmask16)(0xffff << (16 - (e - b)));
		__m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k,
						    csr_offsets16(s, e - 16, ld, idx16), at, 4);

		a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, v + e - 16), x, a1);
		b = e;
	}
	for (; b < e; b++)
		tail = __builtin_fmaf(v[b], at[KAT(s, b, idx16) * ld], tail);
	out[0] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + tail;
}

AVX512 static void rows_avx512_1(const struct opass_spmm *s, int64_t row0, int64_t row1,
				 const float *at, size_t ld, float *out)
{
	for (int64_t row = row0; s->br == 1 && s->bc == 1 && s->k16 && row < row1; row++)
		csr_gather(s, row, at, ld, out++, true);
	for (int64_t row = row0; s->br == 1 && s->bc == 1 && !s->k16 && row < row1; row++)
		csr_gather(s, row, at, ld, out++, false);
	if (s->br != 1 || s->bc != 1)
		rows_avx2_1(s, row0, row1, at, ld, out);
}

#define AVX512_WIDTH(W) \
	AVX512 static void rows_avx512_##W(const struct opass_spmm *s, int64_t row0, \
					   int64_t row1, const float *at, size_t ld, float *out) \
	{ \
		rows_zmm(s, row0, row1, at, ld, out, W / 16); \
	}
AVX512_WIDTH(16)
AVX512_WIDTH(32)
AVX512_WIDTH(48)
AVX512_WIDTH(64)

/* The lanes below n (all 16 from n = 16 on). */
AVX512 INLINE __mmask16 lanes_below(size_t n)
{
	return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

/* ---- AVX-512, the one-row format (spmm_impl.h, spmm_m1.c) ---------------- */

#define M1_AVX512 __attribute__((target("avx512f,popcnt")))
#define M1_PREFETCH_STEPS 128  /* steps ahead (the hardware alone: 3x slower streamed) */

/* x's window w (64 columns from 64 w on) in four registers, 0 past k. */
M1_AVX512 INLINE void m1_window(const float *x, int64_t w, int64_t k, __m512 xs[4])
{
	int64_t left = k - w * M1_WINDOW;

#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {
		const float *p = x + w * M1_WINDOW + 16 * j;
		size_t in = left > 16 * j ? (size_t)(left - 16 * j) : 0;

		xs[j] = in >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes_below(in), p);
	}
}

/* Each lane's element of the window: two two-source permutes, then the upper
 * or lower half by the offset's bit 5. */
M1_AVX512 INLINE __m512 m1_pick(const __m512 xs[4], __m512i id)
{
	__m512 lo = _mm512_permutex2var_ps(xs[0], id, xs[1]);
	__m512 hi = _mm512_permutex2var_ps(xs[2], id, xs[3]);

	return _mm512_mask_blend_ps(_mm512_test_epi32_mask(id, _mm512_set1_epi32(32)), lo, hi);
}

/* One step's offsets, the lanes that have an element (*ret_k), and their
 * values by an expanding load (0 elsewhere); *v moves past them. */
M1_AVX512 INLINE __m512i m1_load(const uint8_t *idx, const float **v, __mmask16 *ret_k,
				 __m512 *ret_w)
{
	__m512i id = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)idx));
	__mmask16 k = _mm512_cmpneq_epi32_mask(id, _mm512_set1_epi32(M1_EMPTY));

	*ret_w = _mm512_maskz_expandloadu_ps(k, *v);
	_mm_prefetch((const char *)(idx + 16 * M1_PREFETCH_STEPS), _MM_HINT_T0);
	_mm_prefetch((const char *)(*v + 4 * M1_PREFETCH_STEPS), _MM_HINT_T0);
	*v += __builtin_popcount(k);
	*ret_k = k;
	return id;
}

/* acc + one step's elements times their values; empty lanes keep acc as it
 * is, whatever x holds. */
M1_AVX512 INLINE __m512 m1_step(const uint8_t *idx, const float **v, const __m512 xs[4], __m512 acc)
{
	__mmask16 k;
	__m512 w;
	__m512i id = m1_load(idx, v, &k, &w);

	return _mm512_mask3_fmadd_ps(w, m1_pick(xs, id), acc, k);
}

/* One row of A: two sums, alternate steps. */
M1_AVX512 INLINE void m1_slice1(const struct spmm_m1 *f, int64_t k, int64_t s, const float *x,
				float *out)
{
	const uint8_t *idx = f->idx + f->slice_step[s] * 16;
	const uint8_t *steps = f->steps + s * f->n_windows;
	const float *v = f->values + f->slice_value[s];
	__m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), xs[4];

	for (int64_t w = 0; w < f->n_windows; w++) {
		int c = steps[w];

		if (!c)
			continue;
		m1_window(x, w, k, xs);
		for (; c >= 2; c -= 2, idx += 32) {
			a0 = m1_step(idx, &v, xs, a0);
			a1 = m1_step(idx + 16, &v, xs, a1);
		}
		if (c) {
			a0 = m1_step(idx, &v, xs, a0);
			idx += 16;
		}
	}
	_mm512_storeu_ps(out, _mm512_add_ps(a0, a1));
}

/* rows (2 .. M1_ROWS) rows of A, a sum each, sharing every step's offsets and
 * values: out[lane * ldo + r]. */
M1_AVX512 INLINE void m1_slice_rows(const struct spmm_m1 *f, int64_t k, int64_t s,
				    const float *x, size_t ldx, float *out, size_t ldo,
				    const int rows)
{
	const uint8_t *idx = f->idx + f->slice_step[s] * 16;
	const uint8_t *steps = f->steps + s * f->n_windows;
	const float *v = f->values + f->slice_value[s];
	__m512 acc[M1_ROWS], xs[M1_ROWS][4];
	float sums[M1_ROWS][16];

#pragma GCC unroll 4
	for (int r = 0; r < rows; r++)
		acc[r] = _mm512_setzero_ps();
	for (int64_t w = 0; w < f->n_windows; w++) {
		int c = steps[w];

		if (!c)
			continue;
#pragma GCC unroll 4
		for (int r = 0; r < rows; r++)
			m1_window(x + (size_t)r * ldx, w, k, xs[r]);
		for (; c > 0; c--, idx += 16) {
			__mmask16 m;
			__m512 wv;
			__m512i id = m1_load(idx, &v, &m, &wv);

#pragma GCC unroll 4
			for (int r = 0; r < rows; r++)
				acc[r] = _mm512_mask3_fmadd_ps(wv, m1_pick(xs[r], id), acc[r], m);
		}
	}
#pragma GCC unroll 4
	for (int r = 0; r < rows; r++)
		_mm512_storeu_ps(sums[r], acc[r]);
	for (int lane = 0; lane < 16; lane++)
		for (int r = 0; r < rows; r++)
			out[(size_t)lane * ldo + (size_t)r] = sums[r][lane];
}

M1_AVX512 static void m1_avx512(const struct spmm_m1 *f, int64_t k, int64_t s0, int64_t s1,
			     const float *x, size_t ldx, int rows, float *out, size_t ldo)
{
	for (int64_t s = s0; s < s1; s++, out += 16 * ldo) {
		if (rows == 1)
			m1_slice1(f, k, s, x, out);
		else if (rows == 2)
			m1_slice_rows(f, k, s, x, ldx, out, ldo, 2);
		else if (rows == 3)
			m1_slice_rows(f, k, s, x, ldx, out, ldo, 3);
		else
			m1_slice_rows(f, k, s, x, ldx, out, ldo, 4);
	}
}

/* v + a (+ the residual at res, k's lanes), max(0, .) when relu */
AVX512 INLINE __m512 row_add_zmm(__m512 v, __m512 a, const float *res, __mmask16 k, bool relu)
{
	v = _mm512_add_ps(v, a);
	if (res)
		v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, res));
	return relu ? _mm512_max_ps(v, _mm512_setzero_ps()) : v;
}

/* The tail masked, so that a conv's short rows (an output row of 7 or 14
 * positions, stored one by one for padded convs) take one step, not a scalar
 * loop; full steps are plain loads and stores. */
AVX512 static void row_add_avx512(float *dst, const float *src, float add, const float *res,
				  bool relu, size_t n)
{
	__m512 a = _mm512_set1_ps(add);
	size_t i = 0;

	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(dst + i, row_add_zmm(_mm512_loadu_ps(src + i), a,
						      res ? res + i : NULL, 0xffff, relu));
	if (i < n) {
		__mmask16 k = lanes_below(n - i);

		_mm512_mask_storeu_ps(dst + i, k,
				      row_add_zmm(_mm512_maskz_loadu_ps(k, src + i), a,
						  res ? res + i : NULL, k, relu));
	}
}

/* Stride-2 rows of a conv's packed patches: 16 outputs from two masked loads
 * and one two-source permute. */
AVX512 static void gather2_avx512(float *dst, const float *src, size_t n)
{
	const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6,
					      4, 2, 0);

	for (size_t i = 0; i < n; i += 16, src += 32) {
		size_t need = 2 * (n - i) - 1;   /* elements up to the last one read */
		__mmask16 k1 = need > 16 ? lanes_below(need - 16) : 0;
		__m512 v = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(lanes_below(need), src), even,
						  _mm512_maskz_loadu_ps(k1, src + 16));

		_mm512_mask_storeu_ps(dst + i, lanes_below(n - i), v);
	}
}

/* A packed conv's tap rows: 16 elements a masked gather (positions in the
 * padding have idx -1 and read nothing). */
AVX512 static void gather_avx512(float *dst, const float *src, const int32_t *idx, size_t n)
{
	for (size_t i = 0; i < n; i += 16) {
		__mmask16 k = lanes_below(n - i);
		__m512i id = _mm512_maskz_loadu_epi32(k, idx + i);
		__mmask16 in = _mm512_mask_cmpge_epi32_mask(k, id, _mm512_setzero_si512());

		_mm512_mask_storeu_ps(dst + i, k, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in,
									   id, src, 4));
	}
}

/* 16 x 16 transpose in registers: pairs, then 4x4 blocks within 128-bit lanes,
 * then the lanes themselves. */
AVX512 static void transpose16_avx512(const float *src, size_t src_stride, float *dst,
				      size_t dst_stride, const float *add, bool relu)
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

		/* max(v, 0) is 0 when v is NaN (the second operand) */
		_mm512_storeu_ps(dst + (size_t)c * dst_stride,
				 relu ? _mm512_max_ps(v, _mm512_setzero_ps()) : v);
	}
}

/* Narrow tiles (1, 4, 8 rows) use the AVX2 kernels: every AVX-512 CPU has AVX2. */
void spmm_kernels_avx512(struct spmm_kernels *k)
{
	*k = (struct spmm_kernels){ .block_rows = { rows_avx512_1, rows_avx2_4, rows_avx2_8,
						    rows_avx512_16, rows_avx512_32,
						    rows_avx512_48, rows_avx512_64 },
				    .transpose16 = transpose16_avx512, .row_add = row_add_avx512,
				    .gather2 = gather2_avx512, .gather = gather_avx512,
				    .m1 = m1_avx512 };
}
#else
void spmm_kernels_avx2(struct spmm_kernels *k)
{
	spmm_kernels_generic(k);
}

void spmm_kernels_avx512(struct spmm_kernels *k)
{
	spmm_kernels_generic(k);
}
#endif
