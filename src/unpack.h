/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "onnx.pb-c.h"

/* Unpack a (wire-checked) ModelProto. With release, data is a private file
 * mapping whose pages are dropped behind the parse (madvise DONTNEED); never
 * pass caller memory with release. NULL if the bytes do not parse. */
Onnx__ModelProto *opass_model_unpack(const void *data, size_t size, bool release);
