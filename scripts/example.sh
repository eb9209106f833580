#!/usr/bin/env bash
# The main job on the bundled example: install, build, export a small torch
# transformer, sparsify it to 2:4 and show the result.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/bootstrap.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
mkdir -p build/example
/usr/bin/python3 examples/make_example.py build/example/encoder.onnx 2>/dev/null
build/cli/onnx-pass config build/example/encoder.onnx > build/example/config.json
build/cli/onnx-pass sparsify build/example/encoder.onnx -o build/example/encoder.2of4.onnx \
	--block 1x4 --zeros-per-block 2 --sparsity 1
build/cli/onnx-pass inspect build/example/encoder.2of4.onnx
echo "example: wrote build/example/encoder.2of4.onnx (2:4 sparse weights) and build/example/config.json"
