/* SPDX-License-Identifier: MIT */
/* src/sparse/sparse_kernels.c against a dense double-precision reference. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparse_kernels.h"
#include "spmm_impl.h"
#include "testlib.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static float frand(void)
{
	return (float)(rng() >> 40) / (float)(1 << 23) - 1.0f;
}

/* Dense bt [n, k] with zeros: each br x bc block kept with probability keep,
 * and a kept block's elements zeroed with probability hole. Row 1 is empty. */
static float *weight_make(int64_t n, int64_t k, int64_t br, int64_t bc, double keep, double hole)
{
	float *bt = calloc((size_t)(n * k + 1), sizeof(*bt));

	ck_assert_ptr_nonnull(bt);
	for (int64_t i = 0; i < n; i += br)
		for (int64_t j = 0; j < k; j += bc) {
			if ((double)(rng() % 1000) >= keep * 1000)
				continue;
			for (int64_t r = i; r < i + br && r < n; r++)
				for (int64_t c = j; c < j + bc && c < k; c++)
					if ((double)(rng() % 1000) >= hole * 1000 && r != 1)
						bt[r * k + c] = frand();
		}
	return bt;
}

static double *reference(const float *a, const float *bt, const float *bias, size_t n_bias,
			 int64_t m, int64_t n, int64_t k)
{
	double *y = calloc((size_t)(m * n + 1), sizeof(*y));

	ck_assert_ptr_nonnull(y);
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double s = bias ? bias[n_bias == 1 ? 0 : j] : 0.0;

			for (int64_t c = 0; c < k; c++)
				s += (double)a[i * k + c] * (double)bt[j * k + c];
			y[i * n + j] = s;
		}
	return y;
}

static void assert_close(const float *y, const double *ref, int64_t count, const char *what)
{
	double scale = 1e-30;

	for (int64_t i = 0; i < count; i++)
		scale = fmax(scale, fabs(ref[i]));
	for (int64_t i = 0; i < count; i++)
		ck_assert_msg(fabs((double)y[i] - ref[i]) <= 1e-5 * scale,
			      "%s: element %lld is %g, expected %g", what, (long long)i,
			      (double)y[i], ref[i]);
}

static struct opass_spmm *spmm_from(const float *bt, int64_t n, int64_t k, int64_t br,
				    int64_t bc, bool index64)
{
	struct onnxpass_error err = { 0 };
	struct opass_bsr *bsr = NULL;
	struct opass_spmm *spmm = NULL;
	int32_t *col32, *ptr32;
	int64_t rows = (n + br - 1) / br + 1;
	int r;

	ck_assert_int_eq(opass_bsr_from_dense(bt, n, k, br, bc, &bsr, &err), 0);
	col32 = malloc((size_t)(bsr->n_blocks + 1) * sizeof(*col32));
	ptr32 = malloc((size_t)rows * sizeof(*ptr32));
	ck_assert(col32 && ptr32);
	for (int64_t i = 0; i < bsr->n_blocks; i++)
		col32[i] = (int32_t)bsr->col[i];
	for (int64_t i = 0; i < rows; i++)
		ptr32[i] = (int32_t)bsr->row_ptr[i];
	r = opass_spmm_new(n, k, br, bc, bsr->values, (size_t)(bsr->n_blocks * br * bc),
			   index64 ? (void *)bsr->col : col32, (size_t)bsr->n_blocks,
			   index64 ? (void *)bsr->row_ptr : ptr32, (size_t)rows, index64, &spmm,
			   &err);
	ck_assert_msg(r == 0, "opass_spmm_new: %s", err.message);
	free(col32);
	free(ptr32);
	opass_bsr_free(bsr);
	return spmm;
}

struct shape {
	int64_t m, n, k, br, bc;
	double keep, hole;
};

/* y viewed as [B, T, H, D] (T = m / 2 when m is even, D = 16 when 16 divides
 * n, else 1 group each) and stored transposed as attention's query / value
 * ([B, H, T, D]) and key ([B, H, D, T]) projections; and as [B, T, n / 2, 2]
 * stored [B, T, 2, n / 2] (n even): columns never contiguous. */
static void check_layouts(const struct opass_spmm *spmm, const float *a, const struct shape *s,
			  const float *bias, size_t n_bias, const struct opass_spmm_exec *exec,
			  const double *ref, float *y, const char *what)
{
	int64_t t = s->m % 2 == 0 ? s->m / 2 : s->m, d = s->n % 16 == 0 ? 16 : s->n;
	int64_t h = s->n / d, pairs = s->n % 2 == 0 ? s->n / 2 : 1;
	const struct opass_spmm_layout layouts[3] = {
		{ .rows = t, .row = d, .row_group = h * t * d, .cols = d, .col = 1, .col_group = t * d },
		{ .rows = t, .row = 1, .row_group = h * d * t, .cols = d, .col = t, .col_group = d * t },
		{ .rows = t, .row = s->n, .row_group = t * s->n, .cols = s->n / pairs, .col = pairs,
		  .col_group = 1 },
	};
	double *want = malloc((size_t)(s->m * s->n + 1) * sizeof(*want));

	ck_assert_ptr_nonnull(want);
	for (int l = 0; l < 3; l++) {
		const struct opass_spmm_layout *lo = &layouts[l];
		char msg[200];

		for (int64_t i = 0; i < s->m; i++)
			for (int64_t j = 0; j < s->n; j++)
				want[i / lo->rows * lo->row_group + i % lo->rows * lo->row +
				     j / lo->cols * lo->col_group + j % lo->cols * lo->col] =
					ref[i * s->n + j];
		ck_assert_int_eq(opass_spmm_run_layout(spmm, a, s->m, bias, n_bias, true, lo, y,
						       exec), 0);
		snprintf(msg, sizeof(msg), "%s layout %d", what, l);
		assert_close(y, want, s->m * s->n, msg);
	}
	free(want);
}

static void check_shape(const struct shape *s, enum opass_spmm_isa isa, unsigned threads,
			int bias_kind)
{
	float *bt = weight_make(s->n, s->k, s->br, s->bc, s->keep, s->hole);
	float *a = malloc((size_t)(s->m * s->k + 1) * sizeof(*a));
	float *y = malloc((size_t)(s->m * s->n + 1) * sizeof(*y));
	float *bias = malloc((size_t)(s->n + 1) * sizeof(*bias));
	size_t n_bias = bias_kind == 2 ? (size_t)s->n : (size_t)bias_kind;
	struct opass_spmm_exec exec = { .isa = isa, .threads = threads };
	struct opass_spmm *spmm;
	double *ref;
	char what[160];

	ck_assert(a && y && bias);
	for (int64_t i = 0; i < s->m * s->k; i++)
		a[i] = frand();
	for (int64_t i = 0; i <= s->n; i++)
		bias[i] = frand();
	for (int64_t i = 0; i < s->m * s->n; i++)
		y[i] = NAN;
	spmm = spmm_from(bt, s->n, s->k, s->br, s->bc, (s->m & 1) != 0);
	ref = reference(a, bt, n_bias ? bias : NULL, n_bias, s->m, s->n, s->k);
	ck_assert_int_eq(opass_spmm_run(spmm, a, s->m, n_bias ? bias : NULL, n_bias, y, &exec), 0);
	snprintf(what, sizeof(what), "M=%lld N=%lld K=%lld %lldx%lld isa %d threads %u bias %d",
		 (long long)s->m, (long long)s->n, (long long)s->k, (long long)s->br,
		 (long long)s->bc, isa, threads, bias_kind);
	assert_close(y, ref, s->m * s->n, what);
	/* a following Relu, fused */
	for (int64_t i = 0; i < s->m * s->n; i++)
		ref[i] = fmax(ref[i], 0.0);
	ck_assert_int_eq(opass_spmm_run_relu(spmm, a, s->m, n_bias ? bias : NULL, n_bias, true, y,
					     &exec), 0);
	assert_close(y, ref, s->m * s->n, what);
	check_layouts(spmm, a, s, n_bias ? bias : NULL, n_bias, &exec, ref, y, what);
	opass_spmm_free(spmm);
	free(ref);
	free(bt);
	free(a);
	free(y);
	free(bias);
}

