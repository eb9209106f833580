#!/usr/bin/env bash
# Install, build (warnings are errors) and run the whole test suite.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/bootstrap.sh
builddir=${BUILDDIR:-build-test}
[ -f "$builddir/build.ninja" ] || meson setup "$builddir" -Dwerror=true -Dort=enabled >/dev/null
ninja -C "$builddir"
status=0
# ASan/UBSan suite, valgrind and the fuzzers (scripts/test-sanitizers.sh): on full
# runs only (no test names given), unless ONNX_PASS_SANITIZERS=0.
if [ $# -eq 0 ] && [ "${ONNX_PASS_SANITIZERS:-1}" != 0 ]; then
	scripts/test-sanitizers.sh "$builddir" || status=1
fi
# the main suite last, so the output ends with meson's summary
meson test -C "$builddir" --print-errorlogs "$@" || status=1
exit $status
