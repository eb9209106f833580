/* SPDX-License-Identifier: MIT */
/*
 * Selection template, included by select.c once per key type with:
 *   SEL_FLOAT (float | double), SEL_UINT / SEL_INT (same-width integers),
 *   SEL_BITS, SEL_SIGN, SEL_EXP_ONES, SEL_UINT_MAX, SEL_FN(name) (a suffixed
 *   name), SEL_PUBLIC and SEL_PUBLIC_CM (the public functions' names).
 */

/* Branch-free: negative numbers flip all bits, others the sign bit; zeros and NaNs collapse. */
static SEL_UINT SEL_FN(select_key)(SEL_FLOAT d)
{
	SEL_UINT u, flip;

	memcpy(&u, &d, sizeof(u));
	u = (u & ~SEL_SIGN) == 0 ? 0 : u;
	flip = (SEL_UINT)((SEL_INT)u >> (SEL_BITS - 1)) | SEL_SIGN;
	return (u & ~SEL_SIGN) > SEL_EXP_ONES ? SEL_UINT_MAX : u ^ flip;
}

/* Digit of key u for the pass that keeps `shift` low bits. */
static size_t SEL_FN(select_digit)(SEL_UINT u, int shift)
{
	return (size_t)(u >> shift) & (DIGIT_VALUES - 1);
}

/*
 * The bucket holding rank *rank; *rank becomes the rank inside the bucket and
 * the keys of the buckets below (all smaller) are added to *less.
 */
static size_t SEL_FN(select_bucket)(const size_t *hist, size_t *rank, size_t *less)
{
	size_t b = 0;

	while (*rank >= hist[b]) {
		*rank -= hist[b];
		*less += hist[b++];
	}
	return b;
}

static SEL_UINT SEL_FN(select_small_kth)(SEL_UINT *a, size_t n, size_t rank, size_t *less,
					 size_t *ret_eq)
{
	size_t eq = 0;

	for (size_t i = 1; i < n; i++) {
		SEL_UINT v = a[i];
		size_t j = i;

		for (; j > 0 && a[j - 1] > v; j--)
			a[j] = a[j - 1];
		a[j] = v;
	}
	for (size_t i = 0; a[i] < a[rank]; i++)
		(*less)++;
	for (size_t i = 0; i < n; i++)
		eq += a[i] == a[rank];
	*ret_eq = eq;
	return a[rank];
}

/*
 * The key of rank `rank` among the mapped keys a[0..n), all equal in the
 * bits above shift + DIGIT_BITS; *less grows by how many are smaller and
 * *ret_eq is how many equal it (all of them are candidates to the end).
 */
static SEL_UINT SEL_FN(select_refine)(SEL_UINT *a, size_t n, size_t rank, int shift, size_t *less,
				      size_t *ret_eq)
{
	size_t hist[DIGIT_VALUES];

	while (n > SELECT_SMALL) {
		size_t b, m = 0;

		memset(hist, 0, sizeof(hist));
		for (size_t i = 0; i < n; i++)
			hist[SEL_FN(select_digit)(a[i], shift)]++;
		b = SEL_FN(select_bucket)(hist, &rank, less);
		for (size_t i = 0; i < n; i++) {
			a[m] = a[i];   /* branch-free compaction: kept only if m advances */
			m += SEL_FN(select_digit)(a[i], shift) == b;
		}
		n = m;
		if (shift == 0) {   /* every candidate left has the same key */
			*ret_eq = n;
			return a[rank];
		}
		shift = shift > DIGIT_BITS ? shift - DIGIT_BITS : 0;
	}
	return SEL_FN(select_small_kth)(a, n, rank, less, ret_eq);
}

static int SEL_FN(sample_cmp)(const void *pa, const void *pb)
{
	SEL_UINT a = *(const SEL_UINT *)pa, b = *(const SEL_UINT *)pb;

	return (a > b) - (a < b);
}

/*
 * Bounds [*lo, *hi] that very likely hold the key of rank `rank`, from an
 * evenly spaced sample of SAMPLE_KEYS keys (its ranks +- SAMPLE_MARGIN,
 * four standard deviations).
 */
static void SEL_FN(sample_bounds)(const SEL_FLOAT *keys, size_t n, size_t rank, SEL_UINT *lo,
				  SEL_UINT *hi)
{
	SEL_UINT sample[SAMPLE_KEYS];
	size_t stride = n / SAMPLE_KEYS, pos = (size_t)((double)rank / (double)n * SAMPLE_KEYS);

	for (size_t j = 0; j < SAMPLE_KEYS; j++)
		sample[j] = SEL_FN(select_key)(keys[j * stride + stride / 2]);
	qsort(sample, SAMPLE_KEYS, sizeof(*sample), SEL_FN(sample_cmp));
	*lo = pos >= SAMPLE_MARGIN ? sample[pos - SAMPLE_MARGIN] : 0;
	*hi = pos + SAMPLE_MARGIN < SAMPLE_KEYS ? sample[pos + SAMPLE_MARGIN] : SEL_UINT_MAX;
}

/*
 * The mapped key of rank `rank` (0-based) among keys[0..n), in *ret_less
 * how many keys are smaller and in *ret_eq how many equal it. Many keys: one pass counts the keys below the
 * sampled bounds and copies those inside to scratch, which is refined. Else
 * (or when the rank falls outside the bounds) the first pass counts the top
 * digit straight from keys and only that digit's bucket is copied.
 */
