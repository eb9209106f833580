/* SPDX-License-Identifier: MIT */
/*
 * onnx-pass: torch.ao.pruning's sparsifier workflow as ONNX graph passes.
 *
 * Conventions: every function returns 0 or a negative errno and fills its
 * ret_ out-parameters only on success. Functions that can fail take a
 * struct onnxpass_error (may be NULL) which receives the errno, a one-line
 * message and what the failure is about (its source). The library never
 * prints and never exits. Destructors accept NULL.
 *
 * The errno values and what they mean here:
 *   -EINVAL     an invalid value: in the config document (source CONFIG),
 *               pass options, the pass list, a plugin (USAGE); calibration
 *               data that does not fit the model (DATA); a node the pass
 *               cannot use (MODEL). The source, not the errno, says whom
 *               to blame.
 *   -EBADMSG    malformed content: a model, tensor, state or calibration
 *               file that does not parse or contradicts itself
 *   -ENOMEM     out of memory
 *   -E2BIG      a size limit (nesting depth, memory a file would need,
 *               tensor rank or element count); -EFBIG, -EOVERFLOW: sizes
 *               that do not fit the format or a 64-bit count
 *   -ENOTSUP    valid but not supported (a dtype, an operator, a storage
 *               format, a build without ONNX Runtime)
 *   -ENOENT     something named is absent: a file, an unprepared model's
 *               state, external data without a folder, ONNX Runtime
 *   -EIO        reading or writing failed, an input changed while read
 *   -EDOM       numerics failed (sparsegpt's Hessian stays singular)
 *   -EPERM      external data outside the model's folder
 *   -ELOOP      a symlink loop; subgraphs nested too deep while walking
 *               weights (the loader says -E2BIG for the same)
 *   -EALREADY   prepare on a model that is prepared already
 *   -ENODEV     ONNX Runtime offers no OnnxPassSparse device
 * and errno values of the system calls on files (-EISDIR, -EACCES,
 * -ENOSPC, ...), passed on as they came.
 */
#ifndef ONNXPASS_ONNXPASS_H
#define ONNXPASS_ONNXPASS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ONNXPASS_EXPORT __attribute__((visibility("default")))
#else
#define ONNXPASS_EXPORT
#endif

#define ONNXPASS_ERROR_MAX 1024

/* What a failure is about: whom to blame. A caller picks its reaction (the
 * command line: exit code and the file it names) from this, never from the
 * message text. */
enum onnxpass_error_source {
	/* the model's content; also what plugins' errors say (the default) */
	ONNXPASS_ERROR_MODEL = 0,
	/* how the library was called: the pass list, pass options (the config
	 * document's "options"), a plugin that cannot be loaded */
	ONNXPASS_ERROR_USAGE = 1,
	/* the config document: its JSON, keys and values (SPEC 5) */
	ONNXPASS_ERROR_CONFIG = 2,
	/* a file the caller named could not be read (a model, calibration or
	 * compare inputs); the message starts with its path */
	ONNXPASS_ERROR_INPUT_FILE = 3,
	/* an output could not be written; the message starts with its path */
	ONNXPASS_ERROR_OUTPUT = 4,
	/* calibration or compare inputs that do not fit the model or cannot be
	 * decoded; the message names the file */
	ONNXPASS_ERROR_DATA = 5,
	/* the environment: ONNX Runtime missing or failing */
	ONNXPASS_ERROR_RUNTIME = 6,
};

/* A failure's negative errno and message, filled by the failing call. */
struct onnxpass_error {
	int code;
	char message[ONNXPASS_ERROR_MAX];
	/* Since plugin ABI 2 (appended, so the fields above keep their place):
	 * an enum onnxpass_error_source. The struct a pass's run() receives is
	 * the host's; code compiled against the ABI 1 header (a smaller struct)
	 * must not hand its own struct to the library. */
	int source;
};

/* An ONNX model held in memory. */
struct onnxpass_model;

/* Flags for onnxpass_model_save_file(). */
enum onnxpass_save_flags {
	/* store large tensors in a side file even if the input had none */
	ONNXPASS_SAVE_EXTERNAL_DATA = 1u << 0,
	/* fsync the written files and their folder before returning, so the
	 * output survives a power loss (off by default, like cp or onnx.save;
	 * the rename is atomic either way) */
	ONNXPASS_SAVE_FSYNC = 1u << 1,
};

ONNXPASS_EXPORT const char *onnxpass_version(void);

/* Load a model file; external data is resolved relative to its folder. */
ONNXPASS_EXPORT int onnxpass_model_load_file(const char *path,
					     struct onnxpass_model **ret_model,
					     struct onnxpass_error *err);

/* Load a serialised model. base_dir (may be NULL) resolves external data. */
ONNXPASS_EXPORT int onnxpass_model_load_bytes(const void *data, size_t size,
					      const char *base_dir,
					      struct onnxpass_model **ret_model,
					      struct onnxpass_error *err);

/* Write atomically (temp file + rename); path may equal the input's.
 * Like cp and install: "-" is stdout; a symlink is followed (its target is
 * replaced, the link stays); a character device, FIFO or socket is written
 * as a stream, without rename; an existing file keeps its mode and, where
 * the process may set it, its owner (not its hard links: it is a new file).
 * With external data the side file is PATH.<random>.data, PATH is the only
 * commit point, and the side files the replaced PATH used are removed. */
ONNXPASS_EXPORT int onnxpass_model_save_file(struct onnxpass_model *model,
					     const char *path, unsigned flags,
					     struct onnxpass_error *err);

