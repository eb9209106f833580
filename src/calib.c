/* SPDX-License-Identifier: MIT */
/* Calibration inputs: .npz (zip of .npy) and ONNX test-data sets (see calib.h). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "calib.h"
#include "error.h"
#include "fileio.h"
#include "tensor.h"
#include "wire.h"

#define DT(x) ONNX__TENSOR_PROTO__DATA_TYPE__##x

/* DEFLATE cannot expand by more than 1032:1 (RFC 1951 stored-length limits). */
#define DEFLATE_MAX_RATIO 1032

enum source_kind { SOURCE_NPZ, SOURCE_PB_SETS };

struct opass_calib_source {
	enum source_kind kind;
	char *path;
	char **files;     /* .npz files or test_data_set folders */
	size_t n_files;
};

/* ---- small helpers ---- */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

uint64_t opass_calib_tensor_numel(const struct opass_calib_tensor *t)
{
	uint64_t n = 1;

	for (size_t i = 0; i < t->n_dims; i++) {
		if (t->dims[i] < 0)
			return 0;
		if (t->dims[i] && n > UINT64_MAX / (uint64_t)t->dims[i])
			return 0;
		n *= (uint64_t)t->dims[i];
	}
	return n;
}

static void tensor_clear(struct opass_calib_tensor *t)
{
	free(t->name);
	free(t->dims);
	free(t->data);
	memset(t, 0, sizeof(*t));
}

void opass_calib_tensors_free(struct opass_calib_tensor *tensors, size_t n)
{
	if (!tensors)
		return;
	for (size_t i = 0; i < n; i++)
		tensor_clear(&tensors[i]);
	free(tensors);
}

struct opass_calib_batch *opass_calib_batch_free(struct opass_calib_batch *batch)
{
	if (!batch)
		return NULL;
	opass_calib_tensors_free(batch->tensors, batch->n_tensors);
	free(batch->path);
	free(batch);
	return NULL;
}

struct opass_calib_source *opass_calib_free(struct opass_calib_source *source)
{
	if (!source)
		return NULL;
	for (size_t i = 0; i < source->n_files; i++)
		free(source->files[i]);
	free(source->files);
	free(source->path);
	free(source);
	return NULL;
}

size_t opass_calib_count(const struct opass_calib_source *source)
{
	return source ? source->n_files : 0;
}

const char *opass_calib_path(const struct opass_calib_source *source, size_t i)
{
	return source && i < source->n_files ? source->files[i] : NULL;
}

/* A batch under construction. */
struct batch_builder {
	struct opass_calib_batch *batch;
	size_t cap;
	char **files;   /* file each tensor came from (borrowed or owned by files_owned) */
};

static struct opass_calib_tensor *batch_add(struct opass_calib_batch *batch, size_t *cap)
{
	struct opass_calib_tensor *t;

	if (batch->n_tensors == *cap) {
		size_t n = *cap ? 2 * *cap : 8;

		t = realloc(batch->tensors, n * sizeof(*t));
		if (!t)
			return NULL;
		batch->tensors = t;
		*cap = n;
	}
	t = &batch->tensors[batch->n_tensors++];
	memset(t, 0, sizeof(*t));
	return t;
}

/* ---- .npy ---- */

struct npy_dtype {
	const char *code;
	int32_t dtype;
	size_t size;
};

static const struct npy_dtype npy_dtypes[] = {
	{ "f4", DT(FLOAT), 4 }, { "f8", DT(DOUBLE), 8 }, { "f2", DT(FLOAT16), 2 },
	{ "i8", DT(INT64), 8 }, { "i4", DT(INT32), 4 }, { "i2", DT(INT16), 2 },
	{ "i1", DT(INT8), 1 }, { "u1", DT(UINT8), 1 }, { "b1", DT(BOOL), 1 },
	{ "u2", DT(UINT16), 2 }, { "u4", DT(UINT32), 4 }, { "u8", DT(UINT64), 8 },
};

/* The header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } */
struct npy_header {
	char descr[16];
	bool have_descr, have_order, have_shape;
	bool fortran;
	int64_t dims[OPASS_CALIB_MAX_RANK];
	size_t n_dims;
};

struct cursor {
	const char *p, *end;
};

