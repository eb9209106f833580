/* SPDX-License-Identifier: MIT */
/*
 * Sparse-weight matrix products for the ai.onnx_pass custom ops (ort_ops.c),
 * usable without ONNX Runtime.
 *
 *   Y[M, N] = A[M, K] · B[K, N] (+ bias[N])     B constant and sparse
 *
 * The weight is stored as B^T ([N, K], the [out, in] orientation of a torch
 * Linear weight) in block-sparse rows (BSR; CSR is BSR with 1x1 blocks):
 * blocks of br x bc elements aligned at multiples of (br, bc); block b of
 * block row i covers rows n = i*br ... i*br+br-1 and columns
 * k = col[b]*bc ... col[b]*bc+bc-1, its values row-major at values[b*br*bc].
 * The last block row / column may reach past N / K: those elements must be 0.
 *
 * Why B^T by output row: A is packed once per call into column tiles
 * At[K][64] (64 rows of A, transposed; AVX2 matmuls pack 32 or 16 rows
 * from 64 rows of A on, see tile_max_pick in sparse_kernels.c), so each
 * nonzero w(n, k) becomes one broadcast-multiply-add of w by the contiguous
 * row At[k] into output row n's accumulators, which stay in registers
 * (64 rows: AVX-512 4 zmm, AVX2 8 ymm).
 * Every nonzero costs the same vector work as a dense GEMM's inner step
 * without any wasted multiply by zero; 4x1 blocks (4 outputs, one k) reuse
 * each At row for 4 outputs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "onnxpass/onnxpass.h"

/* Kernel variants; OPASS_SPMM_ISA_AUTO picks the best the CPU has. */
enum opass_spmm_isa {
	OPASS_SPMM_ISA_AUTO,
	OPASS_SPMM_ISA_GENERIC,
	OPASS_SPMM_ISA_AVX2,
	OPASS_SPMM_ISA_AVX512,
};

/* Block-sparse rows of B^T, as the custom op's inputs carry them. */
struct opass_bsr {
	int64_t n, k;              /* B^T is [n, k] */
	int64_t br, bc;            /* block shape */
	int64_t n_blocks;
	float *values;             /* [n_blocks * br * bc] */
	int64_t *col;              /* [n_blocks] block column */
	int64_t *row_ptr;          /* [ceil(n / br) + 1] */
};

/* Build the BSR of a dense row-major bt [n, k]; a block is stored when any of
 * its elements is nonzero (-0.0 counts as zero). */
int opass_bsr_from_dense(const float *bt, int64_t n, int64_t k, int64_t br, int64_t bc,
			 struct opass_bsr **ret_bsr, struct onnxpass_error *err);
struct opass_bsr *opass_bsr_free(struct opass_bsr *bsr);

/* Number of blocks a BSR of bt would store (any nonzero element), and the
 * number of nonzero elements, without building it. */
void opass_bsr_count(const float *bt, int64_t n, int64_t k, int64_t br, int64_t bc,
		     int64_t *ret_blocks, int64_t *ret_nonzero);

/* The kernel's own copy of a weight. */
struct opass_spmm;

/*
 * Validate BSR arrays (as in struct opass_bsr; col and row_ptr are INT32
 * when index64 is false, else INT64) and build the kernel's weight. Sizes
 * are element counts; blocks may come in any order within a row (duplicates
 * add up). -EINVAL with a message for anything inconsistent: row_ptr not
 * starting at 0, decreasing or not ending at the block count, block columns
 * out of range, nonzero padding, a bad block shape (1..16 each).
 */
int opass_spmm_new(int64_t n, int64_t k, int64_t br, int64_t bc,
		   const float *values, size_t n_values,
		   const void *col, size_t n_col, const void *row_ptr, size_t n_row_ptr,
		   bool index64, struct opass_spmm **ret_spmm, struct onnxpass_error *err);
struct opass_spmm *opass_spmm_free(struct opass_spmm *spmm);

