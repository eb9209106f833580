/* SPDX-License-Identifier: MIT */
/* A string-keyed hash map (open addressing). Keys are not copied unless
 * the map owns them (opass_strmap_put_copy). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct opass_strmap_slot {
	const char *key;
	void *value;
	bool owned;
};

struct opass_strmap {
	struct opass_strmap_slot *slots;
	size_t cap;   /* power of two, or 0 */
	size_t count;
};

void opass_strmap_fini(struct opass_strmap *map);
/* Insert or replace; -ENOMEM on failure. */
int opass_strmap_put(struct opass_strmap *map, const char *key, void *value);
/* Same, with a private copy of key. */
int opass_strmap_put_copy(struct opass_strmap *map, const char *key, void *value);
/* true if present; *ret_value (may be NULL) gets the value. */
bool opass_strmap_get(const struct opass_strmap *map, const char *key, void **ret_value);
