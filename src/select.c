/* SPDX-License-Identifier: MIT */
/*
 * Selection of the k smallest keys in O(n): keys are mapped to unsigned
 * integers whose order is the wanted order (-0.0 == +0.0, NaN above +inf),
 * the k-th smallest mapped key t is found by an MSD radix select (at most
 * eight byte passes over a shrinking candidate set), then every key < t is
 * selected plus, in index order, as many keys == t as are still needed.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "select.h"

/* Candidate sets this small are finished with an insertion sort. */
#define SELECT_SMALL 32

static uint64_t select_key(double d)
{
	uint64_t u;

	if (isnan(d))
		return UINT64_MAX;
	if (d == 0.0)
		return UINT64_C(1) << 63;
	memcpy(&u, &d, sizeof(u));
	return (u >> 63) ? ~u : u | (UINT64_C(1) << 63);
}

static uint64_t select_small_kth(uint64_t *a, size_t n, size_t rank)
{
	for (size_t i = 1; i < n; i++) {
		uint64_t v = a[i];
		size_t j = i;

		for (; j > 0 && a[j - 1] > v; j--)
			a[j] = a[j - 1];
		a[j] = v;
	}
	return a[rank];
}

/* The value of rank `rank` (0-based) of a[0..n); reorders a. */
static uint64_t select_kth(uint64_t *a, size_t n, size_t rank)
{
	for (int shift = 56; n > SELECT_SMALL; shift -= 8) {
		size_t hist[256] = { 0 };
		size_t bucket = 0, m = 0;

		for (size_t i = 0; i < n; i++)
			hist[(a[i] >> shift) & 0xff]++;
		while (rank >= hist[bucket])
			rank -= hist[bucket++];
		for (size_t i = 0; i < n; i++)
			if (((a[i] >> shift) & 0xff) == bucket)
				a[m++] = a[i];
		n = m;
		if (shift == 0)   /* every candidate left has the same key */
			return a[0];
	}
	return select_small_kth(a, n, rank);
}

int opass_select_smallest_with(const double *keys, size_t n, size_t k, uint64_t *scratch,
			       uint8_t *ret_selected)
{
	size_t less = 0;
	uint64_t t;

	if (k > n || (n > 0 && !ret_selected))
		return -EINVAL;
	if (k == 0 || k == n) {
		if (n > 0)
			memset(ret_selected, k == n, n);
		return 0;
	}
	if (!keys || !scratch)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		scratch[i] = select_key(keys[i]);
	t = select_kth(scratch, n, k - 1);
	for (size_t i = 0; i < n; i++) {
		ret_selected[i] = select_key(keys[i]) < t;
		less += ret_selected[i];
	}
	for (size_t i = 0, need = k - less; need > 0 && i < n; i++) {
		if (!ret_selected[i] && select_key(keys[i]) == t) {
			ret_selected[i] = 1;
			need--;
		}
	}
	return 0;
}

int opass_select_smallest(const double *keys, size_t n, size_t k, uint8_t *ret_selected)
{
	uint64_t *scratch;
	int r;

	if (k > n)
		return -EINVAL;
	if (k == 0 || k == n)
		return opass_select_smallest_with(keys, n, k, NULL, ret_selected);
	/* keys holds n doubles, so n * sizeof(uint64_t) cannot overflow */
	scratch = malloc(n * sizeof(*scratch));
	if (!scratch)
		return -ENOMEM;
	r = opass_select_smallest_with(keys, n, k, scratch, ret_selected);
	free(scratch);
	return r;
}
