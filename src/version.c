/* SPDX-License-Identifier: MIT */
/* The library's version: meson.project_version(), set by the build. */
#include "onnxpass/onnxpass.h"

ONNXPASS_EXPORT const char *onnxpass_version(void)
{
	return ONNXPASS_VERSION;
}
