/* SPDX-License-Identifier: MIT */
/* Typed reads of JSON members with fallbacks, shared by the passes. */
#include "sparsity/sparsity.h"

double opass_json_number(const cJSON *obj, const char *key, double fallback)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsNumber(item) ? item->valuedouble : fallback;
}

const char *opass_json_string(const cJSON *obj, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

bool opass_json_bool(const cJSON *obj, const char *key, bool fallback)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsBool(item) ? cJSON_IsTrue(item) : fallback;
}