static const enum opass_spmm_isa isas[] = {
	OPASS_SPMM_ISA_AUTO, OPASS_SPMM_ISA_GENERIC, OPASS_SPMM_ISA_AVX2, OPASS_SPMM_ISA_AVX512,
};

static const int64_t block_shapes[][2] = { { 1, 1 }, { 1, 4 }, { 4, 1 }, { 2, 3 }, { 16, 16 } };

START_TEST(test_random_shapes)
{
	/* every tile width class: 1, 4, 8, 16, 32, 48, 64 rows, 64 + a narrow tile, and
	 * enough tiles (600 rows) for a work item per tile */
	static const int64_t ms[] = { 1, 2, 3, 4, 5, 8, 9, 16, 17, 31, 33, 48, 49, 63, 64, 65, 67,
				      100, 130, 600 };
	static const int64_t ns[] = { 1, 5, 17, 64, 65, 130 };
	static const int64_t ks[] = { 1, 5, 67, 130 };
	size_t runs = 0;

	for (size_t b = 0; b < sizeof(block_shapes) / sizeof(block_shapes[0]); b++)
		for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
			for (size_t j = 0; j < 3; j++) {
				struct shape s = {
					.m = ms[i], .n = ns[(i + j + b) % 6], .k = ks[(i * 3 + j) % 4],
					.br = block_shapes[b][0], .bc = block_shapes[b][1],
					.keep = 0.3 + 0.3 * (double)j, .hole = j == 1 ? 0.3 : 0.0,
				};

				for (size_t t = 0; t < sizeof(isas) / sizeof(isas[0]); t++) {
					if (!opass_spmm_isa_supported(isas[t]))
						continue;
					check_shape(&s, isas[t], 1 + (unsigned)(j % 2), (int)(i % 3));
					runs++;
				}
			}
	ck_assert_uint_ge(runs, 2 * 5 * 7 * 3);
}
END_TEST

/* From 64 rows of A on, the AVX2 kernels use tiles of 32 rows, or of 16 when
 * K > 1024: both sides of that K, every block shape, M around the tile sizes
 * (full tiles, a short last tile, enough tiles for a work item per tile). */
START_TEST(test_narrow_tiles)
{
	static const int64_t ms[] = { 63, 64, 65, 97, 200, 530 };
	static const int64_t ks[] = { 1024, 1025, 1031 };

	for (size_t b = 0; b < sizeof(block_shapes) / sizeof(block_shapes[0]); b++)
		for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
			struct shape s = { .m = ms[i], .n = 37, .k = ks[(i + b) % 3],
					   .br = block_shapes[b][0], .bc = block_shapes[b][1],
					   .keep = 0.2, .hole = b == 1 ? 0.3 : 0.0 };

			for (size_t t = 0; t < sizeof(isas) / sizeof(isas[0]); t++)
				if (opass_spmm_isa_supported(isas[t]))
					check_shape(&s, isas[t], 2, (int)(i % 3));
		}
}
END_TEST

/* K past 16-bit column indices: the kernels read the 32-bit ones. */
START_TEST(test_wide_k)
{
	static const int64_t ms[] = { 1, 4, 7, 16, 40, 70 };

	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		struct shape s = { .m = ms[i], .n = 9, .k = 70001, .br = 1, .bc = 1, .keep = 0.01 };

		for (size_t t = 0; t < sizeof(isas) / sizeof(isas[0]); t++)
			if (opass_spmm_isa_supported(isas[t]))
				check_shape(&s, isas[t], 2, (int)(i % 3));
	}
}
END_TEST

/* The cost model: dense and half-zero weights never win, 95 % zeros always do,
 * 80 % zeros only where MLAS is weakest (5..48 rows), unknown M as the worst case. */