/* Write size bytes to path as onnxpass_model_save_file() writes a model
 * (flags: ONNXPASS_SAVE_FSYNC). */
ONNXPASS_EXPORT int onnxpass_file_write(const char *path, const void *data, size_t size,
					unsigned flags, struct onnxpass_error *err);

/* Serialise to a malloc'd buffer the caller frees with onnxpass_free(). */
ONNXPASS_EXPORT int onnxpass_model_save_bytes(struct onnxpass_model *model,
					      void **ret_data, size_t *ret_size,
					      struct onnxpass_error *err);

/* Frees the model; returns NULL. */
ONNXPASS_EXPORT struct onnxpass_model *onnxpass_model_free(struct onnxpass_model *model);

/* The protobuf-c Onnx__ModelProto behind the model, for plugins that
 * generate onnx.pb-c.h from the same onnx.proto. Everything a plugin
 * splices into it must be malloc'd (the library frees it with protobuf-c).
 * A tensor with data_location EXTERNAL and raw_data is mapped from a file:
 * its bytes may change in place, but its raw_data must not be freed or
 * replaced (clear raw_data and has_raw_data before freeing such a tensor). */
ONNXPASS_EXPORT void *onnxpass_model_get_proto(struct onnxpass_model *model);

/* Frees memory returned by the library. */
ONNXPASS_EXPORT void onnxpass_free(void *p);

/* A set of passes: the built-in ones plus loaded plugins. */
struct onnxpass_registry;

ONNXPASS_EXPORT int onnxpass_registry_new(struct onnxpass_registry **ret_registry,
					  struct onnxpass_error *err);
ONNXPASS_EXPORT struct onnxpass_registry *onnxpass_registry_free(struct onnxpass_registry *registry);

/* Load a plugin .so (see plugin.h) and add its passes. */
ONNXPASS_EXPORT int onnxpass_registry_load_plugin(struct onnxpass_registry *registry,
						  const char *path,
						  struct onnxpass_error *err);

/* Number of passes and their descriptors (struct onnxpass_pass, plugin.h). */
ONNXPASS_EXPORT size_t onnxpass_registry_count(const struct onnxpass_registry *registry);
ONNXPASS_EXPORT const struct onnxpass_pass *onnxpass_registry_get(const struct onnxpass_registry *registry,
								  size_t index);

/*
 * Run a comma-separated pass list ("prepare,step,convert") on a model.
 * config_json (may be NULL) is the sparsity config (SPEC 5) with an optional
 * "options" object for pass options. Text the passes produce (config,
 * inspect) is returned in *ret_report (malloc'd, may be NULL when
 * ret_report is NULL). On failure the model may be partially modified.
 */
ONNXPASS_EXPORT int onnxpass_registry_run(const struct onnxpass_registry *registry,
					  struct onnxpass_model *model,
					  const char *passes, const char *config_json,
					  char **ret_report, struct onnxpass_error *err);

/*
 * Bytes in, bytes out: run the built-in passes on a serialised model.
 * On success *ret_out / *ret_out_size hold the new model and *ret_report
 * (if ret_report is not NULL) the passes' text output or NULL; free both
 * with onnxpass_free(). On failure nothing is returned and err says why.
 * Models with external data are not supported here (no folder).
 * Thread-safe: no global state; concurrent calls are independent.
 */
ONNXPASS_EXPORT int onnxpass_transform_bytes(const void *in, size_t in_size,
					     const char *passes, const char *config_json,
					     void **ret_out, size_t *ret_out_size,
					     char **ret_report, struct onnxpass_error *err);

/* Flags for onnxpass_compare(). */
enum onnxpass_compare_flags {
	/* a JSON document instead of the text table */
	ONNXPASS_COMPARE_JSON = 1u << 0,
};

/*
 * Run a reference and a candidate model in ONNX Runtime (loaded at run
 * time: $ONNX_PASS_ORT_LIBRARY, the build's ort_dir, third_party/onnxruntime,
 * the loader's path) on every batch of inputs_path (calibration data: a
 * folder of test_data_set_N/input_M.pb, a folder of .npz files, or one .npz;
 * see README "Calibration data") and report, per output (matched by name;
 * both models must have the same output set, and equal dtypes and shapes):
 *   max_abs_error      max |ref - cand| over all elements of all batches
 *   max_rel_error      max_abs_error / max |ref| (0 when both are 0, null
 *                      when only max |ref| is 0)
 *   cosine_similarity  of ref and cand as vectors of all elements of all
 *                      batches (1 when both are all zeros, 0 when one is)
 *   top1_agreement     fraction of positions (all indices but the last axis)
 *                      where argmax along the last axis agrees; null for
 *                      non-float outputs, rank 0 or last dimension 1
 * A NaN in only one of the two counts as an infinite difference (null in
 * JSON, "inf" in text); NaN or infinite values are left out of the cosine.
 * *ret_report: a text table, or with ONNXPASS_COMPARE_JSON a JSON object
 * {"reference", "candidate", "inputs", "batches", "outputs": [{"name",
 * "dtype", "elements", "max_abs_error", "max_rel_error",
 * "cosine_similarity", "top1_agreement", "top1_positions"}]}; free it with
 * onnxpass_free(). Errors start with the file they concern; -ENOENT when
 * ONNX Runtime is not found, -ENOTSUP when the library was built without it.
 */
ONNXPASS_EXPORT int onnxpass_compare(const char *ref_path, const char *cand_path,
				     const char *inputs_path, unsigned flags, char **ret_report,
				     struct onnxpass_error *err);

#ifdef __cplusplus
}
#endif

#endif
