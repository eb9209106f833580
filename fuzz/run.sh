#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan) and run each for SECONDS.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]   (default 60 s, every target)
# Env: FUZZ_BUILDDIR (default .build-fuzz: not build*, where the Python module
# looks for an uninstrumented library). Exits non-zero when a target finds a
# crash, a leak or a timeout; the input is kept in $FUZZ_BUILDDIR/fuzz-artifacts/.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz-model fuzz-config fuzz-external fuzz-calib)
builddir=${FUZZ_BUILDDIR:-.build-fuzz}

if [ ! -f "$builddir/build.ninja" ]; then
	CC=clang meson setup "$builddir" -Dfuzz=true -Dtests=false \
		-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
ninja -C "$builddir" >/dev/null

corpus="$builddir/fuzz-corpus"
if [ ! -d "$corpus/model" ]; then
	rm -rf "$corpus.tmp"
	/usr/bin/python3 fuzz/make_corpus.py "$corpus.tmp" "$builddir/cli/onnx-pass"
	mv "$corpus.tmp" "$corpus"
fi
artifacts="$builddir/fuzz-artifacts"
mkdir -p "$artifacts"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
status=0
for t in "${targets[@]}"; do
	kind=${t#fuzz-}
	mkdir -p "$corpus/$kind"   # a corpus made before this target existed
	echo "fuzz: $t for ${seconds}s (corpus $corpus/$kind)"
	start=$(date +%s)
	if ! "$builddir/fuzz/$t" "$corpus/$kind" -max_total_time="$seconds" \
		-timeout=20 -rss_limit_mb=2560 -max_len=65536 -print_final_stats=1 \
		-artifact_prefix="$artifacts/$t-" > "$builddir/$t.log" 2>&1; then
		echo "fuzz: $t FAILED (log $builddir/$t.log, inputs in $artifacts/)"
		tail -n 40 "$builddir/$t.log"
		status=1
	else
		echo "fuzz: $t ok in $(( $(date +%s) - start ))s:" \
			"$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$builddir/$t.log" | grep -o '[0-9]*$') runs"
	fi
done
exit $status
