/* SPDX-License-Identifier: MIT */
/* The 2-D views of SPEC 4 and a group's weight and mask read and written through them. */
#include <errno.h>
#include <string.h>

#include "error.h"
#include "sparsity/sparsity.h"
#include "tensor.h"

/* --- views ------------------------------------------------------------------- */

enum opass_view opass_view_from_name(const char *name)
{
	if (name && strcmp(name, "as_is") == 0)
		return OPASS_VIEW_AS_IS;
	if (name && strcmp(name, "transposed") == 0)
		return OPASS_VIEW_TRANSPOSED;
	return OPASS_VIEW_CONV;
}

int opass_view_map_init(struct opass_view_map *map, enum opass_view view, enum opass_conv_view cv,
			const Onnx__TensorProto *t, struct onnxpass_error *err)
{
	uint64_t numel;
	int r = opass_tensor_numel(t, &numel, err);

	if (r < 0)
		return r;
	*map = (struct opass_view_map){ .view = view, .conv_view = cv };
	if (view == OPASS_VIEW_CONV) {
		if (t->n_dims < 3 || t->dims[0] == 0 || t->dims[1] == 0)
			return opass_error(err, -EBADMSG, "tensor '%s': not a Conv weight", t->name);
		map->rows = t->dims[0];
		map->cols = (int64_t)(numel / (uint64_t)t->dims[0]);
		map->conv_channels = t->dims[1];
		map->conv_kernel = map->cols / t->dims[1];
		return 0;
	}
	if (t->n_dims != 2)
		return opass_error(err, -EBADMSG, "tensor '%s': not a rank-2 weight", t->name);
	map->rows = t->dims[view == OPASS_VIEW_AS_IS ? 0 : 1];
	map->cols = t->dims[view == OPASS_VIEW_AS_IS ? 1 : 0];
	return 0;
}

uint64_t opass_view_offset(const struct opass_view_map *map, int64_t i, int64_t j)
{
	switch (map->view) {
	case OPASS_VIEW_TRANSPOSED:
		return (uint64_t)(j * map->rows + i);
	case OPASS_VIEW_CONV:
		if (map->conv_view == OPASS_CONV_VIEW_OHWI) {
			int64_t k = j / map->conv_channels, c = j % map->conv_channels;

			return (uint64_t)(i * map->cols + c * map->conv_kernel + k);
		}
		return (uint64_t)(i * map->cols + j);
	default:
		return (uint64_t)(i * map->cols + j);
	}
}

/* --- masks ------------------------------------------------------------------- */

/* Transposes go tile by tile to stay in cache (16 measured best here). */
#define TILE 16

/* Is the view the storage order itself? */
static bool view_is_identity(const struct opass_view_map *map)
{
	return map->view == OPASS_VIEW_AS_IS ||
	       (map->view == OPASS_VIEW_CONV && map->conv_view == OPASS_CONV_VIEW_OIHW);
}

/* Copy elements of esize bytes from storage order into view order (inlined
 * with a constant esize by each caller). */
static inline __attribute__((always_inline)) void
view_gather(const struct opass_view_map *map, const uint8_t *stored, uint8_t *values, size_t esize)
{
	int64_t rows = map->rows, cols = map->cols;

	if (map->view == OPASS_VIEW_TRANSPOSED) {
		/* stored [cols][rows] -> values [rows][cols], writes contiguous */
		for (int64_t i0 = 0; i0 < rows; i0 += TILE)
			for (int64_t j0 = 0; j0 < cols; j0 += TILE)
				for (int64_t i = i0; i < i0 + TILE && i < rows; i++)
					for (int64_t j = j0; j < j0 + TILE && j < cols; j++)
						memcpy(values + (uint64_t)(i * cols + j) * esize,
						       stored + (uint64_t)(j * rows + i) * esize, esize);
		return;
	}
	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < cols; j++)
			memcpy(values + (uint64_t)(i * cols + j) * esize,
			       stored + opass_view_offset(map, i, j) * esize, esize);
}

/* W * mask is computed as torch's FakeSparsity does (NaN * 0 stays NaN,
 * -x * 0 is -0.0), in storage order, then put in view order. */
void opass_group_read_masked(const struct opass_group *group, double *values, double *scratch)
{
	const uint8_t *mask = group->mask->raw_data.data;
	uint64_t n = (uint64_t)group->map.rows * (uint64_t)group->map.cols;
	double *stored = view_is_identity(&group->map) ? values : scratch;

	opass_tensor_read(group->weight.tensor, stored);
	for (uint64_t off = 0; !group->mask_in_weight && off < n; off++)
		stored[off] *= (double)mask[off];
	if (stored != values)
		view_gather(&group->map, (const uint8_t *)stored, (uint8_t *)values, sizeof(*values));
}