static void skip_ws(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static bool accept(struct cursor *c, char ch)
{
	skip_ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

/* A quoted string (no escapes: numpy never writes them in these fields). */
static int parse_str(struct cursor *c, char *out, size_t out_size)
{
	char q;
	size_t n = 0;

	skip_ws(c);
	if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
		return -1;
	q = *c->p++;
	while (c->p < c->end && *c->p != q) {
		if (*c->p == '\\' || n + 1 >= out_size)
			return -1;
		out[n++] = *c->p++;
	}
	if (c->p >= c->end)
		return -1;
	c->p++;
	out[n] = '\0';
	return 0;
}

static bool parse_word(struct cursor *c, const char *word)
{
	size_t n = strlen(word);

	skip_ws(c);
	if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
		c->p += n;
		return true;
	}
	return false;
}

static int parse_shape(struct cursor *c, struct npy_header *h, const char **why)
{
	if (!accept(c, '('))
		return -1;
	h->n_dims = 0;
	for (;;) {
		uint64_t v = 0;
		bool digits = false;

		if (accept(c, ')'))
			return 0;
		skip_ws(c);
		while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
			if (v > (uint64_t)INT64_MAX / 10) {
				*why = "shape dimension too large";
				return -1;
			}
			v = v * 10 + (uint64_t)(*c->p++ - '0');
			if (v > (uint64_t)INT64_MAX) {
				*why = "shape dimension too large";
				return -1;
			}
			digits = true;
		}
		if (!digits)
			return -1;
		if (c->p < c->end && *c->p == 'L')
			c->p++;
		if (h->n_dims == OPASS_CALIB_MAX_RANK) {
			*why = "rank above 64";
			return -1;
		}
		h->dims[h->n_dims++] = (int64_t)v;
		if (!accept(c, ',')) {
			if (!accept(c, ')'))
				return -1;
			return 0;
		}
	}
}

/* NULL on success, else what is wrong. */
static const char *npy_parse_header(const char *text, size_t len, struct npy_header *h)
{
	struct cursor c = { text, text + len };
	const char *why = "malformed .npy header";
	char key[32];

	memset(h, 0, sizeof(*h));
	if (!accept(&c, '{'))
		return why;
	while (!accept(&c, '}')) {
		if (parse_str(&c, key, sizeof(key)) < 0 || !accept(&c, ':'))
			return why;
		if (strcmp(key, "descr") == 0) {
			skip_ws(&c);
			if (c.p < c.end && *c.p == '[')
				return "structured dtypes are not supported";
			if (parse_str(&c, h->descr, sizeof(h->descr)) < 0)
				return "unsupported dtype";
			h->have_descr = true;
		} else if (strcmp(key, "fortran_order") == 0) {
			if (parse_word(&c, "True"))
				h->fortran = true;
			else if (parse_word(&c, "False"))
				h->fortran = false;
			else
				return why;
			h->have_order = true;
		} else if (strcmp(key, "shape") == 0) {
			if (parse_shape(&c, h, &why) < 0)
				return why;
			h->have_shape = true;
		} else {
			return why;
		}
		if (!accept(&c, ',')) {
			if (!accept(&c, '}'))
				return why;
			break;
		}
	}
	if (!h->have_descr || !h->have_order || !h->have_shape)
		return "incomplete .npy header (descr, fortran_order, shape)";
	return NULL;
}

/* Map a numpy dtype string; NULL with *why on failure. */
static const struct npy_dtype *npy_dtype(const char *descr, const char **why)
{
	char order = descr[0];
	const char *code = descr + 1;

	if (order != '<' && order != '|' && order != '=' && order != '>') {
		*why = "unsupported dtype";
		return NULL;
	}
	for (size_t i = 0; i < sizeof(npy_dtypes) / sizeof(npy_dtypes[0]); i++) {
		if (strcmp(code, npy_dtypes[i].code) != 0)
			continue;
		if (order == '>' && npy_dtypes[i].size > 1) {
			*why = "big-endian arrays are not supported: dtype";
			return NULL;
		}
		return &npy_dtypes[i];
	}
	*why = "unsupported dtype";
	return NULL;
}

/*
 * Parse a .npy in buf[0..size) into t (name set by the caller). With owned,
 * buf is a malloc'd buffer that t takes over (the array moved to its start);
 * otherwise the array is copied. Returns NULL or what is wrong.
 */
