/* SPDX-License-Identifier: MIT */
/* NearlyDiagonalSparsifier.update_mask of torch 1.13 (SPEC 6). */
#include <errno.h>
#include <string.h>

#include "masks/masks.h"

int opass_nearly_diagonal_mask(size_t rows, size_t cols, int64_t nearliness, uint8_t *ret_mask)
{
	size_t dist;

	if (cols > 0 && rows > SIZE_MAX / cols)
		return -EINVAL;
	if (rows * cols > 0 && !ret_mask)
		return -EINVAL;
	if (nearliness <= 0) {
		if (rows * cols > 0)
			memset(ret_mask, 0, rows * cols);
		return 0;
	}
	if (nearliness % 2 == 0)
		return -EINVAL;
	if ((uint64_t)(nearliness / 2) >= rows || (uint64_t)(nearliness / 2) >= cols)
		return -EINVAL;
	dist = (size_t)(nearliness / 2);

	memset(ret_mask, 0, rows * cols);
	for (size_t r = 0; r < rows; r++) {
		size_t lo = r > dist ? r - dist : 0;
		size_t hi = r + dist + 1 < cols ? r + dist + 1 : cols;

		if (lo < hi)
			memset(ret_mask + r * cols + lo, 1, hi - lo);
	}
	return 0;
}
