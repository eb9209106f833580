/* SPDX-License-Identifier: MIT */
/* Sparse-weight products (layout and rationale: sparse_kernels.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "parallel.h"
#include "sparse_kernels.h"
#include "spmm_impl.h"

#define CHUNK_N 64     /* outputs per work item (at most) */
/*
 * From WHOLE_TILES_MIN tiles on, or when the tiles split evenly among the
 * threads, a work item is whole tiles: the thread that packs a tile's A is the
 * one that reads it. (tile, chunk) items let both of ORT's threads read every
 * tile's packed A, half of it from the other core's cache: the encoder at 128
 * tokens (2 tiles), 90 and 95 % zeros, 2 threads, alternating builds, ran
 * 22.2-22.7 against 23.5-26.6 ms and 15.7-16.1 against 16.7-17.2 ms.
 */
#define WHOLE_TILES_MIN 8
#define WHOLE_ITEMS 16     /* ... at most this many work items of consecutive tiles */
#define PACK_ITEMS 8       /* below it, the tiles are packed in about this many parts */
#define PACK_GATHER_TAPS 49 /* kernels of up to this many taps pack by gathers, if the ISA has them */
#define PACK_GATHER_ROW 16  /* and 1x1 kernels whose output rows are at most this long */
/*
 * A call of fewer products (nonzeros x rows of A) runs on the calling thread:
 * waking the others took longer than the work. Chains of 48 MatMuls of one
 * row at 95 % zeros, every node claimed, 2 threads (ORT's pool): 200x200 took
 * 5.5 us a node in parallel against 2.7 us on the CPU EP.
 */
#define SERIAL_PRODUCTS 16384.0
#define BLOCK_MAX 16

/* Which thread packed each copy of a one-tile job's A (its pthread_self(),
 * 0 while unclaimed; slots are claimed in order). */
struct tile_copies {
	atomic_size_t used;
	atomic_uintptr_t owner[OPASS_MAX_THREADS];
};

struct spmm_job {
	const struct opass_spmm *s;
	const float *a;
	const float *bias;
	size_t n_bias;
	float *y;
	bool relu;                 /* matmul: y = max(y, 0) after the bias */
	struct opass_spmm_layout layout; /* matmul: where y's elements go */
	int64_t m;                 /* rows of A (conv: output positions of one image) */
	int64_t tile_max;          /* rows of A per tile (the last of an image may have fewer) */
	int64_t tiles_per_image;   /* matmul: all tiles */
	const struct opass_conv *conv; /* or NULL: a matmul */
	bool direct;               /* 1x1 conv, stride 1, no padding: full tiles read x in place */
	const struct conv_padded *padded; /* conv over a padded copy of x, or NULL */
	float *at;                 /* packed tiles [tiles][k_pad][tile_stride] */
	size_t tile_stride;        /* floats per packed row: the first (widest) tile's width */
	int64_t rows_per_chunk;    /* block rows per work item */
	size_t pack_parts;         /* work items that pack one tile */
	size_t n_chunks;
	size_t tiles, tiles_per_item; /* whole tiles: consecutive ones per work item */
	size_t copies;             /* one tile, copies work items: a packed copy per thread */
	struct tile_copies *copy_slots;
	bool serial;               /* too little work to wake other threads for */
	bool m1;                   /* one to M1_ROWS rows of A: the one-row format's kernel */
	struct spmm_kernels kernels;
};

/*
 * A convolution reads a zero-padded copy of x in place instead of packing
 * patches. The copy is split by stride phase (space to depth): plane (c, py,
 * px) holds padded rows py, py + stride_h, ... and columns px, px +
 * stride_w, ..., hq x wq of them. Output position q = oy * wq + ox (ox < wq;
 * the columns ox >= out_w are computed and dropped) under kernel tap (c, ky,
 * kx) is then x_phase[off + q], with ty = ky * dilation_h and tx likewise,
 * off = ((c * stride_h + ty % stride_h) * stride_w + tx % stride_w) * hq * wq
 * + ty / stride_h * wq + tx / stride_w: a tile of consecutive q is a
 * contiguous run of every tap's row. The kernels read at + off[nonzero] (ld
 * 1): s is the weight with its column indices replaced by those offsets.
 */
struct conv_padded {
	int64_t hq, wq;            /* rows and columns of a phase plane */
	int64_t image;             /* floats per image: c_in * stride_h * stride_w * hq * wq */
	float *x;                  /* [batch][c_in][stride_h][stride_w][hq][wq] + slack */
	const int32_t *of_col;     /* off of every column of the weight */
	struct opass_spmm s;
};

static int64_t div_up(int64_t a, int64_t b)
{
	return (a + b - 1) / b;
}

/* ---- BSR from dense ---------------------------------------------------- */

static int64_t block_nonzeros(const float *bt, int64_t n, int64_t k, int64_t row, int64_t col,
			      int64_t br, int64_t bc)
{
	int64_t count = 0;

	for (int64_t r = row * br; r < (row + 1) * br && r < n; r++)
		for (int64_t c = col * bc; c < (col + 1) * bc && c < k; c++)
			count += bt[r * k + c] != 0.0f;
	return count;
}

void opass_bsr_count(const float *bt, int64_t n, int64_t k, int64_t br, int64_t bc,
		     int64_t *ret_blocks, int64_t *ret_nonzero)
{
	int64_t blocks = 0, nonzero = 0;

	for (int64_t i = 0; i < div_up(n, br); i++)
		for (int64_t j = 0; j < div_up(k, bc); j++) {
			int64_t nz = block_nonzeros(bt, n, k, i, j, br, bc);

			blocks += nz > 0;
			nonzero += nz;
		}
	*ret_blocks = blocks;
	*ret_nonzero = nonzero;
}

static void block_copy(const float *bt, int64_t n, int64_t k, int64_t row, int64_t col,
		       int64_t br, int64_t bc, float *out)
{
	for (int64_t r = 0; r < br; r++)
		for (int64_t c = 0; c < bc; c++) {
			int64_t rr = row * br + r, cc = col * bc + c;

			out[r * bc + c] = rr < n && cc < k ? bt[rr * k + cc] : 0.0f;
		}
}

static void bsr_fill(struct opass_bsr *bsr, const float *bt)
{
	int64_t b = 0, n = bsr->n, k = bsr->k, br = bsr->br, bc = bsr->bc;

	for (int64_t i = 0; i < div_up(n, br); i++) {
		bsr->row_ptr[i] = b;
		for (int64_t j = 0; j < div_up(k, bc); j++) {
			if (block_nonzeros(bt, n, k, i, j, br, bc) == 0)
				continue;
			bsr->col[b] = j;
			block_copy(bt, n, k, i, j, br, bc, bsr->values + b * br * bc);
			b++;
		}
	}
	bsr->row_ptr[div_up(n, br)] = b;
}

struct opass_bsr *opass_bsr_free(struct opass_bsr *bsr)
{
	if (!bsr)
		return NULL;
	free(bsr->values);
	free(bsr->col);
	free(bsr->row_ptr);
	free(bsr);
	return NULL;
}

int opass_bsr_from_dense(const float *bt, int64_t n, int64_t k, int64_t br, int64_t bc,
			 struct opass_bsr **ret_bsr, struct onnxpass_error *err)
{
	struct opass_bsr *bsr;
	int64_t blocks, nonzero;

	if (n < 0 || k < 0 || br < 1 || bc < 1 || br > BLOCK_MAX || bc > BLOCK_MAX)
		return opass_error(err, -EINVAL, "bad BSR shape [%lld, %lld] with %lldx%lld blocks",
				   (long long)n, (long long)k, (long long)br, (long long)bc);
	opass_bsr_count(bt, n, k, br, bc, &blocks, &nonzero);
	bsr = calloc(1, sizeof(*bsr));
	if (!bsr)
		return opass_error(err, -ENOMEM, "out of memory");
	*bsr = (struct opass_bsr){ .n = n, .k = k, .br = br, .bc = bc, .n_blocks = blocks };
	bsr->values = malloc((size_t)(blocks * br * bc + 1) * sizeof(float));
	bsr->col = malloc((size_t)(blocks + 1) * sizeof(int64_t));
	bsr->row_ptr = malloc((size_t)(div_up(n, br) + 1) * sizeof(int64_t));
	if (!bsr->values || !bsr->col || !bsr->row_ptr) {
		opass_bsr_free(bsr);
		return opass_error(err, -ENOMEM, "out of memory");
	}
	bsr_fill(bsr, bt);
	*ret_bsr = bsr;
	return 0;
}

/* ---- the kernel's weight ----------------------------------------------- */

static int64_t index_at(const void *p, bool index64, size_t i)
{
	return index64 ? ((const int64_t *)p)[i] : ((const int32_t *)p)[i];
}

struct opass_spmm *opass_spmm_free(struct opass_spmm *spmm)
{
	if (!spmm)
		return NULL;
	if (!spmm->borrowed) {
		free(spmm->row_ptr);
		free(spmm->k0);
		free(spmm->k16);
		free(spmm->values);
		spmm_m1_free(&spmm->m1);
	}
	free(spmm);
	return NULL;
}

static int spmm_check_shape(int64_t n, int64_t k, int64_t br, int64_t bc, size_t n_values,
			    size_t n_col, size_t n_row_ptr, struct onnxpass_error *err)
{
	if (n < 0 || k < 0 || n > INT32_MAX || k > INT32_MAX / TILE_MAX)
		return opass_error(err, -EINVAL, "bad weight shape N=%lld K=%lld",
				   (long long)n, (long long)k);
	if (br < 1 || bc < 1 || br > BLOCK_MAX || bc > BLOCK_MAX)
		return opass_error(err, -EINVAL, "block shape %lldx%lld: each side must be 1..%d",
				   (long long)br, (long long)bc, BLOCK_MAX);
	if (n_row_ptr != (size_t)div_up(n, br) + 1)
		return opass_error(err, -EINVAL, "row_ptr has %zu entries, expected %lld "
				   "(ceil(N / block_rows) + 1)", n_row_ptr,
				   (long long)div_up(n, br) + 1);
	if (n_col > INT32_MAX || n_values != n_col * (size_t)(br * bc))
		return opass_error(err, -EINVAL, "%zu values for %zu blocks of %lldx%lld",
				   n_values, n_col, (long long)br, (long long)bc);
	return 0;
}