static const char *npy_parse(uint8_t *buf, size_t size, bool owned, struct opass_calib_tensor *t,
			     char *why_buf, size_t why_size)
{
	const struct npy_dtype *dt;
	struct npy_header h;
	size_t header_len, start;
	uint64_t numel = 1;
	const char *why;

	if (size < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
		return "not a .npy array (bad magic)";
	if (buf[6] == 1) {
		header_len = le16(buf + 8);
		start = 10;
	} else if (buf[6] == 2 || buf[6] == 3) {
		if (size < 12)
			return "truncated .npy header";
		header_len = le32(buf + 8);
		start = 12;
	} else {
		snprintf(why_buf, why_size, "unsupported .npy format version %u", buf[6]);
		return why_buf;
	}
	if (header_len > size - start)
		return "truncated .npy header";
	why = npy_parse_header((const char *)buf + start, header_len, &h);
	if (why)
		return why;
	dt = npy_dtype(h.descr, &why);
	if (!dt) {
		snprintf(why_buf, why_size, "%s '%s'", why, h.descr);
		return why_buf;
	}
	if (h.fortran)
		return "Fortran-order arrays are not supported (save np.ascontiguousarray(a))";
	for (size_t i = 0; i < h.n_dims; i++) {
		if (h.dims[i] && numel > UINT64_MAX / dt->size / (uint64_t)h.dims[i])
			return "shape overflows";
		numel *= (uint64_t)h.dims[i];
	}
	start += header_len;
	if (numel * dt->size != size - start) {
		snprintf(why_buf, why_size, "shape needs %" PRIu64 " bytes of data but the array "
			 "holds %zu", numel * dt->size, size - start);
		return why_buf;
	}
	t->dims = malloc((h.n_dims ? h.n_dims : 1) * sizeof(*t->dims));
	if (!t->dims)
		return "out of memory";
	memcpy(t->dims, h.dims, h.n_dims * sizeof(*t->dims));
	t->n_dims = h.n_dims;
	t->dtype = dt->dtype;
	t->size = size - start;
	if (owned) {
		memmove(buf, buf + start, t->size);
		t->data = t->size ? realloc(buf, t->size) : NULL;
		if (!t->data)
			t->data = t->size ? buf : (free(buf), NULL);
		return NULL;
	}
	t->data = t->size ? malloc(t->size) : NULL;
	if (t->size && !t->data)
		return "out of memory";
	if (t->size)
		memcpy(t->data, buf + start, t->size);
	return NULL;
}

/* ---- .npz (zip) ---- */

#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP_CDIR_SIG 0x02014b50u
#define ZIP_LOCAL_SIG 0x04034b50u
#define ZIP64_LOCATOR_SIG 0x07064b50u

static int npz_member(const char *path, const uint8_t *file, size_t file_size, const uint8_t *cd,
		      struct opass_calib_batch *batch, size_t *cap, size_t *cd_len,
		      struct onnxpass_error *err)
{
	uint16_t flags = le16(cd + 8), method = le16(cd + 10);
	uint32_t crc = le32(cd + 16), comp = le32(cd + 20), uncomp = le32(cd + 24);
	size_t name_len = le16(cd + 28), extra_len = le16(cd + 30), comment_len = le16(cd + 32);
	uint32_t local = le32(cd + 42);
	const char *name = (const char *)cd + 46;
	struct opass_calib_tensor *t;
	const uint8_t *data;
	uint8_t *buf = NULL;
	size_t key_len, data_off;
	char why_buf[160];
	const char *why;

	*cd_len = 46 + name_len + extra_len + comment_len;
	key_len = name_len;
	if (key_len >= 4 && memcmp(name + key_len - 4, ".npy", 4) == 0)
		key_len -= 4;
	if (key_len == 0 || memchr(name, '\0', name_len))
		return opass_error_data(err, -EBADMSG, "%s: zip member with an empty or invalid name", path);
	if (comp == 0xffffffffu || uncomp == 0xffffffffu || local == 0xffffffffu)
		return opass_error_data(err, -ENOTSUP, "%s: member '%.*s': ZIP64 archives are not supported",
					path, (int)name_len, name);
	if (flags & 1)
		return opass_error_data(err, -ENOTSUP, "%s: member '%.*s' is encrypted", path,
					(int)name_len, name);
	if (method != 0 && method != 8)
		return opass_error_data(err, -ENOTSUP, "%s: member '%.*s': compression method %u is not "
					"supported (only stored and deflate)", path, (int)name_len, name, method);
	if (local > file_size || file_size - local < 30 || le32(file + local) != ZIP_LOCAL_SIG)
		return opass_error_data(err, -EBADMSG, "%s: member '%.*s': bad local header offset", path,
					(int)name_len, name);
	data_off = (size_t)local + 30 + le16(file + local + 26) + le16(file + local + 28);
	if (data_off > file_size || file_size - data_off < comp)
		return opass_error_data(err, -EBADMSG, "%s: member '%.*s' is truncated (%" PRIu32
					" bytes claimed)", path, (int)name_len, name, comp);
	data = file + data_off;
	if (method == 0 && comp != uncomp)
		return opass_error_data(err, -EBADMSG, "%s: member '%.*s': stored sizes disagree", path,
					(int)name_len, name);
	if (method == 8) {
		z_stream zs = { 0 };
		int zr;

		if ((uint64_t)uncomp > (uint64_t)comp * DEFLATE_MAX_RATIO + 64)
			return opass_error_data(err, -EBADMSG, "%s: member '%.*s': claimed size %" PRIu32
					   " is impossible for %" PRIu32 " compressed bytes", path,
						(int)name_len, name, uncomp, comp);
		buf = malloc(uncomp ? uncomp : 1);
		if (!buf)
			return opass_error(err, -ENOMEM, "%s: out of memory", path);
		if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
			free(buf);
			return opass_error(err, -ENOMEM, "%s: zlib: out of memory", path);
		}
		zs.next_in = (Bytef *)data;
		zs.avail_in = comp;
		zs.next_out = buf;
		zs.avail_out = uncomp;
		zr = inflate(&zs, Z_FINISH);
		inflateEnd(&zs);
		if (zr != Z_STREAM_END || zs.total_out != uncomp) {
			free(buf);
			return opass_error_data(err, -EBADMSG, "%s: member '%.*s': corrupt deflate data", path,
						(int)name_len, name);
		}
		data = buf;
	}
	if (crc32(0, data, uncomp) != crc) {
		free(buf);
		return opass_error_data(err, -EBADMSG, "%s: member '%.*s': CRC mismatch (corrupt file)",
					path, (int)name_len, name);
	}
	for (size_t i = 0; i < batch->n_tensors; i++)
		if (strlen(batch->tensors[i].name) == key_len &&
		    memcmp(batch->tensors[i].name, name, key_len) == 0) {
			free(buf);
			return opass_error_data(err, -EBADMSG, "%s: input '%.*s' appears twice", path,
						(int)key_len, name);
		}
	if (batch->n_tensors >= OPASS_CALIB_MAX_TENSORS) {
		free(buf);
		return opass_error_data(err, -E2BIG, "%s: more than %d arrays", path, OPASS_CALIB_MAX_TENSORS);
	}
	t = batch_add(batch, cap);
	if (t)
		t->name = strndup(name, key_len);
	if (!t || !t->name) {
		free(buf);
		return opass_error(err, -ENOMEM, "%s: out of memory", path);
	}
	why = npy_parse(buf ? buf : (uint8_t *)data, uncomp, buf != NULL, t, why_buf, sizeof(why_buf));
	if (why) {
		if (buf && !t->data)
			free(buf);
		return opass_error_data(err, -EBADMSG, "%s: input '%s': %s", path, t->name, why);
	}
	return 0;
}

