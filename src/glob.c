/* SPDX-License-Identifier: MIT */
/* fnmatch-style globs of the config's tensor_fqn and exclude patterns. */
#include <stddef.h>

#include "glob.h"

/* Match one bracket expression at p ('[' already seen at p[-1]) against c.
 * Returns the length of the expression after '[' (0: no closing ']'). */
static size_t glob_bracket(const char *p, unsigned char c, bool *ret_match)
{
	const char *s = p;
	bool negate = false, match = false;

	if (*s == '!' || *s == '^') {
		negate = true;
		s++;
	}
	for (bool first = true; *s && (first || *s != ']'); first = false) {
		unsigned char lo = (unsigned char)*s++, hi = lo;

		if (*s == '-' && s[1] && s[1] != ']') {
			hi = (unsigned char)s[1];
			s += 2;
		}
		if (c >= lo && c <= hi)
			match = true;
	}
	if (*s != ']')
		return 0;
	*ret_match = match != negate;
	return (size_t)(s + 1 - p);
}

/* Does the pattern element at p (not '*') match c? *ret_len: its length. */
static bool glob_match_one(const char *p, unsigned char c, size_t *ret_len)
{
	bool match;
	size_t n;

	switch (*p) {
	case '?':
		*ret_len = 1;
		return true;
	case '[':
		n = glob_bracket(p + 1, c, &match);
		if (n > 0) {
			*ret_len = 1 + n;
			return match;
		}
		break; /* no closing ']': a literal '[' */
	case '\\':
		if (p[1]) {
			*ret_len = 2;
			return (unsigned char)p[1] == c;
		}
		break;
	default:
		break;
	}
	*ret_len = 1;
	return (unsigned char)*p == c;
}

/* Iterative: on a mismatch, resume after the last '*' one character further
 * into the text. O(len(pattern) * len(text)), no recursion. */
bool opass_glob_match(const char *pattern, const char *text)
{
	const char *p = pattern, *t = text;
	const char *star_p = NULL, *star_t = NULL;
	size_t len;

	while (*t) {
		if (*p == '*') {
			while (*p == '*')
				p++;
			if (!*p)
				return true;
			star_p = p;
			star_t = t;
		} else if (*p && glob_match_one(p, (unsigned char)*t, &len)) {
			p += len;
			t++;
		} else if (star_p) {
			p = star_p;
			t = ++star_t;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

bool opass_glob_match_either(const char *pattern, const char *name, const char *alias)
{
	return opass_glob_match(pattern, name) || (alias && opass_glob_match(pattern, alias));
}