START_TEST(test_predict_win)
{
	static const int64_t ms[] = { -1, 1, 4, 5, 16, 48, 49, 128, 4096 };
	const enum opass_spmm_isa avx2 = OPASS_SPMM_ISA_AVX2, avx512 = OPASS_SPMM_ISA_AVX512;
	int64_t k = 768, n = 3072, all = k * n;

	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		int64_t m = ms[i];

		ck_assert(!opass_spmm_predict_win(avx2, m, k, n, all, 0, 0));
		ck_assert(!opass_spmm_predict_win(avx2, m, k, n, all / 2, 0, 0));
		ck_assert(opass_spmm_predict_win(avx2, m, k, n, all / 20, 0, 0));
		ck_assert(opass_spmm_predict_win(avx2, m, k, n, all / 5, 0, 0) == (m >= 5 && m <= 48));
		/* AVX-512 (fitted on a Zen 5): 70 % never; 80 % at one row (the
		 * one-row format) and with tiles of at least 16 rows that are full
		 * (16, 48, 64+ rows; not 49, padded to 64); 90 % at one to four
		 * rows (the one-row format) and from 7 rows on; 95 % at any M,
		 * also unknown */
		ck_assert(!opass_spmm_predict_win(avx512, m, k, n, all * 3 / 10, 0, 0));
		ck_assert(opass_spmm_predict_win(avx512, m, k, n, all / 5, 0, 0) ==
			  (m == 1 || m == 16 || m == 48 || m >= 64));
		ck_assert(opass_spmm_predict_win(avx512, m, k, n, all / 10, 0, 0) ==
			  ((m >= 1 && m <= 4) || m >= 7));
		ck_assert(opass_spmm_predict_win(avx512, m, k, n, all / 20, 0, 0));
	}
	/* a tile padded from 9 to 16 rows costs as 16: 80 % does not win at 9,
	 * 90 % does; 5 rows in an 8-row tile lose at 90 % */
	ck_assert(!opass_spmm_predict_win(avx512, 9, k, n, all / 5, 0, 0));
	ck_assert(opass_spmm_predict_win(avx512, 9, k, n, all / 10, 0, 0));
	ck_assert(!opass_spmm_predict_win(avx512, 5, k, n, all / 10, 0, 0));
	/* a call's fixed cost: a 64x64 weight at 95 % zeros does not win at one
	 * row (nor when M is unknown), a 200x200 one does, and 64x64 at 64 rows */
	ck_assert(!opass_spmm_predict_win(avx512, 1, 64, 64, 64 * 64 / 20, 0, 0));
	ck_assert(!opass_spmm_predict_win(avx512, -1, 64, 64, 64 * 64 / 20, 0, 0));
	ck_assert(!opass_spmm_predict_win(avx2, 1, 64, 64, 64 * 64 / 20, 0, 0));
	ck_assert(opass_spmm_predict_win(avx512, 1, 200, 200, 200 * 200 / 20, 0, 0));
	ck_assert(opass_spmm_predict_win(avx512, 64, 64, 64, 64 * 64 / 20, 0, 0));
	/* an unknown M is taken as the worst case: 88 % zeros win at one to
	 * four rows, not at an unknown M */
	for (int64_t m = 1; m <= 4; m++)
		ck_assert(opass_spmm_predict_win(avx512, m, k, n, all * 12 / 100, 0, 0));
	ck_assert(!opass_spmm_predict_win(avx512, -1, k, n, all * 12 / 100, 0, 0));
	/* a model whose MatMul weights do not stay in cache (340 MB): two to
	 * four rows win 1.8x more (70 % at four rows, which in cache does not,
	 * nor half zeros), one row by its bytes (70 % wins, half zeros do not);
	 * an unknown M is not assumed to be small */
	ck_assert(opass_spmm_predict_win(avx512, 1, k, n, all / 10, 340LL << 20, 0));
	ck_assert(opass_spmm_predict_win(avx512, 4, k, n, all * 3 / 10, 340LL << 20, 0));
	ck_assert(!opass_spmm_predict_win(avx512, 4, k, n, all / 2, 340LL << 20, 0));
	ck_assert(opass_spmm_predict_win(avx512, 1, k, n, all * 3 / 10, 340LL << 20, 0));
	ck_assert(!opass_spmm_predict_win(avx512, 1, k, n, all / 2, 340LL << 20, 0));
	ck_assert(!opass_spmm_predict_win(avx512, 1, k, n, all * 3 / 10, 16LL << 20, 0));
	ck_assert(!opass_spmm_predict_win(avx512, -1, k, n, all / 10, 340LL << 20, 0));
	/* an Intel CPU's costs from one to eight rows: 80 % wins at one to four,
	 * seven and eight rows, not at five or six (8-row tiles); 90 % at any
	 * known M; 70 % never; an unknown M as on the Zen 5. Beyond the cache a
	 * nonzero costs 3 dense elements at one row (80 % wins) and 5 at two to
	 * four (90 % wins, 80 % does not). */
	for (int64_t m = 1; m <= 9; m++) {
		const unsigned intel = OPASS_COST_INTEL;

		ck_assert(!opass_spmm_predict_win(avx512, m, k, n, all * 3 / 10, 0, intel));
		ck_assert(opass_spmm_predict_win(avx512, m, k, n, all / 5, 0, intel) ==
			  (m <= 4 || m == 7 || m == 8));
		ck_assert(opass_spmm_predict_win(avx512, m, k, n, all / 10, 0, intel));
	}
	ck_assert(!opass_spmm_predict_win(avx512, -1, k, n, all / 10, 0, OPASS_COST_INTEL));
	ck_assert(opass_spmm_predict_win(avx512, 1, k, n, all / 10, 340LL << 20, OPASS_COST_INTEL));
	ck_assert(opass_spmm_predict_win(avx512, 1, k, n, all / 5, 340LL << 20, OPASS_COST_INTEL));
	ck_assert(!opass_spmm_predict_win(avx512, 1, k, n, all * 3 / 10, 340LL << 20,
					  OPASS_COST_INTEL));
	ck_assert(opass_spmm_predict_win(avx512, 4, k, n, all / 10, 340LL << 20, OPASS_COST_INTEL));
	ck_assert(!opass_spmm_predict_win(avx512, 4, k, n, all / 5, 340LL << 20, OPASS_COST_INTEL));
	ck_assert(!opass_spmm_predict_win(avx2, 0, k, n, 0, 0, 0));
	ck_assert(!opass_spmm_predict_win(avx512, 16, 0, n, 0, 0, 0));
	/* convolutions (ResNet-50's, 90 % zeros): a 1x1 64 -> 256 at 56x56 wins
	 * (4.4x measured), half zeros never, a 3x3 512 -> 512 at 7x7 (1.1-1.2x
	 * measured) only from 95 %, a 1x1 16 -> 96 (1.3-1.5x) not */
	ck_assert(opass_spmm_predict_win_conv(avx2, 3136, 64, 256, 64 * 256 / 10, 64, OPASS_CONV_PACKS));
	ck_assert(!opass_spmm_predict_win_conv(avx2, 3136, 64, 256, 64 * 256 / 2, 64, OPASS_CONV_PACKS));
	ck_assert(!opass_spmm_predict_win_conv(avx2, 49, 4608, 512, 4608 * 512 / 2, 512, OPASS_CONV_PACKS));
	ck_assert(opass_spmm_predict_win_conv(avx2, 49, 4608, 512, 4608 * 512 / 20, 512, OPASS_CONV_PACKS));
	ck_assert(!opass_spmm_predict_win_conv(avx2, 12544, 16, 96, 16 * 96 / 10, 16, OPASS_CONV_PACKS));
	ck_assert(!opass_spmm_predict_win_conv(avx2, 0, 64, 64, 0, 64, OPASS_CONV_PACKS));
	/* the 7x7 stem of 3 channels, packing its patches: never, even at 99 %
	 * zeros; reading a padded copy, chained, at 90 % */
	ck_assert(!opass_spmm_predict_win_conv(avx2, 12544, 147, 64, 147 * 64 / 100, 3, OPASS_CONV_PACKS));
	ck_assert(opass_spmm_predict_win_conv(avx512, 12544, 147, 64, 147 * 64 / 10, 3,
					      OPASS_CONV_CHAINED));
	/* AVX-512: a call of fewer than 64 positions pays for its patches: a 1x1
	 * 960 -> 160 at 7x7 (0.84-0.87x measured) never at batch 1, at batch 8
	 * (1.6-2x) from 90 %; narrow convs pay for the reorders between ORT's
	 * blocked layout and theirs (a 1x1 64 -> 256 at 56x56 not at 90 %), wide
	 * ones do not notice (a 3x3 512 -> 512 at batch 8 at 90 %) */
	ck_assert(!opass_spmm_predict_win_conv(avx512, 49, 960, 160, 960 * 160 / 20, 960, OPASS_CONV_PACKS));
	ck_assert(opass_spmm_predict_win_conv(avx512, 392, 960, 160, 960 * 160 / 10, 960, OPASS_CONV_PACKS));
	ck_assert(!opass_spmm_predict_win_conv(avx512, 3136, 64, 256, 64 * 256 / 10, 64, OPASS_CONV_PACKS));
	ck_assert(opass_spmm_predict_win_conv(avx512, 392, 4608, 512, 4608 * 512 / 10, 512, OPASS_CONV_PACKS));
	/* a small conv amid ORT's pays a fixed cost per call: the digits CNN's
	 * 3x3 32 -> 64 at 8x8 at 95 % (22 us against ORT's 14.5 measured) never,
	 * at any ISA; chained, it would be claimed */
	ck_assert(!opass_spmm_predict_win_conv(avx512, 64, 288, 64, 288 * 64 / 20, 32, 0));
	ck_assert(!opass_spmm_predict_win_conv(avx2, 64, 288, 64, 288 * 64 / 20, 32, 0));
	ck_assert(!opass_spmm_predict_win_conv(avx512, 64, 288, 64, 288 * 64 / 100, 32, 0));
	ck_assert(opass_spmm_predict_win_conv(avx512, 64, 288, 64, 288 * 64 / 20, 32,
					      OPASS_CONV_CHAINED));
	/* chained (every neighbour claimed: no reorders) the 1x1 64 -> 256 wins;
	 * a 3x3 512 -> 512 with stride 2 to 7x7 packs its patches and wins at
	 * 90 % (1.31-1.34x measured alone), not at 80 %; with stride 1 it reads a
	 * padded copy, packs nothing, and wins at 90 % (1.5x measured alone) */
	ck_assert(opass_spmm_predict_win_conv(avx512, 3136, 64, 256, 64 * 256 / 10, 64,
					      OPASS_CONV_PACKS | OPASS_CONV_CHAINED));
	ck_assert(opass_spmm_predict_win_conv(avx512, 49, 4608, 512, 4608 * 512 / 10, 512,
					      OPASS_CONV_PACKS | OPASS_CONV_CHAINED));
	ck_assert(!opass_spmm_predict_win_conv(avx512, 49, 4608, 512, 4608 * 512 / 5, 512,
					       OPASS_CONV_PACKS | OPASS_CONV_CHAINED));
	ck_assert(opass_spmm_predict_win_conv(avx512, 49, 4608, 512, 4608 * 512 / 10, 512,
					      OPASS_CONV_CHAINED));
	/* which convs pack: 1x1 and 3x3 with stride 2; not 3x3 with stride 1 or
	 * a 7x7 stem with stride 2 */
	{
		const int64_t k1[2] = { 1, 1 }, k3[2] = { 3, 3 }, k7[2] = { 7, 7 };
		const int64_t s1[2] = { 1, 1 }, s2[2] = { 2, 2 }, d1[2] = { 1, 1 };

		ck_assert(opass_conv_packs(k1, s1, d1));
		ck_assert(opass_conv_packs(k3, s2, d1));
		ck_assert(!opass_conv_packs(k3, s1, d1));
		ck_assert(!opass_conv_packs(k7, s2, d1));
	}
}
END_TEST

