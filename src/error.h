/* SPDX-License-Identifier: MIT */
#pragma once

#include "onnxpass/plugin.h"

/* Shorthand: return opass_error(err, -EBADMSG, "...") (source: the model) */
#define opass_error onnxpass_error_set

/* Fill err like opass_error() with source (enum onnxpass_error_source);
 * returns code. */
int opass_error_from(struct onnxpass_error *err, enum onnxpass_error_source source, int code,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* -EINVAL: the config document (SPEC 5) is wrong. */
#define opass_error_config(err, ...) \
	opass_error_from(err, ONNXPASS_ERROR_CONFIG, -EINVAL, __VA_ARGS__)
/* -EINVAL: the pass list, a pass option or a plugin is wrong. */
#define opass_error_usage(err, ...) \
	opass_error_from(err, ONNXPASS_ERROR_USAGE, -EINVAL, __VA_ARGS__)

/* Calibration or compare inputs that do not fit the model or do not decode. */
#define opass_error_data(err, code, ...) \
	opass_error_from(err, ONNXPASS_ERROR_DATA, code, __VA_ARGS__)

/* Say what an error already set is about (a module boundary that knows it
 * better than the code below); returns err->code (0 if err is NULL). */
int opass_error_blame(struct onnxpass_error *err, enum onnxpass_error_source source);

/* Prepend prefix to err's message (its source stays); returns err->code
 * (0 if err is NULL). */
int opass_error_prefix(struct onnxpass_error *err, const char *prefix);
