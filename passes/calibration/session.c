/* SPDX-License-Identifier: MIT */
/*
 * The calibration copy of a prepared model and its ONNX Runtime session:
 * the model serialised with the sites' inputs as extra graph outputs,
 * prepare's all-true mask nodes bypassed (bypass.c), and the large
 * initializers handed to ORT in place instead of copied.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "calibration/calibration.h"
#include "error.h"
#include "filemap.h"
#include "ort_runtime.h"
#include "tensor.h"

static Onnx__ValueInfoProto *value_info_new(const char *name)
{
	Onnx__ValueInfoProto *vi = malloc(sizeof(*vi));

	if (!vi)
		return NULL;
	onnx__value_info_proto__init(vi);
	vi->name = strdup(name);
	if (!vi->name) {
		free(vi);
		return NULL;
	}
	return vi;
}

/*
 * The large initializers go to ORT in place (AddInitializer), so that
 * neither the serialised copy nor ORT holds their bytes a second time. In
 * the serialised copy they are external data in a sparse placeholder file
 * (ORT checks that the file exists, never reads it). They live in the
 * model's work file (store.h; moved there first if the model had none), so
 * that once ORT has made its prepacked copies, their pages leave memory
 * until a pass reads them again: a session and the model's weights are not
 * both resident.
 */
#define SHARE_MIN 4096
#define PLACEHOLDER "shared.bin"

struct share_entry {
	Onnx__TensorProto *t;
	Onnx__TensorProto was;
	Onnx__StringStringEntryProto kv[3];
	Onnx__StringStringEntryProto *kvp[3];
	/* the entries' strings (protobuf-c's fields are not const) */
	char keys[3][sizeof("location")];
	char location[sizeof(PLACEHOLDER)];
	char offset[sizeof("0")];
	char length[24];
};

struct share {
	bool enabled;
	const struct opass_filemap *map;  /* the model's work file */
	struct share_entry *items;
	struct opass_calib_tensor *tensors;
	size_t n;
	char folder[64];
	size_t max_size;
};

static void share_entry_init(struct share_entry *e, Onnx__TensorProto *t)
{
	const char *const keys[3] = { "location", "offset", "length" };
	char *values[3] = { e->location, e->offset, e->length };

	e->t = t;
	e->was = *t;
	snprintf(e->location, sizeof(e->location), "%s", PLACEHOLDER);
	snprintf(e->offset, sizeof(e->offset), "0");
	snprintf(e->length, sizeof(e->length), "%zu", t->raw_data.len);
	for (int k = 0; k < 3; k++) {
		snprintf(e->keys[k], sizeof(e->keys[k]), "%s", keys[k]);
		onnx__string_string_entry_proto__init(&e->kv[k]);
		e->kv[k].key = e->keys[k];
		e->kv[k].value = values[k];
		e->kvp[k] = &e->kv[k];
	}
	t->has_raw_data = false;
	t->raw_data = (ProtobufCBinaryData){ 0 };
	t->has_data_location = true;
	t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	t->n_external_data = 3;
	t->external_data = e->kvp;
}

/* Take the large raw main-graph initializers out of the model. */
static int share_take(Onnx__GraphProto *g, struct share *sh)
{
	if (!sh->enabled)
		return 0;
	sh->items = calloc(g->n_initializer + 1, sizeof(*sh->items));
	sh->tensors = calloc(g->n_initializer + 1, sizeof(*sh->tensors));
	if (!sh->items || !sh->tensors)
		return -ENOMEM;
	for (size_t i = 0; i < g->n_initializer; i++) {
		Onnx__TensorProto *t = g->initializer[i];

		if (!t->has_raw_data || t->raw_data.len < SHARE_MIN || !opass_dtype_size(t->data_type) ||
		    !t->name || (t->has_data_location && t->data_location &&
				 !opass_filemap_holds(sh->map, t)))
			continue;
		sh->tensors[sh->n] = (struct opass_calib_tensor){
			.name = t->name, .dtype = t->data_type, .dims = t->dims, .n_dims = t->n_dims,
			.data = t->raw_data.data, .size = t->raw_data.len,
		};
		if (t->raw_data.len > sh->max_size)
			sh->max_size = t->raw_data.len;
		share_entry_init(&sh->items[sh->n++], t);
	}
	return 0;
}

static void share_restore(struct share *sh)
{
	for (size_t i = 0; sh->items && i < sh->n; i++)
		*sh->items[i].t = sh->items[i].was;
}

/* The session has what it needs of the shared bytes (its prepacked
 * copies; anything else it reads back from the work file). */
static void share_release(const struct share *sh)
{
	for (size_t i = 0; i < sh->n; i++)
		opass_filemap_release(sh->map, sh->items[i].t);
}

/*
 * While ORT creates the session it reads every shared weight once to
 * prepack it; a thread drops the pages it has read every few milliseconds,
 * so that the weights are not resident twice (their bytes and ORT's packed
 * copies) at the end of session creation. Dropping pages of a shared file
 * mapping is safe at any time: a later read maps them in again.
 */
#define DROP_INTERVAL_NS 20000000L

struct dropper {
	const struct share *sh;
	atomic_bool stop;
	pthread_t thread;
	bool running;
};

static void *dropper_run(void *userdata)
{
	struct dropper *d = userdata;
	const struct timespec pause = { .tv_nsec = DROP_INTERVAL_NS };

	while (!atomic_load(&d->stop)) {
		share_release(d->sh);
		nanosleep(&pause, NULL);
	}
	return NULL;
}

