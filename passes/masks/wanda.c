/* SPDX-License-Identifier: MIT */
/*
 * Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for
 * Large Language Models"): prune by |W_ij| * ||X_j||_2 within each output
 * row, as the reference prune_wanda does (a stable sort of each row's
 * scores; floor(cols * level) pruned), or N:M per row.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "masks/masks.h"
#include "select.h"

int opass_prune_pattern_check(const struct opass_prune_pattern *p)
{
	if (!p || isnan(p->sparsity_level) || p->sparsity_level < 0 || p->sparsity_level > 1)
		return -EINVAL;
	if (p->m < 1 || p->n < 0 || p->n > p->m || (p->m > 1 && p->n == p->m))
		return -EINVAL;
	return 0;
}

size_t opass_nm_prunes(const struct opass_prune_pattern *p, size_t len)
{
	size_t missing = (size_t)p->m - len;

	return (size_t)p->n > missing ? (size_t)p->n - missing : 0;
}

/* Mark (1) the prunable elements of one row segment: k smallest keys. */
static void segment_prune(const float *keys, size_t len, size_t k, uint32_t *scratch,
			  uint8_t *selected, uint8_t *mask)
{
	opass_select_smallest_f32_with(keys, len, k, scratch, selected);
	for (size_t j = 0; j < len; j++)
		mask[j] = !selected[j];
}

/* Prune each row of keys[rows][cols] by the pattern into mask (1 = keep). */
int opass_prune_rows(const float *keys, size_t rows, size_t cols,
		     const struct opass_prune_pattern *p, uint8_t *mask)
{
	uint32_t *scratch = malloc((cols ? cols : 1) * sizeof(*scratch));
	uint8_t *selected = malloc(cols ? cols : 1);
	size_t m = (size_t)p->m;

	if (!scratch || !selected) {
		free(scratch);
		free(selected);
		return -ENOMEM;
	}
	for (size_t i = 0; i < rows; i++) {
		const float *row = keys + i * cols;

		if (m == 1) {
			segment_prune(row, cols, (size_t)((double)cols * p->sparsity_level), scratch,
				      selected, mask + i * cols);
			continue;
		}
		for (size_t j = 0; j < cols; j += m) {
			size_t len = cols - j < m ? cols - j : m;
			size_t k = opass_nm_prunes(p, len);

			segment_prune(row + j, len, k, scratch, selected, mask + i * cols + j);
		}
	}
	free(scratch);
	free(selected);
	return 0;
}

int opass_wanda_mask(const float *w, size_t rows, size_t cols, const double *sq,
		     const struct opass_prune_pattern *pattern, uint8_t *ret_mask)
{
	float *scores;
	int r = opass_prune_pattern_check(pattern);

	if (r < 0)
		return r;
	scores = malloc((rows * cols > 0 ? rows * cols : 1) * sizeof(*scores));
	if (!scores)
		return -ENOMEM;
	for (size_t j = 0; j < cols; j++) {
		float norm = (float)sqrt(sq[j]);

		for (size_t i = 0; i < rows; i++)
			scores[i * cols + j] = fabsf(w[i * cols + j]) * norm;
	}
	r = opass_prune_rows(scores, rows, cols, pattern, ret_mask);
	free(scores);
	return r;
}