static int spmm_check_rows(const void *row_ptr, size_t n_row_ptr, size_t n_col, bool index64,
			   struct onnxpass_error *err)
{
	if (index_at(row_ptr, index64, 0) != 0)
		return opass_error(err, -EINVAL, "row_ptr must start at 0");
	for (size_t i = 1; i < n_row_ptr; i++)
		if (index_at(row_ptr, index64, i) < index_at(row_ptr, index64, i - 1))
			return opass_error(err, -EINVAL, "row_ptr decreases at %zu", i);
	if (index_at(row_ptr, index64, n_row_ptr - 1) != (int64_t)n_col)
		return opass_error(err, -EINVAL, "row_ptr ends at %lld, but there are %zu blocks",
				   (long long)index_at(row_ptr, index64, n_row_ptr - 1), n_col);
	return 0;
}

/* Elements of a block past the weight's edge (last block row/column) must be 0. */
static bool block_padding_zero(const struct opass_spmm *s, int64_t row, int64_t b)
{
	const float *v = s->values + b * s->br * s->bc;

	for (int64_t r = 0; r < s->br; r++)
		for (int64_t c = 0; c < s->bc; c++)
			if ((row * s->br + r >= s->n || s->k0[b] + c >= s->k) && v[r * s->bc + c] != 0.0f)
				return false;
	return true;
}

static int spmm_fill(struct opass_spmm *s, const void *col, const void *row_ptr, bool index64,
		     struct onnxpass_error *err)
{
	int64_t block_cols = div_up(s->k, s->bc);

	for (int64_t i = 0; i <= s->n_block_rows; i++)
		s->row_ptr[i] = (int32_t)index_at(row_ptr, index64, (size_t)i);
	for (int64_t i = 0; i < s->n_block_rows; i++)
		for (int32_t b = s->row_ptr[i]; b < s->row_ptr[i + 1]; b++) {
			int64_t j = index_at(col, index64, (size_t)b);

			if (j < 0 || j >= block_cols)
				return opass_error(err, -EINVAL, "block column %lld out of range "
						   "[0, %lld)", (long long)j, (long long)block_cols);
			s->k0[b] = (int32_t)(j * s->bc);
			if (!block_padding_zero(s, i, b))
				return opass_error(err, -EINVAL, "block %d reaches past the weight's "
						   "edge with nonzero values", b);
		}
	return 0;
}

/* 16-bit column indices when every block column fits. */
static int spmm_compact(struct opass_spmm *s, size_t n_blocks, struct onnxpass_error *err)
{
	if (s->k_pad > 65536)
		return 0;
	s->k16 = malloc((n_blocks + 1) * sizeof(*s->k16));
	if (!s->k16)
		return opass_error(err, -ENOMEM, "out of memory");
	for (size_t b = 0; b < n_blocks; b++)
		s->k16[b] = (uint16_t)s->k0[b];
	return 0;
}

int opass_spmm_new(int64_t n, int64_t k, int64_t br, int64_t bc,
		   const float *values, size_t n_values,
		   const void *col, size_t n_col, const void *row_ptr, size_t n_row_ptr,
		   bool index64, struct opass_spmm **ret_spmm, struct onnxpass_error *err)
{
	struct opass_spmm *s;
	int r;

	r = spmm_check_shape(n, k, br, bc, n_values, n_col, n_row_ptr, err);
	if (r == 0)
		r = spmm_check_rows(row_ptr, n_row_ptr, n_col, index64, err);
	if (r < 0)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s)
		return opass_error(err, -ENOMEM, "out of memory");
	*s = (struct opass_spmm){ .n = n, .k = k, .k_pad = div_up(k, bc) * bc, .br = (int)br,
				  .bc = (int)bc, .n_block_rows = div_up(n, br),
				  .n_blocks = (int64_t)n_col };
	s->row_ptr = malloc(n_row_ptr * sizeof(*s->row_ptr));
	s->k0 = malloc((n_col + 1) * sizeof(*s->k0));
	s->values = malloc((n_values + 1) * sizeof(*s->values));
	if (!s->row_ptr || !s->k0 || !s->values)
		r = opass_error(err, -ENOMEM, "out of memory");
	if (r == 0) {
		memcpy(s->values, values, n_values * sizeof(*values));
		r = spmm_fill(s, col, row_ptr, index64, err);
	}
	if (r == 0)
		r = spmm_compact(s, n_col, err);
	if (r == 0 && spmm_m1_build(s) < 0)
		r = opass_error(err, -ENOMEM, "out of memory");
	if (r < 0) {
		opass_spmm_free(s);
		return r;
	}
	*ret_spmm = s;
	return 0;
}

int opass_spmm_from_dense(const float *bt, int64_t n, int64_t k, int64_t br, int64_t bc,
			  struct opass_spmm **ret_spmm, struct onnxpass_error *err)
{
	struct opass_bsr *bsr = NULL;
	int r;

	r = opass_bsr_from_dense(bt, n, k, br, bc, &bsr, err);
	if (r < 0)
		return r;
	r = opass_spmm_new(n, k, br, bc, bsr->values, (size_t)(bsr->n_blocks * br * bc),
			   bsr->col, (size_t)bsr->n_blocks, bsr->row_ptr,
			   (size_t)((n + br - 1) / br + 1), true, ret_spmm, err);
	opass_bsr_free(bsr);
	return r;
}

/* ---- one flat buffer (weights shared between sessions) --------------------- */

#define FLAT_MAGIC 0x32746c66706f6e78ull   /* "xnopflt2" */
#define FLAT_ALIGN 64

struct spmm_flat {
	uint64_t magic;
	int64_t n, k, k_pad, n_block_rows, n_blocks;
	int64_t m1_slices, m1_windows, m1_steps, m1_values;   /* m1_slices 0: no one-row format */
	int32_t br, bc, has_k16, pad;
};

/* The arrays of a flat buffer, in order. */
enum { FLAT_ROW_PTR, FLAT_K0, FLAT_K16, FLAT_VALUES, FLAT_M1_STEP, FLAT_M1_VALUE,
       FLAT_M1_STEPS, FLAT_M1_IDX, FLAT_M1_VALUES, _FLAT_ARRAYS };

static size_t align_up(size_t v)
{
	return (v + FLAT_ALIGN - 1) / FLAT_ALIGN * FLAT_ALIGN;
}

/* Offsets and sizes of the arrays in a flat buffer, and its size. */
static size_t flat_layout(const struct spmm_flat *h, size_t off[_FLAT_ARRAYS],
			  size_t bytes[_FLAT_ARRAYS])
{
	size_t blocks = (size_t)h->n_blocks, slices = (size_t)h->m1_slices;
	size_t at = align_up(sizeof(*h));

	bytes[FLAT_ROW_PTR] = ((size_t)h->n_block_rows + 1) * sizeof(int32_t);
	bytes[FLAT_K0] = blocks * sizeof(int32_t);
	bytes[FLAT_K16] = h->has_k16 ? blocks * sizeof(uint16_t) : 0;
	bytes[FLAT_VALUES] = blocks * (size_t)h->br * (size_t)h->bc * sizeof(float);
	bytes[FLAT_M1_STEP] = slices ? (slices + 1) * sizeof(int64_t) : 0;
	bytes[FLAT_M1_VALUE] = bytes[FLAT_M1_STEP];
	bytes[FLAT_M1_STEPS] = slices * (size_t)h->m1_windows;
	bytes[FLAT_M1_IDX] = (size_t)h->m1_steps * 16;
	bytes[FLAT_M1_VALUES] = (size_t)h->m1_values * sizeof(float);
	for (int i = 0; i < _FLAT_ARRAYS; i++) {
		off[i] = at;
		at = align_up(at + bytes[i]);
	}
	return at;
}

/* A weight without the one-row format has its counts 0 (never built, or freed). */
static struct spmm_flat flat_header(const struct opass_spmm *s)
{
	return (struct spmm_flat){ .magic = FLAT_MAGIC, .n = s->n, .k = s->k, .k_pad = s->k_pad,
				   .n_block_rows = s->n_block_rows, .n_blocks = s->n_blocks,
				   .m1_slices = s->m1.n_slices, .m1_windows = s->m1.n_windows,
				   .m1_steps = s->m1.n_steps, .m1_values = s->m1.n_values,
				   .br = s->br, .bc = s->bc, .has_k16 = s->k16 != NULL };
}

size_t opass_spmm_flat_size(const struct opass_spmm *spmm)
{
	struct spmm_flat h = flat_header(spmm);
	size_t off[_FLAT_ARRAYS], bytes[_FLAT_ARRAYS];

	return flat_layout(&h, off, bytes);
}

void opass_spmm_flat_write(const struct opass_spmm *spmm, void *buf)
{
	const struct spmm_m1 *m1 = &spmm->m1;
	const void *src[_FLAT_ARRAYS] = { spmm->row_ptr, spmm->k0, spmm->k16, spmm->values,
					  m1->slice_step, m1->slice_value, m1->steps, m1->idx,
					  m1->values };
	struct spmm_flat h = flat_header(spmm);
	size_t off[_FLAT_ARRAYS], bytes[_FLAT_ARRAYS];
	char *p = buf;

	memset(p, 0, flat_layout(&h, off, bytes));
	memcpy(p, &h, sizeof(h));
	for (int i = 0; i < _FLAT_ARRAYS; i++)
		if (bytes[i])
			memcpy(p + off[i], src[i], bytes[i]);
}

/* The one-row format of a flat buffer (none when it has no slices). */
static struct spmm_m1 flat_m1(const struct spmm_flat *h, char *p, const size_t off[_FLAT_ARRAYS])
{
	if (h->m1_slices == 0)
		return (struct spmm_m1){ 0 };
	return (struct spmm_m1){ .n_slices = h->m1_slices, .n_windows = h->m1_windows,
				 .n_steps = h->m1_steps, .n_values = h->m1_values,
				 .slice_step = (int64_t *)(void *)(p + off[FLAT_M1_STEP]),
				 .slice_value = (int64_t *)(void *)(p + off[FLAT_M1_VALUE]),
				 .steps = (uint8_t *)(p + off[FLAT_M1_STEPS]),
				 .idx = (uint8_t *)(p + off[FLAT_M1_IDX]),
				 .values = (float *)(void *)(p + off[FLAT_M1_VALUES]) };
}

