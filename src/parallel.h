/* SPDX-License-Identifier: MIT */
/* Run independent jobs on all cores. */
#pragma once

#include <stddef.h>

#define OPASS_MAX_THREADS 64

/* Number of worker threads for a request (0: one per online CPU). */
unsigned opass_parallel_threads(unsigned requested);

/*
 * Call fn(i, thread, userdata) for every i in [0, n) on up to `threads`
 * threads (as opass_parallel_threads); thread is the worker's index, for
 * per-thread scratch space. Jobs must be independent. Returns 0, or the
 * error of the lowest-numbered failing job (later jobs may still have run).
 */
int opass_parallel_for(size_t n, unsigned threads,
		       int (*fn)(size_t i, unsigned thread, void *userdata), void *userdata);