/* A flat copy (shared between sessions) computes what the weight it was written
 * from computes; buffers this library did not write are refused. */
START_TEST(test_flat_view)
{
	static const int64_t shapes[][2] = { { 1, 1 }, { 4, 1 }, { 1, 4 } };

	for (size_t i = 0; i < 3; i++) {
		int64_t m = 37, n = 45, k = i == 0 ? 70001 : 50;
		float *bt = weight_make(n, k, shapes[i][0], shapes[i][1], 0.2, 0.0);
		float *a = malloc((size_t)(m * k) * sizeof(*a));
		float *y1 = malloc((size_t)(m * n) * sizeof(*y1)), *y2 = malloc((size_t)(m * n) * 4);
		struct opass_spmm *spmm = spmm_from(bt, n, k, shapes[i][0], shapes[i][1], false);
		struct opass_spmm *view = NULL;
		size_t size = opass_spmm_flat_size(spmm);
		void *buf = aligned_alloc(64, (size + 63) / 64 * 64);

		ck_assert(a && y1 && y2 && buf);
		for (int64_t j = 0; j < m * k; j++)
			a[j] = frand();
		opass_spmm_flat_write(spmm, buf);
		ck_assert_int_eq(opass_spmm_flat_view(buf, size, &view), 0);
		ck_assert_int_eq(opass_spmm_run(spmm, a, m, NULL, 0, y1, NULL), 0);
		ck_assert_int_eq(opass_spmm_run(view, a, m, NULL, 0, y2, NULL), 0);
		ck_assert_mem_eq(y1, y2, (size_t)(m * n) * sizeof(float));
		/* one row: the one-row format's arrays come with it */
		ck_assert((view->m1.steps != NULL) == (spmm->m1.steps != NULL));
		ck_assert_int_eq(opass_spmm_run(spmm, a, 1, NULL, 0, y1, NULL), 0);
		ck_assert_int_eq(opass_spmm_run(view, a, 1, NULL, 0, y2, NULL), 0);
		ck_assert_mem_eq(y1, y2, (size_t)n * sizeof(float));
		view = opass_spmm_free(view);
		ck_assert_int_eq(opass_spmm_flat_view(buf, size - 4, &view), -EINVAL);
		memset(buf, 0, 8);
		ck_assert_int_eq(opass_spmm_flat_view(buf, size, &view), -EINVAL);
		opass_spmm_free(view);
		opass_spmm_free(spmm);
		free(buf);
		free(bt);
		free(a);
		free(y1);
		free(y2);
	}
}
END_TEST

/* y = one row x times a weight of `dup` blocks in column `col` of row 0 and
 * `dup2` in column col2 of row 1 (values v, v2): duplicates add up. */
static struct opass_spmm *duplicates_make(int64_t k, int dup, int64_t col, int dup2,
					  int64_t col2)
{
	int32_t *cols = malloc((size_t)(dup + dup2) * sizeof(*cols)), ptr[3] = { 0, dup, dup + dup2 };
	float *v = malloc((size_t)(dup + dup2) * sizeof(*v));
	struct opass_spmm *spmm = NULL;

	ck_assert(cols && v);
	for (int i = 0; i < dup + dup2; i++) {
		cols[i] = (int32_t)(i < dup ? col : col2);
		v[i] = i < dup ? 0.5f : 0.25f;
	}
	ck_assert_int_eq(opass_spmm_new(2, k, 1, 1, v, (size_t)(dup + dup2), cols,
					(size_t)(dup + dup2), ptr, 3, false, &spmm, NULL), 0);
	free(cols);
	free(v);
	return spmm;
}

/* Row i of bt times x over bt's nonzeros only (an infinite x[j] where bt is 0
 * is left out, as the sparse kernels leave it). */
static double nonzeros_dot(const float *bt, const float *x, int64_t i, int64_t k)
{
	double sum = 0.0;

	for (int64_t j = 0; j < k; j++)
		if (bt[i * k + j] != 0.0f)
			sum += (double)bt[i * k + j] * x[j];
	return sum;
}

/* Products of one to M1_ROWS rows, which AVX-512 runs from the one-row
 * format (spmm_m1.c): its empty lanes leave the sums alone even where x is
 * infinite (they point at a window's last column); a window with more than
 * M1_STEPS_MAX elements of one row leaves the format out, and the block rows
 * run instead. */
