/* SPDX-License-Identifier: MIT */
/* Helpers shared by the model suite's files (tests/test-model*.c). */
#pragma once

#include <check.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "model.h"

const cJSON *model_test_manifest_entry(const char *file);
struct onnxpass_model *model_test_load(const char *path);
struct onnxpass_model *model_test_load_generated(const char *file);
void *model_test_save_bytes(struct onnxpass_model *model, size_t *ret_size);
void model_test_assert_same_bytes(struct onnxpass_model *model_a, struct onnxpass_model *model_b);
void model_test_save_file(struct onnxpass_model *model, const char *path, unsigned flags);
Onnx__TensorProto *model_test_initializer(Onnx__ModelProto *proto, const char *name);
void model_test_assert_same_initializers(Onnx__ModelProto *a, Onnx__ModelProto *b);

/* One TCase a subject, in tests/test-model-SUBJECT.c. */
TCase *model_tcase_roundtrip(void);
TCase *model_tcase_external(void);
TCase *model_tcase_bad_bytes(void);
TCase *model_tcase_save(void);
TCase *model_tcase_tensor(void);