static SEL_UINT SEL_FN(select_kth)(const SEL_FLOAT *keys, size_t n, size_t rank, SEL_UINT *scratch,
				   size_t *ret_less, size_t *ret_eq)
{
	size_t hist[DIGIT_VALUES] = { 0 };
	size_t b, m = 0, less = 0;
	int shift = SEL_BITS - DIGIT_BITS;
	SEL_UINT lo, hi;

	if (n >= SAMPLE_MIN_KEYS) {
		SEL_FN(sample_bounds)(keys, n, rank, &lo, &hi);
		for (size_t i = 0; i < n; i++) {
			SEL_UINT u = SEL_FN(select_key)(keys[i]);

			less += u < lo;
			scratch[m] = u;
			m += (u >= lo) & (u <= hi);
		}
		if (rank >= less && rank - less < m) {
			*ret_less = less;
			return SEL_FN(select_refine)(scratch, m, rank - less, shift, ret_less, ret_eq);
		}
		less = m = 0;
	}
	for (size_t i = 0; i < n; i++)
		hist[SEL_FN(select_digit)(SEL_FN(select_key)(keys[i]), shift)]++;
	b = SEL_FN(select_bucket)(hist, &rank, &less);
	for (size_t i = 0; i < n; i++) {
		SEL_UINT u = SEL_FN(select_key)(keys[i]);

		scratch[m] = u;
		m += SEL_FN(select_digit)(u, shift) == b;
	}
	*ret_less = less;
	return SEL_FN(select_refine)(scratch, m, rank, shift > DIGIT_BITS ? shift - DIGIT_BITS : 0,
				     ret_less, ret_eq);
}

/* Position of key i in the tie order: index order (cols 0), or column-major
 * order of a grid of n / cols rows and cols columns. */
static inline size_t SEL_FN(tie_pos)(size_t i, size_t n, size_t cols)
{
	return cols ? i % cols * (n / cols) + i / cols : i;
}

/* Few keys: key j is selected when fewer than k keys come before it. */
static void SEL_FN(select_by_rank)(const SEL_FLOAT *keys, size_t n, size_t k, size_t cols,
				   uint8_t *ret_selected)
{
	SEL_UINT u[SELECT_RANK_MAX];

	for (size_t i = 0; i < n; i++)
		u[i] = SEL_FN(select_key)(keys[i]);
	for (size_t j = 0; j < n; j++) {
		size_t before = 0, pj = SEL_FN(tie_pos)(j, n, cols);

		for (size_t i = 0; i < n; i++)
			before += u[i] < u[j] ||
				  (u[i] == u[j] && SEL_FN(tie_pos)(i, n, cols) < pj);
		ret_selected[j] = before < k;
	}
}

/* Select the keys < t, then `need` of the `eq` keys == t, first in tie order. */
static void SEL_FN(select_mark)(const SEL_FLOAT *keys, size_t n, SEL_UINT t, size_t need,
				size_t eq, size_t cols, uint8_t *ret_selected)
{
	if (need == eq) {   /* every key == t: one pass (distinct keys end here) */
		for (size_t i = 0; i < n; i++)
			ret_selected[i] = SEL_FN(select_key)(keys[i]) <= t;
		return;
	}
	for (size_t i = 0; i < n; i++)
		ret_selected[i] = SEL_FN(select_key)(keys[i]) < t;
	for (size_t p = 0; need > 0 && p < n; p++) {
		size_t i = cols ? p % (n / cols) * cols + p / (n / cols) : p;

		if (SEL_FN(select_key)(keys[i]) == t) {
			ret_selected[i] = 1;
			need--;
		}
	}
}

/* cols: 0 for ties in index order, else the columns of the grid whose
 * column-major order breaks ties (n a multiple of cols). */
static int SEL_FN(select_smallest)(const SEL_FLOAT *keys, size_t n, size_t k, size_t cols,
				   SEL_UINT *scratch, uint8_t *ret_selected)
{
	size_t need, eq;
	SEL_UINT t;

	if (k > n || (n > 0 && !ret_selected) || (cols && n % cols))
		return -EINVAL;
	if (k == 0 || k == n) {
		if (n > 0)
			memset(ret_selected, k == n, n);
		return 0;
	}
	if (!keys)
		return -EINVAL;
	if (n <= SELECT_RANK_MAX) {
		SEL_FN(select_by_rank)(keys, n, k, cols, ret_selected);
		return 0;
	}
	if (!scratch)
		return -EINVAL;
	t = SEL_FN(select_kth)(keys, n, k - 1, scratch, &need, &eq);
	need = k - need;   /* keys equal to t to take, first in tie order */
	SEL_FN(select_mark)(keys, n, t, need, eq, cols, ret_selected);
	return 0;
}

int SEL_PUBLIC(const SEL_FLOAT *keys, size_t n, size_t k, SEL_UINT *scratch, uint8_t *ret_selected)
{
	return SEL_FN(select_smallest)(keys, n, k, 0, scratch, ret_selected);
}

int SEL_PUBLIC_CM(const SEL_FLOAT *keys, size_t n, size_t cols, size_t k, SEL_UINT *scratch,
		  uint8_t *ret_selected)
{
	if (cols == 0)
		return -EINVAL;
	return SEL_FN(select_smallest)(keys, n, k, cols, scratch, ret_selected);
}