START_TEST(test_one_row)
{
	bool avx512 = opass_spmm_isa_supported(OPASS_SPMM_ISA_AVX512);
	int64_t n = 45, k = 150;
	float *bt = weight_make(n, k, 1, 1, 0.3, 0.0), x[M1_ROWS * 150], y[M1_ROWS * 45];
	struct opass_spmm *spmm;

	for (int64_t j = 0; j < M1_ROWS * k; j++)
		x[j] = j % k == 63 || j % k == 127 ? INFINITY : frand();
	for (int64_t i = 0; i < n; i++)
		bt[i * k + 63] = bt[i * k + 127] = 0.0f;
	spmm = spmm_from(bt, n, k, 1, 1, false);
	ck_assert(avx512 == (spmm->m1.steps != NULL));
	for (int64_t m = 1; m <= M1_ROWS; m++) {
		ck_assert_int_eq(opass_spmm_run(spmm, x, m, NULL, 0, y, NULL), 0);
		for (int64_t r = 0; r < m; r++)
			for (int64_t i = 0; i < n; i++) {
				double want = nonzeros_dot(bt, x + r * k, i, k);

				ck_assert_msg(fabs(y[r * n + i] - want) <= 1e-5 * (1.0 + fabs(want)),
					      "M=%lld, row %lld, column %lld: %g, expected %g",
					      (long long)m, (long long)r, (long long)i,
					      (double)y[r * n + i], want);
			}
	}
	/* without it (a conv weight's), the block rows give the same products */
	opass_spmm_one_row_drop(spmm);
	ck_assert_ptr_null(spmm->m1.steps);
	ck_assert_int_eq(opass_spmm_run(spmm, x, 3, NULL, 0, y, NULL), 0);
	for (int64_t i = 0; i < n; i++) {
		double want = nonzeros_dot(bt, x + 2 * k, i, k);

		ck_assert_double_eq_tol(y[2 * n + i], want, 1e-5 * (1.0 + fabs(want)));
	}
	opass_spmm_free(spmm);
	free(bt);
	for (int dup = M1_STEPS_MAX; dup <= M1_STEPS_MAX + 1; dup++) {
		spmm = duplicates_make(k, dup, 5, 7, 140);
		ck_assert(avx512 && dup <= M1_STEPS_MAX ? spmm->m1.steps != NULL
							: spmm->m1.steps == NULL);
		ck_assert_int_eq(opass_spmm_run(spmm, x, 1, NULL, 0, y, NULL), 0);
		ck_assert_float_eq_tol(y[0], 0.5f * (float)dup * x[5], 1e-5f * (float)dup);
		ck_assert_float_eq_tol(y[1], 0.25f * 7.0f * x[140], 1e-5f);
		opass_spmm_free(spmm);
	}
}
END_TEST

/* Direct convolution in double precision: y [batch, n, out_h, out_w]. */
static double *conv_reference(const struct opass_conv *cv, const float *x, int64_t batch,
			      const float *w, int64_t n, const float *bias)
{
	int64_t p = cv->out_h * cv->out_w, k = cv->c_in * cv->kernel_h * cv->kernel_w;
	double *y = calloc((size_t)(batch * n * p + 1), sizeof(*y));

	ck_assert_ptr_nonnull(y);
	for (int64_t b = 0; b < batch; b++)
		for (int64_t o = 0; o < n; o++)
			for (int64_t q = 0; q < p; q++) {
				int64_t oy = q / cv->out_w, ox = q % cv->out_w;
				double sum = bias ? bias[o] : 0.0;

				for (int64_t kk = 0; kk < k; kk++) {
					int64_t c = kk / (cv->kernel_h * cv->kernel_w);
					int64_t ky = kk / cv->kernel_w % cv->kernel_h, kx = kk % cv->kernel_w;
					int64_t iy = oy * cv->stride_h - cv->pad_top + ky * cv->dilation_h;
					int64_t ix = ox * cv->stride_w - cv->pad_left + kx * cv->dilation_w;

					if (iy >= 0 && iy < cv->in_h && ix >= 0 && ix < cv->in_w)
						sum += (double)w[o * k + kk] *
						       x[((b * cv->c_in + c) * cv->in_h + iy) * cv->in_w + ix];
				}
				y[(b * n + o) * p + q] = sum;
			}
	return y;
}

/* opass_spmm_run_conv against the direct convolution: kernels 1x1 to 7x7,
 * strides, asymmetric padding, dilations, output rows split across tiles,
 * 1x1 convolutions whose full tiles read x in place, K > 1024; packed
 * patches and the padded copy (stride 1; stride 2 under a 7x7 or 5x3
 * kernel), with its weight offsets made per call or kept by the caller
 * (opass_conv_offsets_new), CSR and 4x1 blocks. */
