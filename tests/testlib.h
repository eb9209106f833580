/* SPDX-License-Identifier: MIT */
/* Helpers shared by the Check suites. */
#pragma once

#include <check.h>
#include <stddef.h>

/* Defined by each Check suite: build the suite (tests/testmain.c's main runs it). */
Suite *test_suite(void);

/* Called from test_suite: main generates the models NAMES of
 * tests/models/make_models.py (space-separated, "" for all) before the tests
 * fork, into test_models_dir (manifest.json parsed into test_models_manifest),
 * and deletes them at the end. */
void test_models_want(const char *names);
extern const char *test_models_dir;
extern const struct cJSON *test_models_manifest;

/* Run a Check suite, print Check's summary, return the process exit code. */
int test_run_suite(Suite *suite);

/* A new empty temporary folder (malloc'd path). */
char *test_tmpdir(void);

/* Run a shell command; returns its exit status (or -1). */
int test_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Generate the test models NAMES (space-separated, "" for all) with
 * tests/models/make_models.py ($PYTHON and $SRCDIR from meson) into a new
 * temporary folder; returns the parsed manifest.json (and the folder in
 * *ret_dir), or NULL with a message. */
struct cJSON *test_models_generate(const char *names, char **ret_dir);
/* Delete the manifest and the folder (both may be NULL). */
void test_models_free(struct cJSON *manifest, char *dir);

/* "test_models_dir/NAME.onnx", malloc'd (asserts on failure). */
char *test_model_path(const char *name);

/* "DIR/NAME", malloc'd (asserts on failure). */
char *test_path_join(const char *dir, const char *name);

/* Write SIZE bytes to PATH, or copy a file (assert on failure). */
void test_write_file(const char *path, const void *data, size_t size);
void test_copy_file(const char *from, const char *to);

/* The folder holds exactly the NULL-terminated names (no temp files). */
void test_assert_dir_holds(const char *dir, const char *const *names);

/* rm -rf a folder below /tmp (NULL: nothing). */
void test_remove_tree(const char *dir);

/* Read a whole file into a malloc'd buffer (NUL-terminated). NULL on error. */
char *test_read_file(const char *path, size_t *ret_size);