static int npz_read(const char *path, struct opass_calib_batch *batch, struct onnxpass_error *err)
{
	struct opass_mapped_file f = { 0 };
	const uint8_t *file, *eocd = NULL;
	size_t size, cap = 0, lo, entries, cd_off, cd_size, pos;
	int r;

	r = opass_file_map(path, &f, err);
	if (r < 0)
		return r;
	file = f.data;
	size = f.size;
	if (size < 22) {
		r = opass_error_data(err, -EBADMSG, "%s: not an .npz file (too short for a zip archive)", path);
		goto out;
	}
	/* the end record: 22 bytes plus a comment of up to 65535 */
	lo = size - 22 > 65535 ? size - 22 - 65535 : 0;
	for (size_t i = size - 22 + 1; i-- > lo;)
		if (le32(file + i) == ZIP_EOCD_SIG && i + 22 + le16(file + i + 20) == size) {
			eocd = file + i;
			break;
		}
	if (!eocd) {
		r = opass_error_data(err, -EBADMSG, "%s: not an .npz file (no zip end record; truncated "
				     "or not a zip archive)", path);
		goto out;
	}
	entries = le16(eocd + 10);
	cd_size = le32(eocd + 12);
	cd_off = le32(eocd + 16);
	if (entries == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu ||
	    (eocd - file >= 20 && le32(eocd - 20) == ZIP64_LOCATOR_SIG)) {
		r = opass_error_data(err, -ENOTSUP, "%s: ZIP64 archives are not supported", path);
		goto out;
	}
	if (le16(eocd + 4) != 0 || le16(eocd + 6) != 0 || le16(eocd + 8) != entries) {
		r = opass_error_data(err, -ENOTSUP, "%s: multi-part zip archives are not supported", path);
		goto out;
	}
	if (cd_off > (size_t)(eocd - file) || cd_size > (size_t)(eocd - file) - cd_off ||
	    entries > cd_size / 46) {
		r = opass_error_data(err, -EBADMSG, "%s: corrupt zip central directory", path);
		goto out;
	}
	if (entries == 0) {
		r = opass_error_data(err, -EBADMSG, "%s: empty .npz (no arrays)", path);
		goto out;
	}
	pos = cd_off;
	for (size_t i = 0; i < entries; i++) {
		size_t len;

		if (cd_off + cd_size - pos < 46 || le32(file + pos) != ZIP_CDIR_SIG ||
		    cd_off + cd_size - pos < 46 + (size_t)le16(file + pos + 28) +
					     le16(file + pos + 30) + le16(file + pos + 32)) {
			r = opass_error_data(err, -EBADMSG, "%s: corrupt zip central directory", path);
			goto out;
		}
		r = npz_member(path, file, size, file + pos, batch, &cap, &len, err);
		if (r < 0)
			goto out;
		pos += len;
	}
out:
	opass_file_unmap(&f);
	return r;
}

/* ---- TensorProto (.pb) ---- */

static int pb_convert(const char *path, const Onnx__TensorProto *p, struct opass_calib_tensor *t,
		      struct onnxpass_error *err)
{
	const char *name = p->name && *p->name ? p->name : "";
	size_t es = opass_dtype_size(p->data_type), stored;
	uint64_t numel;
	uint8_t *out;
	int r;

