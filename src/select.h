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
