/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/* fnmatch-style glob: * ? [...] ([!...] negation), no special '/' handling. */
bool opass_glob_match(const char *pattern, const char *text);

/* Does pattern match name, or alias (may be NULL)? */
bool opass_glob_match_either(const char *pattern, const char *name, const char *alias);