int opass_spmm_flat_view(const void *buf, size_t size, struct opass_spmm **ret_spmm)
{
	struct spmm_flat h;
	struct opass_spmm *s;
	size_t off[_FLAT_ARRAYS], bytes[_FLAT_ARRAYS];
	char *p = (char *)buf;

	if (!buf || size < sizeof(h))
		return -EINVAL;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != FLAT_MAGIC || h.n_blocks < 0 || h.n_block_rows < 0 || h.m1_slices < 0 ||
	    h.m1_windows < 0 || h.m1_steps < 0 || h.m1_values < 0 ||
	    flat_layout(&h, off, bytes) != size)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = (struct opass_spmm){ .n = h.n, .k = h.k, .k_pad = h.k_pad, .br = h.br, .bc = h.bc,
				  .n_block_rows = h.n_block_rows, .n_blocks = h.n_blocks,
				  .row_ptr = (int32_t *)(void *)(p + off[FLAT_ROW_PTR]),
				  .k0 = (int32_t *)(void *)(p + off[FLAT_K0]),
				  .k16 = h.has_k16 ? (uint16_t *)(void *)(p + off[FLAT_K16]) : NULL,
				  .values = (float *)(void *)(p + off[FLAT_VALUES]),
				  .m1 = flat_m1(&h, p, off), .borrowed = true };
	*ret_spmm = s;
	return 0;
}

bool opass_spmm_isa_supported(enum opass_spmm_isa isa)
{
	switch (isa) {
	case OPASS_SPMM_ISA_AUTO:
	case OPASS_SPMM_ISA_GENERIC:
		return true;
#if defined(__x86_64__) && defined(__GNUC__)
	case OPASS_SPMM_ISA_AVX2:
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	case OPASS_SPMM_ISA_AVX512:
		return __builtin_cpu_supports("avx512f");
#endif
	default:
		return false;
	}
}

/*
 * Rows of A per tile. From 64 rows of A on, AVX2 tiles of 32 rows (the kernel
 * keeps two nonzeros in flight, four ymm each; a 64-row tile runs one at a
 * time, eight ymm each, and its packed copy of A is twice as large) ran
 * faster than tiles of 64 on a shared 2-core Zen 2 (AVX2, 512 KiB L2 per
 * core): one MatMul 768x3072 / 3072x768, 90 and 95 % zeros, 2 threads, old
 * and new code alternating in one process, median ratio of paired runs
 * 0.99-1.6x at 64 rows, 1.17-1.9x at 128 and 512. Where a 32-row tile's
 * packed copy of A outgrows NARROW_TILE_BYTES (K > 1024), 16-row tiles ran
 * 5-18 % faster again at K = 2304, 3072 and 4608 (one thread), while at
 * K = 768 and 1024 they lost 8-15 %. Below 64 rows the tiles stay as they
 * were; AVX-512 and generic C keep 64 (not measured). Convolutions keep 64:
 * with 32 and 16 their kernels ran 0.7-0.9x as fast on most of ResNet-50's
 * group-1 Convs at batch 1 (90 % zeros, 2 threads), in place and packed.
 */
#define NARROW_TILE_BYTES (128 * 1024)

static int64_t tile_max_pick(enum opass_spmm_isa isa, const struct spmm_job *job)
{
	if (isa != OPASS_SPMM_ISA_AVX2 || job->conv || job->m < TILE_MAX)
		return TILE_MAX;
	if (job->s->k_pad * 32 * (int64_t)sizeof(float) <= NARROW_TILE_BYTES)
		return 32;
	return 16;
}

/* The job's kernels for an ISA; -ENOTSUP when the CPU lacks it. */
static int kernels_pick(enum opass_spmm_isa isa, struct spmm_job *job)
{
	if (isa == OPASS_SPMM_ISA_AUTO) {
		if (opass_spmm_isa_supported(OPASS_SPMM_ISA_AVX512))
			isa = OPASS_SPMM_ISA_AVX512;
		else if (opass_spmm_isa_supported(OPASS_SPMM_ISA_AVX2))
			isa = OPASS_SPMM_ISA_AVX2;
	}
	if (!opass_spmm_isa_supported(isa))
		return -ENOTSUP;
	if (isa == OPASS_SPMM_ISA_AVX512)
		spmm_kernels_avx512(&job->kernels);
	else if (isa == OPASS_SPMM_ISA_AVX2)
		spmm_kernels_avx2(&job->kernels);
	else
		spmm_kernels_generic(&job->kernels);
	job->tile_max = tile_max_pick(isa, job);
	return 0;
}

/* ---- running: pack A, then (tile, chunk) work items ---------------------- */

static float bias_at(const struct spmm_job *job, int64_t n)
{
	if (!job->bias)
		return 0.0f;
	return job->bias[job->n_bias == 1 ? 0 : n];
}

/* Rows of A in tile t and its width class. */
static int64_t tile_rows(const struct spmm_job *job, size_t t, enum spmm_width *ret_w)
{
	int64_t rows = job->m - (int64_t)(t % (size_t)job->tiles_per_image) * job->tile_max;

	rows = rows < job->tile_max ? rows : job->tile_max;
	if (rows <= 1)
		*ret_w = SPMM_W1;
	else if (rows <= 4)
		*ret_w = SPMM_W4;
	else if (rows <= 8)
		*ret_w = SPMM_W8;
	else
		*ret_w = (enum spmm_width)(SPMM_W16 + (rows - 1) / 16);
	return rows;
}

/* at[k][i] = a[m0 + i][k] for one tile of width w, columns of part `part` of
 * `parts`; rows past m and columns past K are 0. Transposed in 16x16 blocks so
 * that reads and writes both stay in L1. */
static void matmul_pack(const struct spmm_job *job, size_t t, int64_t part, int64_t parts)
{
	int64_t k = job->s->k, k_pad = job->s->k_pad, m0 = (int64_t)t * job->tile_max;
	int64_t groups = div_up(k, 16), k0 = groups * part / parts * 16;
	int64_t k1 = groups * (part + 1) / parts * 16;
	enum spmm_width wc;
	int64_t rows = tile_rows(job, t, &wc), w = spmm_width_floats(wc);
	float *at = job->at + t * (size_t)k_pad * job->tile_stride;

	for (int64_t c0 = k0; c0 < k1 && c0 < k; c0 += 16) {
		int64_t c1 = c0 + 16 < k ? c0 + 16 : k;

		for (int64_t i0 = 0; i0 < rows; i0 += 16) {
			int64_t i1 = i0 + 16 < rows ? i0 + 16 : rows;

			if (job->kernels.transpose16 && c1 - c0 == 16 && i1 - i0 == 16) {
				job->kernels.transpose16(job->a + (m0 + i0) * k + c0, (size_t)k,
							 at + c0 * w + i0, (size_t)w, NULL, false);
				continue;
			}
			for (int64_t c = c0; c < c1; c++)
				for (int64_t i = i0; i < i1; i++)
					at[c * w + i] = job->a[(m0 + i) * k + c];
		}
		for (int64_t c = c0; rows < w && c < c1; c++)
			memset(at + c * w + rows, 0, (size_t)(w - rows) * sizeof(float));
	}
	if (part == parts - 1)
		memset(at + k * w, 0, (size_t)((k_pad - k) * w) * sizeof(float));
}

/* Offsets in y of rows (or columns) i0 .. i0 + n - 1 along one side of the
 * layout: count per group, stride within and between groups. */
static void layout_offsets(int64_t i0, int64_t n, int64_t count, int64_t stride, int64_t group,
			   int64_t *off)
{
	int64_t q = i0 / count, r = i0 % count;

	if (r + n <= count) { /* within one group (always so for row-major y) */
		for (int64_t i = 0; i < n; i++)
			off[i] = q * group + (r + i) * stride;
		return;
	}
	for (int64_t i = 0; i < n; i++) {
		off[i] = q * group + r * stride;
		if (++r == count) {
			r = 0;
			q++;
		}
	}
}

/* Output columns j of rows [0, rows) that are contiguous in y (row 1):
 * row_add by runs within a row group. */
static void tile_store_columns(const struct spmm_job *job, int64_t m0, int64_t rows, int64_t w,
			       const int64_t *roff, const int64_t *coff, int64_t n_out,
			       const float *bias, const float *out)
{
	const struct opass_spmm_layout *l = &job->layout;

	for (int64_t i = 0; i < rows;) {
		int64_t len = l->rows - (m0 + i) % l->rows;

		len = len < rows - i ? len : rows - i;
		for (int64_t j = 0; j < n_out; j++)
			job->kernels.row_add(job->y + roff[i] + coff[j], out + j * w + i, bias[j],
					     NULL, job->relu, (size_t)len);
		i += len;
	}
}

/* Can a 16x16 block at (m, n) be one transpose16 (consecutive columns
 * contiguous, rows and columns within one group each)? */
static bool block_transposes(const struct spmm_job *job, int64_t m, int64_t n)
{
	const struct opass_spmm_layout *l = &job->layout;

	return job->kernels.transpose16 && l->col == 1 && m % l->rows + 16 <= l->rows &&
	       n % l->cols + 16 <= l->cols;
}

/* max(v, 0): a max, not a branch on the data (NaN gives 0). */
static inline float relu_of(float v)
{
	return v > 0.0f ? v : 0.0f;
}

/* y[j] = out[j * w] + bias[j] (then max(0, .) with relu) for j in [j0, j1):
 * one row of a block; the Relu's test is outside the loops. */
static void row_store(float *y, const float *out, int64_t w, const float *bias, int64_t j0,
		      int64_t j1, bool relu)
{
	if (relu)
		for (int64_t j = j0; j < j1; j++)
			y[j] = relu_of(out[j * w] + bias[j]);
	else
		for (int64_t j = j0; j < j1; j++)
			y[j] = out[j * w] + bias[j];
}

/* Are columns [j0, j1) consecutive in y? (Their ends' distance alone does
 * not tell: heads of 2 stored size-major give offsets 0, 2, 1, 3.) */
static bool columns_contiguous(const int64_t *coff, int64_t j0, int64_t j1)
{
	for (int64_t j = j0 + 1; j < j1; j++)
		if (coff[j] != coff[j - 1] + 1)
			return false;
	return true;
}

/* A block of tile_store's without transposes: by rows of y where its
 * columns are contiguous there, else element by element. */
static void block_store(const struct spmm_job *job, int64_t i0, int64_t i1, int64_t j0,
			int64_t j1, int64_t w, const int64_t *roff, const int64_t *coff,
			const float *bias, const float *out)
{
	bool rows = columns_contiguous(coff, j0, j1);

	for (int64_t i = i0; i < i1; i++) {
		if (rows) {
			row_store(job->y + roff[i] + coff[j0] - j0, out + i, w, bias, j0, j1, job->relu);
			continue;
		}
		for (int64_t j = j0; j < j1; j++) {
			float v = out[j * w + i] + bias[j];

			job->y[roff[i] + coff[j]] = job->relu ? relu_of(v) : v;
		}
	}
}

