/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "masks/masks.h"
#include "testlib.h"

static struct opass_weight_norm_args wn(double level, int64_t br, int64_t bc, int64_t zeros,
					int norm)
{
	return (struct opass_weight_norm_args){
		.sparsity_level = level,
		.block_rows = br,
		.block_cols = bc,
		.zeros_per_block = zeros,
		.norm = norm,
	};
}

static void print_mask(const char *what, const uint8_t *m, size_t rows, size_t cols)
{
	fprintf(stderr, "%s:\n", what);
	for (size_t r = 0; r < rows; r++) {
		for (size_t c = 0; c < cols; c++)
			fprintf(stderr, "%d", m[r * cols + c]);
		fprintf(stderr, "\n");
	}
}

/* expected: a string of '0'/'1' per element, row-major (spaces ignored). */
#define check_wn(v, rows, cols, wide, args, expected) \
	check_wn_at(__LINE__, v, rows, cols, wide, args, expected)
static void check_wn_at(int line, const double *v, size_t rows, size_t cols, bool wide,
			struct opass_weight_norm_args args, const char *expected)
{
	uint8_t *got = malloc(rows * cols + 1), *want = malloc(rows * cols + 1);
	size_t n = 0;

	ck_assert(got && want);
	for (const char *p = expected; *p; p++)
		if (*p == '0' || *p == '1')
			want[n++] = (uint8_t)(*p - '0');
	ck_assert_uint_eq(n, rows * cols);
	memset(got, 0xaa, rows * cols);
	ck_assert_int_eq(opass_weight_norm_mask(v, rows, cols, wide, &args, got), 0);
	if (memcmp(got, want, n) != 0) {
		print_mask("got", got, rows, cols);
		print_mask("want", want, rows, cols);
		ck_abort_msg("mask mismatch (line %d)", line);
	}
	free(got);
	free(want);
}

START_TEST(wn_k_rounding)
{
	/* 5 blocks of 1x4 with means 5,1,3,2,4: 0.5*5 = 2.5 rounds to 2 -> blocks 1, 3 */
	const double v5[] = { 5, 5, 5, 5, 1, 1, 1, 1, 3, 3, 3, 3, 2, 2, 2, 2, 4, 4, 4, 4 };
	/* 7 blocks of 1x1: 0.5*7 = 3.5 rounds to 4 -> the four smallest 1,2,3,4 */
	const double v7[] = { 7, 1, 6, 2, 5, 3, 4 };
	/* 4 blocks: 0.125*4 = 0.5 -> 0; 0.375*4 = 1.5 -> 2; 0.99*4 = 3.96 -> 4, clamp 3 */
	const double v4[] = { 4, 3, 2, 1 };

	check_wn(v5, 1, 20, false, wn(0.5, 1, 4, 4, 1), "1111 0000 1111 0000 1111");
	check_wn(v7, 1, 7, false, wn(0.5, 1, 1, 1, 2), "1010100");
	check_wn(v4, 1, 4, false, wn(0.125, 1, 1, 1, 2), "1111");
	check_wn(v4, 1, 4, false, wn(0.375, 1, 1, 1, 2), "1100");
	check_wn(v4, 1, 4, false, wn(0.99, 1, 1, 1, 2), "1000");
	/* sparsity exactly 1 with full blocks: all zeros, not clamped */
	check_wn(v4, 1, 4, false, wn(1.0, 1, 1, 1, 2), "0000");
}
END_TEST

START_TEST(wn_block_ties)
{
	/*
	 * 2x4, 1x2 blocks, row-major block index: b0 = r0c0-1 (mean 2),
	 * b1 = r0c2-3, b2 = r1c0-1, b3 = r1c2-3 (all mean 1). k = 0.5 * 4 = 2:
	 * of the three tied blocks the lower indices b1, b2 go.
	 */
	const double v[] = { 2, 2, 1, 1,
			     1, 1, 1, 1 };

	check_wn(v, 2, 4, false, wn(0.5, 1, 2, 2, 1), "1100 0011");
	/* k = 0.75 * 4 = 3: b1, b2, b3 */
	check_wn(v, 2, 4, false, wn(0.75, 1, 2, 2, 2), "1100 0000");
}
END_TEST

