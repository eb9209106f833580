/* SPDX-License-Identifier: MIT */
/* Test shared object without onnxpass_plugin_entry: loading it as a plugin must fail. */
#include <onnxpass/onnxpass.h>

ONNXPASS_EXPORT int not_a_plugin(void);

ONNXPASS_EXPORT int not_a_plugin(void)
{
	return 42;
}