START_TEST(test_conv)
{
	static const int64_t cases[][12] = {
		/* c_in h w kh kw sh sw pt pl dh dw, bottom/right padding */
		{ 3, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1 },
		{ 5, 7, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1 },
		{ 4, 17, 15, 5, 3, 2, 1, 2, 0, 1, 2, 1 },
		{ 2, 12, 11, 3, 2, 3, 2, 0, 1, 2, 3, 1 },
		{ 6, 20, 21, 1, 1, 2, 2, 0, 0, 1, 1, 1 },
		/* 1x1, stride 2, output rows longer than the gathered ones */
		{ 4, 8, 40, 1, 1, 2, 2, 0, 0, 1, 1, 0 },
		{ 1, 30, 30, 3, 3, 1, 1, 3, 3, 1, 1, 1 },
		{ 3, 12, 11, 1, 1, 1, 1, 0, 0, 1, 1, 0 },
		{ 9, 16, 16, 1, 1, 1, 1, 0, 0, 2, 2, 0 },
		/* K > 1024 (matmuls would take 16-row tiles with AVX2; convs keep 64) */
		{ 1100, 8, 9, 1, 1, 1, 1, 0, 0, 1, 1, 0 },
		{ 120, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1 },
		/* a stem: 7x7, stride 2 in both axes */
		{ 3, 23, 20, 7, 7, 2, 2, 3, 3, 1, 1, 2 },
		/* rows of 35 outputs at stride 2: two full 16-wide steps and a tail */
		{ 4, 9, 70, 3, 3, 2, 2, 1, 1, 1, 1, 1 },
		{ 3, 9, 70, 7, 7, 2, 2, 3, 3, 1, 1, 2 },
	};

	for (size_t i = 0; i < 2 * sizeof(cases) / sizeof(cases[0]); i++) {
		const int64_t *c = cases[i / 2], br = i % 2 ? 4 : 1;
		struct opass_conv cv = { .c_in = c[0], .in_h = c[1], .in_w = c[2], .kernel_h = c[3],
					 .kernel_w = c[4], .stride_h = c[5], .stride_w = c[6],
					 .pad_top = c[7], .pad_left = c[8], .dilation_h = c[9],
					 .dilation_w = c[10] };
		int64_t n = 7, batch = 2, k = cv.c_in * cv.kernel_h * cv.kernel_w, nx, ny;
		float *w = weight_make(n, k, 1, 1, 0.4, 0.0), *x, *y, *res, bias[7];
		struct opass_spmm_exec exec = { .threads = 2 };
		struct opass_spmm *spmm = spmm_from(w, n, k, br, 1, false);
		const int64_t kernel[2] = { c[3], c[4] }, stride[2] = { c[5], c[6] };
		const int64_t dilation[2] = { c[9], c[10] };
		double *ref, *relu_ref;
		int32_t *offsets = NULL;

		cv.out_h = opass_conv_output_size(cv.in_h, cv.kernel_h, cv.stride_h, cv.pad_top, c[11],
						  cv.dilation_h);
		cv.out_w = opass_conv_output_size(cv.in_w, cv.kernel_w, cv.stride_w, cv.pad_left, c[11],
						  cv.dilation_w);
		ck_assert_int_gt(cv.out_h, 0);
		ck_assert_int_gt(cv.out_w, 0);
		nx = batch * cv.c_in * cv.in_h * cv.in_w;
		ny = batch * n * cv.out_h * cv.out_w;
		x = malloc((size_t)nx * sizeof(*x));
		y = malloc((size_t)ny * sizeof(*y));
		res = malloc((size_t)ny * sizeof(*res));
		relu_ref = malloc((size_t)ny * sizeof(*relu_ref));
		ck_assert(x && y && res && relu_ref);
		for (int64_t j = 0; j < nx; j++)
			x[j] = frand();
		for (int64_t j = 0; j < ny; j++)
			res[j] = frand();
		for (int64_t j = 0; j < n; j++)
			bias[j] = frand();
		ck_assert_int_eq(opass_conv_offsets_new(spmm, &cv, &offsets),
				 opass_conv_packs(kernel, stride, dilation) ? -ENOTSUP : 0);
		for (size_t t = 0; t < sizeof(isas) / sizeof(isas[0]); t++) {
			if (!opass_spmm_isa_supported(isas[t]))
				continue;
			exec.isa = isas[t];
			ck_assert_int_eq(opass_spmm_run_conv(spmm, &cv, x, batch, bias, (size_t)n, y,
							     &exec), 0);
			ref = conv_reference(&cv, x, batch, w, n, bias);
			assert_close(y, ref, ny, "conv");
			/* a following Relu, fused: max(conv + bias, 0) */
			for (int64_t j = 0; j < ny; j++)
				relu_ref[j] = fmax(ref[j], 0.0);
			cv.relu = true;
			ck_assert_int_eq(opass_spmm_run_conv(spmm, &cv, x, batch, bias, (size_t)n, y,
							     &exec), 0);
			assert_close(y, relu_ref, ny, "conv + relu");
			/* a following Add and Relu, fused: max(conv + bias + res, 0) */
			for (int64_t j = 0; j < ny; j++)
				ref[j] = fmax(ref[j] + res[j], 0.0);
			cv.residual = res;
			cv.relu = true;
			ck_assert_int_eq(opass_spmm_run_conv(spmm, &cv, x, batch, bias, (size_t)n, y,
							     &exec), 0);
			assert_close(y, ref, ny, "conv + add + relu");
			cv.offsets = offsets;
			ck_assert_int_eq(opass_spmm_run_conv(spmm, &cv, x, batch, bias, (size_t)n, y,
							     &exec), 0);
			assert_close(y, ref, ny, "conv + add + relu, kept offsets");
			cv.offsets = NULL;
			cv.residual = NULL;
			cv.relu = false;
			free(ref);
		}
		cv.c_in++;
		ck_assert_int_eq(opass_spmm_run_conv(spmm, &cv, x, batch, NULL, 0, y, NULL), -EINVAL);
		ck_assert_int_eq(opass_conv_offsets_new(spmm, &cv, &offsets), -EINVAL);
		free(offsets);
		opass_spmm_free(spmm);
		free(w);
		free(x);
		free(y);
		free(res);
		free(relu_ref);
	}
	ck_assert_int_eq(opass_conv_output_size(2, 3, 1, 0, 0, 1), -EINVAL);
	ck_assert_int_eq(opass_conv_output_size(7, 3, 2, 1, 1, 1), 4);
}
END_TEST

START_TEST(test_all_zero_and_dense)
{
	struct shape zero = { .m = 70, .n = 33, .k = 40, .br = 1, .bc = 1, .keep = 0.0 };
	struct shape dense = { .m = 70, .n = 33, .k = 40, .br = 4, .bc = 1, .keep = 1.0 };

	for (size_t t = 0; t < sizeof(isas) / sizeof(isas[0]); t++) {
		if (!opass_spmm_isa_supported(isas[t]))
			continue;
		check_shape(&zero, isas[t], 2, 2);
		check_shape(&zero, isas[t], 1, 0);
		check_shape(&dense, isas[t], 2, 1);
	}
}
END_TEST