/* tile_store into a row-major y [M, N]: the offsets are the strides (a call
 * stores as few as 4 x 64 outputs, where filling offset tables cost 5-8 % of
 * a 4- or 8-row MatMul). */
static void tile_store_row_major(const struct spmm_job *job, int64_t m0, int64_t rows,
				 int64_t w, int64_t n0, int64_t n_out, const float *bias,
				 const float *out)
{
	int64_t n = job->s->n;

	for (int64_t i0 = 0; i0 < rows; i0 += 16) {
		int64_t i1 = i0 + 16 < rows ? i0 + 16 : rows;

		for (int64_t j0 = 0; j0 < n_out; j0 += 16) {
			int64_t j1 = j0 + 16 < n_out ? j0 + 16 : n_out;

			if (job->kernels.transpose16 && i1 - i0 == 16 && j1 - j0 == 16) {
				job->kernels.transpose16(out + j0 * w + i0, (size_t)w,
							 job->y + (m0 + i0) * n + n0 + j0, (size_t)n,
							 bias + j0, job->relu);
				continue;
			}
			for (int64_t i = i0; i < i1; i++)
				row_store(job->y + (m0 + i) * n + n0, out + i, w, bias, j0, j1, job->relu);
		}
	}
}

/* y[(m0 + i, n0 + j) by the layout] = out[j][i] + bias (then max(0, .) with
 * relu: NaN gives 0, as row_add's), in 16x16 blocks; out rows are w long. */
static void tile_store(const struct spmm_job *job, int64_t m0, int64_t rows, int64_t w,
		       int64_t n0, int64_t n_out, const float *out)
{
	const struct opass_spmm_layout *l = &job->layout;
	int64_t roff[TILE_MAX], coff[CHUNK_N];
	float bias[CHUNK_N];

	for (int64_t j = 0; j < n_out; j++)
		bias[j] = bias_at(job, n0 + j);
	if (l->row_group == 0 && l->col_group == 0 && l->col == 1 && l->row == job->s->n) {
		tile_store_row_major(job, m0, rows, w, n0, n_out, bias, out);
		return;
	}
	layout_offsets(m0, rows, l->rows, l->row, l->row_group, roff);
	layout_offsets(n0, n_out, l->cols, l->col, l->col_group, coff);
	if (l->row == 1) {
		tile_store_columns(job, m0, rows, w, roff, coff, n_out, bias, out);
		return;
	}
	for (int64_t i0 = 0; i0 < rows; i0 += 16) {
		int64_t i1 = i0 + 16 < rows ? i0 + 16 : rows;

		for (int64_t j0 = 0; j0 < n_out; j0 += 16) {
			int64_t j1 = j0 + 16 < n_out ? j0 + 16 : n_out;

			if (i1 - i0 == 16 && j1 - j0 == 16 && block_transposes(job, m0 + i0, n0 + j0)) {
				job->kernels.transpose16(out + j0 * w + i0, (size_t)w,
							 job->y + roff[i0] + coff[j0], (size_t)l->row,
							 bias + j0, job->relu);
				continue;
			}
			block_store(job, i0, i1, j0, j1, w, roff, coff, bias, out);
		}
	}
}

/* dst[ox - ox0] = row[ox * stride_w + shift] for ox in [ox0, ox1), 0 where
 * that index falls outside the row (all 0 when row is NULL: a padding row). */
static void row_gather(const struct spmm_job *job, const float *row, int64_t shift, int64_t ox0,
		       int64_t ox1, float *dst)
{
	const struct opass_conv *cv = job->conv;
	int64_t s = cv->stride_w, lo = ox0, hi = ox1;

	if (!row) {
		memset(dst, 0, (size_t)(ox1 - ox0) * sizeof(float));
		return;
	}
	/* lo..hi: the columns whose index lies inside the row */
	while (lo < hi && lo * s + shift < 0)
		dst[lo++ - ox0] = 0.0f;
	while (hi > lo && (hi - 1) * s + shift >= cv->in_w)
		dst[--hi - ox0] = 0.0f;
	if (s == 1) {
		memcpy(dst + (lo - ox0), row + lo + shift, (size_t)(hi - lo) * sizeof(float));
		return;
	}
	if (s == 2 && job->kernels.gather2) {
		job->kernels.gather2(dst + (lo - ox0), row + lo * 2 + shift, (size_t)(hi - lo));
		return;
	}
	for (int64_t ox = lo; ox < hi; ox++)
		dst[ox - ox0] = row[ox * s + shift];
}

/* Output columns [ox0, ox1) of output row oy under kernel tap (ky, kx): the
 * input row's elements at ix = ox * stride - pad + kx * dilation, 0 outside. */
static void conv_pack_segment(const struct spmm_job *job, const float *x, int64_t ky,
			      int64_t kx, int64_t oy, int64_t ox0, int64_t ox1, float *dst)
{
	const struct opass_conv *cv = job->conv;
	int64_t iy = oy * cv->stride_h - cv->pad_top + ky * cv->dilation_h;

	row_gather(job, iy >= 0 && iy < cv->in_h ? x + iy * cv->in_w : NULL,
		   kx * cv->dilation_w - cv->pad_left, ox0, ox1, dst);
}

/* One kernel tap's row of a packed tile: dst[i] for output positions p0 + i,
 * by output-row segments; w - rows padding lanes are 0. */
static void conv_pack_tap(const struct spmm_job *job, const float *x, int64_t ky, int64_t kx,
			  int64_t p0, int64_t rows, int64_t w, float *dst)
{
	const struct opass_conv *cv = job->conv;
	int64_t oy = p0 / cv->out_w, ox = p0 % cv->out_w;

	for (int64_t i = 0; i < rows;) {
		int64_t n = cv->out_w - ox < rows - i ? cv->out_w - ox : rows - i;

		conv_pack_segment(job, x, ky, kx, oy, ox, ox + n, dst + i);
		i += n;
		ox = 0;
		oy++;
	}
	memset(dst + rows, 0, (size_t)(w - rows) * sizeof(float));
}

/* Offsets in a channel's plane of the input under every kernel tap for output
 * positions p0 .. p0 + rows - 1, -1 in the padding and for lanes rows .. w - 1:
 * idx[(ky * kw + kx) * w + i]. */
static void conv_tap_offsets(const struct opass_conv *cv, int64_t p0, int64_t rows, int64_t w,
			     int32_t *idx)
{
	for (int64_t ky = 0, t = 0; ky < cv->kernel_h; ky++)
		for (int64_t kx = 0; kx < cv->kernel_w; kx++, t++)
			for (int64_t i = 0; i < w; i++) {
				int64_t oy = (p0 + i) / cv->out_w, ox = (p0 + i) % cv->out_w;
				int64_t iy = oy * cv->stride_h - cv->pad_top + ky * cv->dilation_h;
				int64_t ix = ox * cv->stride_w - cv->pad_left + kx * cv->dilation_w;
				bool in = i < rows && iy >= 0 && iy < cv->in_h && ix >= 0 &&
					  ix < cv->in_w;

				idx[t * w + i] = in ? (int32_t)(iy * cv->in_w + ix) : -1;
			}
}

/* Channels [c0, c1) of a packed tile by kernel-tap gathers, the offsets
 * computed once for all channels; taps <= PACK_GATHER_TAPS. */
static void conv_pack_gathers(const struct spmm_job *job, const float *x, int64_t c0,
			      int64_t c1, int64_t p0, int64_t rows, int64_t w, float *at)
{
	const struct opass_conv *cv = job->conv;
	int64_t taps = cv->kernel_h * cv->kernel_w, plane = cv->in_h * cv->in_w;
	int32_t idx[PACK_GATHER_TAPS * TILE_MAX];

	conv_tap_offsets(cv, p0, rows, w, idx);
	for (int64_t c = c0; c < c1; c++)
		for (int64_t tap = 0; tap < taps; tap++, at += w)
			job->kernels.gather(at, x + c * plane, idx + tap * w, (size_t)w);
}

/* The same by output-row segments of every tap's input row. */
static void conv_pack_rows(const struct spmm_job *job, const float *x, int64_t c0, int64_t c1,
			   int64_t p0, int64_t rows, int64_t w, float *at)
{
	const struct opass_conv *cv = job->conv;

	for (int64_t c = c0; c < c1; c++)
		for (int64_t ky = 0; ky < cv->kernel_h; ky++)
			for (int64_t kx = 0; kx < cv->kernel_w; kx++, at += w)
				conv_pack_tap(job, x + c * cv->in_h * cv->in_w, ky, kx, p0, rows, w,
					      at);
}

/* The same for a direct conv (1x1, stride 1, no padding), whose tile is one
 * run of each channel's plane: a copy per channel, not one per output row
 * (ResNet-50's 7x7 stage has 7 of 7 floats). */
static void conv_pack_direct(const struct spmm_job *job, const float *x, int64_t c0, int64_t c1,
			     int64_t p0, int64_t rows, int64_t w, float *at)
{
	for (int64_t c = c0; c < c1; c++, at += w) {
		memcpy(at, x + c * job->m + p0, (size_t)rows * sizeof(float));
		memset(at + rows, 0, (size_t)(w - rows) * sizeof(float));
	}
}

/* Implicit im2col of one tile: at[(c * kh + ky) * kw + kx][i] = the input under
 * kernel tap (ky, kx) of channel c for output position p0 + i (0 in the padding),
 * for the channels of part `part` of `parts`. Where the ISA has gathers and
 * the kernel more than one tap, by gathers of precomputed offsets: a 64-position
 * tile spans several output rows, and copying each tap's row segments apart
 * left ResNet-50's stride-2 3x3 convs at 0.94-1.26x of ORT's time at batch 1
 * (one 3x3 of 256 channels at 28x28, stride 2: 511 -> 377-384 us with the
 * gathers). A 1x1 conv's segments are longer, and copying them ran faster
 * (263-270 us against 305 for 256 -> 512 at 56x56, stride 2), unless its
 * output rows are short (PACK_GATHER_ROW): 1024 -> 2048 from 14x14, stride 2,
 * 240 -> 212 us with gathers; 512 -> 1024 from 28x28, 275 -> 260 us; from 56x56
 * (rows of 28) no faster. */
