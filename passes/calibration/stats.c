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

static size_t packed_size(size_t dim)
{
	return dim * (dim + 1) / 2;
}

/* h (packed upper, row by row) += the upper triangle of full[dim][dim]. */
static void pack_add(float *h, const float *full, size_t dim)
{
	for (size_t i = 0; i < dim; i++) {
		const float *row = full + i * dim;

		for (size_t j = i; j < dim; j++)
			*h++ += row[j];
	}
}

void opass_stats_unpack(const struct opass_stats *stats, size_t g, float *out)
{
	size_t d = stats->dim;
	const float *h = stats->h + g * packed_size(d);

	for (size_t i = 0; i < d; i++)
		for (size_t j = i; j < d; j++)
			out[i * d + j] = out[j * d + i] = *h++;
}

int opass_stats_init(struct opass_stats *stats, size_t dim, size_t n_groups, bool full)
{
	struct opass_stats s = { .dim = dim, .n_groups = n_groups, .full = full };

	if (dim == 0 || n_groups == 0 || dim > INT32_MAX || dim > SIZE_MAX / dim / n_groups / sizeof(float))
		return -EINVAL;
	s.sq = calloc(n_groups * dim, sizeof(*s.sq));
	s.h = full ? calloc(n_groups * packed_size(dim), sizeof(*s.h)) : NULL;
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

/* sq[j] += sum over rows of x[r][j]^2: float partial sums over runs of
 * SQ_RUN rows (vectorizable), added into the double totals. */
#define SQ_RUN 64

static int add_squares(double *sq, const float *x, size_t rows, size_t dim)
{
	float *acc = malloc(dim * sizeof(*acc));

	if (!acc)
		return -ENOMEM;
	for (size_t r0 = 0; r0 < rows; r0 += SQ_RUN) {
		size_t r1 = rows - r0 < SQ_RUN ? rows : r0 + SQ_RUN;

		memset(acc, 0, dim * sizeof(*acc));
		for (size_t r = r0; r < r1; r++)
			for (size_t j = 0; j < dim; j++)
				acc[j] += x[r * dim + j] * x[r * dim + j];
		for (size_t j = 0; j < dim; j++)
			sq[j] += acc[j];
	}
	free(acc);
	return 0;
}

/* sum of v[k]^2 in eight float lanes (vectorizable), totalled in double */
static double sum_squares(const float *v, size_t n)
{
	float lane[8] = { 0 };
	double sum = 0;
	size_t k = 0;

	for (; k + 8 <= n; k += 8)
		for (int l = 0; l < 8; l++)
			lane[l] += v[k + l] * v[k + l];
	for (int l = 0; l < 8; l++)
		sum += lane[l];
	for (; k < n; k++)
		sum += (double)v[k] * v[k];
	return sum;
}

/* Fold n rows into group g: x is rows[n][dim], or with transposed its
 * transpose [dim][n] (Conv patches, built a kernel element at a time). */
static int fold(struct opass_stats *stats, size_t g, const float *x, size_t n, bool transposed,
		float *scratch)
{
	size_t dim = stats->dim;

	if (stats->full && n) {
		cblas_ssyrk(CblasRowMajor, CblasUpper, transposed ? CblasNoTrans : CblasTrans, (int)dim,
			    (int)n, 1.0f, x, transposed ? (int)n : (int)dim, 0.0f, scratch, (int)dim);
		pack_add(stats->h + g * packed_size(dim), scratch, dim);
	}
	if (!transposed)
		return add_squares(stats->sq + g * dim, x, n, dim);
	for (size_t j = 0; j < dim; j++)
		stats->sq[g * dim + j] += sum_squares(x + j * n, n);
	return 0;
}

int opass_stats_add_rows(struct opass_stats *stats, size_t g, const float *x, size_t rows,
			 float *scratch)
{
	if (g >= stats->n_groups || stats->dim > INT32_MAX)
		return -EINVAL;
	/* ssyrk takes an int count of rows */
	for (size_t done = 0; done < rows; done += CHUNK * 64) {
		size_t n = rows - done < CHUNK * 64 ? rows - done : CHUNK * 64;

		if (fold(stats, g, x + done * stats->dim, n, false, scratch) < 0)
			return -ENOMEM;
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

/* Transposed im2col of output lines [oy0, oy1) of image n, group g:
 * pt[j][(oy - oy0) * ow + ox] for patch element j = (c, ky, kx). */
struct conv_chunk {
	const struct opass_conv_geom *geom;
	const float *x;
	const int64_t *dims;
	int64_t ow;
};

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* One output line of one patch element: row[ox * s + off], 0 outside. */
static void line_fill(const struct conv_chunk *cc, const float *row, int64_t kx, float *out)
{
	const struct opass_conv_geom *geom = cc->geom;
	int64_t w = cc->dims[3], s = geom->stride[1], ow = cc->ow;
	int64_t off = kx * geom->dilation[1] - geom->pads[1];
	/* the outputs whose input column is inside [0, w) */
	int64_t lo = clamp(off >= 0 ? 0 : (-off + s - 1) / s, 0, ow);
	int64_t hi = clamp(w - off <= 0 ? 0 : (w - off - 1) / s + 1, lo, ow);

	memset(out, 0, (size_t)lo * sizeof(*out));
	if (s == 1)
		memcpy(out + lo, row + lo + off, (size_t)(hi - lo) * sizeof(*out));
	else
		for (int64_t ox = lo; ox < hi; ox++)
			out[ox] = row[ox * s + off];
	memset(out + hi, 0, (size_t)(ow - hi) * sizeof(*out));
}

static void chunk_fill(const struct conv_chunk *cc, size_t g, int64_t n, int64_t oy0, int64_t oy1,
		       float *pt)
{
	const struct opass_conv_geom *geom = cc->geom;
	int64_t cg = geom->channels / geom->groups, kh = geom->kernel[0], kw = geom->kernel[1];
	int64_t h = cc->dims[2], w = cc->dims[3], cols = (oy1 - oy0) * cc->ow;

	for (int64_t c = 0; c < cg; c++) {
		const float *plane = cc->x + ((n * cc->dims[1]) + (int64_t)g * cg + c) * h * w;

		for (int64_t ky = 0; ky < kh; ky++)
			for (int64_t kx = 0; kx < kw; kx++, pt += cols)
				for (int64_t oy = oy0; oy < oy1; oy++) {
					int64_t iy = oy * geom->stride[0] - geom->pads[0] + ky * geom->dilation[0];
					float *out = pt + (oy - oy0) * cc->ow;

					if (iy < 0 || iy >= h)
						memset(out, 0, (size_t)cc->ow * sizeof(*out));
					else
						line_fill(cc, plane + iy * w, kx, out);
				}
	}
}


int opass_stats_add_conv(struct opass_stats *stats, const struct opass_conv_geom *geom,
			 const float *x, const int64_t dims[4], float *scratch)
{
	int64_t oh = opass_conv_out_size(dims[2], geom->kernel[0], geom->stride[0], geom->dilation[0],
					 geom->pads[0], geom->pads[2]);
	int64_t ow = opass_conv_out_size(dims[3], geom->kernel[1], geom->stride[1], geom->dilation[1],
					 geom->pads[1], geom->pads[3]);
	struct conv_chunk cc = { .geom = geom, .x = x, .dims = dims, .ow = ow };
	size_t dim = stats->dim, lines;
	float *pt;

	if (oh < 0 || ow < 0 || geom->groups < 1 || (size_t)geom->groups != stats->n_groups ||
	    dims[1] != geom->channels || geom->channels % geom->groups ||
	    (size_t)(geom->channels / geom->groups * geom->kernel[0] * geom->kernel[1]) != dim)
		return -EINVAL;
	if (oh == 0 || ow == 0)
		return 0;
	/* output lines per chunk: about CHUNK patches, at least one line */
	lines = (size_t)ow >= CHUNK ? 1 : CHUNK / (size_t)ow;
	pt = malloc(dim * lines * (size_t)ow * sizeof(*pt));
	if (!pt)
		return -ENOMEM;
	for (size_t g = 0; g < stats->n_groups; g++)
		for (int64_t n = 0; n < dims[0]; n++)
			for (int64_t oy0 = 0; oy0 < oh; oy0 += (int64_t)lines) {
				int64_t oy1 = oy0 + (int64_t)lines < oh ? oy0 + (int64_t)lines : oh;

				chunk_fill(&cc, g, n, oy0, oy1, pt);
				fold(stats, g, pt, (size_t)((oy1 - oy0) * ow), true, scratch);
			}
	stats->rows += (uint64_t)(dims[0] * oh * ow);
	free(pt);
	return 0;
}
