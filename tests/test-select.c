/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "select.h"
#include "testlib.h"

static uint64_t rng_state = 0x2545f4914f6cdd1du;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static const double *ref_keys;

/* Order (key, index): numbers by value (-0 == +0), NaN above all numbers. */
static int ref_cmp(const void *pa, const void *pb)
{
	size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
	double x = ref_keys[a], y = ref_keys[b];
	int nx = isnan(x), ny = isnan(y);

	if (nx != ny)
		return nx - ny;
	if (!nx && x < y)
		return -1;
	if (!nx && x > y)
		return 1;
	return (a > b) - (a < b);
}

/* Brute force: sort all indices, mark the first k. */
static void ref_select(const double *keys, size_t n, size_t k, uint8_t *sel)
{
	size_t *idx = malloc((n + 1) * sizeof(*idx));

	ck_assert_ptr_nonnull(idx);
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	ref_keys = keys;
	qsort(idx, n, sizeof(*idx), ref_cmp);
	memset(sel, 0, n);
	for (size_t i = 0; i < k; i++)
		sel[idx[i]] = 1;
	free(idx);
}

static double random_key(int kind)
{
	static const double few[] = { -1.0, 0.0, -0.0, 1.0, 2.0, 0.5, INFINITY, -INFINITY };
	uint64_t u = rng();
	double d;

	switch (kind) {
	case 0:   /* heavy duplicates, NaN, signed zeros, infinities */
		if (u % 9 == 8)
			return NAN;
		return few[u % 8];
	case 1:   /* random bit patterns: every class, NaN payloads of both signs */
		memcpy(&d, &u, sizeof(d));
		return d;
	case 2:   /* uniform-ish numbers in a narrow range: shared high bytes */
		return (double)(u >> 11) / 9007199254740992.0 + 1.0;
	default:  /* small integers: lots of ties */
		return (double)(u % 5) - 2.0;
	}
}

/* Ties in column-major order: the keys stored as the transpose of a grid
 * select, put back, what index-order selection selects on the grid. */
static void check_column_major(const double *keys, size_t n, size_t k, uint64_t *scratch,
			       uint8_t *got, uint8_t *want)
{
	size_t cols = n % 3 == 0 ? 3 : n % 2 == 0 ? 2 : 1, rows = n / (cols ? cols : 1);
	double *t = malloc((n + 1) * sizeof(*t));
	float *tf = malloc((n + 1) * sizeof(*tf)), *kf = malloc((n + 1) * sizeof(*kf));

	ck_assert(t && tf && kf);
	if (n == 0)
		goto out;
	/* grid g[r][c] = keys[r * cols + c]; its transpose tr[c][r] = g[r][c] */
	for (size_t r = 0; r < rows; r++)
		for (size_t c = 0; c < cols; c++)
			t[c * rows + r] = keys[r * cols + c];
	ck_assert_int_eq(opass_select_smallest_cm_with(t, n, rows, k, scratch, got), 0);
	for (size_t r = 0; r < rows; r++)
		for (size_t c = 0; c < cols; c++)
			ck_assert_uint_eq(got[c * rows + r], want[r * cols + c]);
	/* float32 keys: index-order reference on the float grid */
	for (size_t i = 0; i < n; i++) {
		kf[i] = (float)keys[i];
		tf[i] = (float)t[i];
	}
	ck_assert_int_eq(opass_select_smallest_f32_with(kf, n, k, (uint32_t *)scratch, want), 0);
	ck_assert_int_eq(opass_select_smallest_f32_cm_with(tf, n, rows, k, (uint32_t *)scratch, got),
			 0);
	for (size_t r = 0; r < rows; r++)
		for (size_t c = 0; c < cols; c++)
			ck_assert_uint_eq(got[c * rows + r], want[r * cols + c]);
	ck_assert_int_eq(opass_select_smallest_f32_cm_with(tf, n, 0, k, (uint32_t *)scratch, got),
			 -EINVAL);
out:
	free(t);
	free(tf);
	free(kf);
}

static void check_one(const double *keys, size_t n, size_t k)
{
	uint8_t *got = malloc(n + 1), *want = malloc(n + 1);
	uint64_t *scratch = malloc((n + 1) * sizeof(*scratch));
	size_t count = 0;

	ck_assert(got && want && scratch);
	ref_select(keys, n, k, want);
	ck_assert_int_eq(opass_select_smallest(keys, n, k, got), 0);
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(got[i] == want[i], "n=%zu k=%zu i=%zu key=%g: got %d", n, k, i,
			      keys[i], got[i]);
		count += got[i];
	}
	ck_assert_uint_eq(count, k);
	memset(got, 0xaa, n + 1);
	ck_assert_int_eq(opass_select_smallest_with(keys, n, k, scratch, got), 0);
	ck_assert_int_eq(memcmp(got, want, n), 0);
	check_column_major(keys, n, k, scratch, got, want);
	free(got);
	free(want);
	free(scratch);
}

