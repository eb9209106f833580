/* SPDX-License-Identifier: MIT */
/*
 * onnx-pass plugin ABI.
 *
 * A plugin is a shared object exporting ONNXPASS_PLUGIN_ENTRY_SYMBOL, a
 * function returning a static struct onnxpass_plugin whose abi_version is
 * ONNXPASS_PLUGIN_ABI_VERSION. Each pass gets the model and a context with
 * the JSON config; it appends human output with onnxpass_context_print().
 */
#ifndef ONNXPASS_PLUGIN_H
#define ONNXPASS_PLUGIN_H

#include "onnxpass.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2: struct onnxpass_error gained source (appended); plugins of version 1
 * load too, their errors are ONNXPASS_ERROR_MODEL. */
#define ONNXPASS_PLUGIN_ABI_VERSION 2u
#define ONNXPASS_PLUGIN_ENTRY_SYMBOL "onnxpass_plugin_entry"

/* What a pass sees besides the model. */
struct onnxpass_context;

struct onnxpass_pass {
	const char *name;
	const char *summary;
	int (*run)(struct onnxpass_model *model, struct onnxpass_context *ctx,
		   struct onnxpass_error *err);
};

struct onnxpass_plugin {
	uint32_t abi_version;
	const char *name;
	const struct onnxpass_pass *passes;
	size_t n_passes;
};

typedef const struct onnxpass_plugin *(*onnxpass_plugin_entry_fn)(void);

/* The config JSON text given to the run (never NULL: "{}" when absent). */
ONNXPASS_EXPORT const char *onnxpass_context_get_config(const struct onnxpass_context *ctx);

/* Append printf-style text to the run's report. */
ONNXPASS_EXPORT int onnxpass_context_print(struct onnxpass_context *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Fill err with a formatted message and source ONNXPASS_ERROR_MODEL;
 * returns code (a negative errno). */
ONNXPASS_EXPORT int onnxpass_error_set(struct onnxpass_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
