/* SPDX-License-Identifier: MIT */
/*
 * Atomic saves (SPEC 9): saving over the input, bad paths, failed renames,
 * write failures and read-only folders leave the old file and no temp files.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model.h"
#include "test-model.h"
#include "testlib.h"

START_TEST(test_save_over_input)
{
	char *dir = test_tmpdir(), *path = test_path_join(dir, "m.onnx"), *src;
	struct onnxpass_model *model, *again;

	src = test_path_join(test_models_dir, "mlp_gemm.onnx");
	test_copy_file(src, path);
	model = model_test_load(path);
	ck_assert_int_eq(opass_model_set_metadata(model->proto, "onnx_pass.test", "over"), 0);
	model_test_save_file(model, path, 0);
	test_assert_dir_holds(dir, (const char *[]){ "m.onnx", NULL });
	again = model_test_load(path);
	ck_assert_str_eq(opass_model_get_metadata(again->proto, "onnx_pass.test"), "over");
	model_test_assert_same_bytes(model, again);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
	test_remove_tree(dir);
	free(src);
	free(path);
	free(dir);
}
END_TEST

/* Saving an external-data model over itself rewrites both files: the new
 * side file under a fresh name, the old one removed after the rename. */
START_TEST(test_save_over_input_external)
{
	char *dir = test_tmpdir(), *path = test_path_join(dir, "e.onnx");
	char *data = NULL, *src;
	struct onnxpass_model *orig = model_test_load_generated("external_data.onnx"), *model, *again;

	src = test_path_join(test_models_dir, "external_data.onnx");
	test_copy_file(src, path);
	/* the copy names the generator's side file (not OUT's: kept) */
	model_test_save_file(orig, path, 0);
	test_assert_dir_holds(dir, (const char *[]){ "e.onnx", "e.onnx.data", NULL });
	model = model_test_load(path);
	model_test_save_file(model, path, 0);
	test_assert_dir_holds(dir, (const char *[]){ "e.onnx", "e.onnx.1.data", NULL });
	again = model_test_load(path);
	model_test_assert_same_initializers(orig->proto, again->proto);
	onnxpass_model_free(again);
	onnxpass_model_free(model);
	onnxpass_model_free(orig);
	test_remove_tree(dir);
	free(src);
	free(data);
	free(path);
	free(dir);
}
END_TEST

START_TEST(test_save_bad_paths)
{
	struct onnxpass_model *model = model_test_load_generated("mlp_gemm.onnx");
	char *dir = test_tmpdir(), *file = test_path_join(dir, "file"), *p = NULL;
	struct onnxpass_error err = { 0 };
	const unsigned flags[] = { 0, ONNXPASS_SAVE_EXTERNAL_DATA };
	int r;

	test_write_file(file, "x", 1);
	for (size_t i = 0; i < 2; i++) {
		free(p);
		p = test_path_join(dir, "no/such/dir/out.onnx");
		r = onnxpass_model_save_file(model, p, flags[i], &err);
		ck_assert_int_eq(r, -ENOENT);
		ck_assert_int_eq(err.code, r);
		ck_assert_msg(strstr(err.message, "out.onnx"), "message '%s' names no file", err.message);
		free(p);
		p = test_path_join(file, "out.onnx");
		r = onnxpass_model_save_file(model, p, flags[i], &err);
		ck_assert_int_eq(r, -ENOTDIR);
		ck_assert_msg(strstr(err.message, "out.onnx"), "message '%s' names no file", err.message);
		test_assert_dir_holds(dir, (const char *[]){ "file", NULL });
	}
	onnxpass_model_free(model);
	test_remove_tree(dir);
	free(p);
	free(file);
	free(dir);
}
END_TEST

/* A folder where the output should go: the final rename fails, after the
 * temp files are complete. Nothing may be left, with external data too. */
