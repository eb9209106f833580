/* SPDX-License-Identifier: MIT */
/* Linear-time selection of the k smallest keys. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * Mark in ret_selected[i] (1 = selected, 0 = not) exactly k of the n keys:
 * the k smallest, ties broken by lower index first, NaN ordered above
 * every number (never selected before a number). Expected O(n) time
 * (quickselect on a scratch copy, not a full sort). Returns 0, -EINVAL if
 * k > n, or -ENOMEM.
 */
int opass_select_smallest(const double *keys, size_t n, size_t k, uint8_t *ret_selected);

/*
 * Same as opass_select_smallest, with caller-provided scratch space of at
 * least n entries, so it never allocates (for many small selections, e.g.
 * one per sparse block). Returns 0 or -EINVAL if k > n.
 */
int opass_select_smallest_with(const double *keys, size_t n, size_t k, uint64_t *scratch,
			       uint8_t *ret_selected);

/* The same on float32 keys (half the memory traffic), scratch of n entries. */
int opass_select_smallest_f32_with(const float *keys, size_t n, size_t k, uint32_t *scratch,
				   uint8_t *ret_selected);

/*
 * The same, ties broken in the column-major order of the keys seen as a
 * grid of n / cols rows and cols columns (n a multiple of cols >= 1): the
 * index order of the transposed grid, for keys stored transposed.
 */
int opass_select_smallest_cm_with(const double *keys, size_t n, size_t cols, size_t k,
				  uint64_t *scratch, uint8_t *ret_selected);
int opass_select_smallest_f32_cm_with(const float *keys, size_t n, size_t cols, size_t k,
				      uint32_t *scratch, uint8_t *ret_selected);
