/* SPDX-License-Identifier: MIT */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "testlib.h"

static uint32_t bits_of(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float float_of(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Reference decoding of a 1-5-10 (half) or 1-8-7 (bf16) pattern, from the fields. */
static double ref_decode(uint16_t v, int exp_bits, int mant_bits)
{
	int bias = (1 << (exp_bits - 1)) - 1;
	int e = (v >> mant_bits) & ((1 << exp_bits) - 1);
	int m = v & ((1 << mant_bits) - 1);
	double sign = (v & 0x8000) ? -1.0 : 1.0;

	if (e == (1 << exp_bits) - 1)
		return m ? NAN : sign * INFINITY;
	if (e == 0)
		return sign * ldexp(m, 1 - bias - mant_bits);
	return sign * ldexp(m + (1 << mant_bits), e - bias - mant_bits);
}

static bool is_half_nan(uint16_t h)
{
	return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

static bool is_bf16_nan(uint16_t b)
{
	return (b & 0x7f80) == 0x7f80 && (b & 0x7f);
}

START_TEST(half_to_float_all)
{
	for (uint32_t i = 0; i < 0x10000; i++) {
		uint16_t h = (uint16_t)i;
		float f = opass_half_to_float(h);
		double ref = ref_decode(h, 5, 10);

		if (is_half_nan(h)) {
			ck_assert_msg(isnan(f), "0x%04x not NaN", h);
			ck_assert_int_eq(!!signbit(f), !!(h & 0x8000));
			/* quiet, payload kept in the top mantissa bits */
			ck_assert_uint_eq(bits_of(f) & 0x00400000u, 0x00400000u);
			ck_assert_uint_eq((bits_of(f) >> 13) & 0x1ff, h & 0x1ff);
			continue;
		}
		ck_assert_msg((double)f == ref, "0x%04x: %a != %a", h, (double)f, ref);
		ck_assert_int_eq(!!signbit(f), !!(h & 0x8000));
	}
}
END_TEST

START_TEST(half_round_trip_all)
{
	for (uint32_t i = 0; i < 0x10000; i++) {
		uint16_t h = (uint16_t)i;
		uint16_t back = opass_half_from_float(opass_half_to_float(h));

		if (is_half_nan(h)) {
			ck_assert_msg(is_half_nan(back), "0x%04x -> 0x%04x", h, back);
			ck_assert_uint_eq(back & 0x8000, h & 0x8000);
			/* quiet NaNs (bit 9 set) come back unchanged */
			if (h & 0x200)
				ck_assert_uint_eq(back, h);
			else
				ck_assert_uint_eq(back, h | 0x200);
			continue;
		}
		ck_assert_msg(back == h, "0x%04x -> 0x%04x", h, back);
	}
}
END_TEST

/*
 * Between every two consecutive finite halves lo < hi (same sign), the
 * midpoint (exact in float) goes to the one with an even pattern; anything
 * strictly between goes to the nearer one.
 */
static void check_half_gaps(uint16_t sign)
{
	for (uint16_t p = 0; p < 0x7bff; p++) {
		uint16_t lo = sign | p, hi = sign | (uint16_t)(p + 1);
		double a = ref_decode(lo, 5, 10), b = ref_decode(hi, 5, 10);
		float mid = (float)((a + b) / 2.0);
		uint16_t even = (p & 1) ? hi : lo;

		ck_assert_msg((double)mid == (a + b) / 2.0, "midpoint not exact");
		ck_assert_msg(opass_half_from_float(mid) == even, "mid of 0x%04x: 0x%04x", lo,
			      opass_half_from_float(mid));
		ck_assert_uint_eq(opass_half_from_float(nextafterf(mid, (float)a)), lo);
		ck_assert_uint_eq(opass_half_from_float(nextafterf(mid, (float)b)), hi);
		/* quarter points lie strictly inside each half of the gap */
		ck_assert_uint_eq(opass_half_from_float((float)((3 * a + b) / 4.0)), lo);
		ck_assert_uint_eq(opass_half_from_float((float)((a + 3 * b) / 4.0)), hi);
		ck_assert_uint_eq(opass_half_from_float((float)a), lo);
	}
}

START_TEST(half_from_float_halfway)
{
	check_half_gaps(0x0000);
	check_half_gaps(0x8000);
}
END_TEST

START_TEST(half_from_float_edges)
{
	/* overflow: 65520 is the midpoint between 65504 (odd) and 65536 -> inf */
	ck_assert_uint_eq(opass_half_from_float(65520.0f), 0x7c00);
	ck_assert_uint_eq(opass_half_from_float(-65520.0f), 0xfc00);
	ck_assert_uint_eq(opass_half_from_float(nextafterf(65520.0f, 0.0f)), 0x7bff);
	ck_assert_uint_eq(opass_half_from_float(nextafterf(-65520.0f, 0.0f)), 0xfbff);
	ck_assert_uint_eq(opass_half_from_float(65504.0f), 0x7bff);
	ck_assert_uint_eq(opass_half_from_float(1e10f), 0x7c00);
	ck_assert_uint_eq(opass_half_from_float(3.4028235e38f), 0x7c00);
	ck_assert_uint_eq(opass_half_from_float(INFINITY), 0x7c00);
	ck_assert_uint_eq(opass_half_from_float(-INFINITY), 0xfc00);
	/* signed zero and underflow */
	ck_assert_uint_eq(opass_half_from_float(0.0f), 0x0000);
	ck_assert_uint_eq(opass_half_from_float(-0.0f), 0x8000);
	ck_assert_uint_eq(opass_half_from_float(ldexpf(1.0f, -25)), 0x0000);   /* tie -> 0 */
	ck_assert_uint_eq(opass_half_from_float(-ldexpf(1.0f, -25)), 0x8000);
	ck_assert_uint_eq(opass_half_from_float(nextafterf(ldexpf(1.0f, -25), 1.0f)), 0x0001);
	ck_assert_uint_eq(opass_half_from_float(ldexpf(3.0f, -25)), 0x0002);   /* 1.5 ulp -> 2 */
	ck_assert_uint_eq(opass_half_from_float(1e-10f), 0x0000);
	ck_assert_uint_eq(opass_half_from_float(-1e-10f), 0x8000);
	ck_assert_uint_eq(opass_half_from_float(float_of(1)), 0x0000);   /* float subnormal */
	/* largest subnormal and smallest normal */
	ck_assert_uint_eq(opass_half_from_float(ldexpf(1023.0f, -24)), 0x03ff);
	ck_assert_uint_eq(opass_half_from_float(ldexpf(1.0f, -14)), 0x0400);
	ck_assert_uint_eq(opass_half_from_float(ldexpf(2047.0f, -25)), 0x0400); /* tie, odd -> up */
	ck_assert_uint_eq(opass_half_from_float(1.0f), 0x3c00);
	ck_assert_uint_eq(opass_half_from_float(-2.0f), 0xc000);
	/* NaN: stays NaN, quiet, sign kept */
	ck_assert(is_half_nan(opass_half_from_float(NAN)));
	ck_assert(is_half_nan(opass_half_from_float(float_of(0x7f800001u))));
	ck_assert_uint_eq(opass_half_from_float(float_of(0x7f800001u)) & 0x200, 0x200);
	ck_assert_uint_eq(opass_half_from_float(float_of(0xffc00000u)), 0xfe00);
}
END_TEST

/* Nearest half by search over the reference table, ties to even pattern. */
static uint16_t ref_half_from_float(float f, const double *table)
{
	double x = fabs((double)f);
	uint16_t sign = signbit(f) ? 0x8000 : 0;
	size_t lo = 0, hi = 0x7c00;   /* table[0x7c00] = 65536 stands for inf */

	if (isnan(f))
		return 0;
	if (x >= 65520.0)
		return sign | 0x7c00;
	while (hi - lo > 1) {   /* invariant: table[lo] <= x < table[hi] */
		size_t mid = (lo + hi) / 2;

		if (table[mid] <= x)
			lo = mid;
		else
			hi = mid;
	}
	if (x - table[lo] < table[hi] - x)
		return sign | (uint16_t)lo;
	if (x - table[lo] > table[hi] - x)
		return sign | (uint16_t)hi;
	return sign | (uint16_t)((lo & 1) ? hi : lo);
}

START_TEST(half_from_float_random)
{
	static double table[0x7c01];
	uint64_t state = 0x9e3779b97f4a7c15u;

	for (uint32_t p = 0; p < 0x7c00; p++)
		table[p] = ref_decode((uint16_t)p, 5, 10);
	table[0x7c00] = 65536.0;
	for (int i = 0; i < 2000000; i++) {
		float f;

		state ^= state << 13;
		state ^= state >> 7;
		state ^= state << 17;
		/* bias towards the half range: exponents 100..145 half of the time */
		if (i & 1)
			f = float_of((uint32_t)state);
		else
			f = float_of(((uint32_t)state & 0x807fffffu) |
				     ((uint32_t)(100 + (state >> 40) % 46) << 23));
		if (isnan(f))
			continue;
		ck_assert_msg(opass_half_from_float(f) == ref_half_from_float(f, table),
			      "%a: 0x%04x != 0x%04x", (double)f, opass_half_from_float(f),
			      ref_half_from_float(f, table));
	}
}
END_TEST

START_TEST(bf16_to_float_all)
{
	for (uint32_t i = 0; i < 0x10000; i++) {
		uint16_t b = (uint16_t)i;
		float f = opass_bf16_to_float(b);
		uint16_t back = opass_bf16_from_float(f);

		if (is_bf16_nan(b)) {
			ck_assert(isnan(f));
			ck_assert(is_bf16_nan(back));
			ck_assert_uint_eq(back & 0x8000, b & 0x8000);
			ck_assert_uint_eq(back, b | 0x40);   /* quiet, payload kept */
			continue;
		}
		ck_assert_msg((double)f == ref_decode(b, 8, 7), "0x%04x", b);
		ck_assert_int_eq(!!signbit(f), !!(b & 0x8000));
		ck_assert_msg(back == b, "0x%04x -> 0x%04x", b, back);
	}
}
END_TEST

static void check_bf16_gaps(uint16_t sign)
{
	for (uint16_t p = 0; p < 0x7f7f; p++) {
		uint16_t lo = sign | p, hi = sign | (uint16_t)(p + 1);
		double a = ref_decode(lo, 8, 7), b = ref_decode(hi, 8, 7);
		float mid = (float)((a + b) / 2.0);
		uint16_t even = (p & 1) ? hi : lo;

		ck_assert((double)mid == (a + b) / 2.0);
		ck_assert_msg(opass_bf16_from_float(mid) == even, "mid of 0x%04x", lo);
		ck_assert_uint_eq(opass_bf16_from_float(nextafterf(mid, (float)a)), lo);
		ck_assert_uint_eq(opass_bf16_from_float(nextafterf(mid, (float)b)), hi);
	}
}

START_TEST(bf16_from_float_halfway)
{
	check_bf16_gaps(0x0000);
	check_bf16_gaps(0x8000);
	/* top gap: halfway between max bf16 (odd) and 2^128 overflows to inf */
	ck_assert_uint_eq(opass_bf16_from_float(float_of(0x7f7f8000u)), 0x7f80);
	ck_assert_uint_eq(opass_bf16_from_float(float_of(0x7f7f7fffu)), 0x7f7f);
	ck_assert_uint_eq(opass_bf16_from_float(float_of(0xff7fffffu)), 0xff80);
	ck_assert_uint_eq(opass_bf16_from_float(INFINITY), 0x7f80);
	ck_assert_uint_eq(opass_bf16_from_float(-0.0f), 0x8000);
	ck_assert_uint_eq(opass_bf16_from_float(float_of(0x00008000u)), 0x0000); /* tie -> 0 */
	ck_assert_uint_eq(opass_bf16_from_float(float_of(0x00008001u)), 0x0001);
	ck_assert_uint_eq(opass_bf16_from_float(float_of(0x00018000u)), 0x0002); /* tie, odd */
	ck_assert_uint_eq(opass_bf16_from_float(1.0f), 0x3f80);
	ck_assert(is_bf16_nan(opass_bf16_from_float(NAN)));
	/* a NaN whose payload sits only in the low 16 bits must not become inf */
	ck_assert(is_bf16_nan(opass_bf16_from_float(float_of(0x7f800001u))));
	ck_assert_uint_eq(opass_bf16_from_float(float_of(0xff800001u)) & 0x8000, 0x8000);
}
END_TEST

Suite *test_suite(void)
{
	Suite *s = suite_create("half");
	TCase *tc = tcase_create("half");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, half_to_float_all);
	tcase_add_test(tc, half_round_trip_all);
	tcase_add_test(tc, half_from_float_halfway);
	tcase_add_test(tc, half_from_float_edges);
	tcase_add_test(tc, half_from_float_random);
	tcase_add_test(tc, bf16_to_float_all);
	tcase_add_test(tc, bf16_from_float_halfway);
	suite_add_tcase(s, tc);
	return s;
}
