/* SPDX-License-Identifier: MIT */
/* convert --format ort-sparse (passes/ort_sparse.c). */
#pragma once

#include "sparsity/sparsity.h"

#define OPASS_ORT_DOMAIN "ai.onnx_pass"

/*
 * After squash: rewrite the MatMul / Gemm consumers of every group's weight
 * whose fraction of zeros is at least min_sparsity to ai.onnx_pass::SparseMatMul
 * with the weight as block-sparse initializers. The state must not be used
 * for its tensors afterwards (rewritten weights are removed).
 */
int opass_ort_sparse_apply(Onnx__ModelProto *model, const struct opass_state *state,
			   double min_sparsity, struct onnxpass_error *err);
