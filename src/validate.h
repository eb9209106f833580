/* SPDX-License-Identifier: MIT */
/* Structural checks of a model's graphs, linear in their size. */
#pragma once

#include "onnx.pb-c.h"
#include "onnxpass/onnxpass.h"

/*
 * Check the main graph and every subgraph (-EBADMSG with a message naming
 * the graph and value):
 *   - no two initializers (or sparse initializers) share a name;
 *   - no value is produced twice: by two nodes, or by a node and a graph
 *     input or initializer (a graph input may share an initializer's name:
 *     IR < 4 requires it);
 *   - every node input and graph output is defined: by a graph input, an
 *     initializer, a node of the graph, or an enclosing graph (subgraphs);
 *   - the nodes of each graph have no cycle (they need not be sorted).
 * Functions and training graphs are not checked.
 */
int opass_model_validate(Onnx__ModelProto *model, struct onnxpass_error *err);
