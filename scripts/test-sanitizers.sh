#!/usr/bin/env bash
# The memory-safety part of the test suite (SPEC 9), run by scripts/test.sh:
#   1. an ASan + UBSan build running the whole meson suite, except the tests
#      that load the library into Python through ctypes (an uninstrumented
#      interpreter cannot host the ASan runtime); the C suites, the CLI and
#      everything the Python tests run through the CLI run instrumented, with
#      leak detection on;
#   2. valgrind memcheck on the C suites in $VALGRIND_SUITES, on the normal
#      build given as $1;
#   3. each libFuzzer target for $FUZZ_SECONDS seconds (fuzz/run.sh).
# Usage: scripts/test-sanitizers.sh NORMAL_BUILDDIR
# Env: ASAN_BUILDDIR (.build-asan), FUZZ_BUILDDIR (.build-fuzz), FUZZ_SECONDS (60),
#      VALGRIND_SUITES, SANITIZER_STAGES (default "asan valgrind fuzz").
# Runs every stage, prints one line per stage with its time, exits non-zero if
# any failed. The sanitizer builds live in hidden folders: the Python module looks
# for a library in build*/, and an ASan one cannot load into Python.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
normal=${1:?usage: scripts/test-sanitizers.sh NORMAL_BUILDDIR}
asan=${ASAN_BUILDDIR:-.build-asan}
stages=${SANITIZER_STAGES:-asan valgrind fuzz}
valgrind_suites=${VALGRIND_SUITES:-config wire weights model masks}
# tests that dlopen the library from Python (ctypes), and the peak-memory test
# (ASan's shadow memory and quarantine are not the library's)
asan_skip=" python example-python-2of4 external-memory probes-python "
failed=()
summary=()

stage_asan() {
	if [ ! -f "$asan/build.ninja" ]; then
		meson setup "$asan" -Dwerror=true -Dort=enabled -Db_sanitize=address,undefined \
			-Db_lundef=false >/dev/null || return 1
	fi
	ninja -C "$asan" >/dev/null || return 1
	local tests=()
	for t in $(meson test -C "$asan" --list 2>/dev/null); do
		[[ "$asan_skip" == *" $t "* ]] || tests+=("$t")
	done
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
	LSAN_OPTIONS=suppressions=$top/scripts/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C "$asan" --no-rebuild --print-errorlogs --timeout-multiplier 3 \
		"${tests[@]}"
}

stage_valgrind() {
	# Check forks a child per test by default; CK_FORK=no keeps it in one process
	CK_FORK=no meson test -C "$normal" --no-rebuild --print-errorlogs --timeout-multiplier 10 \
		--wrap='valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --track-origins=yes' \
		$valgrind_suites
}

stage_fuzz() {
	FUZZ_BUILDDIR=${FUZZ_BUILDDIR:-.build-fuzz} fuzz/run.sh "${FUZZ_SECONDS:-60}"
}

for stage in $stages; do
	echo "== sanitizers: $stage"
	start=$(date +%s)
	if "stage_$stage"; then
		result=ok
	else
		result=FAILED
		failed+=("$stage")
	fi
	summary+=("$stage: $result in $(( $(date +%s) - start ))s")
done
echo "== sanitizers summary"
printf '   %s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ]
