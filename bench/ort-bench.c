/* SPDX-License-Identifier: MIT */
/*
 * ort-bench: time a model in ONNX Runtime's CPU provider.
 *
 *   ort-bench [--custom-ops LIB]... [--ep LIB [--rounds N] [--ep-option KEY=VALUE]...
 *             [--own-pools]]
 *             [--config KEY=VALUE]... [--threads N] [--warmup W] [--repeat R] MODEL.onnx
 *
 * Every graph input must be a float tensor of fixed shape; it is filled with
 * uniform random values in [-1, 1) (fixed seed). The session uses all graph
 * optimizations and N intra-op threads (default 1). After W untimed runs,
 * R runs are timed one by one; prints "best MS median MS mean MS" on stdout.
 *
 * With --ep, two sessions of the model in one process: the CPU EP alone, and
 * with the OnnxPassSparse device of the EP library LIB appended. They are
 * timed alternately, N rounds (default 5) of R runs each, and the line is
 * "cpu MS ep MS ratio X relerr E": the best run of each, cpu / ep, and the
 * largest difference of the first output relative to its largest magnitude.
 * The two sessions share one pool of N intra-op threads (the env's global
 * pool), so that neither runs while the other's idle threads still spin for
 * work (with a pool each, runs of under a millisecond varied by 0.5-2x
 * between identical sessions on a 2-core machine); --own-pools gives each
 * session its own pool, as an application with two sessions would have.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ortlib.h"

struct bench {
	struct ortlib_session s;
	float **in_data;
	OrtValue **in_values;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int inputs_make(struct bench *b)
{
	uint64_t seed = 0x9e3779b97f4a7c15u;

	b->in_data = calloc(b->s.n_inputs + 1, sizeof(*b->in_data));
	b->in_values = calloc(b->s.n_inputs + 1, sizeof(*b->in_values));
	if (!b->in_data || !b->in_values)
		return -ENOMEM;
	for (size_t i = 0; i < b->s.n_inputs; i++) {
		int64_t dims[ORTLIB_MAX_RANK];
		size_t rank, numel;
		int k = ortlib_input_shape(b->s.session, i, 0, dims, &rank, &numel);

		if (k < 0)
			return k;
		b->in_data[i] = malloc((numel ? numel : 1) * sizeof(float));
		if (!b->in_data[i])
			return -ENOMEM;
		ortlib_fill(b->in_data[i], numel, &seed);
		k = ortlib_check(ortlib_api->CreateTensorWithDataAsOrtValue(
				 b->s.meminfo, b->in_data[i], numel * sizeof(float), dims, rank,
				 ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &b->in_values[i]),
				 b->s.input_names[i]);
		if (k < 0)
			return k;
	}
	return 0;
}

/* One run; the first output is kept in *ret_first when given. */
static int run_keep(struct bench *b, OrtValue **ret_first)
{
	const struct ortlib_session *s = &b->s;
	OrtValue **out = calloc(s->n_outputs + 1, sizeof(*out));
	int k;

	if (!out)
		return -ENOMEM;
	k = ortlib_check(ortlib_api->Run(s->session, NULL, (const char *const *)s->input_names,
					 (const OrtValue *const *)b->in_values, s->n_inputs,
					 (const char *const *)s->output_names, s->n_outputs, out),
			 "Run");
	for (size_t i = 0; i < s->n_outputs; i++) {
		if (i == 0 && k == 0 && ret_first) {
			*ret_first = out[0];
			continue;
		}
		if (out[i])
			ortlib_api->ReleaseValue(out[i]);
	}
	free(out);
	return k;
}

static int run_once(struct bench *b)
{
	return run_keep(b, NULL);
}

static int cmp_double(const void *pa, const void *pb)
{
	double a = *(const double *)pa, c = *(const double *)pb;

	return (a > c) - (a < c);
}

static int timed(struct bench *b, int warmup, int repeat)
{
	double *ms = calloc((size_t)repeat, sizeof(*ms)), sum = 0;
	int k = 0;

	if (!ms)
		return -ENOMEM;
	for (int i = 0; k == 0 && i < warmup; i++)
		k = run_once(b);
	for (int i = 0; k == 0 && i < repeat; i++) {
		double t0 = now_ms();

		k = run_once(b);
		ms[i] = now_ms() - t0;
		sum += ms[i];
	}
	if (k == 0) {
		qsort(ms, (size_t)repeat, sizeof(*ms), cmp_double);
		printf("best %.4f median %.4f mean %.4f\n", ms[0], ms[repeat / 2], sum / repeat);
	}
	free(ms);
	return k;
}