/*
 * 3x5 with 2x2 blocks: a 2x3 grid, right column and bottom row partial.
 *   r0: 1.5 1.5 | 9   9.5 | 2
 *   r1: 1.5 1.5 | 8.5 10  | 2
 *   r2: 8   8   | 7   7   | 0.5
 * in-bounds means: b0 1.5, b1 9.25, b2 2, b3 8, b4 7, b5 0.5.
 * (Dividing partial blocks by 4 instead would give b2 = 1 < b0.)
 */
static const double partial[] = { 1.5, 1.5, 9, 9.5, 2,
				  1.5, 1.5, 8.5, 10, 2,
				  8, 8, 7, 7, 0.5 };

START_TEST(wn_partial_blocks)
{
	/* 2/6 * 6 = 2 blocks: b5 (0.5) and b0 (1.5) */
	check_wn(partial, 3, 5, false, wn(2.0 / 6.0, 2, 2, 4, 1),
		 "00111"
		 "00111"
		 "11110");
	/* k = 3: b5, b0, b2 */
	check_wn(partial, 3, 5, false, wn(0.5, 2, 2, 4, 1),
		 "00110"
		 "00110"
		 "11110");
	/*
	 * sparsity 1, 3 zeros per block: full blocks keep only their largest
	 * (b0: all tied, the last index r1c1 survives; b1: 10 survives);
	 * partial blocks have <= 2 in-bounds elements and lose them all.
	 */
	check_wn(partial, 3, 5, false, wn(1.0, 2, 2, 3, 1),
		 "00000"
		 "01010"
		 "00000");
	/*
	 * sparsity 1, 1 zero per block: the smallest of each block, first index on
	 * ties: b0 r0c0, b1 8.5 at r1c2, b2 r0c4, b3 r2c0, b4 r2c2, b5 r2c4.
	 */
	check_wn(partial, 3, 5, false, wn(1.0, 2, 2, 1, 2),
		 "01110"
		 "11011"
		 "01010");
	/*
	 * sparsity 0.5 (blocks b5, b0, b2 pruned by the tensor mask), 2 zeros per
	 * block: only those blocks lose elements; b0 loses r0c0, r0c1, b2 (two
	 * in-bounds) loses both, b5 loses its only element.
	 */
	check_wn(partial, 3, 5, false, wn(0.5, 2, 2, 2, 1),
		 "00110"
		 "11110"
		 "11110");
}
END_TEST

START_TEST(wn_block_bigger_than_matrix)
{
	/* one partial 4x4 block over a 2x3 matrix; its two smallest |x| go */
	const double v[] = { 3, -1, 4,
			     1, -5, 9 };

	check_wn(v, 2, 3, false, wn(1.0, 4, 4, 2, 1), "101 011");
	/* one block only: k clamps to nb - 1 = 0, nothing pruned */
	check_wn(v, 2, 3, false, wn(0.9, 4, 4, 16, 1), "111 111");
}
END_TEST

START_TEST(wn_two_four)
{
	/* [1,4] blocks, 2 zeros per block, sparsity 1: exact 2:4 */
	const double v[] = { 0.1, -0.9, 0.5, -0.2, 3, 1, -2, 0.5,
			     -0.0, 0.0, 7, 7, 4, 4, 4, 4 };

	/*
	 * r0: |0.1 0.9 0.5 0.2| -> 0.1, 0.2 go; |3 1 2 0.5| -> 0.5, 1 go
	 * r1: -0.0 and 0.0 are the two smallest; four tied 4s: first two go
	 */
	check_wn(v, 2, 8, false, wn(1.0, 1, 4, 2, 2), "0110 1010 0011 0011");
	check_wn(v, 2, 8, true, wn(1.0, 1, 4, 2, 1), "0110 1010 0011 0011");
}
END_TEST

