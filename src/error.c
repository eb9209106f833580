/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

/* Messages are one line: names taken from files (zip members, tensor and
 * input names, paths) may hold control characters; they become '?'. */
static void message_one_line(char *msg)
{
	for (; *msg; msg++)
		if ((unsigned char)*msg < 0x20 || *msg == 0x7f)
			*msg = '?';
}

static int error_set(struct onnxpass_error *err, enum onnxpass_error_source source, int code,
		     const char *fmt, va_list ap)
{
	if (!err)
		return code;
	err->code = code;
	err->source = source;
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	message_one_line(err->message);
	return code;
}

ONNXPASS_EXPORT int onnxpass_error_set(struct onnxpass_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	code = error_set(err, ONNXPASS_ERROR_MODEL, code, fmt, ap);
	va_end(ap);
	return code;
}

int opass_error_from(struct onnxpass_error *err, enum onnxpass_error_source source, int code,
		     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	code = error_set(err, source, code, fmt, ap);
	va_end(ap);
	return code;
}

int opass_error_blame(struct onnxpass_error *err, enum onnxpass_error_source source)
{
	if (!err)
		return 0;
	err->source = source;
	return err->code;
}

int opass_error_prefix(struct onnxpass_error *err, const char *prefix)
{
	char msg[ONNXPASS_ERROR_MAX];

	if (!err)
		return 0;
	snprintf(msg, sizeof(msg), "%s", err->message);
	snprintf(err->message, sizeof(err->message), "%s%s", prefix, msg);
	message_one_line(err->message);
	return err->code;
}
