/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

static uint64_t strmap_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	/* FNV's multiplications carry only upwards: mix the high bits into the
	 * low ones that pick the slot (murmur3's finalizer) */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

static struct opass_strmap_slot *strmap_find(const struct opass_strmap *map, const char *key)
{
	size_t i = (size_t)strmap_hash(key) & (map->cap - 1);

	while (map->slots[i].key && strcmp(map->slots[i].key, key) != 0)
		i = (i + 1) & (map->cap - 1);
	return &map->slots[i];
}

static int strmap_grow(struct opass_strmap *map)
{
	struct opass_strmap old = *map;
	size_t cap = old.cap ? old.cap * 2 : 64;

	if (cap / 2 < old.count)
		return -ENOMEM;
	map->slots = calloc(cap, sizeof(*map->slots));
	if (!map->slots) {
		*map = old;
		return -ENOMEM;
	}
	map->cap = cap;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].key)
			*strmap_find(map, old.slots[i].key) = old.slots[i];
	free(old.slots);
	return 0;
}

static int strmap_insert(struct opass_strmap *map, const char *key, void *value, bool copy)
{
	struct opass_strmap_slot *slot;

	if ((map->count + 1) * 4 > map->cap * 3 && strmap_grow(map) < 0)
		return -ENOMEM;
	slot = strmap_find(map, key);
	if (slot->key) {
		slot->value = value;
		return 0;
	}
	slot->key = copy ? strdup(key) : key;
	if (!slot->key)
		return -ENOMEM;
	slot->value = value;
	slot->owned = copy;
	map->count++;
	return 0;
}

int opass_strmap_put(struct opass_strmap *map, const char *key, void *value)
{
	return strmap_insert(map, key, value, false);
}

int opass_strmap_put_copy(struct opass_strmap *map, const char *key, void *value)
{
	return strmap_insert(map, key, value, true);
}

bool opass_strmap_get(const struct opass_strmap *map, const char *key, void **ret_value)
{
	struct opass_strmap_slot *slot;

	if (!map->cap || !key)
		return false;
	slot = strmap_find(map, key);
	if (!slot->key)
		return false;
	if (ret_value)
		*ret_value = slot->value;
	return true;
}

void opass_strmap_fini(struct opass_strmap *map)
{
	if (!map)
		return;
	for (size_t i = 0; i < map->cap; i++)
		if (map->slots[i].owned)
			free((char *)map->slots[i].key);
	free(map->slots);
	*map = (struct opass_strmap){ 0 };
}
