/* SPDX-License-Identifier: MIT */
/* The main of every Check suite: build it, generate the models it asked for,
 * run it (Check forks a child per test), delete the models. */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "testlib.h"

const char *test_models_dir;
const cJSON *test_models_manifest;
static const char *models_wanted;

void test_models_want(const char *names)
{
	models_wanted = names;
}

int main(void)
{
	Suite *suite = test_suite();
	char *dir = NULL;
	cJSON *manifest = NULL;
	int r;

	if (models_wanted) {
		manifest = test_models_generate(models_wanted, &dir);
		if (!manifest) {
			srunner_free(srunner_create(suite));
			return EXIT_FAILURE;
		}
		test_models_dir = dir;
		test_models_manifest = manifest;
	}
	r = test_run_suite(suite);
	test_models_free(manifest, dir);
	return r;
}