START_TEST(test_empty_dims)
{
	float a[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, y[8], bias[4] = { 1, 2, 3, 4 };
	struct opass_spmm *spmm;
	int64_t ptr[5] = { 0 }, c[1] = { 0 };
	float v[1] = { 0 };

	/* K = 0: y is the bias */
	ck_assert_int_eq(opass_spmm_new(4, 0, 1, 1, v, 0, c, 0, ptr, 5, true, &spmm, NULL), 0);
	ck_assert_int_eq(opass_spmm_run(spmm, a, 2, bias, 4, y, NULL), 0);
	for (int i = 0; i < 8; i++)
		ck_assert_float_eq(y[i], bias[i % 4]);
	for (int64_t m = 0; m < 70; m += 69) {
		float *big_a = calloc(70, sizeof(float)), *big_y = malloc(70 * 4 * sizeof(float));

		ck_assert_int_eq(opass_spmm_run(spmm, big_a, m, NULL, 0, big_y, NULL), 0);
		for (int64_t i = 0; i < m * 4; i++)
			ck_assert_float_eq(big_y[i], 0.0f);
		free(big_a);
		free(big_y);
	}
	opass_spmm_free(spmm);
	/* N = 0: nothing to write */
	ck_assert_int_eq(opass_spmm_new(0, 3, 1, 1, v, 0, c, 0, ptr, 1, true, &spmm, NULL), 0);
	ck_assert_int_eq(opass_spmm_run(spmm, a, 2, NULL, 0, y, NULL), 0);
	opass_spmm_free(spmm);
}
END_TEST

START_TEST(test_bsr_from_dense)
{
	/* 3 x 6 with 2x4 blocks: columns 4, 5 and row 2 are padding */
	static const float bt[18] = {
		0, 0, 0, 0,  0, 1,
		0, -0.0f, 0, 0,  0, 0,
		2, 0, 0, 3,  0, 0,
	};
	struct onnxpass_error err = { 0 };
	struct opass_bsr *bsr = NULL;
	int64_t blocks, nonzero;

	opass_bsr_count(bt, 3, 6, 2, 4, &blocks, &nonzero);
	ck_assert_int_eq(blocks, 2);
	ck_assert_int_eq(nonzero, 3);
	ck_assert_int_eq(opass_bsr_from_dense(bt, 3, 6, 2, 4, &bsr, &err), 0);
	ck_assert_int_eq(bsr->n_blocks, 2);
	ck_assert_int_eq(bsr->row_ptr[0], 0);
	ck_assert_int_eq(bsr->row_ptr[1], 1);
	ck_assert_int_eq(bsr->row_ptr[2], 2);
	ck_assert_int_eq(bsr->col[0], 1);
	ck_assert_int_eq(bsr->col[1], 0);
	/* block (0, 1): rows 0-1, columns 4-7 */
	ck_assert_float_eq(bsr->values[1], 1.0f);
	for (int i = 0; i < 8; i++)
		if (i != 1)
			ck_assert_float_eq(bsr->values[i], 0.0f);
	/* block (1, 0): row 2 then the padding row */
	ck_assert_float_eq(bsr->values[8], 2.0f);
	ck_assert_float_eq(bsr->values[11], 3.0f);
	for (int i = 12; i < 16; i++)
		ck_assert_float_eq(bsr->values[i], 0.0f);
	opass_bsr_free(bsr);
	ck_assert_int_eq(opass_bsr_from_dense(bt, 3, 6, 0, 4, &bsr, &err), -EINVAL);
	ck_assert_int_eq(opass_bsr_from_dense(bt, 3, 6, 1, 17, &bsr, &err), -EINVAL);
	ck_assert_ptr_null(opass_bsr_free(NULL));
}
END_TEST

/* opass_spmm_new on BSR arrays of a 4 x 6 weight with 1x2 blocks. */
static int spmm_try(int64_t br, int64_t bc, const int32_t *col, size_t n_col,
		    const int32_t *ptr, size_t n_ptr, const float *v, size_t n_v, char *msg)
{
	struct onnxpass_error err = { 0 };
	struct opass_spmm *spmm = NULL;
	int r = opass_spmm_new(4, 5, br, bc, v, n_v, col, n_col, ptr, n_ptr, false, &spmm, &err);

	if (r == 0) {
		ck_assert_ptr_nonnull(spmm);
		opass_spmm_free(spmm);
	} else {
		ck_assert_int_eq(err.code, r);
		strcpy(msg, err.message);
	}
	return r;
}

START_TEST(test_spmm_new_errors)
{
	static const float v[6] = { 1, 2, 3, 4, 5, 0 };
	static const float v_pad[6] = { 1, 2, 3, 4, 5, 6 };
	char msg[ONNXPASS_ERROR_MAX] = "";

	/* K = 5, 1x2 blocks: 3 block columns, the last one half padding */
	ck_assert_int_eq(spmm_try(1, 2, (int32_t[]){ 0, 1, 2 }, 3, (int32_t[]){ 0, 1, 2, 2, 3 }, 5,
				  v, 6, msg), 0);
	ck_assert_int_eq(spmm_try(1, 2, (int32_t[]){ 0, 1, 2 }, 3, (int32_t[]){ 0, 1, 2, 2, 3 }, 5,
				  v_pad, 6, msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "past the weight's edge"));
	ck_assert_int_eq(spmm_try(1, 2, (int32_t[]){ 0, 1, 3 }, 3, (int32_t[]){ 0, 1, 2, 2, 3 }, 5,
				  v, 6, msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "block column 3 out of range"));
	ck_assert_int_eq(spmm_try(1, 2, (int32_t[]){ 0, -1, 2 }, 3, (int32_t[]){ 0, 1, 2, 2, 3 }, 5,
				  v, 6, msg), -EINVAL);
	ck_assert_int_eq(spmm_try(1, 2, (int32_t[]){ 0, 1, 2 }, 3, (int32_t[]){ 1, 1, 2, 2, 3 }, 5,
				  v, 6, msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "start at 0"));
	ck_assert_int_eq(spmm_try(1, 2, (int32_t[]){ 0, 1, 2 }, 3, (int32_t[]){ 0, 2, 1, 2, 3 }, 5,
				  v, 6, msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "decreases"));
	ck_assert_int_eq(spmm_try(1, 2, (int32_t[]){ 0, 1, 2 }, 3, (int32_t[]){ 0, 1, 2, 2, 2 }, 5,
				  v, 6, msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "ends at 2"));
	ck_assert_int_eq(spmm_try(1, 2, (int32_t[]){ 0, 1, 2 }, 3, (int32_t[]){ 0, 1, 2, 3 }, 4,
				  v, 6, msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "row_ptr has 4 entries"));
	ck_assert_int_eq(spmm_try(1, 2, (int32_t[]){ 0, 1, 2 }, 3, (int32_t[]){ 0, 1, 2, 2, 3 }, 5,
				  v, 5, msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "5 values for 3 blocks"));
	ck_assert_int_eq(spmm_try(0, 2, (int32_t[]){ 0 }, 0, (int32_t[]){ 0 }, 1, v, 0, msg), -EINVAL);
	ck_assert_int_eq(spmm_try(1, 17, (int32_t[]){ 0 }, 0, (int32_t[]){ 0, 0, 0, 0, 0 }, 5, v, 0,
				  msg), -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "block shape"));
	ck_assert_ptr_null(opass_spmm_free(NULL));
}
END_TEST

struct counting {
	size_t parallel_calls, items, allocs, releases;
};

static void count_parallel(void *ctx, void (*fn)(void *data, size_t i), size_t n, void *data)
{
	struct counting *c = ctx;

	c->parallel_calls++;
	c->items += n;
	for (size_t i = n; i > 0; i--)   /* any order must do */
		fn(data, i - 1);
}

static void *count_alloc(void *ctx, size_t size)
{
	((struct counting *)ctx)->allocs++;
	return malloc(size);
}

static void count_release(void *ctx, void *p)
{
	((struct counting *)ctx)->releases++;
	free(p);
}

/* A 3x3 conv (a padded copy) of some 3800 products runs on the calling
 * thread: no parallel round for the copy nor the tiles; 40 times as many
 * positions do wake the other threads. */
static void conv_callbacks(const struct opass_spmm_exec *exec, struct counting *c)
{
	int64_t n = 6, k = 4 * 9, side[2] = { 5, 32 };
	float *w = weight_make(n, k, 1, 1, 0.5, 0.0), *x = malloc(4 * 32 * 32 * sizeof(*x));
	float *y = malloc((size_t)n * 32 * 32 * sizeof(*y));
	struct opass_spmm *spmm = spmm_from(w, n, k, 1, 1, false);

	ck_assert(x && y);
	for (int64_t i = 0; i < 4 * 32 * 32; i++)
		x[i] = frand();
	for (int i = 0; i < 2; i++) {
		struct opass_conv cv = { .c_in = 4, .in_h = side[i], .in_w = side[i],
					 .kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1,
					 .pad_top = 1, .pad_left = 1, .dilation_h = 1, .dilation_w = 1,
					 .out_h = side[i], .out_w = side[i] };
		double *ref = conv_reference(&cv, x, 1, w, n, NULL);

		*c = (struct counting){ 0 };
		ck_assert_int_eq(opass_spmm_run_conv(spmm, &cv, x, 1, NULL, 0, y, exec), 0);
		assert_close(y, ref, n * side[i] * side[i], "callbacks, conv");
		if (i == 0)
			ck_assert_uint_eq(c->parallel_calls, 0);
		else
			ck_assert_uint_gt(c->parallel_calls, 0);
		free(ref);
	}
	opass_spmm_free(spmm);
	free(w);
	free(x);
	free(y);
}