static void conv_pack(const struct spmm_job *job, size_t t, int64_t part, int64_t parts)
{
	const struct opass_conv *cv = job->conv;
	int64_t c0 = cv->c_in * part / parts, c1 = cv->c_in * (part + 1) / parts;
	int64_t image = (int64_t)(t / (size_t)job->tiles_per_image);
	int64_t taps = cv->kernel_h * cv->kernel_w, kk = c1 * taps;
	int64_t p0 = (int64_t)(t % (size_t)job->tiles_per_image) * job->tile_max, rows, w;
	float *at = job->at + t * (size_t)job->s->k_pad * job->tile_stride;
	const float *x = job->a + image * cv->c_in * cv->in_h * cv->in_w;
	enum spmm_width wc;

	rows = tile_rows(job, t, &wc);
	w = spmm_width_floats(wc);
	if (job->direct)
		conv_pack_direct(job, x, c0, c1, p0, rows, w, at + c0 * w);
	else if (job->kernels.gather && (taps > 1 || cv->out_w <= PACK_GATHER_ROW) &&
		 taps <= PACK_GATHER_TAPS && cv->in_h * cv->in_w <= INT32_MAX)
		conv_pack_gathers(job, x, c0, c1, p0, rows, w, at + c0 * taps * w);
	else
		conv_pack_rows(job, x, c0, c1, p0, rows, w, at + c0 * taps * w);
	if (part == parts - 1)
		memset(at + kk * w, 0, (size_t)((job->s->k_pad - kk) * w) * sizeof(float));
}

/* A tile that reads its rows of x in place: a direct conv's full tiles. */
static bool tile_in_place(const struct spmm_job *job, int64_t rows)
{
	return job->direct && rows == job->tile_max;
}

/* A product of one row of A reads it in place: at[k][0] = a[k] (unless its
 * blocks read columns past K, which the packed copy pads with zeros). */
static bool row_in_place(const struct spmm_job *job)
{
	return !job->conv && job->m == 1 && job->s->k_pad == job->s->k;
}

/* Does the job pack A at all (not a padded conv's copy, not one row in place,
 * not the one-row format's kernel, which reads A's rows)? */
static bool job_packs(const struct spmm_job *job)
{
	return !job->padded && !row_in_place(job) && !job->m1;
}

/* Work item i packs part i % pack_parts of tile i / pack_parts. */
static void tile_pack(void *data, size_t i)
{
	const struct spmm_job *job = data;
	size_t t = i / job->pack_parts;
	int64_t part = (int64_t)(i % job->pack_parts), parts = (int64_t)job->pack_parts;
	enum spmm_width wc;

	if (!job_packs(job) || tile_in_place(job, tile_rows(job, t, &wc)))
		return;
	if (job->conv)
		conv_pack(job, t, part, parts);
	else
		matmul_pack(job, t, part, parts);
}

/* y[image][n0 + j][p0 + i] = out[j][i] + bias: rows of NCHW outputs. */
static void conv_store(const struct spmm_job *job, size_t t, int64_t rows, int64_t w,
		       int64_t n0, int64_t n_out, const float *out)
{
	int64_t image = (int64_t)(t / (size_t)job->tiles_per_image);
	int64_t p0 = (int64_t)(t % (size_t)job->tiles_per_image) * job->tile_max;
	size_t at = (size_t)((image * job->s->n + n0) * job->m + p0);
	const float *res = job->conv->residual ? job->conv->residual + at : NULL;
	float *y = job->y + at;

	for (int64_t j = 0; j < n_out; j++, y += job->m, res = res ? res + job->m : NULL)
		job->kernels.row_add(y, out + j * w, bias_at(job, n0 + j), res, job->conv->relu,
				     (size_t)rows);
}

/* The same for padded positions q = oy * wq + ox: only ox < out_w are kept. */
static void conv_store_padded(const struct spmm_job *job, size_t t, int64_t rows, int64_t w,
			      int64_t n0, int64_t n_out, const float *out)
{
	const struct opass_conv *cv = job->conv;
	int64_t image = (int64_t)(t / (size_t)job->tiles_per_image), wq = job->padded->wq;
	int64_t q0 = (int64_t)(t % (size_t)job->tiles_per_image) * job->tile_max;
	int64_t plane = cv->out_h * cv->out_w;

	for (int64_t j = 0; j < n_out; j++) {
		int64_t at = (image * job->s->n + n0 + j) * plane;
		float bias = bias_at(job, n0 + j);

		for (int64_t q = q0; q < q0 + rows;) {
			int64_t oy = q / wq, ox = q % wq, len = cv->out_w - ox;
			int64_t i = at + oy * cv->out_w + ox;

			if (len > q0 + rows - q)
				len = q0 + rows - q;
			if (len > 0)
				job->kernels.row_add(job->y + i, out + j * w + (q - q0), bias,
						     cv->residual ? cv->residual + i : NULL, cv->relu,
						     (size_t)len);
			q += wq - ox;
		}
	}
}

/* Tile t's packed rows of A, ld floats apart. */
static const float *tile_at(const struct spmm_job *job, size_t t, int64_t rows, int64_t w,
			    size_t *ret_ld)
{
	int64_t image = (int64_t)(t / (size_t)job->tiles_per_image);
	int64_t p0 = (int64_t)(t % (size_t)job->tiles_per_image) * job->tile_max;

	if (job->padded) {
		*ret_ld = 1;
		return job->padded->x + image * job->padded->image + p0;
	}
	if (row_in_place(job)) {
		*ret_ld = 1;
		return job->a;
	}
	if (tile_in_place(job, rows)) {
		*ret_ld = (size_t)job->m;
		return job->a + image * job->conv->c_in * job->m + p0;
	}
	*ret_ld = (size_t)w;
	return job->at + t * (size_t)job->s->k_pad * job->tile_stride;
}

static void tile_chunk(void *data, size_t item)
{
	const struct spmm_job *job = data;
	const struct opass_spmm *s = job->s;
	size_t t = item / job->n_chunks, c = item % job->n_chunks;
	int64_t row0 = (int64_t)c * job->rows_per_chunk, row1 = row0 + job->rows_per_chunk;
	float out[CHUNK_N * TILE_MAX] __attribute__((aligned(64)));
	int64_t n0 = row0 * s->br, n_out, rows, w;
	enum spmm_width wc;
	const float *at;
	size_t ld;

	rows = tile_rows(job, t, &wc);
	w = spmm_width_floats(wc);
	if (row1 > s->n_block_rows)
		row1 = s->n_block_rows;
	n_out = row1 * s->br < s->n ? row1 * s->br - n0 : s->n - n0;
	if (job->m1) {
		job->kernels.m1(&s->m1, s->k, n0 / 16, div_up(n0 + n_out, 16), job->a,
				(size_t)s->k, (int)job->m, out, (size_t)w);
	} else {
		at = tile_at(job, t, rows, w, &ld);
		job->kernels.block_rows[wc](job->padded ? &job->padded->s : s, row0, row1, at, ld,
					    out);
	}
	if (job->padded)
		conv_store_padded(job, t, rows, w, n0, n_out, out);
	else if (job->conv)
		conv_store(job, t, rows, w, n0, n_out, out);
	else
		tile_store(job, (int64_t)t * job->tile_max, rows, w, n0, n_out, out);
}

struct trampoline {
	void (*fn)(void *data, size_t i);
	void *data;
};

static int trampoline_run(size_t i, unsigned thread, void *userdata)
{
	const struct trampoline *t = userdata;

	(void)thread;
	t->fn(t->data, i);
	return 0;
}

static void run_parallel(const struct opass_spmm_exec *exec, void (*fn)(void *data, size_t i),
			 size_t n, void *data)
{
	struct trampoline t = { .fn = fn, .data = data };

	if (exec && exec->parallel_for) {
		exec->parallel_for(exec->ctx, fn, n, data);
		return;
	}
	/* opass_parallel_for fails only before running anything */
	if (opass_parallel_for(n, exec ? exec->threads : 0, trampoline_run, &t) < 0)
		for (size_t i = 0; i < n; i++)
			fn(data, i);
}

/* Too few products (nonzeros x rows of A, over all images) to wake other threads for? */
static bool job_small(const struct spmm_job *job, int64_t images)
{
	return (double)job->s->n_blocks * job->s->br * job->s->bc * (double)job->m *
	       (double)images < SERIAL_PRODUCTS;
}

/* A job's work items, in parallel unless the job is too small for it. */
static void job_run(struct spmm_job *job, const struct opass_spmm_exec *exec,
		    void (*fn)(void *data, size_t i), size_t n)
{
	if (!job->serial) {
		run_parallel(exec, fn, n, job);
		return;
	}
	for (size_t i = 0; i < n; i++)
		fn(job, i);
}

static void *scratch_alloc(const struct opass_spmm_exec *exec, size_t size)
{
	if (exec && exec->alloc)
		return exec->alloc(exec->ctx, size);
	return aligned_alloc(64, (size + 63) / 64 * 64);
}

static void scratch_release(const struct opass_spmm_exec *exec, void *p)
{
	if (exec && exec->alloc)
		exec->release(exec->ctx, p);
	else
		free(p);
}

/* Work item i: tiles i * tiles_per_item ... whole, one after the other: pack
 * each, then every chunk of outputs while it is in cache. */
static void tile_whole(void *data, size_t i)
{
	const struct spmm_job *job = data;
	size_t t0 = i * job->tiles_per_item, t1 = t0 + job->tiles_per_item;

	for (size_t t = t0; t < t1 && t < job->tiles; t++) {
		tile_pack(data, t);
		for (size_t c = 0; c < job->n_chunks; c++)
			tile_chunk(data, t * job->n_chunks + c);
	}
}

/* The calling thread's copy: the slot it claimed before (*ret_fresh false),
 * else the next one. A thread claims at most one, so a pool smaller than the
 * work items packs no more copies than it has threads. */
static size_t copy_slot(struct tile_copies *tc, bool *ret_fresh)
{
	uintptr_t self = (uintptr_t)pthread_self();
	size_t used = atomic_load(&tc->used), j;

	for (j = 0; j < used; j++) {
		if (atomic_load(&tc->owner[j]) == self) {
			*ret_fresh = false;
			return j;
		}
	}
	j = atomic_fetch_add(&tc->used, 1);
	atomic_store(&tc->owner[j], self);
	*ret_fresh = true;
	return j;
}

