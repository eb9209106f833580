/* SPDX-License-Identifier: MIT */
/*
 * Streaming input statistics of one layer (SPEC 12): the sums a
 * calibration-aware sparsifier needs, accumulated batch by batch so that
 * memory is bounded by the statistics, never by the activations.
 *
 * For a layer whose 2-D weight view is [out, dim] and whose inputs are the
 * rows x of X (MatMul/Gemm: rows of A; Conv: im2col patches), per weight
 * group g (Conv groups; 1 for Linear):
 *   sq[g][j] = sum over rows of x_j^2        (Wanda's ||X_j||_2^2)
 *   h[g]     = sum over rows of x^T x         (SparseGPT's H, when full),
 *              its upper triangle packed row by row (half the memory)
 * Folding takes the caller's scratch of dim * dim floats (one buffer serves
 * every layer of a run).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct opass_stats {
	size_t dim;        /* features per row */
	size_t n_groups;   /* Conv groups (1 for Linear) */
	bool full;         /* h is accumulated */
	float *h;          /* n_groups * dim * (dim + 1) / 2, packed upper triangles */
	double *sq;        /* n_groups * dim */
	uint64_t rows;     /* rows seen per group */
};

/* Conv geometry (2-D; 1-D convs use height 1). */
struct opass_conv_geom {
	int64_t channels;      /* C of the input */
	int64_t groups;
	int64_t kernel[2];     /* kh, kw */
	int64_t stride[2];
	int64_t dilation[2];
	int64_t pads[4];       /* top, left, bottom, right */
};

int opass_stats_init(struct opass_stats *stats, size_t dim, size_t n_groups, bool full);
void opass_stats_fini(struct opass_stats *stats);

/* Add rows x[rows][dim] (row-major) to group g's sums. */
int opass_stats_add_rows(struct opass_stats *stats, size_t g, const float *x, size_t rows,
			 float *scratch);

/* Add the im2col patches of a Conv input x[n][c][h][w] (dims: n, c, h, w);
 * dim must be channels / groups * kh * kw, in torch's weight.flatten(1)
 * order (channel, then kernel row, then kernel column). */
int opass_stats_add_conv(struct opass_stats *stats, const struct opass_conv_geom *geom,
			 const float *x, const int64_t dims[4], float *scratch);

/* Output size of a Conv along one axis; -1 when the geometry is invalid. */
int64_t opass_conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t dilation,
			    int64_t pad_begin, int64_t pad_end);

/* Group g's H as a full symmetric matrix into out[dim][dim]. */
void opass_stats_unpack(const struct opass_stats *stats, size_t g, float *out);
