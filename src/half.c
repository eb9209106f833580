/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "half.h"

#define F32_SIGN 0x80000000u
#define F32_ABS 0x7fffffffu
#define F32_INF 0x7f800000u
#define F32_QUIET 0x00400000u

static uint32_t float_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float bits_float(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Shift m right by s (1..31) bits, rounding to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t m, unsigned s)
{
	uint32_t q = m >> s;
	uint32_t rem = m & ((1u << s) - 1);
	uint32_t halfway = 1u << (s - 1);

	if (rem > halfway || (rem == halfway && (q & 1)))
		q++;
	return q;
}

float opass_half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	int32_t ex = (h >> 10) & 0x1f;
	uint32_t mant = h & 0x3ff;

	if (ex == 0x1f) {
		if (mant == 0)
			return bits_float(sign | F32_INF);
		return bits_float(sign | F32_INF | F32_QUIET | (mant << 13));
	}
	if (ex == 0) {
		if (mant == 0)
			return bits_float(sign);
		/* Subnormal: normalise so the leading one lands on bit 10. */
		ex = 1;
		while (!(mant & 0x400)) {
			mant <<= 1;
			ex--;
		}
		mant &= 0x3ff;
	}
	/* Rebias 15 -> 127; a normalised subnormal has ex in -9..0, still > 0 after. */
	return bits_float(sign | ((uint32_t)(ex + 112) << 23) | (mant << 13));
}

uint16_t opass_half_from_float(float f)
{
	uint32_t x = float_bits(f);
	uint16_t sign = (uint16_t)((x & F32_SIGN) >> 16);
	uint32_t a = x & F32_ABS;
	uint32_t e;

	if (a > F32_INF)
		return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff);
	if (a >= 0x477ff000u)   /* >= 65520: rounds past 65504 */
		return sign | 0x7c00;
	if (a < 0x38800000u) {  /* below 2^-14: half subnormal or zero */
		if (a <= 0x33000000u)   /* <= 2^-25: rounds to zero (tie goes to even 0) */
			return sign;
		e = a >> 23;
		/* value in units of 2^-24 = significand >> (126 - e) */
		return sign | (uint16_t)shift_round_even((a & 0x7fffffu) | 0x800000u, 126 - e);
	}
	/* Normal: rebias 127 -> 15; a carry out of the mantissa bumps the exponent. */
	return sign | (uint16_t)shift_round_even(a - 0x38000000u, 13);
}

float opass_bf16_to_float(uint16_t b)
{
	uint32_t x = (uint32_t)b << 16;

	if ((x & F32_ABS) > F32_INF)
		x |= F32_QUIET;
	return bits_float(x);
}

uint16_t opass_bf16_from_float(float f)
{
	uint32_t x = float_bits(f);

	if ((x & F32_ABS) > F32_INF)
		return (uint16_t)((x >> 16) | 0x0040);
	/* Same exponent range as float: subnormals and overflow fall out naturally. */
	return (uint16_t)shift_round_even(x & F32_ABS, 16) | (uint16_t)((x & F32_SIGN) >> 16);
}