/* Work item i of a single tile's job->copies: its thread's packed copy of A
 * (the other cores' copies are not read), then its share of the outputs. One
 * MatMul, 64 rows, 2 threads (OpenMP), against packing in parts that both
 * threads read: 3072x768 at 95 % 159-164 against 186-198 us, 768x3072 at
 * 90 % 331-334 against 408-421, 768x768 at 90 % 80 against 106-108; 16 rows,
 * 3072x768 at 95 %: 65-68 against 81-87. The encoder at 16 tokens in ORT,
 * alternating builds, with MatMuls of under 600k products on one thread in
 * both: 3.50-3.92 against 3.89-4.20 ms at 95 %, 4.32-5.19 against 5.01-6.05
 * at 90 %; with copies, that limit cost time (16k: 2.88-2.92 against
 * 3.08-3.14 ms at 95 %). */
static void tile_copy(void *data, size_t i)
{
	const struct spmm_job *job = data;
	struct spmm_job copy = *job;
	size_t c0 = job->n_chunks * i / job->copies, c1 = job->n_chunks * (i + 1) / job->copies;
	bool fresh;
	size_t slot;

	if (c0 == c1)
		return;
	slot = copy_slot(job->copy_slots, &fresh);
	copy.at = job->at + slot * (size_t)job->s->k_pad * job->tile_stride;
	if (fresh)
		tile_pack(&copy, 0);
	for (size_t c = c0; c < c1; c++)
		tile_chunk(&copy, c);
}

/* The threads the work items run on, 0 when unknown. */
static size_t exec_threads(const struct opass_spmm_exec *exec)
{
	if (exec && exec->parallel_for)
		return exec->threads;
	return opass_parallel_threads(exec ? exec->threads : 0);
}

/* One tile of a MatMul: a work item per thread, each with its own packed
 * copy of A and a share of the outputs. Many tiles, or a multiple of the
 * threads: a work item per tile (its packed copy of A is used while in cache).
 * Else pack them all, each in pack_parts work items so that every thread
 * packs, then split the outputs among the threads. */
static int run_tiled(struct spmm_job *job, size_t tiles, const struct opass_spmm_exec *exec)
{
	size_t size, threads = exec_threads(exec);
	bool packs = job_packs(job);
	struct tile_copies slots = { 0 };
	enum spmm_width w0;

	tile_rows(job, 0, &w0);
	job->tile_stride = (size_t)spmm_width_floats(w0);
	job->copies = 1;
	job->copy_slots = &slots;
	if (tiles == 1 && packs && !job->conv && !job->serial && threads > 1)
		job->copies = threads < job->n_chunks ? threads : job->n_chunks;
	if (job->copies > OPASS_MAX_THREADS)
		job->copies = OPASS_MAX_THREADS;
	size = tiles * job->copies * (size_t)job->s->k_pad * job->tile_stride * sizeof(float);
	job->at = packs ? scratch_alloc(exec, size ? size : 64) : NULL;
	if (packs && !job->at)
		return -ENOMEM;
	job->pack_parts = 1;
	if (job->copies > 1) {
		job_run(job, exec, tile_copy, job->copies);
	} else if (tiles >= WHOLE_TILES_MIN || (threads && tiles % threads == 0)) {
		job->tiles = tiles;
		job->tiles_per_item = (tiles + WHOLE_ITEMS - 1) / WHOLE_ITEMS;
		job_run(job, exec, tile_whole, (tiles + job->tiles_per_item - 1) / job->tiles_per_item);
	} else {
		job->pack_parts = PACK_ITEMS / tiles;
		if (packs)
			job_run(job, exec, tile_pack, tiles * job->pack_parts);
		job_run(job, exec, tile_chunk, tiles * job->n_chunks);
	}
	if (job->at)
		scratch_release(exec, job->at);
	return 0;
}

int opass_spmm_run(const struct opass_spmm *spmm, const float *a, int64_t m,
		   const float *bias, size_t n_bias, float *y,
		   const struct opass_spmm_exec *exec)
{
	return opass_spmm_run_relu(spmm, a, m, bias, n_bias, false, y, exec);
}

int opass_spmm_run_relu(const struct opass_spmm *spmm, const float *a, int64_t m,
			const float *bias, size_t n_bias, bool relu, float *y,
			const struct opass_spmm_exec *exec)
{
	return opass_spmm_run_layout(spmm, a, m, bias, n_bias, relu, NULL, y, exec);
}

int opass_spmm_run_layout(const struct opass_spmm *spmm, const float *a, int64_t m,
			  const float *bias, size_t n_bias, bool relu,
			  const struct opass_spmm_layout *layout, float *y,
			  const struct opass_spmm_exec *exec)
{
	struct spmm_job job = { .s = spmm, .a = a, .bias = bias, .n_bias = n_bias, .y = y, .m = m,
				.relu = relu };

	if (!spmm || m < 0 || (bias && n_bias != 1 && n_bias != (size_t)spmm->n) ||
	    (layout && (layout->rows < 1 || layout->cols < 1)))
		return -EINVAL;
	job.layout = layout ? *layout : (struct opass_spmm_layout){ .rows = m > 0 ? m : 1,
								    .row = spmm->n,
								    .cols = spmm->n > 0 ? spmm->n : 1,
								    .col = 1 };
	if (kernels_pick(exec ? exec->isa : OPASS_SPMM_ISA_AUTO, &job) < 0)
		return -ENOTSUP;
	if (m == 0 || spmm->n == 0)
		return 0;
	job.rows_per_chunk = CHUNK_N / spmm->br;
	job.n_chunks = (size_t)div_up(spmm->n_block_rows, job.rows_per_chunk);
	job.tiles_per_image = div_up(m, job.tile_max);
	job.serial = job_small(&job, 1);
	/* a chunk's outputs start at a slice (br 1, 2, 4, 8 or 16) */
	job.m1 = m <= M1_ROWS && spmm->m1.steps && job.kernels.m1 &&
		 job.rows_per_chunk * spmm->br % 16 == 0;
	return run_tiled(&job, (size_t)job.tiles_per_image, exec);
}

int64_t opass_conv_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_begin,
			   int64_t pad_end, int64_t dilation)
{
	int64_t span = dilation * (kernel - 1) + 1;

	if (in < 0 || kernel < 1 || stride < 1 || dilation < 1 || pad_begin < 0 || pad_end < 0 ||
	    in + pad_begin + pad_end < span)
		return -EINVAL;
	return (in + pad_begin + pad_end - span) / stride + 1;
}

static bool conv_valid(const struct opass_spmm *spmm, const struct opass_conv *cv)
{
	return cv->c_in * cv->kernel_h * cv->kernel_w == spmm->k && cv->stride_h >= 1 &&
	       cv->stride_w >= 1 && cv->dilation_h >= 1 && cv->dilation_w >= 1 &&
	       cv->out_h >= 0 && cv->out_w >= 0 && cv->in_h >= 0 && cv->in_w >= 0;
}

/* A strided conv whose kernel spans at least two taps per phase (7x7 with
 * stride 2, not 3x3 or 1x1). Measured alone on the Zen 5 at 90 % zeros, one
 * image: the padded copy made ResNet-50's 7x7 stride-2 stem 1.9x faster than
 * packing, 3x3 convs with stride 1 1.1-1.25x faster, but 3x3 convs with
 * stride 2 1.1-1.2x slower (strided 1x1 convs would copy planes they never
 * read). */
static bool span_reads_phases(int64_t kernel, int64_t dilation, int64_t stride)
{
	return stride == 1 || (kernel - 1) * dilation + 1 >= 2 * stride + 1;
}

/* 1x1 convs pack too: a partial tile of a direct one (whose full tiles
 * read x in place), and every tile of the others; on one image at 7x7, a
 * padded copy instead ran ResNet-50 at 1.21x instead of 1.38x (every node
 * claimed, 90 %). */
bool opass_conv_packs(const int64_t kernel[2], const int64_t stride[2], const int64_t dilation[2])
{
	return (kernel[0] == 1 && kernel[1] == 1) ||
	       !span_reads_phases(kernel[0], dilation[0], stride[0]) ||
	       !span_reads_phases(kernel[1], dilation[1], stride[1]);
}

/* One column per block (CSR or 4x1 blocks), offsets within int32, and a
 * conv that does not pack: the padded copy. */
static bool conv_pads(const struct spmm_job *job, const struct conv_padded *pd)
{
	const struct opass_conv *cv = job->conv;
	const int64_t kernel[2] = { cv->kernel_h, cv->kernel_w };
	const int64_t stride[2] = { cv->stride_h, cv->stride_w };
	const int64_t dilation[2] = { cv->dilation_h, cv->dilation_w };

	return job->s->bc == 1 && pd->hq > 0 && pd->wq > 0 &&
	       !opass_conv_packs(kernel, stride, dilation) &&
	       cv->c_in * cv->stride_h * cv->stride_w <= INT32_MAX / pd->hq / pd->wq;
}

/* One phase plane of the copy: i = ((image * c_in + c) * stride_h + py) * stride_w + px. */
static void padded_fill(void *data, size_t i)
{
	const struct spmm_job *job = data;
	const struct opass_conv *cv = job->conv;
	const struct conv_padded *pd = job->padded;
	int64_t px = (int64_t)i % cv->stride_w, py = (int64_t)i / cv->stride_w % cv->stride_h;
	int64_t plane = (int64_t)i / (cv->stride_w * cv->stride_h);
	const float *src = job->a + plane * cv->in_h * cv->in_w;
	float *dst = pd->x + (int64_t)i * pd->hq * pd->wq;

	for (int64_t r = 0; r < pd->hq; r++, dst += pd->wq) {
		int64_t iy = r * cv->stride_h + py - cv->pad_top;

		row_gather(job, iy >= 0 && iy < cv->in_h ? src + iy * cv->in_w : NULL,
			   px - cv->pad_left, 0, pd->wq, dst);
	}
}

/* off of every column (c, ky, kx) of the weight, in of_col[k]. */
static void padded_offsets(const struct opass_conv *cv, const struct conv_padded *pd,
			   int32_t *of_col)
{
	int64_t sh = cv->stride_h, sw = cv->stride_w, plane = pd->hq * pd->wq;

	for (int64_t c = 0, col = 0; c < cv->c_in; c++)
		for (int64_t ky = 0; ky < cv->kernel_h; ky++)
			for (int64_t kx = 0; kx < cv->kernel_w; kx++) {
				int64_t ty = ky * cv->dilation_h, tx = kx * cv->dilation_w;

				of_col[col++] = (int32_t)(((c * sh + ty % sh) * sw + tx % sw) * plane +
							  ty / sh * pd->wq + tx / sw);
			}
}

#define REMAP_BLOCKS 16384  /* blocks per work item of padded_remap */

