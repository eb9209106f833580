/* SPDX-License-Identifier: MIT */
/* Pass registry: a table of passes handed in by the layer above (passes/builtin.c)
 * plus loaded plugins; runs pass lists. */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "registry.h"

struct onnxpass_registry {
	const struct onnxpass_pass **passes;
	size_t n_passes;
	void **handles;
	size_t n_handles;
};

struct onnxpass_context {
	const char *config;
	char *report;
	size_t len;
	size_t cap;
};

static int registry_add_plugin(struct onnxpass_registry *reg, const struct onnxpass_plugin *plugin,
			       const char *origin, struct onnxpass_error *err)
{
	const struct onnxpass_pass **passes;

	if (!plugin)
		return opass_error_usage(err, "%s: plugin entry point returned NULL", origin);
	/* ABI 2 only appended a field to struct onnxpass_error, which the host
	 * allocates: a version 1 plugin runs unchanged */
	if (plugin->abi_version < 1 || plugin->abi_version > ONNXPASS_PLUGIN_ABI_VERSION)
		return opass_error_usage(err, "%s: plugin ABI version %u, expected 1 to %u", origin,
					 plugin->abi_version, ONNXPASS_PLUGIN_ABI_VERSION);
	passes = realloc(reg->passes, (reg->n_passes + plugin->n_passes) * sizeof(*passes));
	if (!passes)
		return opass_error(err, -ENOMEM, "out of memory");
	reg->passes = passes;
	for (size_t i = 0; i < plugin->n_passes; i++) {
		const struct onnxpass_pass *p = &plugin->passes[i];

		if (!p->name || !p->run || !*p->name || strchr(p->name, ',') || strchr(p->name, ' '))
			return opass_error_usage(err, "%s: pass %zu has no valid name or run function",
						 origin, i);
		if (opass_registry_find(reg, p->name))
			return opass_error_usage(err, "%s: pass '%s' is already registered", origin,
						 p->name);
		reg->passes[reg->n_passes++] = p;
	}
	return 0;
}

int opass_registry_new(const struct onnxpass_plugin *builtin,
		       struct onnxpass_registry **ret_registry, struct onnxpass_error *err)
{
	struct onnxpass_registry *reg = calloc(1, sizeof(*reg));
	int r;

	if (!reg)
		return opass_error(err, -ENOMEM, "out of memory");
	r = registry_add_plugin(reg, builtin, "built-in", err);
	if (r < 0) {
		onnxpass_registry_free(reg);
		return r;
	}
	*ret_registry = reg;
	return 0;
}

ONNXPASS_EXPORT struct onnxpass_registry *onnxpass_registry_free(struct onnxpass_registry *registry)
{
	if (!registry)
		return NULL;
	free(registry->passes);
	for (size_t i = 0; i < registry->n_handles; i++)
		dlclose(registry->handles[i]);
	free(registry->handles);
	free(registry);
	return NULL;
}

ONNXPASS_EXPORT int onnxpass_registry_load_plugin(struct onnxpass_registry *registry, const char *path,
						  struct onnxpass_error *err)
{
	onnxpass_plugin_entry_fn entry;
	void **handles, *handle;
	size_t n_before = registry->n_passes;
	int r;

	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!handle)
		return opass_error_usage(err, "%s: cannot load plugin: %s", path, dlerror());
	*(void **)&entry = dlsym(handle, ONNXPASS_PLUGIN_ENTRY_SYMBOL);
	if (!entry) {
		dlclose(handle);
		return opass_error_usage(err, "%s: not an onnx-pass plugin (no %s symbol)", path,
					 ONNXPASS_PLUGIN_ENTRY_SYMBOL);
	}
	handles = realloc(registry->handles, (registry->n_handles + 1) * sizeof(*handles));
	if (!handles) {
		dlclose(handle);
		return opass_error(err, -ENOMEM, "out of memory");
	}
	registry->handles = handles;
	registry->handles[registry->n_handles++] = handle;
	r = registry_add_plugin(registry, entry(), path, err);
	if (r < 0)
		registry->n_passes = n_before;
	return r;
}

ONNXPASS_EXPORT size_t onnxpass_registry_count(const struct onnxpass_registry *registry)
{
	return registry ? registry->n_passes : 0;
}

ONNXPASS_EXPORT const struct onnxpass_pass *onnxpass_registry_get(const struct onnxpass_registry *registry,
								  size_t index)
{
	return registry && index < registry->n_passes ? registry->passes[index] : NULL;
}

const struct onnxpass_pass *opass_registry_find(const struct onnxpass_registry *registry,
						const char *name)
{
	for (size_t i = 0; i < registry->n_passes; i++)
		if (strcmp(registry->passes[i]->name, name) == 0)
			return registry->passes[i];
	return NULL;
}

/* Split "a, b,c" into trimmed names; resolves each against the registry. */
static int pass_list_parse(const struct onnxpass_registry *registry, const char *list,
			   const struct onnxpass_pass ***ret_passes, size_t *ret_n,
			   struct onnxpass_error *err)
{
	const struct onnxpass_pass **passes;
	size_t n = 0, cap = 1;
	char *copy, *tok, *save = NULL;
	int r = 0;

	for (const char *p = list; *p; p++)
		cap += *p == ',';
	copy = strdup(list);
	passes = calloc(cap, sizeof(*passes));
	if (!copy || !passes) {
		r = opass_error(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (tok = strtok_r(copy, ",", &save); tok && r == 0; tok = strtok_r(NULL, ",", &save)) {
		char *end = tok + strlen(tok);

		while (*tok == ' ')
			tok++;
		while (end > tok && end[-1] == ' ')
			*--end = '\0';
		if (!*tok)
			continue;
		passes[n] = opass_registry_find(registry, tok);
		if (!passes[n++])
			r = opass_error_usage(err, "unknown pass '%s' (see onnx-pass --list)", tok);
	}
	if (r == 0 && n == 0)
		r = opass_error_usage(err, "no pass given");
out:
	free(copy);
	if (r < 0) {
		free(passes);
		return r;
	}
	*ret_passes = passes;
	*ret_n = n;
	return 0;
}

ONNXPASS_EXPORT int onnxpass_registry_run(const struct onnxpass_registry *registry,
					  struct onnxpass_model *model,
					  const char *passes, const char *config_json,
					  char **ret_report, struct onnxpass_error *err)
{
	struct onnxpass_context ctx = { .config = config_json ? config_json : "{}" };
	const struct onnxpass_pass **list = NULL;
	size_t n = 0;
	int r;

	r = pass_list_parse(registry, passes ? passes : "", &list, &n, err);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = list[i]->run(model, &ctx, err);
	if (r == 0 && ret_report) {
		*ret_report = ctx.report;
		ctx.report = NULL;
	}
	free(list);
	free(ctx.report);
	return r;
}

ONNXPASS_EXPORT const char *onnxpass_context_get_config(const struct onnxpass_context *ctx)
{
	return ctx->config;
}

ONNXPASS_EXPORT int onnxpass_context_print(struct onnxpass_context *ctx, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if (ctx->len + (size_t)n + 1 > ctx->cap) {
		size_t cap = (ctx->len + (size_t)n + 1) * 2;
		char *report = realloc(ctx->report, cap);

		if (!report)
			return -ENOMEM;
		ctx->report = report;
		ctx->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(ctx->report + ctx->len, ctx->cap - ctx->len, fmt, ap);
	va_end(ap);
	ctx->len += (size_t)n;
	return 0;
}
