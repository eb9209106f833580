#!/usr/bin/python3
"""Plain-numpy reference Wanda and SparseGPT for ONNX models (SPEC 12).

Usage: ref_prune.py MODEL -o OUT --calibration DIR --method wanda|sparsegpt
                    [--sparsity X | --nm N:M] [--stages K] [--weights NAME,...]
                    [--ort-run PATH]

Not the product: it tells what accuracy SPEC 12's sparsifiers should reach and is a
cross-check for the C implementation. By default one shot: every layer's statistics
come from the dense model. --stages K: sequential in K stages (the weights in graph
order split into K runs, each run's statistics taken with the earlier runs pruned).

Statistics: each pruned weight's consumer (MatMul / Gemm / Conv) input is added as an
extra graph output, the model runs in ONNX Runtime (tests/ortlib.py, ort-run) on each
calibration batch (.npz files keyed by input name), and H = sum x x^T is accumulated
in float64 over the rows of the layer's 2-D input view: MatMul A reshaped to
[-1, in]; Gemm A (transA); Conv im2col patches (strides, pads, dilations) giving one
H per group, [group, Cin/group*kh*kw, ...]. The 2-D weight view is [out, in]:
MatMul's stored [in, out] transposed, Gemm B (transB), Conv [Cout, Cin/group*kh*kw]
split into groups of rows.

Wanda: score |W_ij| * ||X_j||_2 (= sqrt(H_jj)); per output row the
round(in * sparsity) lowest are pruned; N:M: the N lowest of each group of M in a row.
SparseGPT (Frantar & Alistarh 2023, the reference code's algorithm): dead inputs
(H_jj = 0) zeroed, H += 0.01 * mean(diag H) * I, U = upper Cholesky factor of H^-1,
columns in lazy blocks of 128; unstructured: per block, the round(rows * cols *
sparsity) lowest w^2 / U_jj^2 of the block are pruned (the reference code prunes one
more, <= its threshold); N:M: at each group of M columns the N lowest per row; each
column's error is spread over the later columns (OBS update). A trailing partial N:M
group of r < M columns counts its M - r missing columns as pruned first (as torch's
padded blocks do).
"""
import argparse
import glob
import os
import shutil
import sys
import tempfile

import numpy as np
import onnx
from onnx import helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import ortlib  # noqa: E402


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def weight_tensors(model):
    """name -> TensorProto for initializers and Constant nodes' value."""
    out = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = a.t
    return out


def consumers(model, names):
    """name -> [(node, role)] for MatMul B, Gemm B and Conv W uses of the weights."""
    uses = {n: [] for n in names}
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm", "Conv") and len(node.input) > 1 \
                and node.input[1] in uses:
            uses[node.input[1]].append(node)
    return uses


class Layer:
    """One weight: its 2-D grouped view and the H of its inputs."""

    def __init__(self, name, array, nodes):
        self.name = name
        self.shape = array.shape
        self.nodes = nodes
        op = nodes[0].op_type
        self.op = op
        if op == "Conv":
            self.group = int(_attr(nodes[0], "group", 1))
            cols = int(np.prod(array.shape[1:]))
        elif op == "Gemm":
            self.group = 1
            self.transB = int(_attr(nodes[0], "transB", 0))
            cols = array.shape[1] if self.transB else array.shape[0]
        else:
            if array.ndim != 2:
                raise ValueError("%s: MatMul weight of rank %d" % (name, array.ndim))
            self.group = 1
            cols = array.shape[0]
        self.cols = cols
        self.H = np.zeros((self.group, cols, cols))
        self.rows_seen = 0

    def view(self, w):
        """[group, rows per group, cols]"""
        if self.op == "Conv":
            return w.reshape(self.group, w.shape[0] // self.group, -1)
        if self.op == "Gemm" and self.transB:
            return w[None]
        return w.T[None]

    def unview(self, v):
        if self.op == "Conv":
            return v.reshape(self.shape)
        if self.op == "Gemm" and self.transB:
            return v[0]
        return v[0].T

    def add(self, node, x):
        if self.op == "Conv":
            a = conv_patches(node, x, self.shape, self.group)  # [g, rows, k]
        elif self.op == "Gemm":
            a = x.T if _attr(node, "transA", 0) else x
            a = a.reshape(1, -1, self.cols)
        else:
            a = x.reshape(1, -1, self.cols)
        a = a.astype(np.float64)
        self.H += np.matmul(a.transpose(0, 2, 1), a)
        self.rows_seen += a.shape[1]


def conv_patches(node, x, wshape, group):
    if x.ndim != 4 or _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError("conv %s: only 2-D convs with explicit pads" % node.name)
    n, c, h, w = x.shape
    _, cin_g, kh, kw = wshape
    sh, sw = _attr(node, "strides", [1, 1])
    dh, dw = _attr(node, "dilations", [1, 1])
    pt, pl, pb, pr = _attr(node, "pads", [0, 0, 0, 0])
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, kh * kw, ho, wo), np.float32)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i * kw + j] = xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                                        j * dw:j * dw + sw * (wo - 1) + 1:sw]
    # [n, g, cin_g*kh*kw, P] -> [g, n*P, cin_g*kh*kw]
    cols = cols.reshape(n, group, cin_g * kh * kw, ho * wo)
    return cols.transpose(1, 0, 3, 2).reshape(group, n * ho * wo, cin_g * kh * kw)