START_TEST(test_exec_callbacks)
{
	struct counting c = { 0 };
	struct opass_spmm_exec exec = { .parallel_for = count_parallel, .ctx = &c,
					.alloc = count_alloc, .release = count_release };
	int64_t m = 100, n = 70, k = 400;
	float *bt = weight_make(n, k, 1, 1, 0.5, 0.0), *a = malloc((size_t)(m * k) * 4);
	float *y = malloc((size_t)(m * n) * 4), bias = 0.5f;
	struct opass_spmm *spmm = spmm_from(bt, n, k, 1, 1, false);
	double *ref;

	for (int64_t i = 0; i < m * k; i++)
		a[i] = frand();
	ref = reference(a, bt, &bias, 1, m, n, k);
	exec.isa = OPASS_SPMM_ISA_GENERIC;
	ck_assert_int_eq(opass_spmm_run(spmm, a, m, &bias, 1, y, &exec), 0);
	assert_close(y, ref, m * n, "callbacks");
	ck_assert_uint_eq(c.parallel_calls, 2);          /* pack, then compute */
	ck_assert_uint_eq(c.items, 2 * 4 + 2 * 2);       /* 2 tiles in 4 parts; 2 tiles x 2 chunks */
	ck_assert_uint_eq(c.allocs, 1);
	ck_assert_uint_eq(c.releases, 1);
	/* told the pool's size: 2 tiles on 2 threads are a work item each (the
	 * thread that packs a tile reads it), on 3 they are split as above */
	for (unsigned threads = 2; threads <= 3; threads++) {
		c = (struct counting){ 0 };
		exec.threads = threads;
		ck_assert_int_eq(opass_spmm_run(spmm, a, m, &bias, 1, y, &exec), 0);
		assert_close(y, ref, m * n, "callbacks, whole tiles");
		ck_assert_uint_eq(c.parallel_calls, threads == 2 ? 1 : 2);
		ck_assert_uint_eq(c.items, threads == 2 ? 2 : 2 * 4 + 2 * 2);
	}
	/* one tile on 2 or 3 threads: a work item per thread (at most one per
	 * chunk), each with its thread's packed copy of A (count_parallel runs
	 * them all on this thread: one copy); generic and the CPU's kernels */
	for (unsigned i = 0; i < 4; i++) {
		c = (struct counting){ 0 };
		exec.threads = 2 + i % 2;
		exec.isa = i < 2 ? OPASS_SPMM_ISA_GENERIC : OPASS_SPMM_ISA_AUTO;
		ck_assert_int_eq(opass_spmm_run(spmm, a, 64, &bias, 1, y, &exec), 0);
		assert_close(y, ref, 64 * n, "callbacks, copies of one tile");
		ck_assert_uint_eq(c.parallel_calls, 1);
		ck_assert_uint_eq(c.items, 2);
		ck_assert_uint_eq(c.allocs, 1);
	}
	/* the same on 2 and 3 of the library's own threads: each packs one copy,
	 * whichever items it runs */
	for (unsigned threads = 2; threads <= 3; threads++) {
		struct opass_spmm_exec own = { .threads = threads };

		ck_assert_int_eq(opass_spmm_run(spmm, a, 64, &bias, 1, y, &own), 0);
		assert_close(y, ref, 64 * n, "own threads, copies of one tile");
	}
	exec.threads = 0;
	exec.isa = OPASS_SPMM_ISA_GENERIC;
	if (opass_spmm_isa_supported(OPASS_SPMM_ISA_AVX2)) {
		c = (struct counting){ 0 };
		exec.isa = OPASS_SPMM_ISA_AVX2;
		ck_assert_int_eq(opass_spmm_run(spmm, a, m, &bias, 1, y, &exec), 0);
		assert_close(y, ref, m * n, "callbacks, AVX2");
		ck_assert_uint_eq(c.items, 4 * 2 + 4 * 2);   /* tiles of 32 rows, 2 parts each */
	}
	/* one row: some 14000 products, too few to wake other threads for; A is
	 * read in place, so nothing is allocated */
	c = (struct counting){ 0 };
	ck_assert_int_eq(opass_spmm_run(spmm, a, 1, &bias, 1, y, &exec), 0);
	assert_close(y, ref, n, "callbacks, one row");
	ck_assert_uint_eq(c.parallel_calls, 0);
	ck_assert_uint_eq(c.allocs, 0);
	conv_callbacks(&exec, &c);
	ck_assert_int_eq(opass_spmm_run(spmm, a, m, &bias, 2, y, &exec), -EINVAL);
	ck_assert_int_eq(opass_spmm_run(spmm, a, -1, NULL, 0, y, &exec), -EINVAL);
	ck_assert_int_eq(opass_spmm_run(NULL, a, m, NULL, 0, y, &exec), -EINVAL);
	opass_spmm_free(spmm);
	free(ref);
	free(bt);
	free(a);
	free(y);
}
END_TEST

START_TEST(test_isa_unsupported)
{
	for (size_t t = 0; t < sizeof(isas) / sizeof(isas[0]); t++) {
		struct opass_spmm_exec exec = { .isa = isas[t] };
		float bt[4] = { 1, 0, 0, 1 }, a[2] = { 1, 2 }, y[2];
		struct opass_spmm *spmm = spmm_from(bt, 2, 2, 1, 1, false);
		int r = opass_spmm_run(spmm, a, 1, NULL, 0, y, &exec);

		ck_assert_int_eq(r, opass_spmm_isa_supported(isas[t]) ? 0 : -ENOTSUP);
		opass_spmm_free(spmm);
	}
	ck_assert(opass_spmm_isa_supported(OPASS_SPMM_ISA_GENERIC));
	ck_assert(!opass_spmm_isa_supported((enum opass_spmm_isa)99));
}
END_TEST

Suite *test_suite(void)
{
	Suite *s = suite_create("sparse-kernels");
	TCase *tc = tcase_create("kernels");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_random_shapes);
	tcase_add_test(tc, test_all_zero_and_dense);
	tcase_add_test(tc, test_empty_dims);
	tcase_add_test(tc, test_bsr_from_dense);
	tcase_add_test(tc, test_spmm_new_errors);
	tcase_add_test(tc, test_exec_callbacks);
	tcase_add_test(tc, test_isa_unsupported);
	tcase_add_test(tc, test_narrow_tiles);
	tcase_add_test(tc, test_wide_k);
	tcase_add_test(tc, test_predict_win);
	tcase_add_test(tc, test_flat_view);
	tcase_add_test(tc, test_one_row);
	tcase_add_test(tc, test_conv);
	suite_add_tcase(s, tc);
	return s;
}