START_TEST(wn_nan)
{
	/* NaN is the largest norm: in 2:4 the NaN survives, the two smallest go */
	const double a[] = { NAN, 1, 2, 3 };
	/* 1x1 blocks: 0.5 * 4 = 2 -> 0.1 and 5; 0.75 * 4 = 3 -> plus the first NaN */
	const double b[] = { NAN, 5, -NAN, 0.1 };
	/* 1x2 blocks: a block holding a NaN scores NaN and goes last */
	const double c[] = { NAN, 0, 0.5, 0.5, 9, 9 };

	check_wn(a, 1, 4, false, wn(1.0, 1, 4, 2, 2), "1001");
	check_wn(b, 1, 4, false, wn(0.5, 1, 1, 1, 2), "1010");
	check_wn(b, 1, 4, true, wn(0.75, 1, 1, 1, 1), "0010");
	check_wn(c, 1, 6, false, wn(0.5, 1, 2, 2, 2), "110000");
	/* all zeros when full blocks at sparsity 1, NaN or not */
	check_wn(c, 1, 6, false, wn(1.0, 1, 2, 2, 2), "000000");
}
END_TEST

START_TEST(wn_norm_1_vs_2)
{
	/*
	 * blocks [3, 0] and [2, 2]: L1 means 1.5 < 2, L2 means 4.5 > 4.
	 * One block goes (0.5 * 2 = 1): norm 1 prunes the first, norm 2 the second.
	 */
	const double v[] = { 3, 0, 2, 2 };

	check_wn(v, 1, 4, false, wn(0.5, 1, 2, 2, 1), "0011");
	check_wn(v, 1, 4, false, wn(0.5, 1, 2, 2, 2), "1100");
	/* inside blocks, level 1, 1 zero per block: [3, 0] loses 0, [2, 2] its first 2 */
	check_wn(v, 1, 4, false, wn(1.0, 1, 2, 1, 1), "1001");
}
END_TEST

START_TEST(wn_wide_vs_float)
{
	/*
	 * 1x3 blocks [1, 2^-24, 2^-24] and [1, 2^-24, 0], norm 1, one block goes.
	 * float32 (torch's float accumulator): 1 + 2^-24 rounds back to 1 (tie to
	 * even), so both sums are 1, the means tie and the first block goes.
	 * double: sums 1 + 2^-23 > 1 + 2^-24, the second block goes.
	 */
	const double t = ldexp(1.0, -24);
	const double v[] = { 1, t, t, 1, t, 0 };
	/* 1x1: 1 + 1e-12 is 1 in float32 (tie -> first), above 1 in double */
	const double w[] = { 1 + 1e-12, 1 };

	check_wn(v, 1, 6, false, wn(0.5, 1, 3, 3, 1), "000111");
	check_wn(v, 1, 6, true, wn(0.5, 1, 3, 3, 1), "111000");
	check_wn(w, 1, 2, false, wn(0.5, 1, 1, 1, 2), "01");
	check_wn(w, 1, 2, true, wn(0.5, 1, 1, 1, 2), "10");
}
END_TEST

START_TEST(wn_float_sum_order)
{
	/*
	 * Block scores accumulate in float32 in row-major order, as torch's CPU
	 * avg_pool2d does. Blocks B = [1 + 2^-23, 0, 0] and A = [1, 2^-24, 2^-24]:
	 * float32: A sums to 1 (each 1 + 2^-24 rounds back to 1), score fl(1/3),
	 * below B's fl((1 + 2^-23) / 3), so A goes. Summing A in double first
	 * would give fl((1 + 2^-23) / 3) too: a tie, and B (lower index) would go.
	 */
	const double t = ldexp(1.0, -24);
	const double v[] = { 1 + 2 * t, 0, 0, 1, t, t };

	check_wn(v, 1, 6, false, wn(0.5, 1, 3, 3, 1), "111000");
	/* in double A sums to 1 + 2^-23 = B: a tie, B goes */
	check_wn(v, 1, 6, true, wn(0.5, 1, 3, 3, 1), "000111");
}
END_TEST