/* Best effort: without the thread, pages are dropped after creation only. */
static void dropper_start(struct dropper *d, const struct share *sh)
{
	d->sh = sh;
	atomic_init(&d->stop, false);
	d->running = sh->n && sh->map->shared &&
		     pthread_create(&d->thread, NULL, dropper_run, d) == 0;
}

static void dropper_stop(struct dropper *d)
{
	atomic_store(&d->stop, true);
	if (d->running)
		pthread_join(d->thread, NULL);
	d->running = false;
}

/* A private folder with a sparse placeholder of the largest size. */
static int share_folder(struct share *sh)
{
	const char *tmp = getenv("TMPDIR");
	char path[sizeof(sh->folder) + 16];
	int fd, r = 0;

	if (!tmp || strlen(tmp) > sizeof(sh->folder) - 24)
		tmp = "/tmp";
	snprintf(sh->folder, sizeof(sh->folder), "%s/onnx-pass-XXXXXX", tmp);
	if (!mkdtemp(sh->folder)) {
		sh->folder[0] = '\0';
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/" PLACEHOLDER, sh->folder);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)sh->max_size) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	return r;
}

static void share_fini(struct share *sh)
{
	char path[sizeof(sh->folder) + 16];

	free(sh->items);
	free(sh->tensors);
	if (sh->folder[0]) {
		snprintf(path, sizeof(path), "%s/" PLACEHOLDER, sh->folder);
		unlink(path);
		rmdir(sh->folder);
	}
}

/* Serialise the model with names[] as extra graph outputs (untyped: ORT
 * infers them), the shared initializers left out, then restore the graph. */
static int pack_with_outputs(struct onnxpass_model *model, const struct opass_state *state,
			     const char **names, size_t n, struct share *sh, void **ret_data,
			     size_t *ret_size, struct onnxpass_error *err)
{
	struct opass_bypass bypass = { 0 };
	Onnx__GraphProto *g = model->proto->graph;
	size_t n0 = g->n_output;
	Onnx__ValueInfoProto **outs = realloc(g->output, (n0 + n + 1) * sizeof(*outs));
	int r = 0;

	if (!outs)
		return opass_error(err, -ENOMEM, "out of memory");
	g->output = outs;
	for (size_t i = 0; i < n && r == 0; i++) {
		outs[n0 + i] = value_info_new(names[i]);
		if (!outs[n0 + i])
			r = opass_error(err, -ENOMEM, "out of memory");
		else
			g->n_output++;
	}
	if (r == 0 && (opass_bypass_take(g, state, &bypass) < 0 || share_take(g, sh) < 0))
		r = opass_error(err, -ENOMEM, "out of memory");
	if (r == 0)
		r = onnxpass_model_save_bytes(model, ret_data, ret_size, err);
	share_restore(sh);
	opass_bypass_restore(g, &bypass);
	for (size_t i = n0; i < g->n_output; i++)
		onnx__value_info_proto__free_unpacked(outs[i], NULL);
	g->n_output = n0;
	return r;
}

/* Move the model's large main-graph initializers into a work file of
 * their own when it has none (on failure they stay where they are). */
static void weights_spill(struct onnxpass_model *model)
{
	Onnx__GraphProto *g = model->proto->graph;
	struct opass_store_src *srcs;
	size_t n = 0;

	if (model->store.fd >= 0 || !(srcs = calloc(g->n_initializer + 1, sizeof(*srcs))))
		return;
	for (size_t i = 0; i < g->n_initializer; i++) {
		Onnx__TensorProto *t = g->initializer[i];

		if (t->has_raw_data && t->raw_data.len >= OPASS_STORE_MIN_BYTES &&
		    !(t->has_data_location && t->data_location))
			srcs[n++] = (struct opass_store_src){ .tensor = t, .fd = -1,
							      .length = t->raw_data.len };
	}
	if (n)
		(void)opass_store_fill(&model->store, model->base_dir, srcs, n);
	free(srcs);
}

/* One try: with the large initializers shared in place, or all inline. */
static int session_try(const struct opass_collect *how, struct opass_ort *ort, const char **names,
		       size_t n_names, bool share, struct opass_ort_session **ret_session,
		       struct onnxpass_error *err)
{
	struct share sh = { .enabled = share, .map = &how->model->store.map };
	struct dropper dropper = { 0 };
	struct opass_ort_shared shared;
	void *bytes = NULL;
	size_t size = 0;
	int r = pack_with_outputs(how->model, how->state, names, n_names, &sh, &bytes, &size, err);

	if (r == 0 && sh.n && share_folder(&sh) < 0)
		r = opass_error(err, -EIO, "calibration: cannot create a temporary folder: %s",
				strerror(errno));
	shared = (struct opass_ort_shared){ .tensors = sh.tensors, .n = sh.n, .folder = sh.folder };
	if (r == 0) {
		dropper_start(&dropper, &sh);
		r = opass_ort_session_new(ort, bytes, size, how->threads, &shared, ret_session, err);
		dropper_stop(&dropper);
	}
	if (r == 0)
		share_release(&sh);
	free(bytes);
	share_fini(&sh);
	return r;
}

int opass_calib_session_open(const struct opass_collect *how, struct opass_ort *ort,
			     const char **names, size_t n_names,
			     struct opass_ort_session **ret_session, struct onnxpass_error *err)
{
	int r;

	weights_spill(how->model);
	r = session_try(how, ort, names, n_names, true, ret_session, err);

	/* an ONNX Runtime without the placeholder folder option: copies, then */
	if (r < 0 && r != -ENOMEM)
		r = session_try(how, ort, names, n_names, false, ret_session, err);
	return r;
}