def collect_stats(model_path, calib_files, names):
    """Layers (with H) of the named weights, from one run per calibration file."""
    model = onnx.load(model_path)
    tensors = weight_tensors(model)
    uses = consumers(model, names)
    layers = {}
    for name in names:
        if name in tensors and uses.get(name):
            layers[name] = Layer(name, numpy_helper.to_array(tensors[name]), uses[name])
    graph_inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    wanted = []
    for layer in layers.values():
        for node in layer.nodes:
            t = node.input[0]
            if t not in wanted:
                wanted.append(t)
    extra = [t for t in wanted if t not in graph_inputs and t not in outputs]
    for t in extra:
        model.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT,
                                                                None))
    tmpdir = tempfile.mkdtemp(prefix="ref_prune-")
    tmp = os.path.join(tmpdir, "stats.onnx")
    onnx.save(model, tmp)
    try:
        for f in calib_files:
            feeds = dict(np.load(f))
            acts = dict(feeds)
            for name, arr in ortlib.run_named(tmp, feeds):
                if name in wanted:
                    acts[name] = arr
            for layer in layers.values():
                for node in layer.nodes:
                    layer.add(node, acts[node.input[0]])
    finally:
        shutil.rmtree(tmpdir)
    return layers


def _partial_k(n, m, r):
    return n if r == m else max(0, n - (m - r))


def wanda(w, h, sparsity, n, m):
    """w [g, rows, cols], h [g, cols, cols] -> pruned copy."""
    norm = np.sqrt(np.maximum(np.diagonal(h, axis1=1, axis2=2), 0))
    score = np.abs(w) * norm[:, None, :]
    mask = np.zeros(w.shape, bool)
    cols = w.shape[2]
    if n:
        for i in range(0, cols, m):
            r = min(m, cols - i)
            k = _partial_k(n, m, r)
            if k:
                idx = np.argsort(score[:, :, i:i + r], axis=2, kind="stable")[:, :, :k]
                np.put_along_axis(mask[:, :, i:i + r], idx, True, axis=2)
    else:
        k = int(round(cols * sparsity))
        idx = np.argsort(score, axis=2, kind="stable")[:, :, :k]
        np.put_along_axis(mask, idx, True, axis=2)
    return np.where(mask, 0, w)