START_TEST(wn_trivial_levels)
{
	const double v[] = { 1, 2, 3, 4, 5, 6 };

	check_wn(v, 2, 3, false, wn(0.0, 1, 1, 1, 2), "111 111");
	check_wn(v, 2, 3, false, wn(-0.5, 1, 1, 1, 2), "111 111");
	check_wn(v, 2, 3, false, wn(0.9, 1, 3, 0, 2), "111 111");        /* zeros_per_block 0 */
	check_wn(v, 2, 3, false, wn(1.0, 1, 3, 3, 2), "000 000");
	check_wn(v, 2, 3, false, wn(2.0, 2, 2, 4, 2), "000 000");
	/* level > 1 with zeros < block: tensor mask zero, block mask decides */
	check_wn(v, 2, 3, false, wn(2.0, 1, 3, 1, 2), "011 011");
	/* empty matrix */
	ck_assert_int_eq(opass_weight_norm_mask(NULL, 0, 5, false, &(struct opass_weight_norm_args){
				0.5, 1, 4, 4, 2 }, NULL), 0);
}
END_TEST

START_TEST(wn_errors)
{
	const double v[] = { 1, 2, 3, 4 };
	struct opass_weight_norm_args bad[] = {
		wn(0.5, 1, 4, 5, 2),    /* zeros > block size */
		wn(0.5, 1, 4, -1, 2),   /* negative zeros */
		wn(0.5, 0, 4, 0, 2),    /* block dims < 1 */
		wn(0.5, 1, -4, 0, 2),
		wn(0.5, 1, 4, 4, 3),    /* norm */
		wn(0.5, 1, 4, 4, 0),
		wn(NAN, 1, 4, 4, 2),
		wn(0.5, INT64_MAX, 4, 4, 2),   /* block size overflows */
	};
	uint8_t m[4] = { 7, 7, 7, 7 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(opass_weight_norm_mask(v, 1, 4, false, &bad[i], m), -EINVAL);
		ck_assert_int_eq(m[0], 7);
	}
	ck_assert_int_eq(opass_weight_norm_mask(v, 1, 4, false, NULL, m), -EINVAL);
	/* the argument checks come first, as in torch, even for a trivial level */
	bad[0].sparsity_level = 0.0;
	ck_assert_int_eq(opass_weight_norm_mask(v, 1, 4, false, &bad[0], m), -EINVAL);
}
END_TEST

/* Straightforward reference of SPEC 6 for random tests: sort-based, quadratic in places. */
struct ref_item {
	double key;
	size_t idx;
};

static int ref_item_cmp(const void *pa, const void *pb)
{
	const struct ref_item *a = pa, *b = pb;
	int na = isnan(a->key), nb = isnan(b->key);

	if (na != nb)
		return na - nb;
	if (!na && a->key != b->key)
		return a->key < b->key ? -1 : 1;
	return (a->idx > b->idx) - (a->idx < b->idx);
}

static double ref_norm(double x, bool wide, int norm)
{
	float f = (float)x, n;

	if (wide)
		return norm == 1 ? fabs(x) : x * x;
	n = norm == 1 ? fabsf(f) : f * f;
	return n;
}

static void ref_weight_norm(const double *v, size_t rows, size_t cols, bool wide,
			    struct opass_weight_norm_args a, uint8_t *out)
{
	size_t br = (size_t)a.block_rows, bc = (size_t)a.block_cols;
	size_t gr = (rows + br - 1) / br, gc = (cols + bc - 1) / bc, nb = gr * gc;
	size_t bs = br * bc, zeros = (size_t)a.zeros_per_block, k;
	struct ref_item *blocks = calloc(nb, sizeof(*blocks));
	struct ref_item *in = calloc(bs, sizeof(*in));
	uint8_t *tmask = calloc(nb, 1);

