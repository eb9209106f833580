/* SPDX-License-Identifier: MIT */
/* Shared by the libFuzzer targets: fixed config, pass lists, a small model. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "onnx.pb-c.h"
#include "onnxpass/onnxpass.h"

/* A config every target uses (one thread: no thread start per input). */
extern const char fuzz_config[];

/* Load data (base_dir may be NULL) and run every pass list on a fresh copy
 * of the model each, then serialise the result. Returns how many lists ran
 * to the end. */
int fuzz_run_lists(const uint8_t *data, size_t size, const char *base_dir, const char *config);

/* A model whose graph is a chain of n_weights layers: Gemm (transB=1) on
 * even, MatMul on odd ones, each reading a float_data initializer "wI" [8, 8]. */
Onnx__ModelProto *fuzz_model_new(size_t n_weights);
/* Serialise and free m; malloc'd bytes. */
uint8_t *fuzz_model_pack(Onnx__ModelProto *m, size_t *ret_size);

/* fuzz_model_new(2), serialised. */
uint8_t *fuzz_small_model(size_t *ret_size);
