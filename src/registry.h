/* SPDX-License-Identifier: MIT */
#pragma once

#include "onnxpass/plugin.h"

const struct onnxpass_pass *opass_registry_find(const struct onnxpass_registry *registry,
						const char *name);

/* The built-in plugin (passes/builtin.c). */
const struct onnxpass_plugin *opass_builtin_plugin(void);