static void save_over_folder(unsigned flags)
{
	struct onnxpass_model *model = model_test_load_generated("mlp_gemm.onnx");
	char *dir = test_tmpdir(), *p = test_path_join(dir, "sub");
	struct onnxpass_error err = { 0 };
	int r;

	ck_assert_int_eq(mkdir(p, 0755), 0);
	r = onnxpass_model_save_file(model, p, flags, &err);
	ck_assert_int_lt(r, 0);
	ck_assert_int_eq(err.code, r);
	ck_assert_msg(strstr(err.message, "sub"), "message '%s' names no file", err.message);
	test_assert_dir_holds(p, (const char *[]){ NULL });
	test_assert_dir_holds(dir, (const char *[]){ "sub", NULL });
	onnxpass_model_free(model);
	test_remove_tree(dir);
	free(p);
	free(dir);
}

START_TEST(test_save_rename_fails)
{
	save_over_folder(0);
}
END_TEST

START_TEST(test_save_rename_fails_external)
{
	save_over_folder(ONNXPASS_SAVE_EXTERNAL_DATA);
}
END_TEST

/* Save while the file size limit makes writes fail half-way (works as root,
 * where permission bits would not); in a child, so the limit stays there. */
static void save_with_small_fsize(const char *path, unsigned flags)
{
	pid_t pid = fork();
	int status = 0;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct onnxpass_model *model = NULL;
		struct onnxpass_error err = { 0 };
		struct rlimit lim = { 4096, 4096 };
		char *src = test_path_join(test_models_dir, "mlp_gemm.onnx");
		int r;

		signal(SIGXFSZ, SIG_IGN);
		if (onnxpass_model_load_file(src, &model, &err) < 0)
			_exit(3);
		if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
			_exit(6);
		r = onnxpass_model_save_file(model, path, flags, &err);
		if (r == 0)
			_exit(4);
		if (err.code != r || !strstr(err.message, "out.onnx"))
			_exit(5);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_msg(WEXITSTATUS(status) == 0, "child: %s",
		      (const char *[]){ "", "", "", "load failed", "save succeeded",
					"wrong error or message", "setrlimit failed",
					"?" }[WEXITSTATUS(status) % 8]);
}

START_TEST(test_save_write_failure)
{
	char *dir = test_tmpdir(), *path = test_path_join(dir, "out.onnx"), *text;
	size_t size = 0;

	test_write_file(path, "old", 3);
	save_with_small_fsize(path, 0);
	test_assert_dir_holds(dir, (const char *[]){ "out.onnx", NULL });
	text = test_read_file(path, &size);
	ck_assert_str_eq(text, "old");
	free(text);
	save_with_small_fsize(path, ONNXPASS_SAVE_EXTERNAL_DATA);
	test_assert_dir_holds(dir, (const char *[]){ "out.onnx", NULL });
	text = test_read_file(path, &size);
	ck_assert_str_eq(text, "old");
	free(text);
	test_remove_tree(dir);
	free(path);
	free(dir);
}
END_TEST

/* Without root, a read-only folder refuses the temp file. */
START_TEST(test_save_readonly_dir)
{
	struct onnxpass_model *model;
	struct onnxpass_error err = { 0 };
	char *dir, *path;
	int r;

	if (geteuid() == 0)
		return; /* root writes anyway: test_save_write_failure covers it */
	model = model_test_load_generated("mlp_gemm.onnx");
	dir = test_tmpdir();
	path = test_path_join(dir, "out.onnx");
	ck_assert_int_eq(chmod(dir, 0555), 0);
	r = onnxpass_model_save_file(model, path, 0, &err);
	ck_assert_int_eq(r, -EACCES);
	ck_assert_ptr_nonnull(strstr(err.message, "out.onnx"));
	ck_assert_int_eq(chmod(dir, 0755), 0);
	test_assert_dir_holds(dir, (const char *[]){ NULL });
	onnxpass_model_free(model);
	test_remove_tree(dir);
	free(path);
	free(dir);
}
END_TEST

TCase *model_tcase_save(void)
{
	TCase *tc = tcase_create("atomic-save");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_save_over_input);
	tcase_add_test(tc, test_save_over_input_external);
	tcase_add_test(tc, test_save_bad_paths);
	tcase_add_test(tc, test_save_rename_fails);
	tcase_add_test(tc, test_save_rename_fails_external);
	tcase_add_test(tc, test_save_write_failure);
	tcase_add_test(tc, test_save_readonly_dir);
	return tc;
}