	ck_assert(blocks && in && tmask);
	memset(out, 1, rows * cols);
	if (a.sparsity_level <= 0 || zeros == 0)
		goto done;
	if (a.sparsity_level >= 1 && zeros == bs) {
		memset(out, 0, rows * cols);
		goto done;
	}
	for (size_t b = 0; b < nb; b++) {
		double dsum = 0;
		float fsum = 0;
		size_t cnt = 0;

		for (size_t r = b / gc * br; r < rows && r < b / gc * br + br; r++) {
			for (size_t c = b % gc * bc; c < cols && c < b % gc * bc + bc; c++) {
				dsum += ref_norm(v[r * cols + c], wide, a.norm);
				fsum += (float)ref_norm(v[r * cols + c], wide, a.norm);
				cnt++;
			}
		}
		blocks[b].key = wide ? dsum / (double)cnt : (double)(fsum / (float)cnt);
		blocks[b].idx = b;
	}
	qsort(blocks, nb, sizeof(*blocks), ref_item_cmp);
	k = nb;   /* level >= 1: every block */
	if (a.sparsity_level < 1) {
		k = (size_t)nearbyint(a.sparsity_level * (double)nb);   /* FE_TONEAREST */
		k = k > nb - 1 ? nb - 1 : k;
	}
	for (size_t i = 0; i < k; i++)
		tmask[blocks[i].idx] = 1;
	for (size_t b = 0; b < nb; b++) {
		size_t m = 0;

		if (!tmask[b])
			continue;
		for (size_t r = b / gc * br; r < rows && r < b / gc * br + br; r++)
			for (size_t c = b % gc * bc; c < cols && c < b % gc * bc + bc; c++)
				in[m++] = (struct ref_item){ ref_norm(v[r * cols + c], wide, a.norm),
							     r * cols + c };
		qsort(in, m, sizeof(*in), ref_item_cmp);   /* flat index: same order as in-block */
		for (size_t i = 0; i < m && i < zeros; i++)
			out[in[i].idx] = 0;
	}
done:
	free(blocks);
	free(in);
	free(tmask);
}

static uint64_t rng_state = 0x853c49e6748fea9bu;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

START_TEST(wn_random_vs_reference)
{
	static const double levels[] = { 0.0, 0.1, 0.3, 0.5, 0.77, 0.99, 1.0 };
	for (int rep = 0; rep < 3000; rep++) {
		size_t rows = 1 + rng() % 13, cols = 1 + rng() % 17;
		struct opass_weight_norm_args a = wn(levels[rng() % 7], 1 + (int64_t)(rng() % 4),
						     1 + (int64_t)(rng() % 5), 0, 1 + (int)(rng() % 2));
		bool wide = rng() % 2;
		double *v = malloc(rows * cols * sizeof(*v));
		uint8_t *got = malloc(rows * cols), *want = malloc(rows * cols);

		ck_assert(v && got && want);
		a.zeros_per_block = (int64_t)(rng() % (uint64_t)(a.block_rows * a.block_cols + 1));
		for (size_t i = 0; i < rows * cols; i++) {
			uint64_t u = rng();

			/* few distinct values (ties everywhere), some NaN and signed zeros */
			v[i] = u % 23 == 0 ? NAN : ((double)(u % 7) - 3.0) * (rep % 2 ? 0.5 : 0.3);
			if (u % 31 == 0)
				v[i] = -0.0;
		}
		ref_weight_norm(v, rows, cols, wide, a, want);
		ck_assert_int_eq(opass_weight_norm_mask(v, rows, cols, wide, &a, got), 0);
		if (memcmp(got, want, rows * cols) != 0) {
			print_mask("got", got, rows, cols);
			print_mask("want", want, rows, cols);
			ck_abort_msg("rep %d: %zux%zu level %g block %dx%d zeros %d norm %d", rep,
				     rows, cols, a.sparsity_level, (int)a.block_rows,
				     (int)a.block_cols, (int)a.zeros_per_block, a.norm);
		}
		free(v);
		free(got);
		free(want);
	}
}
END_TEST