/* Free the weight's one-row format (products of one to four rows of A on
 * AVX-512, kept beside the block rows): a conv weight never runs from it.
 * Those products then run from the block rows. */
void opass_spmm_one_row_drop(struct opass_spmm *spmm);

/*
 * The weight as one flat buffer (for an allocator-owned copy that several
 * sessions share): its size, writing it (buf 64-byte aligned, of that size),
 * and a weight whose arrays point into such a buffer, which must outlive it
 * (opass_spmm_free() frees only the view). -EINVAL for a buffer this library
 * did not write.
 */
size_t opass_spmm_flat_size(const struct opass_spmm *spmm);
void opass_spmm_flat_write(const struct opass_spmm *spmm, void *buf);
int opass_spmm_flat_view(const void *buf, size_t size, struct opass_spmm **ret_spmm);

/* The kernel's weight straight from a dense row-major bt [n, k] = B^T, in
 * br x bc blocks (1x1: CSR). */
int opass_spmm_from_dense(const float *bt, int64_t n, int64_t k, int64_t br, int64_t bc,
			  struct opass_spmm **ret_spmm, struct onnxpass_error *err);

struct opass_spmm_exec {
	/* run fn(data, i) for every i in [0, n), possibly in parallel; NULL: own pthreads */
	void (*parallel_for)(void *ctx, void (*fn)(void *data, size_t i), size_t n, void *data);
	void *ctx;
	/* own pthreads: how many (0 = online CPUs); with parallel_for: how many
	 * threads it runs on, to split work evenly (0 = unknown) */
	unsigned threads;
	enum opass_spmm_isa isa;
	/* scratch memory (64-byte aligned); NULL: aligned_alloc/free */
	void *(*alloc)(void *ctx, size_t size);
	void (*release)(void *ctx, void *p);
};

/*
 * y[m, n] = sum_k a[m, k] * B[k, n] (+ bias), a [m, K] and y [m, N]
 * row-major. bias is NULL, or n_bias = 1 (scalar) or N values. exec may be
 * NULL (defaults). -ENOMEM, or -ENOTSUP for an ISA the CPU lacks.
 */
int opass_spmm_run(const struct opass_spmm *spmm, const float *a, int64_t m,
		   const float *bias, size_t n_bias, float *y,
		   const struct opass_spmm_exec *exec);

/* The same, then y = max(y, 0) when relu (a following Relu, fused). */
int opass_spmm_run_relu(const struct opass_spmm *spmm, const float *a, int64_t m,
			const float *bias, size_t n_bias, bool relu, float *y,
			const struct opass_spmm_exec *exec);

/*
 * Where element (m, n) of the product goes: y[m / rows * row_group + m % rows
 * * row + n / cols * col_group + n % cols * col]. Row-major [M, N] is rows =
 * M, row = N, cols = N, col = 1; the product viewed as [M / rows, rows,
 * N / cols, cols] and transposed (multi-head attention's Reshape and
 * Transpose of a projection) takes the transposed strides.
 */
struct opass_spmm_layout {
	int64_t rows, row, row_group;
	int64_t cols, col, col_group;
};

/* opass_spmm_run_relu storing by layout (NULL: row-major [M, N]); rows and
 * cols must be >= 1. */
int opass_spmm_run_layout(const struct opass_spmm *spmm, const float *a, int64_t m,
			  const float *bias, size_t n_bias, bool relu,
			  const struct opass_spmm_layout *layout, float *y,
			  const struct opass_spmm_exec *exec);

/* Which CPU's costs the AVX-512 model takes (flags of opass_spmm_predict_win). */
enum {
	OPASS_COST_INTEL = 1 << 0,    /* an Intel CPU's (else an AMD Zen 5's) */
};

/* The cost flags of the CPU this runs on. */
unsigned opass_spmm_cost_flags(void);