	if (p->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return opass_error_data(err, -ENOTSUP, "%s: tensor '%s': external data is not supported "
					"in calibration inputs", path, name);
	if (p->segment)
		return opass_error_data(err, -ENOTSUP, "%s: tensor '%s': segmented tensors are not "
					"supported", path, name);
	if (!es || p->data_type == DT(COMPLEX64) || p->data_type == DT(COMPLEX128))
		return opass_error_data(err, -ENOTSUP, "%s: tensor '%s': dtype %s is not supported", path,
					name, opass_dtype_name(p->data_type));
	if (p->n_dims > OPASS_CALIB_MAX_RANK)
		return opass_error_data(err, -E2BIG, "%s: tensor '%s': rank %zu above %d", path, name,
					p->n_dims, OPASS_CALIB_MAX_RANK);
	r = opass_tensor_numel(p, &numel, err);
	if (r < 0) {
		char prefix[PATH_MAX + 8];

		snprintf(prefix, sizeof(prefix), "%s: ", path);
		opass_error_prefix(err, prefix);
		return opass_error_blame(err, ONNXPASS_ERROR_DATA);
	}
	if (p->has_raw_data) {
		stored = p->raw_data.len / es;
		if (p->raw_data.len % es)
			stored = SIZE_MAX;
	} else {
		switch (p->data_type) {
		case DT(FLOAT): stored = p->n_float_data; break;
		case DT(DOUBLE): stored = p->n_double_data; break;
		case DT(INT64): stored = p->n_int64_data; break;
		case DT(UINT32): case DT(UINT64): stored = p->n_uint64_data; break;
		default: stored = p->n_int32_data; break;
		}
	}
	if (stored != numel)
		return opass_error_data(err, -EBADMSG, "%s: tensor '%s': dims hold %" PRIu64 " elements but "
					"the data holds %s%zu", path, name, numel,
					stored == SIZE_MAX ? "a partial element after " : "",
					stored == SIZE_MAX ? p->raw_data.len / es : stored);
	t->name = strdup(name);
	t->dims = malloc((p->n_dims ? p->n_dims : 1) * sizeof(*t->dims));
	t->size = (size_t)numel * es;
	t->data = t->size ? malloc(t->size) : NULL;
	if (!t->name || !t->dims || (t->size && !t->data))
		return opass_error(err, -ENOMEM, "%s: out of memory", path);
	if (p->n_dims)
		memcpy(t->dims, p->dims, p->n_dims * sizeof(*t->dims));
	t->n_dims = p->n_dims;
	t->dtype = p->data_type;
	out = t->data;
	if (p->has_raw_data) {
		if (t->size)
			memcpy(out, p->raw_data.data, t->size);
		return 0;
	}
	for (size_t i = 0; i < numel; i++) {
		uint64_t v;

		switch (p->data_type) {
		case DT(FLOAT): memcpy(out + 4 * i, &p->float_data[i], 4); continue;
		case DT(DOUBLE): memcpy(out + 8 * i, &p->double_data[i], 8); continue;
		case DT(INT64): v = (uint64_t)p->int64_data[i]; break;
		case DT(UINT32): case DT(UINT64): v = p->uint64_data[i]; break;
		case DT(BOOL): v = p->int32_data[i] != 0; break;
		default: v = (uint64_t)(int64_t)p->int32_data[i]; break;
		}
		/* little-endian truncation to the element size */
		for (size_t b = 0; b < es; b++)
			out[es * i + b] = (uint8_t)(v >> (8 * b));
	}
	return 0;
}

/* Read one TensorProto file into a new tensor of batch. */
static int pb_read(const char *path, struct opass_calib_batch *batch, size_t *cap,
		   struct onnxpass_error *err)
{
	struct opass_wire_limits lim = { .max_depth = 8 };
	struct opass_mapped_file f = { 0 };
	struct opass_calib_tensor *t;
	Onnx__TensorProto *p = NULL;
	int r;