static void check_random(size_t n, int kind)
{
	double *keys = malloc((n + 1) * sizeof(*keys));
	size_t ks[6] = { 0, n, n / 2, n > 0 ? n - 1 : 0, n > 0 ? 1 : 0, 0 };

	ck_assert_ptr_nonnull(keys);
	for (size_t i = 0; i < n; i++)
		keys[i] = random_key(kind);
	ks[5] = n > 0 ? rng() % (n + 1) : 0;
	for (int j = 0; j < 6; j++)
		check_one(keys, n, ks[j]);
	free(keys);
}

START_TEST(select_small_sizes)
{
	for (size_t n = 0; n <= 70; n++)
		for (int rep = 0; rep < 20; rep++)
			check_random(n, rep % 4);
}
END_TEST

START_TEST(select_large_sizes)
{
	static const size_t sizes[] = { 17, 33, 100, 257, 1000, 4099, 65536, 200000 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (int kind = 0; kind < 4; kind++)
			check_random(sizes[i], kind);
}
END_TEST

/* Many keys are first bounded by a sample of evenly spaced keys; keys that
 * fool the sample (the sampled positions hold the largest keys) must still
 * give the exact selection through the fallback. */
START_TEST(select_sample_fooled)
{
	size_t n = 1u << 17, stride = n / 4096;
	double *keys = malloc(n * sizeof(*keys));

	ck_assert_ptr_nonnull(keys);
	for (size_t i = 0; i < n; i++)
		keys[i] = i % stride == stride / 2 ? 1e6 + (double)(rng() % 1000)
						   : (double)(rng() % 100000);
	check_one(keys, n, n / 2);
	check_one(keys, n, n - n / 64);   /* inside the large sampled keys */
	check_one(keys, n, 3);
	free(keys);
}
END_TEST

START_TEST(select_ties_and_signed_zero)
{
	/* -0.0 and +0.0 are one key: the lower indices win */
	const double keys[] = { 0.0, -0.0, 1.0, -0.0, 0.0, NAN, -1.0 };
	const uint8_t want3[] = { 1, 1, 0, 0, 0, 0, 1 };
	const uint8_t want6[] = { 1, 1, 1, 1, 1, 0, 1 };
	uint8_t got[7];

	ck_assert_int_eq(opass_select_smallest(keys, 7, 3, got), 0);
	ck_assert_int_eq(memcmp(got, want3, 7), 0);
	ck_assert_int_eq(opass_select_smallest(keys, 7, 6, got), 0);
	ck_assert_int_eq(memcmp(got, want6, 7), 0);
}
END_TEST

START_TEST(select_nan_last)
{
	/* NaN (either sign) is above +inf: selected only when nothing else is left */
	const double keys[] = { NAN, INFINITY, -NAN, 1e308, -INFINITY };
	const uint8_t want3[] = { 0, 1, 0, 1, 1 };
	const uint8_t want4[] = { 1, 1, 0, 1, 1 };
	uint8_t got[5];

	ck_assert_int_eq(opass_select_smallest(keys, 5, 3, got), 0);
	ck_assert_int_eq(memcmp(got, want3, 5), 0);
	ck_assert_int_eq(opass_select_smallest(keys, 5, 4, got), 0);
	ck_assert_int_eq(memcmp(got, want4, 5), 0);
}
END_TEST

START_TEST(select_all_equal)
{
	size_t n = 1000;
	double *keys = malloc(n * sizeof(*keys));
	uint8_t *got = malloc(n);

	ck_assert(keys && got);
	for (size_t i = 0; i < n; i++)
		keys[i] = 0.25;
	ck_assert_int_eq(opass_select_smallest(keys, n, 400, got), 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(got[i], i < 400);
	free(keys);
	free(got);
}
END_TEST

START_TEST(select_errors)
{
	const double keys[] = { 1.0, 2.0 };
	uint8_t got[2] = { 7, 7 };

	ck_assert_int_eq(opass_select_smallest(keys, 2, 3, got), -EINVAL);
	ck_assert_int_eq(got[0], 7);   /* untouched on failure */
	ck_assert_int_eq(opass_select_smallest(NULL, 0, 0, NULL), 0);
	ck_assert_int_eq(opass_select_smallest(NULL, 0, 1, NULL), -EINVAL);
	ck_assert_int_eq(opass_select_smallest_with(keys, 2, 3, NULL, got), -EINVAL);
	ck_assert_int_eq(opass_select_smallest(keys, 1, 1, got), 0);
	ck_assert_int_eq(got[0], 1);
	ck_assert_int_eq(opass_select_smallest(keys, 1, 0, got), 0);
	ck_assert_int_eq(got[0], 0);
}
END_TEST

Suite *test_suite(void)
{
	Suite *s = suite_create("select");
	TCase *tc = tcase_create("select");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, select_small_sizes);
	tcase_add_test(tc, select_large_sizes);
	tcase_add_test(tc, select_sample_fooled);
	tcase_add_test(tc, select_ties_and_signed_zero);
	tcase_add_test(tc, select_nan_last);
	tcase_add_test(tc, select_all_equal);
	tcase_add_test(tc, select_errors);
	suite_add_tcase(s, tc);
	return s;
}