/*
 * Cost model: is y = a · B with a [m, k] and B [k, n] holding `nonzero`
 * nonzeros predicted to run faster with these kernels (of that ISA; AUTO: the
 * best the CPU has) than with a dense GEMM (ORT's MLAS) on the same threads?
 * m < 0: rows not known (the prediction must then hold for every m).
 * run_bytes: the bytes a run of the whole model touches (its weights and
 * activations: whether a weight stays in cache between runs), 0 when not
 * known. flags: OPASS_COST_*.
 */
bool opass_spmm_predict_win(enum opass_spmm_isa isa, int64_t m, int64_t k, int64_t n,
			    int64_t nonzero, int64_t run_bytes, unsigned flags);

/* How a convolution runs (flags of opass_spmm_predict_win_conv). */
enum {
	OPASS_CONV_PACKS = 1 << 0,    /* packs patches (opass_conv_packs) */
	OPASS_CONV_CHAINED = 1 << 1,  /* its neighbours are claimed too: no layout reorders */
};

/* The same for a group-1 convolution against ORT's Conv: m output positions
 * (all images; < 0 when not known), k = c_in * kh * kw, n = c_out. */
bool opass_spmm_predict_win_conv(enum opass_spmm_isa isa, int64_t m, int64_t k, int64_t n,
				 int64_t nonzero, int64_t c_in, unsigned flags);

/* Does a convolution of this kernel, stride and dilation pack its patches
 * (rather than read a padded copy of x)? */
bool opass_conv_packs(const int64_t kernel[2], const int64_t stride[2], const int64_t dilation[2]);

/* A 2-D convolution (NCHW, group 1) whose weight [c_out, c_in, kernel_h,
 * kernel_w] is the spmm's B^T [n = c_out, k = c_in * kernel_h * kernel_w]. */
struct opass_conv {
	int64_t c_in, in_h, in_w;
	int64_t kernel_h, kernel_w;
	int64_t stride_h, stride_w;
	int64_t pad_top, pad_left;          /* bottom/right padding only shapes out_h/out_w */
	int64_t dilation_h, dilation_w;
	int64_t out_h, out_w;
	/* after the bias, y += residual (NULL: none; else shaped as y), then
	 * y = max(y, 0) when relu: a following Add and Relu fused */
	const float *residual;
	bool relu;
	/* opass_conv_offsets_new's offsets for this same geometry and weight,
	 * or NULL: a conv that reads a padded copy of x remaps the weight's
	 * columns to offsets in it on every call */
	const int32_t *offsets;
};

/*
 * The offsets in the padded copy of x (see opass_spmm_run_conv) of every
 * nonzero of the weight, for one geometry: malloc'd, one int32 per block, for
 * opass_conv.offsets, so that a caller running the same conv again skips the
 * remap. -ENOTSUP when this conv does not read a padded copy (it packs).
 */
int opass_conv_offsets_new(const struct opass_spmm *spmm, const struct opass_conv *conv,
			   int32_t **ret_offsets);

/* Output size along one axis, or -EINVAL when the kernel does not fit. */
int64_t opass_conv_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_begin,
			       int64_t pad_end, int64_t dilation);

/*
 * y [batch, n, out_h, out_w] = conv(x [batch, c_in, in_h, in_w], W) (+ bias,
 * one or n values), as sparse x dense products over tiles of output
 * positions: the kernels read a zero-padded copy of x split by stride phase
 * in place (stride 1, and kernels of two taps per phase: see
 * opass_conv_packs), or each tile's input patches are gathered into the
 * packed layout they read (implicit im2col; a 1x1 convolution copies rows of
 * x, or reads its full tiles in place).
 */
int opass_spmm_run_conv(const struct opass_spmm *spmm, const struct opass_conv *conv,
			const float *x, int64_t batch, const float *bias, size_t n_bias, float *y,
			const struct opass_spmm_exec *exec);

/* Is this kernel variant usable on this CPU? */
bool opass_spmm_isa_supported(enum opass_spmm_isa isa);