/* The mask computed on the stored transpose equals the view's mask put
 * in storage order, for line blocks (ties everywhere, NaN, signed zeros,
 * partial edge blocks, 4 x 1 and 1 x 4 fast paths). */
START_TEST(wn_transposed_vs_view)
{
	static const double levels[] = { 0.1, 0.3, 0.5, 0.77, 0.99, 1.0 };
	static const int64_t lines[][2] = { { 1, 1 }, { 1, 4 }, { 4, 1 }, { 1, 3 }, { 2, 1 },
					    { 1, 2 }, { 5, 1 } };

	for (int rep = 0; rep < 4000; rep++) {
		size_t rows = 1 + rng() % 14, cols = 1 + rng() % 18;
		const int64_t *shape = lines[rng() % 7];
		struct opass_weight_norm_args a = wn(levels[rng() % 6], shape[0], shape[1], 0,
						     1 + (int)(rng() % 2));
		size_t n;
		float *v, *stored, *scores;
		uint32_t *scratch;
		uint8_t *got, *view_mask;

		if (rep % 3 == 0) {   /* multiples of 4 take the fast paths */
			rows = 4 * (1 + rng() % 4);
			cols = 4 * (1 + rng() % 4);
		}
		n = rows * cols;
		v = malloc(n * sizeof(*v));
		stored = malloc(n * sizeof(*v));
		scores = malloc(n * sizeof(*v));
		scratch = malloc(n * sizeof(*scratch));
		got = malloc(n);
		view_mask = malloc(n);
		ck_assert(v && stored && scores && scratch && got && view_mask);
		a.zeros_per_block = (int64_t)(rng() % (uint64_t)(a.block_rows * a.block_cols + 1));
		for (size_t i = 0; i < n; i++) {
			uint64_t u = rng();

			v[i] = u % 23 == 0 ? NAN : (float)((double)(u % 7) - 3.0) * 0.25f;
			if (u % 31 == 0)
				v[i] = -0.0f;
			if (rep % 2)   /* distinct values too */
				v[i] = (float)(u >> 40) / 65536.0f - 64.0f;
		}
		for (size_t i = 0; i < rows; i++)
			for (size_t j = 0; j < cols; j++)
				stored[j * rows + i] = v[i * cols + j];
		ck_assert_int_eq(opass_weight_norm_mask_f32(v, rows, cols, &a, view_mask), 0);
		ck_assert_int_eq(opass_weight_norm_mask_f32_transposed(stored, rows, cols, &a, scores,
								       scratch, got), 0);
		for (size_t i = 0; i < rows; i++)
			for (size_t j = 0; j < cols; j++)
				ck_assert_msg(got[j * rows + i] == view_mask[i * cols + j],
					      "rep %d: %zux%zu level %g block %dx%d zeros %d "
					      "norm %d: element (%zu, %zu)", rep, rows, cols,
					      a.sparsity_level, (int)a.block_rows, (int)a.block_cols,
					      (int)a.zeros_per_block, a.norm, i, j);
		free(v);
		free(stored);
		free(scores);
		free(scratch);
		free(got);
		free(view_mask);
	}
}
END_TEST

START_TEST(wn_transposed_needs_lines)
{
	struct opass_weight_norm_args a = wn(0.5, 2, 2, 4, 2);
	float v[16] = { 0 }, scores[16];
	uint32_t scratch[16];
	uint8_t mask[16];

	for (int i = 0; i < 16; i++)
		v[i] = (float)i;
	ck_assert_int_eq(opass_weight_norm_mask_f32_transposed(v, 4, 4, &a, scores, scratch, mask),
			 -EINVAL);
}
END_TEST

