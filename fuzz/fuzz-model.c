/* SPDX-License-Identifier: MIT */
/* libFuzzer target: model bytes -> load -> every pass list -> save. */
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_run_lists(data, size, NULL, fuzz_config);
	return 0;
}