	r = opass_file_map(path, &f, err);
	if (r < 0)
		return r;
	/* protobuf-c's unpack: bounded by the file's size */
	lim.max_memory = 16 * (uint64_t)f.size + ((uint64_t)1 << 20);
	r = opass_wire_check(&onnx__tensor_proto__descriptor, f.data, f.size, &lim, NULL, err);
	if (r < 0) {
		char msg[ONNXPASS_ERROR_MAX];

		snprintf(msg, sizeof(msg), "%s", err ? err->message : "");
		r = opass_error_data(err, r, "%s: not a TensorProto: %s", path, msg);
		goto out;
	}
	p = onnx__tensor_proto__unpack(NULL, f.size, f.data);
	if (!p) {
		r = opass_error_data(err, -EBADMSG, "%s: not a TensorProto (protobuf parse failed)", path);
		goto out;
	}
	t = batch_add(batch, cap);
	if (!t) {
		r = opass_error(err, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	r = pb_convert(path, p, t, err);
out:
	if (p)
		onnx__tensor_proto__free_unpacked(p, NULL);
	opass_file_unmap(&f);
	return r;
}

/* ---- folders ---- */

/* Number after prefix in name (UINT64_MAX when there is none). */
static uint64_t name_number(const char *name, const char *prefix)
{
	const char *s = name + strlen(prefix);
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return UINT64_MAX;
	for (; *s >= '0' && *s <= '9'; s++)
		v = v > UINT64_MAX / 11 ? UINT64_MAX - 1 : v * 10 + (uint64_t)(*s - '0');
	return v;
}

static int cmp_numbered(const void *a, const void *b, void *prefix)
{
	const char *sort_prefix = prefix;
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	const char *bx = strrchr(x, '/'), *by = strrchr(y, '/');
	uint64_t nx, ny;

	bx = bx ? bx + 1 : x;
	by = by ? by + 1 : y;
	nx = name_number(bx, sort_prefix);
	ny = name_number(by, sort_prefix);
	if (nx != ny)
		return nx < ny ? -1 : 1;
	return strcmp(bx, by);
}

static int cmp_names(const void *a, const void *b, void *unused)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Entries of folder whose names start with prefix and end with suffix (and
 * are folders when want_dir), as full paths sorted numerically by the number
 * after prefix (numbered) or by name. */
static int list_folder(const char *folder, const char *prefix, const char *suffix, bool want_dir,
		       bool numbered, char ***ret_list, size_t *ret_n, struct onnxpass_error *err)
{
	DIR *d = opendir(folder);
	struct dirent *e;
	char **list = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	if (!d)
		return opass_error_from(err, ONNXPASS_ERROR_INPUT_FILE, -errno, "%s: %s", folder,
					strerror(errno));
	while ((e = readdir(d))) {
		char *full;

		if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix)) != 0 ||
		    !ends_with(e->d_name, suffix))
			continue;
		if (asprintf(&full, "%s/%s", folder, e->d_name) < 0) {
			r = opass_error(err, -ENOMEM, "out of memory");
			break;
		}
		if (is_dir(full) != want_dir) {
			free(full);
			continue;
		}
		if (n >= OPASS_CALIB_MAX_BATCHES) {
			free(full);
			r = opass_error_data(err, -E2BIG, "%s: more than %zu entries", folder,
					     OPASS_CALIB_MAX_BATCHES);
			break;
		}
		if (n == cap) {
			char **l = realloc(list, (cap = cap ? 2 * cap : 16) * sizeof(*l));

			if (!l) {
				free(full);
				r = opass_error(err, -ENOMEM, "out of memory");
				break;
			}
			list = l;
		}
		list[n++] = full;
	}
	closedir(d);
	if (r < 0) {
		while (n)
			free(list[--n]);
		free(list);
		return r;
	}
	if (n)
		qsort_r(list, n, sizeof(*list), numbered ? cmp_numbered : cmp_names, (void *)prefix);
	*ret_list = list;
	*ret_n = n;
	return 0;
}

int opass_calib_open(const char *path, struct opass_calib_source **ret_source,
		     struct onnxpass_error *err)
{
	struct opass_calib_source *s;
	struct stat st;
	int r = 0;

	if (stat(path, &st) < 0)
		return opass_error_from(err, ONNXPASS_ERROR_INPUT_FILE, -errno, "%s: %s", path,
					strerror(errno));
	s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path))) {
		free(s);
		return opass_error(err, -ENOMEM, "out of memory");
	}
	if (S_ISREG(st.st_mode)) {
		s->kind = SOURCE_NPZ;
		s->files = malloc(sizeof(*s->files));
		if (!s->files || !(s->files[0] = strdup(path)))
			r = opass_error(err, -ENOMEM, "out of memory");
		else
			s->n_files = 1;
	} else if (S_ISDIR(st.st_mode)) {
		/* test-data sets first, then one set (input_*.pb here), then .npz files */
		s->kind = SOURCE_PB_SETS;
		r = list_folder(path, "test_data_set_", "", true, true, &s->files, &s->n_files, err);
		if (r == 0 && s->n_files == 0) {
			char **pbs = NULL;
			size_t n_pbs = 0;

			r = list_folder(path, "input_", ".pb", false, true, &pbs, &n_pbs, err);
			for (size_t i = 0; i < n_pbs; i++)
				free(pbs[i]);
			free(pbs);
			if (r == 0 && n_pbs) {
				free(s->files);
				s->files = malloc(sizeof(*s->files));
				if (!s->files || !(s->files[0] = strdup(path)))
					r = opass_error(err, -ENOMEM, "out of memory");
				else
					s->n_files = 1;
			}
		}
		if (r == 0 && s->n_files == 0) {
			free(s->files);
			s->files = NULL;
			s->kind = SOURCE_NPZ;
			r = list_folder(path, "", ".npz", false, false, &s->files, &s->n_files, err);
		}
		if (r == 0 && s->n_files == 0)
			r = opass_error_data(err, -ENOENT, "%s: no calibration data (expected "
					"test_data_set_*/input_*.pb folders or .npz files)", path);
	} else {
		r = opass_error_data(err, -EBADMSG, "%s: not a file or folder", path);
	}
	if (r < 0) {
		opass_calib_free(s);
		return r;
	}
	*ret_source = s;
	return 0;
}