#define check_nd(rows, cols, nearliness, expected) \
	check_nd_at(__LINE__, rows, cols, nearliness, expected)
static void check_nd_at(int line, size_t rows, size_t cols, int64_t nearliness,
			const char *expected)
{
	uint8_t got[64], want[64];
	size_t n = 0;

	for (const char *p = expected; *p; p++)
		if (*p == '0' || *p == '1')
			want[n++] = (uint8_t)(*p - '0');
	ck_assert_uint_eq(n, rows * cols);
	memset(got, 0xaa, sizeof(got));
	ck_assert_int_eq(opass_nearly_diagonal_mask(rows, cols, nearliness, got), 0);
	if (memcmp(got, want, n) != 0) {
		print_mask("got", got, rows, cols);
		ck_abort_msg("nearly diagonal mismatch (line %d)", line);
	}
}

START_TEST(nd_masks)
{
	check_nd(3, 4, 1, "1000 0100 0010");
	/* torch's docstring examples, nearliness 3 and 5 on 4x4 */
	check_nd(4, 4, 3, "1100 1110 0111 0011");
	check_nd(4, 4, 5, "1110 1111 1111 0111");
	check_nd(2, 5, 3, "11000 11100");
	check_nd(5, 2, 3, "11 11 01 00 00");
	check_nd(2, 3, 0, "000 000");
	check_nd(2, 3, -3, "000 000");
}
END_TEST

START_TEST(nd_errors)
{
	uint8_t m[16] = { 7 };

	ck_assert_int_eq(opass_nearly_diagonal_mask(4, 4, 2, m), -EINVAL);    /* even */
	ck_assert_int_eq(opass_nearly_diagonal_mask(4, 4, 4, m), -EINVAL);
	ck_assert_int_eq(opass_nearly_diagonal_mask(2, 5, 5, m), -EINVAL);    /* 5//2 >= 2 */
	ck_assert_int_eq(opass_nearly_diagonal_mask(5, 2, 5, m), -EINVAL);
	ck_assert_int_eq(opass_nearly_diagonal_mask(4, 4, 9, m), -EINVAL);
	ck_assert_int_eq(opass_nearly_diagonal_mask(4, 4, INT64_MAX, m), -EINVAL);
	ck_assert_int_eq(m[0], 7);
	ck_assert_int_eq(opass_nearly_diagonal_mask(4, 4, 7, m), 0);           /* 7//2 = 3 < 4 */
	ck_assert_int_eq(m[0], 1);
}
END_TEST

Suite *test_suite(void)
{
	Suite *s = suite_create("masks");
	TCase *tc = tcase_create("weight_norm");
	TCase *nd = tcase_create("nearly_diagonal");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, wn_k_rounding);
	tcase_add_test(tc, wn_transposed_vs_view);
	tcase_add_test(tc, wn_transposed_needs_lines);
	tcase_add_test(tc, wn_block_ties);
	tcase_add_test(tc, wn_partial_blocks);
	tcase_add_test(tc, wn_block_bigger_than_matrix);
	tcase_add_test(tc, wn_two_four);
	tcase_add_test(tc, wn_nan);
	tcase_add_test(tc, wn_norm_1_vs_2);
	tcase_add_test(tc, wn_wide_vs_float);
	tcase_add_test(tc, wn_float_sum_order);
	tcase_add_test(tc, wn_trivial_levels);
	tcase_add_test(tc, wn_errors);
	tcase_add_test(tc, wn_random_vs_reference);
	suite_add_tcase(s, tc);
	tcase_add_test(nd, nd_masks);
	tcase_add_test(nd, nd_errors);
	suite_add_tcase(s, nd);
	return s;
}