/* Best of rounds x repeat runs, warmed up. */
static int best_of(struct bench *b, int repeat, double *best)
{
	int k = 0;

	for (int i = 0; k == 0 && i < repeat; i++) {
		double t0 = now_ms(), ms;

		k = run_once(b);
		ms = now_ms() - t0;
		if (ms < *best)
			*best = ms;
	}
	return k;
}

/* max |a - b| / max |a| over the first outputs of two sessions. */
static int compare_outputs(struct bench *a, struct bench *b, double *ret)
{
	OrtValue *va = NULL, *vb = NULL;
	float *pa = NULL, *pb = NULL;
	size_t na = 0, nb = 0;
	double err = 0, scale = 1e-30;
	int k;

	k = run_keep(a, &va);
	if (k == 0)
		k = run_keep(b, &vb);
	if (k == 0)
		k = ortlib_value_floats(va, &pa, &na);
	if (k == 0)
		k = ortlib_value_floats(vb, &pb, &nb);
	for (size_t i = 0; k == 0 && i < na && i < nb; i++) {
		double d = pa[i] - pb[i], m = pa[i] < 0 ? -pa[i] : pa[i];

		err = (d < 0 ? -d : d) > err ? (d < 0 ? -d : d) : err;
		scale = m > scale ? m : scale;
	}
	free(pa);
	free(pb);
	if (va)
		ortlib_api->ReleaseValue(va);
	if (vb)
		ortlib_api->ReleaseValue(vb);
	*ret = err / scale;
	return k;
}

static int compare(struct bench *cpu, struct bench *ep, int warmup, int repeat, int rounds)
{
	double best_cpu = 1e300, best_ep = 1e300, relerr = 0;
	int k = 0;

	for (int i = 0; k == 0 && i < warmup; i++) {
		k = run_once(cpu);
		if (k == 0)
			k = run_once(ep);
	}
	for (int r = 0; k == 0 && r < rounds; r++) {
		k = best_of(cpu, repeat, &best_cpu);
		if (k == 0)
			k = best_of(ep, repeat, &best_ep);
	}
	if (k == 0)
		k = compare_outputs(cpu, ep, &relerr);
	if (k == 0)
		printf("cpu %.4f ep %.4f ratio %.3f relerr %.3g\n", best_cpu, best_ep,
		       best_cpu / best_ep, relerr);
	return k;
}

static int bench_open(struct bench *b, OrtEnv *env, const char *model,
		      const struct ortlib_options *o)
{
	int k = ortlib_session_open(&b->s, env, model, o);

	if (k == 0)
		k = inputs_make(b);
	return k;
}

static void bench_free(struct bench *b)
{
	for (size_t i = 0; b->in_values && i < b->s.n_inputs; i++) {
		if (b->in_values[i])
			ortlib_api->ReleaseValue(b->in_values[i]);
		free(b->in_data[i]);
	}
	free(b->in_values);
	free(b->in_data);
	ortlib_session_close(&b->s);
}

static int usage(void)
{
	fprintf(stderr, "usage: ort-bench [--custom-ops LIB]... [--ep LIB [--rounds N] "
		"[--ep-option KEY=VALUE]... [--own-pools]] [--config KEY=VALUE]... "
		"[--threads N] [--warmup W] [--repeat R] MODEL.onnx\n");
	return 2;
}

int main(int argc, char **argv)
{
	int warmup = 5, repeat = 20, rounds = 5, i, k;
	bool own_pools = false;
	struct bench b = { 0 }, e = { 0 };
	struct ortlib_options o, cpu;
	OrtEnv *env = NULL;

	ortlib_options_init(&o);
	for (i = 1; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--own-pools") == 0)
			own_pools = true, i--;
		else if (strcmp(argv[i], "--rounds") == 0)
			rounds = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--warmup") == 0)
			warmup = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--repeat") == 0)
			repeat = atoi(argv[i + 1]);
		else if (ortlib_options_parse(&o, argv[i], argv[i + 1]) != 1)
			return usage();
	}
	if (i + 1 != argc || warmup < 0 || repeat < 1 || rounds < 1)
		return usage();
	o.shared_pool = o.ep_lib && !own_pools;
	cpu = o;
	cpu.ep_lib = NULL;
	if (ortlib_init("ort-bench") < 0)
		return 1;
	k = ortlib_env_open(&env, ORT_LOGGING_LEVEL_ERROR, &o);
	if (k == 0)
		k = bench_open(&b, env, argv[i], &cpu);
	if (k == 0 && o.ep_lib)
		k = bench_open(&e, env, argv[i], &o);
	if (k == 0)
		k = o.ep_lib ? compare(&b, &e, warmup, repeat, rounds) : timed(&b, warmup, repeat);
	bench_free(&e);
	bench_free(&b);
	if (env)
		ortlib_api->ReleaseEnv(env);
	return k < 0 ? 1 : 0;
}