/* The offsets of one run of the weight's blocks (s.k0[b] = off of column k0[b]). */
static void padded_remap(void *data, size_t i)
{
	const struct spmm_job *job = data;
	const struct conv_padded *pd = job->padded;
	int64_t b = (int64_t)i * REMAP_BLOCKS, end = b + REMAP_BLOCKS;

	if (end > job->s->n_blocks)
		end = job->s->n_blocks;
	for (; b < end; b++)
		pd->s.k0[b] = pd->of_col[job->s->k0[b]];
}

/* The padded copy of x and, unless the caller has them (opass_conv.offsets),
 * the weight's offsets (in one scratch buffer). */
static int padded_make(struct spmm_job *job, struct conv_padded *pd, int64_t batch,
		       const struct opass_spmm_exec *exec, void **ret_scratch)
{
	const struct opass_conv *cv = job->conv;
	int64_t planes = cv->c_in * cv->stride_h * cv->stride_w;
	size_t n_x, slack = TILE_MAX + (size_t)((cv->kernel_w - 1) * cv->dilation_w);
	size_t n_off = cv->offsets ? 0 : (size_t)(job->s->n_blocks + job->s->k);
	int32_t *off, *of_col;
	void *scratch;

	pd->image = planes * pd->hq * pd->wq;
	n_x = (size_t)(batch * pd->image);
	scratch = scratch_alloc(exec, (n_x + slack) * sizeof(float) + n_off * sizeof(int32_t));
	if (!scratch)
		return -ENOMEM;
	pd->x = scratch;
	memset(pd->x + n_x, 0, slack * sizeof(float));
	pd->s = *job->s;
	pd->s.k16 = NULL;
	pd->s.m1 = (struct spmm_m1){ 0 };
	job->padded = pd;
	if (cv->offsets) {
		pd->s.k0 = (int32_t *)cv->offsets;  /* only read */
	} else {
		off = (int32_t *)(pd->x + n_x + slack);
		of_col = off + job->s->n_blocks;
		padded_offsets(cv, pd, of_col);
		pd->of_col = of_col;
		pd->s.k0 = off;
		job_run(job, exec, padded_remap, (size_t)div_up(job->s->n_blocks, REMAP_BLOCKS));
	}
	job_run(job, exec, padded_fill, (size_t)(batch * planes));
	*ret_scratch = scratch;
	return 0;
}

/* A phase plane's rows and columns. */
static void padded_dims(const struct opass_conv *cv, struct conv_padded *pd)
{
	pd->hq = cv->out_h + (cv->kernel_h - 1) * cv->dilation_h / cv->stride_h;
	pd->wq = cv->out_w + (cv->kernel_w - 1) * cv->dilation_w / cv->stride_w;
}

int opass_conv_offsets_new(const struct opass_spmm *spmm, const struct opass_conv *conv,
			   int32_t **ret_offsets)
{
	struct spmm_job job = { .s = spmm, .conv = conv };
	struct conv_padded pd = { 0 };
	int32_t *off, *of_col;

	if (!spmm || !conv || !ret_offsets || !conv_valid(spmm, conv))
		return -EINVAL;
	padded_dims(conv, &pd);
	if (!conv_pads(&job, &pd))
		return -ENOTSUP;
	off = malloc((size_t)(spmm->n_blocks + spmm->k + 1) * sizeof(int32_t));
	if (!off)
		return -ENOMEM;
	of_col = off + spmm->n_blocks;
	padded_offsets(conv, &pd, of_col);
	for (int64_t b = 0; b < spmm->n_blocks; b++)
		off[b] = of_col[spmm->k0[b]];
	*ret_offsets = off;
	return 0;
}

int opass_spmm_run_conv(const struct opass_spmm *spmm, const struct opass_conv *conv,
			const float *x, int64_t batch, const float *bias, size_t n_bias, float *y,
			const struct opass_spmm_exec *exec)
{
	struct spmm_job job = { .s = spmm, .a = x, .bias = bias, .n_bias = n_bias, .y = y,
				.conv = conv };
	struct conv_padded pd = { 0 };
	void *scratch = NULL;
	bool padded;
	int r;

	if (!spmm || !conv || batch < 0 || !conv_valid(spmm, conv) ||
	    (bias && n_bias != 1 && n_bias != (size_t)spmm->n))
		return -EINVAL;
	if (kernels_pick(exec ? exec->isa : OPASS_SPMM_ISA_AUTO, &job) < 0)
		return -ENOTSUP;
	job.m = conv->out_h * conv->out_w;
	job.direct = conv->kernel_h == 1 && conv->kernel_w == 1 && conv->stride_h == 1 &&
		     conv->stride_w == 1 && conv->pad_top == 0 && conv->pad_left == 0 &&
		     conv->out_h == conv->in_h && conv->out_w == conv->in_w;
	if (batch == 0 || job.m == 0 || spmm->n == 0)
		return 0;
	padded_dims(conv, &pd);
	padded = conv_pads(&job, &pd);
	if (padded)
		job.m = conv->out_h * pd.wq;
	job.serial = job_small(&job, batch);
	if (padded && padded_make(&job, &pd, batch, exec, &scratch) < 0)
		return -ENOMEM;
	job.rows_per_chunk = CHUNK_N / spmm->br;
	job.n_chunks = (size_t)div_up(spmm->n_block_rows, job.rows_per_chunk);
	job.tiles_per_image = div_up(job.m, job.tile_max);
	r = run_tiled(&job, (size_t)(batch * job.tiles_per_image), exec);
	if (scratch)
		scratch_release(exec, scratch);
	return r;
}

/* ---- cost model -------------------------------------------------------------- */

/*
 * Costs per row of A (conv: per output position), in units of one dense weight
 * element, measured with bench/ep.py --sections layer --claim all (one MatMul,
 * 768x3072 and 3072x768, 50-95 % zeros, M = 1..1024, ORT 1.29's MLAS on the
 * same 2 threads) and fitted as time(sparse) = nonzeros x cost + fixed.
 *
 * AVX2 (a 2-core Zen 2): a nonzero costs about 5 dense elements for one to four
 * rows of A (both are memory-bound; the sparse kernel reads a value, an index
 * and A's element per nonzero), about 3 for 5 to 48 rows (MLAS pads small M),
 * and about 6 from 49 rows on, where MLAS runs near peak and the sparse
 * kernel's packed tiles stream from L2. These were measured with 64-row
 * tiles; the narrower AVX2 tiles of tile_max_pick made M >= 64 1.2-1.9x
 * faster and the model was not re-fitted (at 80 % zeros it declines nodes that
 * would probably win). Each output element costs about OUTPUT_COST more
 * (storing it from the tile, and an activation that ORT would have fused into
 * its own Gemm but runs as a separate node after ours).
 *
 * AVX-512 (a 2-core Zen 5, where MLAS's AVX-512 GEMM is about twice the AVX2
 * machine's), fitted as time(sparse) / time(dense) = zeros' complement x cost
 * + fixed: one row of A, run from the one-row format (spmm_m1.c), costs 2.6
 * per nonzero + 0.14 (session 14: 1.27, 0.86, 0.69, 0.42 and 0.26 measured at
 * 50, 70, 80, 90 and 95 % zeros; the gather kernel before it cost 8); two to four
 * rows, from the same format (one step's values serve every row), 2 + 0.35 per
 * row + 0.25 (measured 0.69-0.74, 1.01-1.09, 1.39-1.40, 2.09-2.36 and
 * 3.02-3.35x at two rows, 0.54-0.56, 0.78-0.82, 1.03-1.10, 1.66-1.74 and
 * 2.31-2.58x at four, at the five levels; the 4-row tile before it ran 0.94-1.11x
 * and 1.31-1.57x at 90 and 95 %: 6.5 per nonzero + 0.45, still taken for an
 * unknown M, the worst case from 88 % zeros on); five to eight rows 6 per row of
 * the 8-row tile (4 fitted at 8 rows, 3.3 at 768x3072) + 0.08; from nine rows
 * on 3 per row of the wider tiles (2.4-3 fitted), a tile being padded to its
 * width class (rows 9 to 16 cost as 16), + 0.08 (0.1-0.3 fitted: at 80 % zeros
 * and 16 to 64 rows the model predicts 1.47x where 1.13-1.8x ran). Claimed
 * with these, no cell of that sweep ran below 1.1x.
 *
 * Those single MatMuls' 9.4 MB stay in cache between runs; when a run of a
 * model touches more than STREAM_BYTES (a Zen 5 CCD's L3; weights and
 * activations), its weights come from memory each run, where a
 * dense GEMM of one to four rows is memory-bound and the sparse weight, 6
 * bytes per nonzero against 4 per element, wins more: the BERT-base-sized
 * encoder (340 MB) at one token ran 4.22x at 95 % and 2.16x at 90 %, 1.9-2x
 * the ratio fitted above; there two to four rows cost STREAM_GAIN times less.
 * One row, from the one-row format, costs STREAM_ROW_COST per nonzero + 0.05
 * (the encoder at one token with every node claimed, session 14: 1.21x, 1.6x
 * and 2.1x at 50, 70 and 80 % zeros with ORT's other nodes, 0.5 ms of the
 * EP's 2.3-3.9 ms; 0.79, 0.58 and 0.42 for its MatMuls alone).
 * So do CNNs' classifiers, which their activations evict: MobileNetV2's at
 * one image (13 MB of weights, 41 MB of outputs) took 343 us on the CPU EP by
 * ORT's profiler, 38-59 us here (90-95 %; 40 us dense alone); the whole
 * model's time moved within the noise (1.00-1.04x).
 *
 * On an Intel CPU (a 2-vCPU Xeon with AVX-512 and AMX, 2 MiB of L2 per core),
 * MLAS's GEMM of one to eight rows of A is slower than on the Zen 5, and the
 * same sweep (claim all) ran one row at 1.41-1.69x at 80 % zeros and
 * 2.84-3.43x at 90 %, two to four rows 1.5-1.6x and 2.3-2.6x, eight rows
 * 1.7-1.8x and 2.6-3.2x, where the Zen 5's costs declined them all:
 * sparse_ratio_avx512_intel, fitted a little above those (five and six rows,
 * in an 8-row tile, ran 1.2-1.4x at 80 % and are declined). Its weights
 * beyond STREAM_BYTES do not win more but less: MLAS streams them at about
 * 30 GB/s, and the encoder at 80 % ran 1.26x at four rows with every node
 * claimed, and at one row 0.93x with the scalar one-row kernel, 1.94x with
 * the gather one (spmm_rows.c); there a nonzero costs STREAM_COST_INTEL dense
 * elements for two to four rows, STREAM_COST_INTEL_ROW for one.
 *
 * Unknown M takes the worst case (on AVX-512, two to four rows'). A node is
 * claimed when the predicted speed-up is at least MIN_GAIN, so that nodes near
 * break-even (and the noise of the measurement) stay on the CPU EP.
 */
