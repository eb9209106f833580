#!/usr/bin/env bash
# Install, build (warnings are errors) and run the whole test suite.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/bootstrap.sh
builddir=${BUILDDIR:-build-test}
[ -f "$builddir/build.ninja" ] || meson setup "$builddir" -Dwerror=true -Dort=enabled >/dev/null
ninja -C "$builddir"
meson test -C "$builddir" --print-errorlogs "$@"
