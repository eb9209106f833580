#!/usr/bin/python3
"""Dense ONNX Runtime MatMul against onnx-pass's ai.onnx_pass::SparseMatMul.

BERT-base-sized linear layers (768x768, 768x3072, 3072x768) with A of shape
[batch, 128, K], batch 1 and 8 (M = 128 and 1024). Each weight is pruned by
`onnx-pass sparsify --format ort-sparse` (unstructured: --block 1x1; blocks:
--block 1x4, torch's default, which zeroes 1x4 blocks of the [out, in] weight)
and timed with bench/ort-bench.c against the dense model, both with the same
number of intra-op threads. Dense and sparse are timed alternately, --rounds
times each with --repeat runs after warm-up; a time is the best run of all rounds
(the median of the best round's runs in parentheses), so that load from other
processes on the machine hits both alike. The dense model is the same for every
row of a layer and batch: its time is the best over all of them.

    /usr/bin/python3 bench/sparse_ort.py [--build build] [--threads 2] [--repeat 20]
                                         [--rounds 3] [--batches 1,8] [--quick]
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SHAPES = [(768, 768), (768, 3072), (3072, 768)]
BATCHES = [1, 8]
SEQ = 128
SPARSITIES = [0.5, 0.8, 0.9, 0.95]
PATTERNS = [("unstructured", "1x1"), ("1x4 blocks", "1x4")]


def dense_model(path, k, n, batch, seed):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="/linear/MatMul")
    graph = helper.make_graph(
        [node], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, SEQ, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, SEQ, n])],
        [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def sparsify(onnx_pass, src, dst, sparsity, block):
    subprocess.run([onnx_pass, "sparsify", src, "-o", dst, "--sparsity", str(sparsity),
                    "--block", block, "--format", "ort-sparse", "--min-sparsity", "0"],
                   check=True)
    model = onnx.load(dst)
    for node in model.graph.node:
        if node.domain == "ai.onnx_pass":
            attrs = {a.name: a.i for a in node.attribute}
            fmt = "%dx%d" % (attrs.get("block_rows", 1), attrs.get("block_cols", 1))
            return "CSR" if fmt == "1x1" else "BSR " + fmt
    raise RuntimeError("%s: no SparseMatMul node" % dst)


def bench(ort_bench, model, threads, repeat, lib=None):
    args = [ort_bench, "--threads", str(threads), "--warmup", "3", "--repeat", str(repeat)]
    if lib:
        args += ["--custom-ops", lib]
    out = subprocess.run(args + [model], check=True, capture_output=True, text=True).stdout
    words = out.split()
    return float(words[1]), float(words[3])


def compare(ort_bench, dense, sparse, lib, opts):
    d, s = (1e30, 0.0), (1e30, 0.0)
    for _ in range(opts.rounds):
        d = min(d, bench(ort_bench, dense, opts.threads, opts.repeat))
        s = min(s, bench(ort_bench, sparse, opts.threads, opts.repeat, lib))
    return d + s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(here, "..", "build"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--quick", action="store_true", help="768x768, batch 1, 90% only")
    opts = parser.parse_args()
    onnx_pass = os.path.join(opts.build, "cli", "onnx-pass")
    ort_bench = os.path.join(opts.build, "tests", "ort-bench")
    lib = os.path.abspath(os.path.join(opts.build, "libonnxpass.so"))
    for path in (onnx_pass, ort_bench, lib):
        if not os.path.exists(path):
            sys.exit("sparse_ort.py: %s not found (build with -Dort=enabled)" % path)
    shapes, sparsities = SHAPES, SPARSITIES
    batches = [int(b) for b in opts.batches.split(",")]
    if opts.quick:
        shapes, batches, sparsities = SHAPES[:1], BATCHES[:1], [0.9]

    print("ONNX Runtime CPU, %d intra-op threads for both; best of %d x %d runs (median)"
          % (opts.threads, opts.rounds, opts.repeat))
    print("%-10s %5s %-13s %8s %-9s %17s %17s %8s" % (
        "K x N", "M", "pattern", "sparsity", "format", "dense ms", "sparse ms", "speed-up"))
    with tempfile.TemporaryDirectory(prefix="sparse-ort-") as tmp:
        for k, n in shapes:
            for batch in batches:
                dense = os.path.join(tmp, "dense.onnx")
                dense_model(dense, k, n, batch, seed=k * 7 + n)
                rows, d = [], (1e30, 0.0)
                for pattern, block in PATTERNS:
                    for sparsity in sparsities:
                        sparse = os.path.join(tmp, "sparse.onnx")
                        fmt = sparsify(onnx_pass, dense, sparse, sparsity, block)
                        d_best, d_med, s_best, s_med = compare(ort_bench, dense, sparse,
                                                               lib, opts)
                        d = min(d, (d_best, d_med))
                        rows.append((pattern, sparsity, fmt, s_best, s_med))
                # the dense model is the same for the whole group: its best of all rounds
                for pattern, sparsity, fmt, s_best, s_med in rows:
                    print("%-10s %5d %-13s %7.0f%% %-9s %8.3f (%6.3f) %8.3f (%6.3f) %7.2fx"
                          % ("%dx%d" % (k, n), batch * SEQ, pattern, sparsity * 100, fmt,
                             d[0], d[1], s_best, s_med, d[0] / s_best), flush=True)


if __name__ == "__main__":
    main()