#define MIN_GAIN 1.25
/*
 * What a call costs beyond ORT's own node (its kernel context's inputs and
 * output, an allocator), in dense elements of one row: chains of 48 one-row
 * MatMuls at 95 % zeros, every node claimed, ran 16x16 and 64x64 in 0.68-0.93
 * us a node against 0.30-0.46 us on the CPU EP, and MLAS took 2.4 us for a
 * 200x200 one (about 17 elements a nanosecond), so the tiny ones stay there.
 */
#define CALL_COST 10000.0
#define OUTPUT_COST 32.0
#define STREAM_BYTES (32LL << 20)
#define STREAM_GAIN 1.8
#define STREAM_ROW_COST 1.6
#define STREAM_COST_INTEL 5.0
#define STREAM_COST_INTEL_ROW 3.0

static double nonzero_cost_avx2(int64_t m)
{
	if (m < 0 || m > 48)
		return 6.0;
	if (m <= 4)
		return 5.0;
	return 3.0;
}

/* Rows of A a tile of m rows computes: its width class (spmm_impl.h). */
static double rows_padded(int64_t m)
{
	static const int64_t widths[] = { 1, 4, 8, 16, 32, 48, 64 };

	for (size_t i = 0; i < sizeof(widths) / sizeof(widths[0]); i++)
		if (m <= widths[i])
			return (double)widths[i];
	return (double)m;
}

/* The same on an Intel CPU for up to eight rows of A, where MLAS's GEMM is
 * slower there than on the Zen 5 (see above); more rows: as on the Zen 5. */
static double sparse_ratio_avx512_intel(int64_t m, double density)
{
	if (m == 1)
		return density * 3.6 + 0.02;
	if (m <= 4)
		return density * 3.5 + 0.08;
	return density * 3.2 * rows_padded(m) / (double)m + 0.05;
}

/* time(sparse) / time(dense) on AVX-512, for a density of nonzero / (k x n). */
static double sparse_ratio_avx512(int64_t m, double density, bool intel)
{
	if (intel && m >= 1 && m <= 8)
		return sparse_ratio_avx512_intel(m, density);
	if (m == 1)
		return density * 2.6 + 0.14;
	if (m >= 2 && m <= M1_ROWS)
		return density * (2.0 + 0.35 * (double)m) + 0.25;
	if (m < 0)  /* unknown M: the worst from 88 % zeros on */
		return density * 6.5 + 0.45;
	if (m <= 8)
		return density * 6.0 * rows_padded(m) / (double)m + 0.08;
	return density * 3.0 * rows_padded(m) / (double)m + 0.08;
}

static enum opass_spmm_isa isa_resolve(enum opass_spmm_isa isa)
{
	if (isa != OPASS_SPMM_ISA_AUTO)
		return isa;
	if (opass_spmm_isa_supported(OPASS_SPMM_ISA_AVX512))
		return OPASS_SPMM_ISA_AVX512;
	return OPASS_SPMM_ISA_AVX2;
}

unsigned opass_spmm_cost_flags(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (__builtin_cpu_is("intel"))
		return OPASS_COST_INTEL;
#endif
	return 0;
}

/* The cost of one to four rows of A (AVX-512) whose weight comes from memory. */
static double sparse_streamed(int64_t m, double dense, int64_t nonzero, double in_cache,
			      bool intel)
{
	if (intel)
		return (double)nonzero * (m == 1 ? STREAM_COST_INTEL_ROW : STREAM_COST_INTEL);
	if (m == 1)
		return (double)nonzero * STREAM_ROW_COST + dense * 0.05;
	return in_cache / STREAM_GAIN;
}

bool opass_spmm_predict_win(enum opass_spmm_isa isa, int64_t m, int64_t k, int64_t n,
			    int64_t nonzero, int64_t run_bytes, unsigned flags)
{
	double dense, sparse;

	if (k <= 0 || n <= 0 || nonzero < 0 || m == 0)
		return false;
	dense = (double)k * (double)n;
	if (isa_resolve(isa) == OPASS_SPMM_ISA_AVX512) {
		bool intel = flags & OPASS_COST_INTEL, streams = run_bytes > STREAM_BYTES;

		sparse = dense * sparse_ratio_avx512(m, (double)nonzero / dense, intel);
		if (m > 0 && m <= 4 && streams)
			sparse = sparse_streamed(m, dense, nonzero, sparse, intel);
	} else {
		sparse = (double)nonzero * nonzero_cost_avx2(m) + (double)n * OUTPUT_COST;
	}
	sparse += CALL_COST / (double)(m > 0 ? m : 1);
	return sparse * MIN_GAIN <= dense;
}

/*
 * Convolutions, measured per layer on every group-1 Conv of ResNet-50 and
 * MobileNetV2 (bench/ep.py --sections convs, claim all, batch 1 and 8, 90 %
 * zeros): ORT's Conv is further from its peak than its MatMul, so a nonzero
 * costs about 4 dense elements from 49 positions on (2 to 4 measured), and a
 * tile whose packed patches outgrow L2 (k > 2048 floats of 64 positions:
 * 512 KiB) half again as much (a 3x3 conv of 512 channels at 7x7 only won
 * 1.1-1.2x). An output element costs CONV_OUTPUT_COST in a whole model, not
 * the ~2 of one layer alone: a claimed Conv breaks ORT's NCHWc chain (its
 * neighbours get layout reorders) and its activation is no longer fused.
 * With 8, MobileNetV2 (many narrow layers) ran 0.90-0.96x; with 24 it runs
 * 1.03-1.56x and ResNet-50 1.35-2.35x (bench/ep.py --sections cnn).
 * A stem convolution of fewer than CONV_MIN_CHANNELS input channels that
 * packs its patches is left to ORT: gathering them costs more than its few
 * products (ResNet-50's 7x7 stride-2 conv of 3 channels took 7.3 ms against
 * ORT's 2.8 ms in the model, by ORT's profiler, before it read a padded
 * copy: now 0.31 ms against 0.66 ms alone on the Zen 5).
 * On AVX-512 (the Zen 5 above, same sweep at 90 and 95 %), ORT's Conv is
 * about twice as fast, and a call of fewer than TILE_MAX positions (batch 1
 * at 7x7) pays for its packed patches: there 1x1 convs of 576 or 960 input
 * channels to 160 outputs ran 0.84-0.97x whatever their zeros (0.03-0.1x
 * between 90 and 95 %), and a 3x3 conv of 512 channels with stride 2 0.68x and
 * 0.83x; MobileNetV2 as a whole ran 0.80x at 90 %. Such a call costs
 * CONV_GATHER_COST more per element of a patch (k per position), fitted on
 * those layers (100-300 when one thread packed a tile; 70-103 once a few
 * tiles were packed in parts by all threads, when 2048 -> 512 at 7x7 ran
 * 1.61-1.67x, 960 -> 160 1.12-1.17x, 960 -> 320 1.33-1.35x and 3x3 512 ->
 * 512 with stride 2 1.31-1.34x at 90 %); the same layers at batch 8 won
 * 1.6-3x and do not pay it. There, too, ORT's NCHWc Conv keeps its blocked
 * layout between convs while a claimed conv reorders its input and output
 * channels and runs its Clip or Add apart (in MobileNetV2 at batch 1 and
 * 90 %, 20 claimed convs took 943 us against ORT's 1127 us, but the reorders
 * 670 us): each
 * position costs CONV_LAYOUT_COST_AVX512 more per input and output channel,
 * fitted on bench/ep.py --sections cnn (0 / 24 / 48: MobileNetV2 at batch 1
 * 0.84x / 1.00x / 1.01x at 90 %, ResNet-50 at batch 8 1.41x at 24, 1.34x at
 * 48). That cost is not paid by chained convs: when nearly every Conv of a
 * graph is claimed, ORT keeps none in its NCHWc layout (ResNet-50 at batch 1,
 * 90 %, with the padded-copy kernels: 1.23x with the layout cost, 1.34x
 * without, 1.38x with every node claimed; MobileNetV2, whose depthwise convs
 * stay with ORT, 0.99x / 0.83x / 0.69x).
 * A conv that is not chained also pays a fixed CONV_CALL_COST per call: amid
 * ORT's convs, the call and the reorders around it take some 20 us whatever
 * its size. bench/accuracy.py's digits CNN at 95 % zeros, one image, by ORT's
 * profiler: its 32 -> 64 and 64 -> 64 3x3 convs at 8x8 and 4x4 took 22 and
 * 18 us here against ORT's 14.5 and 12 us, and the two reorders 15 us more;
 * the model ran 0.78-0.82x. A million dense elements is about 10 us of ORT's
 * Conv on the Zen 5's two threads.
 */
#define CONV_CALL_COST 1e6
#define CONV_OUTPUT_COST 24.0
#define CONV_GATHER_COST 80.0
#define CONV_LAYOUT_COST_AVX512 24.0
#define CONV_L2_K 2048
#define CONV_MIN_CHANNELS 8

bool opass_spmm_predict_win_conv(enum opass_spmm_isa isa, int64_t m, int64_t k, int64_t n,
				 int64_t nonzero, int64_t c_in, unsigned flags)
{
	double dense, sparse, per_nonzero = m < 0 || m > 48 ? 4.0 : nonzero_cost_avx2(m);

	if (k <= 0 || n <= 0 || nonzero < 0 || m == 0 ||
	    (c_in < CONV_MIN_CHANNELS && (flags & OPASS_CONV_PACKS)))
		return false;
	if (k > CONV_L2_K)
		per_nonzero *= 1.5;
	dense = (double)k * (double)n;
	sparse = (double)nonzero * per_nonzero + (double)n * CONV_OUTPUT_COST;
	if (!(flags & OPASS_CONV_CHAINED) && m > 0)
		sparse += CONV_CALL_COST / (double)m;
	if (isa_resolve(isa) == OPASS_SPMM_ISA_AVX512) {
		if (!(flags & OPASS_CONV_CHAINED))
			sparse += (double)(n + c_in) * CONV_LAYOUT_COST_AVX512;
		if ((flags & OPASS_CONV_PACKS) && m > 0 && m < TILE_MAX)
			sparse += (double)k * CONV_GATHER_COST;
	}
	return sparse * MIN_GAIN <= dense;
}
