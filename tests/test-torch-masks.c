/* SPDX-License-Identifier: MIT */
/*
 * Parity with torch.ao.sparsity: tests/torch_masks.py steps WeightNormSparsifier
 * and NearlyDiagonalSparsifier on seeded nn.Linear weights and writes torch's
 * masks (format in the script); every mask is recomputed here and compared
 * element by element. Multi-step cases feed W * (our previous mask) to the
 * next step, as torch's parametrization does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "masks/masks.h"
#include "testlib.h"

struct reader {
	const uint8_t *p, *end;
};

static void read_bytes(struct reader *r, void *out, size_t n)
{
	ck_assert_msg((size_t)(r->end - r->p) >= n, "reference file truncated");
	memcpy(out, r->p, n);
	r->p += n;
}

static uint32_t read_u32(struct reader *r)
{
	uint8_t b[4];

	read_bytes(r, b, 4);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t read_u64(struct reader *r)
{
	uint64_t lo = read_u32(r);

	return lo | (uint64_t)read_u32(r) << 32;
}

static double read_f64(struct reader *r)
{
	uint64_t u = read_u64(r);
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

struct step {
	double level;
	int64_t br, bc, zeros, norm, nearliness;
};

static void read_step(struct reader *r, struct step *s)
{
	s->level = read_f64(r);
	s->br = (int64_t)read_u64(r);
	s->bc = (int64_t)read_u64(r);
	s->zeros = (int64_t)read_u64(r);
	s->norm = (int64_t)read_u64(r);
	s->nearliness = (int64_t)read_u64(r);
}

static void report_mismatch(unsigned ci, unsigned si, const struct step *s, size_t rows,
			    size_t cols, const uint8_t *got, const uint8_t *want)
{
	size_t diff = 0, first = SIZE_MAX;

	for (size_t i = 0; i < rows * cols; i++) {
		if (got[i] != want[i]) {
			diff++;
			if (first == SIZE_MAX)
				first = i;
		}
	}
	ck_abort_msg("case %u step %u (%zux%zu level %g block %lldx%lld zeros %lld norm %lld "
		     "nearliness %lld): %zu elements differ, first at [%zu][%zu]: ours %d torch %d",
		     ci, si, rows, cols, s->level, (long long)s->br, (long long)s->bc,
		     (long long)s->zeros, (long long)s->norm, (long long)s->nearliness, diff,
		     first / cols, first % cols, got[first], want[first]);
}

/* One case: returns the number of steps compared. */
static unsigned check_case(struct reader *r, unsigned ci)
{
	uint32_t kind = read_u32(r), wide = read_u32(r);
	size_t rows = read_u32(r), cols = read_u32(r), n = rows * cols;
	uint32_t nsteps = read_u32(r);
	double *w = malloc(n * sizeof(*w)), *v = malloc(n * sizeof(*v));
	uint8_t *got = malloc(n), *want = malloc(n);

	ck_assert(kind <= 1 && rows > 0 && cols > 0 && nsteps > 0);
	ck_assert(w && v && got && want);
	for (size_t i = 0; i < n; i++)
		v[i] = w[i] = read_f64(r);
	for (uint32_t si = 0; si < nsteps; si++) {
		struct step s;

		read_step(r, &s);
		read_bytes(r, want, n);
		if (kind == 0) {
			struct opass_weight_norm_args a = { s.level, s.br, s.bc, s.zeros,
							    (int)s.norm };

			ck_assert_int_eq(opass_weight_norm_mask(v, rows, cols, wide, &a, got), 0);
		} else {
			ck_assert_int_eq(opass_nearly_diagonal_mask(rows, cols, s.nearliness, got),
					 0);
		}
		if (memcmp(got, want, n) != 0)
			report_mismatch(ci, si, &s, rows, cols, got, want);
		/* the next step sees the masked weight, as torch's W * mask */
		for (size_t i = 0; i < n; i++)
			v[i] = w[i] * (double)got[i];
	}
	free(w);
	free(v);
	free(got);
	free(want);
	return nsteps;
}

START_TEST(torch_parity)
{
	const char *python = getenv("PYTHON"), *srcdir = getenv("SRCDIR");
	char *dir = test_tmpdir(), *path = NULL, *data;
	unsigned ncases, steps = 0;
	struct reader r;
	size_t size;

	ck_assert_msg(python && srcdir, "PYTHON and SRCDIR must be set (meson test does)");
	ck_assert_ptr_nonnull(dir);
	ck_assert_int_ge(asprintf(&path, "%s/torch-masks.bin", dir), 0);
	ck_assert_int_eq(test_system("'%s' '%s/tests/torch_masks.py' '%s'", python, srcdir, path),
			 0);
	data = test_read_file(path, &size);
	ck_assert_ptr_nonnull(data);
	r = (struct reader){ (const uint8_t *)data, (const uint8_t *)data + size };
	ck_assert_msg(size >= 12 && memcmp(data, "OPTM", 4) == 0, "bad reference file");
	r.p += 4;
	ck_assert_uint_eq(read_u32(&r), 1);
	ncases = read_u32(&r);
	for (unsigned ci = 0; ci < ncases; ci++)
		steps += check_case(&r, ci);
	ck_assert_msg(r.p == r.end, "trailing bytes in reference file");
	/* 260 grid cases + the special ones: a short file would compare too little */
	ck_assert_uint_ge(ncases, 270);
	printf("torch-masks: %u cases, %u masks equal to torch\n", ncases, steps);
	free(data);
	unlink(path);
	rmdir(dir);
	free(path);
	free(dir);
}
END_TEST

Suite *test_suite(void)
{
	Suite *s = suite_create("torch-masks");
	TCase *tc = tcase_create("parity");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, torch_parity);
	suite_add_tcase(s, tc);
	return s;
}