/* ---- the model's inputs ---- */

static bool is_initializer(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_initializer; i++)
		if (g->initializer[i]->name && strcmp(g->initializer[i]->name, name) == 0)
			return true;
	for (size_t i = 0; i < g->n_sparse_initializer; i++) {
		const Onnx__SparseTensorProto *sp = g->sparse_initializer[i];

		if (sp->values && sp->values->name && strcmp(sp->values->name, name) == 0)
			return true;
	}
	return false;
}

/* The graph inputs that are not initializers, in order (array of borrowed pointers). */
static int model_inputs(const Onnx__ModelProto *model, const Onnx__ValueInfoProto ***ret,
			size_t *ret_n, struct onnxpass_error *err)
{
	const Onnx__GraphProto *g = model ? model->graph : NULL;
	const Onnx__ValueInfoProto **list;
	size_t n = 0;

	if (!g)
		return opass_error(err, -EINVAL, "model has no graph");
	list = malloc((g->n_input ? g->n_input : 1) * sizeof(*list));
	if (!list)
		return opass_error(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n_input; i++)
		if (g->input[i]->name && !is_initializer(g, g->input[i]->name))
			list[n++] = g->input[i];
	*ret = list;
	*ret_n = n;
	return 0;
}

static void format_dims(char *buf, size_t size, const int64_t *dims, size_t n)
{
	size_t len = 0;

	len += (size_t)snprintf(buf, size, "[");
	for (size_t i = 0; i < n && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%" PRId64, i ? "," : "", dims[i]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

static int check_input(const char *file, const Onnx__ValueInfoProto *vi,
		       const struct opass_calib_tensor *t, struct onnxpass_error *err)
{
	const Onnx__TypeProto *type = vi->type;
	const Onnx__TypeProto__Tensor *tt;
	char have[128];

	if (!type || type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
		return opass_error_data(err, -ENOTSUP, "%s: input '%s': the model's input is not a tensor",
					file, vi->name);
	tt = type->tensor_type;
	if (tt->has_elem_type && tt->elem_type != 0 && tt->elem_type != t->dtype)
		return opass_error_data(err, -EINVAL, "%s: input '%s': dtype %s, the model expects %s",
					file, vi->name, opass_dtype_name(t->dtype),
					opass_dtype_name(tt->elem_type));
	if (!tt->shape)
		return 0;
	format_dims(have, sizeof(have), t->dims, t->n_dims);
	if (tt->shape->n_dim != t->n_dims)
		return opass_error_data(err, -EINVAL, "%s: input '%s': rank %zu (shape %s), the model "
					"expects rank %zu", file, vi->name, t->n_dims, have,
					tt->shape->n_dim);
	for (size_t i = 0; i < t->n_dims; i++) {
		const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];

		if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
		    d->dim_value >= 0 && d->dim_value != t->dims[i])
			return opass_error_data(err, -EINVAL, "%s: input '%s': dimension %zu is %" PRId64
						" (shape %s), the model expects %" PRId64, file, vi->name,
						i, t->dims[i], have, d->dim_value);
	}
	return 0;
}

/* Name the name-less tensors (pb sets), check against the model, reorder. */
static int batch_check(struct opass_calib_batch *batch, char **files, const Onnx__ModelProto *model,
		       struct onnxpass_error *err)
{
	const Onnx__ValueInfoProto **inputs = NULL;
	struct opass_calib_tensor *sorted = NULL;
	char **sorted_files = NULL;
	size_t n_inputs = 0;
	int r;

	r = model_inputs(model, &inputs, &n_inputs, err);
	if (r < 0)
		return r;
	for (size_t j = 0; j < batch->n_tensors; j++) {
		struct opass_calib_tensor *t = &batch->tensors[j];

		if (*t->name)
			continue;
		if (j >= n_inputs) {
			r = opass_error_data(err, -EINVAL, "%s: a tensor without a name in position %zu, but "
					     "the model has %zu inputs", files[j], j, n_inputs);
			goto out;
		}
		free(t->name);
		t->name = strdup(inputs[j]->name);
		if (!t->name) {
			r = opass_error(err, -ENOMEM, "out of memory");
			goto out;
		}
	}
	for (size_t j = 0; j < batch->n_tensors; j++) {
		bool known = false;

		for (size_t k = 0; k < j; k++)
			if (strcmp(batch->tensors[k].name, batch->tensors[j].name) == 0) {
				r = opass_error_data(err, -EINVAL, "%s: input '%s' given twice", files[j],
						     batch->tensors[j].name);
				goto out;
			}
		for (size_t k = 0; k < n_inputs && !known; k++)
			known = strcmp(inputs[k]->name, batch->tensors[j].name) == 0;
		if (!known) {
			r = opass_error_data(err, -EINVAL, "%s: input '%s': the model has no such input",
					     files[j], batch->tensors[j].name);
			goto out;
		}
	}
	sorted = calloc(n_inputs ? n_inputs : 1, sizeof(*sorted));
	sorted_files = calloc(n_inputs ? n_inputs : 1, sizeof(*sorted_files));
	if (!sorted || !sorted_files) {
		r = opass_error(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < n_inputs; k++) {
		size_t j;

		for (j = 0; j < batch->n_tensors; j++)
			if (strcmp(inputs[k]->name, batch->tensors[j].name) == 0)
				break;
		if (j == batch->n_tensors) {
			r = opass_error_data(err, -EINVAL, "%s: input '%s' is missing", batch->path,
					     inputs[k]->name);
			goto out;
		}
		r = check_input(files[j], inputs[k], &batch->tensors[j], err);
		if (r < 0)
			goto out;
		sorted[k] = batch->tensors[j];
		sorted_files[k] = files[j];
	}
	/* every tensor is known and none is repeated, so all were moved */
	free(batch->tensors);
	batch->tensors = sorted;
	batch->n_tensors = n_inputs;
	sorted = NULL;
out:
	free(sorted);
	free(sorted_files);
	free(inputs);
	return r;
}

/* Read path (.npz file or test_data_set folder) into a new batch; files[j]
 * is set to the file tensor j came from (strings owned by *ret_names). */
static int batch_read(const char *path, enum source_kind kind, struct opass_calib_batch **ret,
		      char ***ret_files, char ***ret_owned, size_t *ret_n_owned,
		      struct onnxpass_error *err)
{
	struct opass_calib_batch *batch = calloc(1, sizeof(*batch));
	char **pbs = NULL, **files = NULL;
	size_t n_pbs = 0, cap = 0;
	int r = 0;

	if (!batch || !(batch->path = strdup(path))) {
		free(batch);
		return opass_error(err, -ENOMEM, "out of memory");
	}
	if (kind == SOURCE_NPZ) {
		r = npz_read(path, batch, err);
	} else {
		r = list_folder(path, "input_", ".pb", false, true, &pbs, &n_pbs, err);
		if (r == 0 && n_pbs == 0)
			r = opass_error_data(err, -ENOENT, "%s: no input_*.pb files", path);
		if (r == 0 && n_pbs > OPASS_CALIB_MAX_TENSORS)
			r = opass_error_data(err, -E2BIG, "%s: more than %d inputs", path,
					     OPASS_CALIB_MAX_TENSORS);
		for (size_t i = 0; r == 0 && i < n_pbs; i++)
			r = pb_read(pbs[i], batch, &cap, err);
	}
	if (r == 0) {
		files = malloc((batch->n_tensors ? batch->n_tensors : 1) * sizeof(*files));
		if (!files)
			r = opass_error(err, -ENOMEM, "out of memory");
		for (size_t j = 0; files && j < batch->n_tensors; j++)
			files[j] = kind == SOURCE_NPZ ? batch->path : pbs[j];
	}
	if (r < 0) {
		for (size_t i = 0; i < n_pbs; i++)
			free(pbs[i]);
		free(pbs);
		opass_calib_batch_free(batch);
		return r;
	}
	*ret = batch;
	*ret_files = files;
	*ret_owned = pbs;
	*ret_n_owned = n_pbs;
	return 0;
}

int opass_calib_read(const struct opass_calib_source *source, size_t i,
		     const Onnx__ModelProto *model, struct opass_calib_batch **ret_batch,
		     struct onnxpass_error *err)
{
	struct opass_calib_batch *batch = NULL;
	char **files = NULL, **owned = NULL;
	size_t n_owned = 0;
	int r;

	if (!source || i >= source->n_files)
		return opass_error_usage(err, "calibration batch %zu does not exist", i);
	r = batch_read(source->files[i], source->kind, &batch, &files, &owned, &n_owned, err);
	if (r == 0)
		r = batch_check(batch, files, model, err);
	for (size_t k = 0; k < n_owned; k++)
		free(owned[k]);
	free(owned);
	free(files);
	if (r < 0) {
		opass_calib_batch_free(batch);
		return r;
	}
	*ret_batch = batch;
	return 0;
}

int opass_calib_read_file(const char *path, struct opass_calib_batch **ret_batch,
			  struct onnxpass_error *err)
{
	struct opass_calib_batch *batch = calloc(1, sizeof(*batch));
	size_t cap = 0;
	int r;

	if (!batch || !(batch->path = strdup(path))) {
		free(batch);
		return opass_error(err, -ENOMEM, "out of memory");
	}
	r = ends_with(path, ".pb") ? pb_read(path, batch, &cap, err) : npz_read(path, batch, err);
	if (r < 0) {
		opass_calib_batch_free(batch);
		return r;
	}
	*ret_batch = batch;
	return 0;
}
