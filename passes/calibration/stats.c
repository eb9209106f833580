/* SPDX-License-Identifier: MIT */
/* Streaming input statistics (see stats.h): BLAS ssyrk for H, im2col in
 * bounded chunks for Conv inputs. */
#include <cblas.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "calibration/stats.h"

/* im2col rows per chunk: bounds the scratch to CHUNK * dim floats. */
#define CHUNK 1024

int opass_stats_init(struct opass_stats *stats, size_t dim, size_t n_groups, bool full)
{
	struct opass_stats s = { .dim = dim, .n_groups = n_groups, .full = full };

	if (dim == 0 || n_groups == 0 || dim > SIZE_MAX / dim / n_groups / sizeof(float))
		return -EINVAL;
	s.sq = calloc(n_groups * dim, sizeof(*s.sq));
	s.h = full ? calloc(n_groups * dim * dim, sizeof(*s.h)) : NULL;
	if (!s.sq || (full && !s.h)) {
		free(s.sq);
		free(s.h);
		return -ENOMEM;
	}
	*stats = s;
	return 0;
}

void opass_stats_fini(struct opass_stats *stats)
{
	if (!stats)
		return;
	free(stats->h);
	free(stats->sq);
	*stats = (struct opass_stats){ 0 };
}

static void add_squares(double *sq, const float *x, size_t rows, size_t dim)
{
	for (size_t r = 0; r < rows; r++)
		for (size_t j = 0; j < dim; j++)
			sq[j] += (double)x[r * dim + j] * (double)x[r * dim + j];
}

static void add_block(struct opass_stats *stats, size_t g, const float *x, size_t rows)
{
	size_t dim = stats->dim;

	add_squares(stats->sq + g * dim, x, rows, dim);
	if (stats->full && rows)
		cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)dim, (int)rows, 1.0f, x,
			    (int)dim, 1.0f, stats->h + g * dim * dim, (int)dim);
}

int opass_stats_add_rows(struct opass_stats *stats, size_t g, const float *x, size_t rows)
{
	if (g >= stats->n_groups || stats->dim > INT32_MAX)
		return -EINVAL;
	/* ssyrk takes an int count of rows */
	for (size_t done = 0; done < rows; done += CHUNK * 64) {
		size_t n = rows - done < CHUNK * 64 ? rows - done : CHUNK * 64;

		add_block(stats, g, x + done * stats->dim, n);
	}
	stats->rows += rows;
	return 0;
}

int64_t opass_conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t dilation,
			    int64_t pad_begin, int64_t pad_end)
{
	int64_t span = dilation * (kernel - 1) + 1;

	if (in < 0 || kernel < 1 || stride < 1 || dilation < 1 || pad_begin < 0 || pad_end < 0 ||
	    in + pad_begin + pad_end < span)
		return -1;
	return (in + pad_begin + pad_end - span) / stride + 1;
}

/* One im2col row: the patch of group g at (n, oy, ox). */
static void patch_fill(const struct opass_conv_geom *geom, const float *x, const int64_t dims[4],
		       size_t g, int64_t n, int64_t oy, int64_t ox, float *row)
{
	int64_t cg = geom->channels / geom->groups, kh = geom->kernel[0], kw = geom->kernel[1];
	int64_t h = dims[2], w = dims[3];

	for (int64_t c = 0; c < cg; c++) {
		const float *plane = x + ((n * dims[1]) + (int64_t)g * cg + c) * h * w;

		for (int64_t ky = 0; ky < kh; ky++) {
			int64_t iy = oy * geom->stride[0] - geom->pads[0] + ky * geom->dilation[0];

			for (int64_t kx = 0; kx < kw; kx++) {
				int64_t ix = ox * geom->stride[1] - geom->pads[1] + kx * geom->dilation[1];
				bool in = iy >= 0 && iy < h && ix >= 0 && ix < w;

				*row++ = in ? plane[iy * w + ix] : 0.0f;
			}
		}
	}
}

int opass_stats_add_conv(struct opass_stats *stats, const struct opass_conv_geom *geom,
			 const float *x, const int64_t dims[4])
{
	int64_t oh = opass_conv_out_size(dims[2], geom->kernel[0], geom->stride[0], geom->dilation[0],
					 geom->pads[0], geom->pads[2]);
	int64_t ow = opass_conv_out_size(dims[3], geom->kernel[1], geom->stride[1], geom->dilation[1],
					 geom->pads[1], geom->pads[3]);
	size_t dim = stats->dim, fill = 0;
	float *buf;

	if (oh < 0 || ow < 0 || geom->groups < 1 || (size_t)geom->groups != stats->n_groups ||
	    dims[1] != geom->channels || geom->channels % geom->groups ||
	    (size_t)(geom->channels / geom->groups * geom->kernel[0] * geom->kernel[1]) != dim)
		return -EINVAL;
	buf = malloc(CHUNK * dim * sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	for (size_t g = 0; g < stats->n_groups; g++) {
		for (int64_t n = 0; n < dims[0]; n++)
			for (int64_t oy = 0; oy < oh; oy++)
				for (int64_t ox = 0; ox < ow; ox++) {
					patch_fill(geom, x, dims, g, n, oy, ox, buf + fill * dim);
					if (++fill == CHUNK) {
						add_block(stats, g, buf, fill);
						fill = 0;
					}
				}
		add_block(stats, g, buf, fill);
		fill = 0;
	}
	stats->rows += (uint64_t)(dims[0] * oh * ow);
	free(buf);
	return 0;
}

void opass_stats_finish(struct opass_stats *stats)
{
	size_t d = stats->dim;

	for (size_t g = 0; stats->full && g < stats->n_groups; g++) {
		float *h = stats->h + g * d * d;

		for (size_t i = 0; i < d; i++)
			for (size_t j = 0; j < i; j++)
				h[i * d + j] = h[j * d + i];
	}
}
