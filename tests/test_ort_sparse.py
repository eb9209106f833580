#!/usr/bin/python3
"""ai.onnx_pass::SparseMatMul in ONNX Runtime, and convert/sparsify --format ort-sparse.

The custom ops are loaded from libonnxpass.so (ONNX_PASS_LIBRARY) by tests/ort-run
(--custom-ops, i.e. RegisterCustomOpsLibrary_V2). Checks:
  - the op on hand-built models against numpy: A of rank 1 to 4, INT32/INT64 indices,
    CSR and BSR blocks with K, N not multiples of the block, bias shapes, weights
    given as graph inputs instead of initializers;
  - its errors (bad attributes, inputs, shapes; library not registered);
  - torch-exported models (Gemm with bias and transB, MatMul on 3-D input) converted by
    the CLI: rewritten nodes, removed dense weights, opset import, onnx.checker, and
    outputs equal to the same pruned model kept dense (relative 1e-5);
  - which weights and consumers stay dense (--min-sparsity, alpha, shared weights).
Exit 77 (skipped) without ORT_RUN.
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "models"))

import testutil  # noqa: E402
testutil.require("numpy", "onnx", "torch")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
import ortlib  # noqa: E402

DOMAIN = "ai.onnx_pass"
LIB = os.environ.get("ONNX_PASS_LIBRARY", "")
ONNX_PASS = os.environ.get("ONNX_PASS", "")
from testutil import assert_close  # noqa: E402  (relative 1e-5 of max |want|)


def bsr(bt, br, bc):
    """Block-sparse rows of bt [N, K] (blocks with any nonzero; padding zero)."""
    n, k = bt.shape
    nb, kb = -(-n // br), -(-k // bc)
    pad = np.zeros((nb * br, kb * bc), np.float32)
    pad[:n, :k] = bt
    values, cols, ptr = [], [], [0]
    for i in range(nb):
        for j in range(kb):
            block = pad[i * br:(i + 1) * br, j * bc:(j + 1) * bc]
            if np.any(block != 0):
                values.append(block.ravel())
                cols.append(j)
        ptr.append(len(cols))
    v = np.concatenate(values) if values else np.zeros(0, np.float32)
    return v.astype(np.float32), np.array(cols, np.int64), np.array(ptr, np.int64)


def sparse_weight(rng, k, n, density=0.3):
    w = rng.standard_normal((k, n)).astype(np.float32)
    w[rng.random((k, n)) >= density] = 0
    if n > 1:
        w[:, 1] = 0   # an empty output row of B^T
    return w


def op_model(path, a_shape, k, n, br=1, bc=1, index=np.int64, bias=None, w=None,
             as_inputs=False, attrs=None, arrays=None):
    """A model with one SparseMatMul; returns (model path, extra feeds in input order)."""
    if arrays is None:
        v, c, p = bsr(w.T.copy(), br, bc)
        c, p = c.astype(index), p.astype(index)
    else:
        v, c, p = arrays
    tensors = [numpy_helper.from_array(v, "values"), numpy_helper.from_array(c, "indices"),
               numpy_helper.from_array(p, "row_ptr")]
    inputs = ["a", "values", "indices", "row_ptr"]
    if bias is not None:
        tensors.append(numpy_helper.from_array(bias, "bias"))
        inputs.append("bias")
    kw = {"K": k, "N": n, "block_rows": br, "block_cols": bc} if attrs is None else attrs
    node = helper.make_node("SparseMatMul", inputs, ["y"], domain=DOMAIN, name="sp", **kw)
    graph_inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a_shape))]
    feeds = []
    if as_inputs:
        for t in tensors[:3]:
            graph_inputs.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
            feeds.append(numpy_helper.to_array(t))
        tensors = tensors[3:]
    graph = helper.make_graph([node], "g", graph_inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = 8
    onnx.save(model, path)
    return feeds


def run_op(path, a, feeds=()):
    return ortlib.run(path, [a] + list(feeds), custom_ops=[LIB])[0]


# ---------------------------------------------------------------- the op itself

def check_op_shapes(tmp):
    rng = np.random.default_rng(7)
    cases = [
        # A shape, K, N, block, index dtype, bias
        ((70,), 70, 33, (1, 1), np.int64, None),
        ((5, 70), 70, 33, (1, 4), np.int32, "n"),
        ((2, 70, 70), 70, 45, (4, 1), np.int64, "1n"),
        ((2, 3, 4, 70), 70, 45, (2, 3), np.int32, "one"),
        ((130, 67), 67, 130, (1, 4), np.int32, "n"),
        ((1, 1, 9), 9, 1, (1, 1), np.int64, None),
    ]
    for a_shape, k, n, (br, bc), index, bias_kind in cases:
        w = sparse_weight(rng, k, n)
        bias = {None: None, "n": rng.standard_normal(n), "1n": rng.standard_normal((1, n)),
                "one": rng.standard_normal(1)}[bias_kind]
        bias = None if bias is None else bias.astype(np.float32)
        a = rng.standard_normal(a_shape).astype(np.float32)
        want = a.astype(np.float64) @ w + (0 if bias is None else bias)
        path = os.path.join(tmp, "op.onnx")
        feeds = op_model(path, a_shape, k, n, br, bc, index, bias, w)
        what = "A %s %dx%d %s bias %s" % (a_shape, br, bc, index.__name__, bias_kind)
        assert_close(run_op(path, a, feeds), want, what)
        feeds = op_model(path, a_shape, k, n, br, bc, index, bias, w, as_inputs=True)
        assert_close(run_op(path, a, feeds), want, what + " (weights as inputs)")


def expect_error(path, a, feeds, needle, custom_ops=None):
    try:
        ortlib.run(path, [a] + list(feeds), custom_ops=[LIB] if custom_ops is None else custom_ops)
    except ortlib.OrtRunError as e:
        if needle not in e.stderr:
            raise AssertionError("expected %r in: %s" % (needle, e.stderr.strip()))
        return
    raise AssertionError("expected an error with %r" % needle)


def check_op_errors(tmp):
    rng = np.random.default_rng(8)
    k, n = 12, 8
    w = sparse_weight(rng, k, n)
    v, c, p = bsr(w.T.copy(), 1, 1)
    a = rng.standard_normal((3, k)).astype(np.float32)
    path = os.path.join(tmp, "bad.onnx")

    op_model(path, (3, k + 1), k, n, w=w)
    expect_error(path, rng.standard_normal((3, k + 1)).astype(np.float32), [],
                 "A must be [..., K] with K = 12")
    op_model(path, (3, k), k, n, w=w, attrs={"K": k})
    expect_error(path, a, [], "attributes N and K (ints) are required")
    op_model(path, (3, k), k, n, arrays=(v, c.astype(np.float32), p))
    expect_error(path, a, [], "indices and row_ptr both int32 or both int64")
    op_model(path, (3, k), k, n, arrays=(v, c.astype(np.int32), p.astype(np.int64)))
    expect_error(path, a, [], "indices and row_ptr both int32 or both int64")
    op_model(path, (3, k), k, n, arrays=(v, c, p[:-1]))
    expect_error(path, a, [], "row_ptr has 8 entries, expected 9")
    c_bad = c.copy()
    c_bad[0] = k
    op_model(path, (3, k), k, n, arrays=(v, c_bad, p))
    expect_error(path, a, [], "block column 12 out of range")
    op_model(path, (3, k), k, n, arrays=(v[:-1], c, p))
    expect_error(path, a, [], "values for")
    op_model(path, (3, k), k, n, w=w, bias=np.ones(n + 1, np.float32))
    expect_error(path, a, [], "C must have N = 8 elements")
    op_model(path, (3, k), k, n, w=w, attrs={"K": k, "N": n, "block_rows": 0})
    expect_error(path, a, [], "block shape 0x1")
    op_model(path, (3, k), k, n, w=w, attrs={"K": k, "N": n, "alpha": 2.0})
    expect_error(path, a, [], "alpha = 2 is not supported")
    op_model(path, (3, k), k, n, w=w, attrs={"K": k, "N": n, "alpha": 1.0, "beta": 1.0})
    assert_close(run_op(path, a), a.astype(np.float64) @ w, "alpha = beta = 1")
    # the same errors when the weights arrive at run time
    feeds = op_model(path, (3, k), k, n, arrays=(v, c, p[:-1]), as_inputs=True)
    expect_error(path, a, feeds, "row_ptr has 8 entries")
    # without the library ORT does not know the op
    op_model(path, (3, k), k, n, w=w)
    expect_error(path, a, [], "SparseMatMul", custom_ops=[])


# ---------------------------------------------------------------- conversion

def cli(*args, expect=0):
    proc = subprocess.run([ONNX_PASS] + list(args), capture_output=True, text=True)
    if proc.returncode != expect:
        raise AssertionError("onnx-pass %s: exit %d, expected %d: %s"
                             % (" ".join(args), proc.returncode, expect, proc.stderr.strip()))
    return proc


def sparse_nodes(path):
    model = onnx.load(path)
    return model, [nd for nd in model.graph.node if nd.domain == DOMAIN]


def node_attrs(node):
    return {a.name: a.i for a in node.attribute}


def check_converted(model, nodes):
    onnx.checker.check_model(model)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets.get(DOMAIN) == 1, opsets
    inits = {t.name: t for t in model.graph.initializer}
    used = {name for nd in model.graph.node for name in nd.input}
    for nd in nodes:
        assert nd.op_type == "SparseMatMul", nd.op_type
        for name in nd.input[1:4]:
            assert name in inits, name
        assert inits[nd.input[2]].data_type == TensorProto.INT32
        assert inits[nd.input[3]].data_type == TensorProto.INT32
        assert {"K", "N", "block_rows", "block_cols"} <= set(node_attrs(nd))
    for name, t in inits.items():
        assert name in used or not t.dims, "unused initializer %s" % name


def convert_pair(tmp, src, args):
    dense = os.path.join(tmp, "dense.onnx")
    sparse = os.path.join(tmp, "sparse.onnx")
    cli("sparsify", src, "-o", dense, "--format", "dense", *args)
    cli("sparsify", src, "-o", sparse, "--format", "ort-sparse", *args)
    return dense, sparse


def check_same_outputs(dense, sparse, x, what):
    want = ortlib.run(dense, [x])[0]
    got = ortlib.run(sparse, [x], custom_ops=[LIB])[0]
    assert_close(got, want, what)


def check_mlp_gemm(tmp, models):
    src = os.path.join(models, "mlp_gemm.onnx")
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    for block, expect in (("1x1", (1, 1)), ("4x1", (4, 1)), ("1x4", (1, 4))):
        dense, sparse = convert_pair(tmp, src, ["--sparsity", "0.8", "--block", block])
        model, nodes = sparse_nodes(sparse)
        assert len(nodes) == 3, [nd.op_type for nd in model.graph.node]
        check_converted(model, nodes)
        for nd in nodes:
            assert len(nd.input) == 5, nd.input   # Gemm's bias kept as C
            attrs = node_attrs(nd)
            assert (attrs["block_rows"], attrs["block_cols"]) == expect, (block, attrs)
        names = {t.name for t in model.graph.initializer}
        assert not names & {"fc1.weight", "fc2.weight", "fc3.weight"}, names
        check_same_outputs(dense, sparse, x, "mlp_gemm " + block)


def check_transformer(tmp, models):
    src = os.path.join(models, "transformer_matmul.onnx")
    x = np.random.default_rng(2).standard_normal((2, 8, 32)).astype(np.float32)
    n_linear = sum(1 for nd in onnx.load(src).graph.node
                   if nd.op_type == "MatMul" and nd.input[1] in
                   {t.name for t in onnx.load(src).graph.initializer})
    for args in (["--sparsity", "0.9"], ["--sparsity", "0.6", "--block", "1x1"],
                 ["--sparsity", "0.75", "--block", "4x1"]):
        dense, sparse = convert_pair(tmp, src, args)
        model, nodes = sparse_nodes(sparse)
        assert len(nodes) == n_linear, (len(nodes), n_linear)
        check_converted(model, nodes)
        check_same_outputs(dense, sparse, x, "transformer %s" % " ".join(args))


def check_min_sparsity(tmp, models):
    src = os.path.join(models, "mlp_gemm.onnx")
    x = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    dense, sparse = convert_pair(tmp, src, ["--sparsity", "0.5", "--min-sparsity", "0.6"])
    model, nodes = sparse_nodes(sparse)
    assert not nodes and DOMAIN not in {o.domain for o in model.opset_import}
    check_same_outputs(dense, sparse, x, "min-sparsity above the sparsity")
    # the default threshold is 0.5: 50% sparse weights are converted
    dense, sparse = convert_pair(tmp, src, ["--sparsity", "0.5"])
    assert len(sparse_nodes(sparse)[1]) == 3
    # the converter also works on an already prepared and stepped model
    stepped = os.path.join(tmp, "stepped.onnx")
    cli("run", "prepare,step", src, "-o", stepped, "--sparsity", "0.7")
    out = os.path.join(tmp, "converted.onnx")
    cli("convert", stepped, "-o", out, "--format", "ort-sparse", "--min-sparsity", "0.65")
    assert len(sparse_nodes(out)[1]) == 3
    proc = cli("sparsify", src, "-o", out, "--format", "ort-sparse", "--min-sparsity", "2",
               expect=2)
    assert "min_sparsity must be a number in [0, 1]" in proc.stderr, proc.stderr
    proc = cli("sparsify", src, "-o", out, "--format", "csr", expect=2)
    assert "ort-sparse" in proc.stderr, proc.stderr


def stays_dense_model(path):
    """Three linear layers: a MatMul whose weight an Add also reads, a Gemm with
    alpha = 2, and a Gemm with transB = 1 and a [1, N] bias."""
    rng = np.random.default_rng(4)
    w1 = rng.standard_normal((16, 16)).astype(np.float32)
    w2 = rng.standard_normal((16, 16)).astype(np.float32)
    w3 = rng.standard_normal((12, 16)).astype(np.float32)
    c3 = rng.standard_normal((1, 12)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="/l1/MatMul"),
             helper.make_node("Add", ["h1", "w1"], ["h2"]),
             helper.make_node("Gemm", ["h2", "w2"], ["h3"], alpha=2.0, name="/l2/Gemm"),
             helper.make_node("Gemm", ["h3", "w3", "c3"], ["y"], transB=1, name="/l3/Gemm")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 12])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(w3, "w3"), numpy_helper.from_array(c3, "c3")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def check_stays_dense(tmp, _models):
    src = os.path.join(tmp, "mixed.onnx")
    stays_dense_model(src)
    x = np.random.default_rng(5).standard_normal((16, 16)).astype(np.float32)
    dense, sparse = convert_pair(tmp, src, ["--sparsity", "0.8", "--block", "1x1"])
    model, nodes = sparse_nodes(sparse)
    assert [nd.name for nd in nodes] == ["/l1/MatMul", "/l3/Gemm"], [nd.name for nd in nodes]
    assert nodes[1].input[4] == "c3" and node_attrs(nodes[1])["N"] == 12
    names = {t.name for t in model.graph.initializer}
    assert "w1" in names and "w2" in names and "w3" not in names, names
    gemm = [nd for nd in model.graph.node if nd.op_type == "Gemm"]
    assert len(gemm) == 1 and gemm[0].input[1] == "w2"
    check_converted(model, nodes)
    check_same_outputs(dense, sparse, x, "mixed")


def main(runner):
    import make_models
    check = runner.check

    with tempfile.TemporaryDirectory(prefix="ort-sparse-") as tmp:
        models = os.path.join(tmp, "models")
        make_models.generate(models, ["mlp_gemm", "transformer_matmul"])
        check("op: shapes, blocks, bias, index types", check_op_shapes, tmp)
        check("op: errors", check_op_errors, tmp)
        check("convert: mlp_gemm (Gemm, transB, bias)", check_mlp_gemm, tmp, models)
        check("convert: transformer (MatMul, 3-D input)", check_transformer, tmp, models)
        check("convert: --min-sparsity, prepared models, bad options", check_min_sparsity,
              tmp, models)
        check("convert: what stays dense", check_stays_dense, tmp, models)


if __name__ == "__main__":
    if not ortlib.available() or not LIB:
        testutil.skip_file("ORT_RUN or ONNX_PASS_LIBRARY not set")
    testutil.main(main)
