/* SPDX-License-Identifier: MIT */
/* Exact IEEE half (binary16) and bfloat16 conversions, round-to-nearest-even. */
#pragma once

#include <stdint.h>

float opass_half_to_float(uint16_t h);
uint16_t opass_half_from_float(float f);
float opass_bf16_to_float(uint16_t b);
uint16_t opass_bf16_from_float(float f);
