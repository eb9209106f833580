#!/usr/bin/env bash
# Install every system dependency of onnx-pass on a fresh Debian 12 machine.
# Idempotent: re-running it only checks what is already there.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
ort_version=0.4.9
ort_dir="$top/third_party/onnxruntime"

apt_packages=(
	meson ninja-build pkg-config gcc clang libclang-rt-14-dev
	protobuf-c-compiler libprotobuf-c-dev
	check libcjson-dev zlib1g-dev
	libopenblas-dev liblapacke-dev
	python3-onnx python3-numpy python3-torch python3-torchvision
	python3-pil python3-sklearn fonts-dejavu-core fonts-liberation fonts-freefont-ttf
	valgrind
	strace time
)

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

missing=()
for p in "${apt_packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "bootstrap: installing ${missing[*]}"
	"${sudo_cmd[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ONNX Runtime (official 1.29 Linux x86-64 build) from the npm registry.
if [ ! -f "$ort_dir/lib/libonnxruntime.so" ]; then
	echo "bootstrap: fetching ONNX Runtime (npm com.github.asus4.onnxruntime@$ort_version)"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent "com.github.asus4.onnxruntime@$ort_version" >/dev/null)
	tar -xzf "$tmp"/*.tgz -C "$tmp"
	so=$(find "$tmp/package" -path '*Linux/x64/*' -name 'libonnxruntime.so' -type f | head -n 1)
	hdr=$(find "$tmp/package" -name onnxruntime_c_api.h | head -n 1)
	[ -n "$so" ] && [ -n "$hdr" ] || { echo "bootstrap: ORT package layout not recognised" >&2; exit 1; }
	mkdir -p "$ort_dir/lib" "$ort_dir/include"
	cp "$so" "$ort_dir/lib/libonnxruntime.so"
	# the library's SONAME is libonnxruntime.so.1
	ln -sf libonnxruntime.so "$ort_dir/lib/libonnxruntime.so.1"
	cp "$(dirname "$hdr")"/*.h "$ort_dir/include/"
fi
echo "bootstrap: ok"
