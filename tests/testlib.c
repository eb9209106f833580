/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "testlib.h"

int test_run_suite(Suite *suite)
{
	SRunner *runner = srunner_create(suite);
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

char *test_tmpdir(void)
{
	char tmpl[] = "/tmp/onnx-pass-test-XXXXXX";

	if (!mkdtemp(tmpl))
		return NULL;
	return strdup(tmpl);
}

int test_system(const char *fmt, ...)
{
	char *cmd = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&cmd, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -1;
	r = system(cmd);
	free(cmd);
	if (r == -1 || !WIFEXITED(r))
		return -1;
	return WEXITSTATUS(r);
}

char *test_read_file(const char *path, size_t *ret_size)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long size;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)size + 1);
		if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
			free(buf);
			buf = NULL;
		}
		if (buf) {
			buf[size] = '\0';
			if (ret_size)
				*ret_size = (size_t)size;
		}
	}
	fclose(f);
	return buf;
}

cJSON *test_models_generate(const char *names, char **ret_dir)
{
	const char *python = getenv("PYTHON"), *srcdir = getenv("SRCDIR");
	char *dir, *path = NULL, *text;
	cJSON *manifest;
	int r;

	if (!srcdir) {
		fprintf(stderr, "SRCDIR is not set (run through meson test)\n");
		return NULL;
	}
	dir = test_tmpdir();
	if (!dir)
		return NULL;
	r = test_system("'%s' '%s/tests/models/make_models.py' '%s' %s >/dev/null",
			python ? python : "/usr/bin/python3", srcdir, dir, names);
	if (asprintf(&path, "%s/manifest.json", dir) < 0)
		path = NULL;
	text = r == 0 && path ? test_read_file(path, NULL) : NULL;
	manifest = text ? cJSON_Parse(text) : NULL;
	free(text);
	free(path);
	if (!manifest) {
		fprintf(stderr, "cannot generate the test models (make_models.py: %d)\n", r);
		test_models_free(NULL, dir);
		return NULL;
	}
	*ret_dir = dir;
	return manifest;
}

void test_models_free(cJSON *manifest, char *dir)
{
	cJSON_Delete(manifest);
	if (dir)
		test_system("rm -rf '%s'", dir);
	free(dir);
}

char *test_model_path(const char *name)
{
	char *path = NULL;

	ck_assert_int_ge(asprintf(&path, "%s/%s.onnx", test_models_dir, name), 0);
	return path;
}

char *test_path_join(const char *dir, const char *name)
{
	char *path = NULL;

	ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
	return path;
}

void test_write_file(const char *path, const void *data, size_t size)
{
	FILE *f = fopen(path, "wb");

	ck_assert_msg(f, "cannot create %s", path);
	ck_assert_uint_eq(fwrite(data, 1, size, f), size);
	ck_assert_int_eq(fclose(f), 0);
}

void test_copy_file(const char *from, const char *to)
{
	size_t size = 0;
	char *data = test_read_file(from, &size);

	ck_assert_msg(data, "cannot read %s", from);
	test_write_file(to, data, size);
	free(data);
}

void test_assert_dir_holds(const char *dir, const char *const *names)
{
	size_t n_expected = 0, n_found = 0;
	struct dirent *de;
	DIR *d = opendir(dir);

	ck_assert_msg(d, "cannot open %s", dir);
	while (names[n_expected])
		n_expected++;
	while ((de = readdir(d))) {
		bool known = false;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		for (size_t i = 0; i < n_expected; i++)
			known = known || strcmp(de->d_name, names[i]) == 0;
		ck_assert_msg(known, "unexpected file '%s' left in %s", de->d_name, dir);
		n_found++;
	}
	closedir(d);
	ck_assert_msg(n_found == n_expected, "%s holds %zu files, expected %zu", dir, n_found,
		      n_expected);
}

void test_remove_tree(const char *dir)
{
	if (dir && strncmp(dir, "/tmp/", 5) == 0)
		ck_assert_int_eq(test_system("rm -rf '%s'", dir), 0);
}
