/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include "onnxpass/onnxpass.h"
int main(void) { printf("%s\n", onnxpass_version()); return 0; }
