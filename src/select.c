/* SPDX-License-Identifier: MIT */
/*
 * Selection of the k smallest keys in O(n): keys are mapped to unsigned
 * integers whose order is the wanted order (-0.0 == +0.0, NaN above +inf),
 * the k-th smallest mapped key t is found by an MSD radix select (11-bit
 * digits, at most six passes over a shrinking candidate set; the first pass
 * only counts), then every key < t is selected plus, in index order, as many
 * keys == t as are still needed. A handful of keys is ranked directly.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "select.h"

#define DIGIT_BITS 11
#define DIGIT_VALUES (1u << DIGIT_BITS)
/* Candidate sets this small are finished with an insertion sort. */
#define SELECT_SMALL 32
/* Up to this many keys, each key's rank is counted directly. */
#define SELECT_RANK_MAX 16

#define SIGN_BIT (UINT64_C(1) << 63)
#define EXP_ALL_ONES UINT64_C(0x7ff0000000000000)

/* Branch-free: negative numbers flip all bits, others the sign bit; zeros and NaNs collapse. */
static uint64_t select_key(double d)
{
	uint64_t u, flip;

	memcpy(&u, &d, sizeof(u));
	u = (u & ~SIGN_BIT) == 0 ? 0 : u;
	flip = (uint64_t)((int64_t)u >> 63) | SIGN_BIT;
	return (u & ~SIGN_BIT) > EXP_ALL_ONES ? UINT64_MAX : u ^ flip;
}

/* Digit of key u for the pass that keeps `shift` low bits (shift = 53, 42, ..., 9, 0). */
static size_t select_digit(uint64_t u, int shift)
{
	return (size_t)(u >> shift) & (DIGIT_VALUES - 1);
}

/*
 * The bucket holding rank *rank; *rank becomes the rank inside the bucket and
 * the keys of the buckets below (all smaller) are added to *less.
 */
static size_t select_bucket(const size_t *hist, size_t *rank, size_t *less)
{
	size_t b = 0;

	while (*rank >= hist[b]) {
		*rank -= hist[b];
		*less += hist[b++];
	}
	return b;
}

static uint64_t select_small_kth(uint64_t *a, size_t n, size_t rank, size_t *less)
{
	for (size_t i = 1; i < n; i++) {
		uint64_t v = a[i];
		size_t j = i;

		for (; j > 0 && a[j - 1] > v; j--)
			a[j] = a[j - 1];
		a[j] = v;
	}
	for (size_t i = 0; a[i] < a[rank]; i++)
		(*less)++;
	return a[rank];
}

/*
 * The mapped key of rank `rank` (0-based) among keys[0..n), and in *ret_less
 * how many keys are smaller. The first pass counts the top digit straight
 * from keys; only that digit's bucket is copied to scratch and refined.
 */
static uint64_t select_kth(const double *keys, size_t n, size_t rank, uint64_t *scratch,
			   size_t *ret_less)
{
	size_t hist[DIGIT_VALUES] = { 0 };
	size_t b, m = 0, less = 0;
	int shift = 64 - DIGIT_BITS;

	for (size_t i = 0; i < n; i++)
		hist[select_digit(select_key(keys[i]), shift)]++;
	b = select_bucket(hist, &rank, &less);
	for (size_t i = 0; i < n; i++) {
		uint64_t u = select_key(keys[i]);

		scratch[m] = u;   /* branch-free compaction: kept only if m advances */
		m += select_digit(u, shift) == b;
	}
	n = m;
	while (n > SELECT_SMALL && shift > 0) {
		shift = shift > DIGIT_BITS ? shift - DIGIT_BITS : 0;
		memset(hist, 0, sizeof(hist));
		for (size_t i = 0; i < n; i++)
			hist[select_digit(scratch[i], shift)]++;
		b = select_bucket(hist, &rank, &less);
		m = 0;
		for (size_t i = 0; i < n; i++) {
			scratch[m] = scratch[i];
			m += select_digit(scratch[i], shift) == b;
		}
		n = m;
	}
	*ret_less = less;
	if (shift == 0)   /* every candidate left has the same key */
		return scratch[rank];
	return select_small_kth(scratch, n, rank, ret_less);
}

/* Few keys: key j is selected when fewer than k keys come before it. */
static void select_by_rank(const double *keys, size_t n, size_t k, uint8_t *ret_selected)
{
	uint64_t u[SELECT_RANK_MAX];

	for (size_t i = 0; i < n; i++)
		u[i] = select_key(keys[i]);
	for (size_t j = 0; j < n; j++) {
		size_t before = 0;

		for (size_t i = 0; i < n; i++)
			before += u[i] < u[j] || (u[i] == u[j] && i < j);
		ret_selected[j] = before < k;
	}
}

int opass_select_smallest_with(const double *keys, size_t n, size_t k, uint64_t *scratch,
			       uint8_t *ret_selected)
{
	size_t need;
	uint64_t t;

	if (k > n || (n > 0 && !ret_selected))
		return -EINVAL;
	if (k == 0 || k == n) {
		if (n > 0)
			memset(ret_selected, k == n, n);
		return 0;
	}
	if (!keys)
		return -EINVAL;
	if (n <= SELECT_RANK_MAX) {
		select_by_rank(keys, n, k, ret_selected);
		return 0;
	}
	if (!scratch)
		return -EINVAL;
	t = select_kth(keys, n, k - 1, scratch, &need);
	need = k - need;   /* keys equal to t to take, lowest indices first */
	for (size_t i = 0; i < n; i++) {
		uint64_t u = select_key(keys[i]);

		ret_selected[i] = u < t || (u == t && need > 0);
		need -= u == t && need > 0;
	}
	return 0;
}

int opass_select_smallest(const double *keys, size_t n, size_t k, uint8_t *ret_selected)
{
	uint64_t *scratch;
	int r;

	if (k > n)
		return -EINVAL;
	if (k == 0 || k == n || n <= SELECT_RANK_MAX)
		return opass_select_smallest_with(keys, n, k, NULL, ret_selected);
	/* keys holds n doubles, so n * sizeof(uint64_t) cannot overflow */
	scratch = malloc(n * sizeof(*scratch));
	if (!scratch)
		return -ENOMEM;
	r = opass_select_smallest_with(keys, n, k, scratch, ret_selected);
	free(scratch);
	return r;
}
