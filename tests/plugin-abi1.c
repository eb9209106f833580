/* SPDX-License-Identifier: MIT */
/* Test plugin of ABI version 1 (before struct onnxpass_error gained source):
 * it still loads and runs; its errors are the model's. */
#include <errno.h>
#include <onnxpass/plugin.h>

static int abi1_hello(struct onnxpass_model *model, struct onnxpass_context *ctx,
		      struct onnxpass_error *err)
{
	return onnxpass_context_print(ctx, "abi1 plugin ran\n");
}

static int abi1_fail(struct onnxpass_model *model, struct onnxpass_context *ctx,
		     struct onnxpass_error *err)
{
	return onnxpass_error_set(err, -EBADMSG, "abi1 plugin refuses this model");
}

static const struct onnxpass_pass abi1_passes[] = {
	{ "abi1-hello", "print a line", abi1_hello },
	{ "abi1-fail", "fail with a model error", abi1_fail },
};

static const struct onnxpass_plugin abi1_plugin = {
	.abi_version = 1,
	.name = "ABI 1",
	.passes = abi1_passes,
	.n_passes = 2,
};

ONNXPASS_EXPORT const struct onnxpass_plugin *onnxpass_plugin_entry(void);

ONNXPASS_EXPORT const struct onnxpass_plugin *onnxpass_plugin_entry(void)
{
	return &abi1_plugin;
}
