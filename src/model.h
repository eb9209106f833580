/* SPDX-License-Identifier: MIT */
/* The in-memory model: the protobuf-c tree plus where it came from. */
#pragma once

#include <stdbool.h>

#include "onnx.pb-c.h"
#include "onnxpass/onnxpass.h"
#include "store.h"

struct onnxpass_model {
	Onnx__ModelProto *proto;
	char *base_dir;     /* folder external data is relative to, or NULL */
	bool had_external;  /* the input stored tensors in side files */
	struct opass_store store; /* large external tensors, mapped */
};

/* metadata_props lookup/update (value NULL removes the key). */
const char *opass_model_get_metadata(const Onnx__ModelProto *proto, const char *key);
int opass_model_set_metadata(Onnx__ModelProto *proto, const char *key, const char *value);
