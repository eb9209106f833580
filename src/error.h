/* SPDX-License-Identifier: MIT */
#pragma once

#include "onnxpass/plugin.h"

/* Shorthand: return opass_error(err, -EBADMSG, "...") */
#define opass_error onnxpass_error_set

/* Prepend prefix to err's message; returns err->code (0 if err is NULL). */
int opass_error_prefix(struct onnxpass_error *err, const char *prefix);
