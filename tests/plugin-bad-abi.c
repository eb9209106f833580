/* SPDX-License-Identifier: MIT */
/* Test plugin whose entry point reports a future ABI version: loading must fail. */
#include <onnxpass/plugin.h>

static int bad_abi_run(struct onnxpass_model *model, struct onnxpass_context *ctx,
		       struct onnxpass_error *err)
{
	return 0;
}

static const struct onnxpass_pass bad_abi_passes[] = {
	{ "bad-abi-pass", "must never be registered", bad_abi_run },
};

static const struct onnxpass_plugin bad_abi_plugin = {
	.abi_version = 99,
	.name = "bad ABI",
	.passes = bad_abi_passes,
	.n_passes = 1,
};

ONNXPASS_EXPORT const struct onnxpass_plugin *onnxpass_plugin_entry(void);

ONNXPASS_EXPORT const struct onnxpass_plugin *onnxpass_plugin_entry(void)
{
	return &bad_abi_plugin;
}
