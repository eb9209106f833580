/* SPDX-License-Identifier: MIT */
#pragma once

#include "onnxpass/plugin.h"

/* Shorthand: return opass_error(err, -EBADMSG, "...") */
#define opass_error onnxpass_error_set