/* The float32 storage of t when it can be read in place, else NULL. */
static const float *stored_f32(const Onnx__TensorProto *t)
{
	if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
		return NULL;
	return t->has_raw_data ? (const float *)(const void *)t->raw_data.data : t->float_data;
}

void opass_group_read_masked_f32(const struct opass_group *group, float *values, float *scratch)
{
	const uint8_t *mask = group->mask->raw_data.data;
	uint64_t n = (uint64_t)group->map.rows * (uint64_t)group->map.cols;
	const float *in_place = group->mask_in_weight ? stored_f32(group->weight.tensor) : NULL;
	float *stored = view_is_identity(&group->map) ? values : scratch;

	/* W is the masked weight: gather it straight from its storage */
	if (in_place && n && stored != values) {
		view_gather(&group->map, (const uint8_t *)in_place, (uint8_t *)values, sizeof(*values));
		return;
	}
	opass_tensor_read_f32(group->weight.tensor, stored);
	for (uint64_t off = 0; !group->mask_in_weight && off < n; off++)
		stored[off] *= (float)mask[off];
	if (stored != values)
		view_gather(&group->map, (const uint8_t *)stored, (uint8_t *)values, sizeof(*values));
}

bool opass_group_mask_in_storage(const struct opass_group *group)
{
	int32_t dt = group->weight.tensor->data_type;

	return group->map.view == OPASS_VIEW_TRANSPOSED &&
	       (group->args.block_rows == 1 || group->args.block_cols == 1) &&
	       dt != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
}

const float *opass_group_read_stored_f32(const struct opass_group *group, float *values)
{
	const uint8_t *mask = group->mask->raw_data.data;
	uint64_t n = (uint64_t)group->map.rows * (uint64_t)group->map.cols;
	const float *in_place = group->mask_in_weight ? stored_f32(group->weight.tensor) : NULL;

	if (in_place && n)
		return in_place;
	opass_tensor_read_f32(group->weight.tensor, values);
	for (uint64_t off = 0; !group->mask_in_weight && off < n; off++)
		values[off] *= (float)mask[off];
	return values;
}

void opass_group_write_stored_mask(struct opass_group *group, const uint8_t *mask)
{
	uint64_t n = (uint64_t)group->map.rows * (uint64_t)group->map.cols;

	if (group->mask_in_weight)
		group->nnz = (int64_t)opass_tensor_zero_masked(group->weight.tensor, mask, n);
	else if (n)
		memcpy(group->mask->raw_data.data, mask, n);
}

/* A view-order mask in storage order. */
static void mask_scatter(const struct opass_view_map *map, const uint8_t *view_mask, uint8_t *mask)
{
	if (view_is_identity(map)) {
		memcpy(mask, view_mask, (size_t)(map->rows * map->cols));
	} else if (map->view == OPASS_VIEW_TRANSPOSED) {
		for (int64_t j0 = 0; j0 < map->cols; j0 += TILE)
			for (int64_t i0 = 0; i0 < map->rows; i0 += TILE)
				for (int64_t j = j0; j < j0 + TILE && j < map->cols; j++)
					for (int64_t i = i0; i < i0 + TILE && i < map->rows; i++)
						mask[j * map->rows + i] = view_mask[i * map->cols + j];
	} else {
		for (int64_t i = 0; i < map->rows; i++)
			for (int64_t j = 0; j < map->cols; j++)
				mask[opass_view_offset(map, i, j)] = view_mask[i * map->cols + j];
	}
}

void opass_group_write_mask(struct opass_group *group, const uint8_t *view_mask, uint8_t *scratch)
{
	uint64_t n = (uint64_t)group->map.rows * (uint64_t)group->map.cols;

	if (!group->mask_in_weight) {
		mask_scatter(&group->map, view_mask, group->mask->raw_data.data);
		return;
	}
	if (!view_is_identity(&group->map)) {
		mask_scatter(&group->map, view_mask, scratch);
		view_mask = scratch;
	}
	group->nnz = (int64_t)opass_tensor_zero_masked(group->weight.tensor, view_mask, n);
}

void opass_group_write_weight_f32(struct opass_group *group, const float *values)
{
	for (int64_t i = 0; i < group->map.rows; i++)
		for (int64_t j = 0; j < group->map.cols; j++)
			opass_tensor_set(group->weight.tensor, opass_view_offset(&group->map, i, j),
					 values[i * group->map.cols + j]);
}
