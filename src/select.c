/* SPDX-License-Identifier: MIT */
/*
 * Selection of the k smallest keys in O(n): keys are mapped to unsigned
 * integers whose order is the wanted order (-0.0 == +0.0, NaN above +inf),
 * the k-th smallest mapped key t is found by an MSD radix select (11-bit
 * digits, at most six passes over a shrinking candidate set; the first pass
 * only counts; for many keys, a sorted sample of 4096 first gives bounds, so
 * that one pass keeps only the keys between them), then every key < t is selected plus, in index order (or the
 * column-major order of a grid), as many keys == t as are still needed. A handful of keys is ranked directly.
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
/* From this many keys on, a sample bounds the wanted key first. */
#define SAMPLE_MIN_KEYS (1u << 16)
#define SAMPLE_KEYS 4096
#define SAMPLE_MARGIN 128


#define SEL_FLOAT double
#define SEL_UINT uint64_t
#define SEL_INT int64_t
#define SEL_BITS 64
#define SEL_SIGN (UINT64_C(1) << 63)
#define SEL_EXP_ONES UINT64_C(0x7ff0000000000000)
#define SEL_UINT_MAX UINT64_MAX
#define SEL_FN(name) name##_f64
#define SEL_PUBLIC opass_select_smallest_with
#define SEL_PUBLIC_CM opass_select_smallest_cm_with
#include "select_impl.h"
#undef SEL_FLOAT
#undef SEL_UINT
#undef SEL_INT
#undef SEL_BITS
#undef SEL_SIGN
#undef SEL_EXP_ONES
#undef SEL_UINT_MAX
#undef SEL_FN
#undef SEL_PUBLIC
#undef SEL_PUBLIC_CM

#define SEL_FLOAT float
#define SEL_UINT uint32_t
#define SEL_INT int32_t
#define SEL_BITS 32
#define SEL_SIGN (UINT32_C(1) << 31)
#define SEL_EXP_ONES UINT32_C(0x7f800000)
#define SEL_UINT_MAX UINT32_MAX
#define SEL_FN(name) name##_f32
#define SEL_PUBLIC opass_select_smallest_f32_with
#define SEL_PUBLIC_CM opass_select_smallest_f32_cm_with
#include "select_impl.h"

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
