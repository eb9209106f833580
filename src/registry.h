/* SPDX-License-Identifier: MIT */
#pragma once

#include "onnxpass/plugin.h"

const struct onnxpass_pass *opass_registry_find(const struct onnxpass_registry *registry,
						const char *name);

/* A registry holding builtin's passes (the built-in table, which the passes
 * layer hands in: the core never calls up into passes/). */
int opass_registry_new(const struct onnxpass_plugin *builtin,
		       struct onnxpass_registry **ret_registry, struct onnxpass_error *err);