def sparsegpt(w, h, sparsity, n, m, blocksize=128, percdamp=0.01):
    """w [g, rows, cols], h [g, cols, cols] -> pruned and reconstructed copy."""
    W = w.astype(np.float64).copy()
    H = h.copy()
    g, rows, cols = W.shape
    for gi in range(g):
        dead = np.diagonal(H[gi]) == 0
        H[gi, dead, dead] = 1
        W[gi][:, dead] = 0
    diag = np.arange(cols)
    damp = percdamp * np.mean(np.diagonal(H, axis1=1, axis2=2), axis=1)
    H[:, diag, diag] += damp[:, None]
    Hinv = np.linalg.cholesky(np.linalg.inv(H)).transpose(0, 2, 1)  # upper U, H^-1 = U^T U
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        cnt = i2 - i1
        W1 = W[:, :, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Hinv1 = Hinv[:, i1:i2, i1:i2]
        d = np.diagonal(Hinv1, axis1=1, axis2=2)  # [g, cnt]
        mask1 = np.zeros(W1.shape, bool)
        if not n:
            tmp = (W1 ** 2 / d[:, None, :] ** 2).reshape(g, -1)
            k = int(round(tmp.shape[1] * sparsity))
            idx = np.argsort(tmp, axis=1, kind="stable")[:, :k]
            flat = mask1.reshape(g, -1)
            np.put_along_axis(flat, idx, True, axis=1)
            mask1 = flat.reshape(W1.shape)
        for i in range(cnt):
            wcol = W1[:, :, i]
            if n and i % m == 0:
                r = min(m, cnt - i)
                k = _partial_k(n, m, r)
                if k:
                    tmp = W1[:, :, i:i + r] ** 2 / d[:, None, i:i + r] ** 2
                    idx = np.argsort(tmp, axis=2, kind="stable")[:, :, :k]
                    np.put_along_axis(mask1[:, :, i:i + r], idx, True, axis=2)
            q = np.where(mask1[:, :, i], 0, wcol)
            Q1[:, :, i] = q
            err = (wcol - q) / d[:, i][:, None]
            W1[:, :, i:] -= err[:, :, None] * Hinv1[:, i, i:][:, None, :]
            Err1[:, :, i] = err
        W[:, :, i1:i2] = Q1
        W[:, :, i2:] -= np.matmul(Err1, Hinv[:, i1:i2, i2:])
    return W.astype(w.dtype)


def prune_model(model_path, out_path, layers, method, sparsity, n=0, m=0):
    """Write model_path with every layer's weight pruned by method."""
    model = onnx.load(model_path)
    tensors = weight_tensors(model)
    fn = {"wanda": wanda, "sparsegpt": sparsegpt}[method]
    for name, layer in layers.items():
        t = tensors[name]
        w = numpy_helper.to_array(t)
        v = layer.view(w.astype(np.float64))
        pruned = layer.unview(fn(v, layer.H, sparsity, n, m)).astype(w.dtype)
        t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(pruned), name))
    onnx.save(model, out_path)


def prune_sequential(model_path, out_path, calib_files, names, method, sparsity, n=0,
                     m=0, stages=8):
    """SPEC 12's "sequential" in stages: the weights, in graph order, are split into
    `stages` runs; each run's statistics are collected with the earlier runs already
    pruned (stages = number of weights is fully sequential)."""
    model = onnx.load(model_path, load_external_data=False)
    first = {}
    for i, node in enumerate(model.graph.node):
        for t in node.input[1:2]:
            first.setdefault(t, i)
    order = sorted((nm for nm in names if nm in first), key=lambda nm: first[nm])
    stages = max(1, min(stages, len(order)))
    bounds = [round(k * len(order) / stages) for k in range(stages + 1)]
    tmpdir = tempfile.mkdtemp(prefix="ref_prune-seq-")
    try:
        current = model_path
        for k in range(stages):
            chunk = order[bounds[k]:bounds[k + 1]]
            layers = collect_stats(current, calib_files, chunk)
            nxt = os.path.join(tmpdir, "stage%d.onnx" % k)
            prune_model(current, nxt, layers, method, sparsity, n, m)
            current = nxt
        shutil.copyfile(current, out_path)
    finally:
        shutil.rmtree(tmpdir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--calibration", required=True, help="folder of .npz batches")
    ap.add_argument("--method", choices=["wanda", "sparsegpt"], required=True)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--nm", help="N:M, e.g. 2:4 (instead of --sparsity)")
    ap.add_argument("--stages", type=int, default=0,
                    help="sequential in this many stages (default 0: one shot)")
    ap.add_argument("--weights", help="comma-separated weight names (default: every "
                    "MatMul/Gemm/Conv weight of `onnx-pass config`)")
    ap.add_argument("--onnx-pass", default=os.path.join(HERE, "..", "build", "cli",
                                                        "onnx-pass"))
    ap.add_argument("--ort-run", default=os.path.join(HERE, "..", "build", "tests",
                                                      "ort-run"))
    args = ap.parse_args()
    os.environ.setdefault("ORT_RUN", args.ort_run)
    if args.weights:
        names = args.weights.split(",")
    else:
        import json
        import subprocess
        cfg = json.loads(subprocess.run([args.onnx_pass, "config", args.model], check=True,
                                        capture_output=True, text=True).stdout)
        names = [c["tensor_fqn"] for c in cfg["config"]]
    files = sorted(glob.glob(os.path.join(args.calibration, "*.npz")))
    if not files:
        sys.exit("ref_prune: no .npz files in %s" % args.calibration)
    n = m = 0
    if args.nm:
        n, m = (int(v) for v in args.nm.split(":"))
    if args.stages:
        prune_sequential(args.model, args.output, files, names, args.method, args.sparsity,
                         n, m, args.stages)
        return
    layers = collect_stats(args.model, files, names)
    prune_model(args.model, args.output, layers, args.method, args.sparsity, n, m)


if __name__ == "__main__":
    main()
