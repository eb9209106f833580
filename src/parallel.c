/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "parallel.h"

struct job {
	size_t n;
	atomic_size_t next;
	int (*fn)(size_t i, unsigned thread, void *userdata);
	void *userdata;
	int *results;
};

struct worker {
	struct job *job;
	unsigned thread;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct job *job = w->job;
	size_t i;

	while ((i = atomic_fetch_add(&job->next, 1)) < job->n)
		job->results[i] = job->fn(i, w->thread, job->userdata);
	return NULL;
}

unsigned opass_parallel_threads(unsigned requested)
{
	if (requested == 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		requested = cpus > 0 ? (unsigned)cpus : 1;
	}
	return requested > OPASS_MAX_THREADS ? OPASS_MAX_THREADS : requested;
}

int opass_parallel_for(size_t n, unsigned threads,
		       int (*fn)(size_t i, unsigned thread, void *userdata), void *userdata)
{
	struct job job = { .n = n, .fn = fn, .userdata = userdata };
	struct worker workers[OPASS_MAX_THREADS];
	pthread_t tids[OPASS_MAX_THREADS];
	size_t started = 0;

	if (n == 0)
		return 0;
	threads = opass_parallel_threads(threads);
	if (threads > n)
		threads = (unsigned)n;
	job.results = calloc(n ? n : 1, sizeof(*job.results));
	if (!job.results)
		return -ENOMEM;
	atomic_init(&job.next, 0);
	/* the calling thread works too */
	for (unsigned t = 0; t < threads; t++)
		workers[t] = (struct worker){ .job = &job, .thread = t };
	for (unsigned t = 1; t < threads; t++)
		if (pthread_create(&tids[started], NULL, worker_run, &workers[t]) == 0)
			started++;
	worker_run(&workers[0]);
	for (size_t t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	for (size_t i = 0; i < n; i++) {
		if (job.results[i]) {
			int r = job.results[i];

			free(job.results);
			return r;
		}
	}
	free(job.results);
	return 0;
}
