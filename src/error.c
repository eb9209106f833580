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

ONNXPASS_EXPORT int onnxpass_error_set(struct onnxpass_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	message_one_line(err->message);
	return code;
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
