#!/usr/bin/python3
"""Calibration inputs and ONNX Runtime at run time (SPEC 12), through tests/calib-tool.

- the .npz reader against numpy's own files: every supported dtype, np.savez
  (STORED) and np.savez_compressed (DEFLATE), .npy format versions 1-3,
  scalars and empty arrays, the batch's tensors in graph input order;
- ONNX test-data sets (test_data_set_N/input_M.pb) with raw_data and typed
  fields, name-less tensors, numeric ordering of sets and inputs; a folder of
  .npz files (sorted by name); one set given directly;
- opass_ort_session_run on generated models against numpy (exact for
  Identity of every dtype, to 1e-5 for MatMul + Add);
- mutated files (every truncation, random byte changes): a clean one-line
  error naming the file, or success; never a crash (the ASan suite runs this);
- onnx-pass compare (CLI): metrics against numpy, JSON schema, text table.

Run from meson (test 'calib'); needs CALIB_TOOL and ONNX_PASS.
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testutil  # noqa: E402
testutil.require("numpy", "onnx")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CALIB_TOOL = os.environ.get("CALIB_TOOL", "")
ONNX_PASS = os.environ.get("ONNX_PASS", "")

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8,
          np.uint8, np.bool_, np.uint16, np.uint32, np.uint64]


ONNX_DTYPES = {
    np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int16): TensorProto.INT16,
    np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.bool_): TensorProto.BOOL, np.dtype(np.uint16): TensorProto.UINT16,
    np.dtype(np.uint32): TensorProto.UINT32, np.dtype(np.uint64): TensorProto.UINT64,
}


def onnx_dtype(dt):
    return ONNX_DTYPES[np.dtype(dt).newbyteorder("=")]


def sample(dt, shape, seed):
    rng = np.random.default_rng(seed)
    if dt == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if np.issubdtype(dt, np.floating):
        return rng.standard_normal(shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)


def identity_model(path, specs):
    """One Identity per input: specs = [(name, numpy dtype, shape)]."""
    inputs, outputs, nodes = [], [], []
    for name, dt, shape in specs:
        inputs.append(helper.make_tensor_value_info(name, onnx_dtype(dt), shape))
        outputs.append(helper.make_tensor_value_info(name + "_out", onnx_dtype(dt), shape))
        nodes.append(helper.make_node("Identity", [name], [name + "_out"]))
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return model


def tool(*args, ok=True):
    p = subprocess.run([CALIB_TOOL] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=300)
    if ok and p.returncode != 0:
        raise AssertionError("calib-tool %s: exit %d: %s" % (args[0], p.returncode, p.stderr))
    return p


def batches(*args):
    return json.loads(tool(*args).stdout)["batches"]


def check_tensor(got, name, arr):
    arr = np.asarray(arr)
    assert got["name"] == name, (got["name"], name)
    assert got["dtype"] == onnx_dtype(arr.dtype), (name, got["dtype"], arr.dtype)
    assert got["dims"] == list(arr.shape), (name, got["dims"], arr.shape)
    assert bytes.fromhex(got["hex"]) == np.ascontiguousarray(arr).astype(
        arr.dtype.newbyteorder("<")).tobytes(), name


def all_dtype_specs():
    return [("in_%s" % np.dtype(dt).name, dt, [2, 3]) for dt in DTYPES]


def test_npz_all_dtypes(tmp):
    specs = all_dtype_specs()
    model = os.path.join(tmp, "all.onnx")
    identity_model(model, specs)
    arrays = {name: sample(dt, shape, i) for i, (name, dt, shape) in enumerate(specs)}
    # reversed key order in the file: the batch comes in graph input order
    rev = dict(reversed(list(arrays.items())))
    for saver, fname in ((np.savez, "stored.npz"), (np.savez_compressed, "deflate.npz")):
        path = os.path.join(tmp, fname)
        saver(path, **rev)
        with zipfile.ZipFile(path) as z:
            methods = {i.compress_type for i in z.infolist()}
        assert methods == ({zipfile.ZIP_STORED} if saver is np.savez else
                           {zipfile.ZIP_DEFLATED}), methods
        got = batches("read", model, path)
        assert len(got) == 1 and got[0]["path"] == path
        assert [t["name"] for t in got[0]["tensors"]] == [s[0] for s in specs]
        for t, (name, _, _) in zip(got[0]["tensors"], specs):
            check_tensor(t, name, arrays[name])


def npz_with_versions(path, arrays, version):
    with zipfile.ZipFile(path, "w") as z:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, version=version)
            z.writestr(name + ".npy", buf.getvalue())


def test_npy_versions_scalars_empty(tmp):
    specs = [("s", np.float32, []), ("e", np.int64, [0, 4]), ("v", np.float64, ["n", 5])]
    model = os.path.join(tmp, "v.onnx")
    identity_model(model, specs)
    arrays = {"s": np.array(3.5, np.float32), "e": np.zeros((0, 4), np.int64),
              "v": sample(np.float64, (7, 5), 1)}
    for version in ((1, 0), (2, 0), (3, 0)):
        path = os.path.join(tmp, "v%d.npz" % version[0])
        npz_with_versions(path, arrays, version)
        got = batches("read", model, path)[0]["tensors"]
        for t, name in zip(got, ["s", "e", "v"]):
            check_tensor(t, name, arrays[name])
    # big-endian and Fortran-order arrays are refused, not misread
    for name, arr, needle in (("be", np.arange(4, dtype=">f4"), "big-endian"),
                              ("fo", np.asfortranarray(np.ones((2, 3), np.float32)), "Fortran")):
        path = os.path.join(tmp, name + ".npz")
        np.savez(path, x=arr)
        p = tool("file", path, ok=False)
        assert p.returncode == 1 and needle in p.stderr and path in p.stderr, p.stderr


def write_pb(path, tensor):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tensor.SerializeToString())


def typed_tensor(name, arr):
    """A TensorProto with typed fields (not raw_data)."""
    arr = np.asarray(arr)
    t = helper.make_tensor(name, onnx_dtype(arr.dtype), arr.shape, arr.flatten().tolist(),
                           raw=False)
    assert not t.HasField("raw_data")
    assert np.array_equal(numpy_helper.to_array(t), arr), name
    return t


def test_test_data_sets(tmp):
    specs = all_dtype_specs()
    model = os.path.join(tmp, "sets.onnx")
    identity_model(model, specs)
    root = os.path.join(tmp, "sets")
    expect = []
    # set numbers 0, 1, 2, 10: numeric, not lexical, order
    for k, n in enumerate((10, 2, 0, 1)):
        arrays = {name: sample(dt, shape, 100 * n + i) for i, (name, dt, shape) in enumerate(specs)}
        expect.append((n, arrays))
        for j, (name, dt, _) in enumerate(specs):
            arr = arrays[name]
            if (j + k) % 3 == 0:
                t = typed_tensor(name, arr)
            else:
                t = numpy_helper.from_array(arr, name)
            if j % 2 == 1:
                t.name = ""  # the j-th graph input
            write_pb(os.path.join(root, "test_data_set_%d" % n, "input_%d.pb" % j), t)
    os.makedirs(os.path.join(root, "unrelated"))
    got = batches("read", model, root)
    expect.sort()
    assert [os.path.basename(b["path"]) for b in got] == \
        ["test_data_set_%d" % n for n, _ in expect], [b["path"] for b in got]
    for b, (n, arrays) in zip(got, expect):
        for t, (name, _, _) in zip(b["tensors"], specs):
            check_tensor(t, name, arrays[name])
    # one set given directly; input_10 after input_2 (positional names)
    specs12 = [("x%d" % i, np.float32, [1, 2]) for i in range(12)]
    model12 = os.path.join(tmp, "twelve.onnx")
    identity_model(model12, specs12)
    one = os.path.join(tmp, "one_set")
    arrays = [np.full((1, 2), i, np.float32) for i in range(12)]
    for i, arr in enumerate(arrays):
        write_pb(os.path.join(one, "input_%d.pb" % i), numpy_helper.from_array(arr, ""))
    got = batches("read", model12, one)
    assert len(got) == 1
    for t, (name, _, _), arr in zip(got[0]["tensors"], specs12, arrays):
        check_tensor(t, name, arr)


def test_npz_folder_order(tmp):
    model = os.path.join(tmp, "f.onnx")
    identity_model(model, [("x", np.float32, [1, 3])])
    folder = os.path.join(tmp, "npzs")
    os.makedirs(folder)
    for name, v in (("b", 2), ("a", 1), ("c", 3), ("a10", 10)):
        np.savez(os.path.join(folder, name + ".npz"), x=np.full((1, 3), v, np.float32))
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("ignored\n")
    got = batches("read", model, folder)
    assert [os.path.basename(b["path"]) for b in got] == ["a.npz", "a10.npz", "b.npz", "c.npz"]
    for b, v in zip(got, (1, 10, 2, 3)):
        check_tensor(b["tensors"][0], "x", np.full((1, 3), v, np.float32))


def hex_array(t, dtype):
    return np.frombuffer(bytes.fromhex(t["hex"]), dtype=dtype).reshape(t["dims"])


def test_ort_run_identity(tmp):
    specs = all_dtype_specs()
    model = os.path.join(tmp, "id.onnx")
    identity_model(model, specs)
    arrays = {name: sample(dt, shape, i) for i, (name, dt, shape) in enumerate(specs)}
    path = os.path.join(tmp, "id.npz")
    np.savez_compressed(path, **arrays)
    outs = [name + "_out" for name, _, _ in specs]
    got = batches("run", model, path, *outs)[0]["tensors"]
    for t, (name, _, _) in zip(got, specs):
        check_tensor(t, name + "_out", arrays[name])
    # a subset of outputs, in the order asked
    got = batches("run", model, path, outs[3], outs[0])[0]["tensors"]
    check_tensor(got[0], outs[3], arrays[specs[3][0]])
    check_tensor(got[1], outs[0], arrays[specs[0][0]])
    # an unknown output: ORT's message, one line
    p = tool("run", model, path, "nope", ok=False)
    assert p.returncode == 1 and "ONNX Runtime" in p.stderr and "nope" in p.stderr, p.stderr
    assert len(p.stderr.splitlines()) == 1, p.stderr


def matmul_model(path, w, b):
    k, n = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]),
         helper.make_node("Add", ["h", "B"], ["y"]),
         helper.make_node("Relu", ["y"], ["r"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def test_ort_run_matmul(tmp):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((16, 10)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    model = os.path.join(tmp, "mm.onnx")
    matmul_model(model, w, b)
    folder = os.path.join(tmp, "mm_in")
    os.makedirs(folder)
    xs = [rng.standard_normal((n, 16)).astype(np.float32) for n in (1, 5, 3)]
    for i, x in enumerate(xs):
        np.savez(os.path.join(folder, "batch_%02d.npz" % i), x=x)
    got = batches("run", model, folder, "y", "r")
    assert len(got) == 3
    for bt, x in zip(got, xs):
        y = x.astype(np.float64) @ w + b
        gy, gr = (hex_array(t, np.float32) for t in bt["tensors"])
        assert np.allclose(gy, y, atol=1e-5, rtol=1e-5), np.abs(gy - y).max()
        assert np.allclose(gr, np.maximum(y, 0), atol=1e-5, rtol=1e-5)


def test_mutations(tmp):
    model = os.path.join(tmp, "mut.onnx")
    identity_model(model, [("x", np.float32, [2, 3]), ("i", np.int64, [4])])
    arrays = {"x": sample(np.float32, (2, 3), 1), "i": np.arange(4, dtype=np.int64)}
    for saver, fname in ((np.savez, "m1.npz"), (np.savez_compressed, "m2.npz")):
        path = os.path.join(tmp, fname)
        saver(path, **arrays)
        p = tool("mutate", model, path)
        counts = json.loads(p.stdout)
        assert counts["errors"] > 1000, counts


def test_zip64_and_methods_refused(tmp):
    path = os.path.join(tmp, "z.npz")
    np.savez(path, x=np.ones(3, np.float32))
    data = bytearray(open(path, "rb").read())
    eocd = data.rindex(b"PK\x05\x06")
    z64 = bytearray(data)
    z64[eocd + 8:eocd + 12] = b"\xff\xff\xff\xff"
    bad = os.path.join(tmp, "z64.npz")
    open(bad, "wb").write(z64)
    p = tool("file", bad, ok=False)
    assert p.returncode == 1 and "ZIP64" in p.stderr and bad in p.stderr, p.stderr
    # bzip2 member
    bz = os.path.join(tmp, "bz.npz")
    with zipfile.ZipFile(bz, "w", compression=zipfile.ZIP_BZIP2) as z:
        buf = io.BytesIO()
        np.save(buf, np.ones(3, np.float32))
        z.writestr("x.npy", buf.getvalue())
    p = tool("file", bz, ok=False)
    assert p.returncode == 1 and "compression method 12" in p.stderr, p.stderr


def compare_models(tmp, w, w2):
    """ref/cand: logits = x @ W [N, 10], idx = ArgMax(logits) (int64, [N]), s = ReduceSum
    over the last axis (keepdims, [N, 1])."""
    paths = []
    for name, weight in (("ref", w), ("cand", w2)):
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["logits"]),
             helper.make_node("ArgMax", ["logits"], ["idx"], axis=-1, keepdims=0),
             helper.make_node("ReduceSum", ["logits", "axes"], ["s"], keepdims=1)], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w.shape[0]])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", w.shape[1]]),
             helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"]),
             helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 1])],
            [numpy_helper.from_array(weight, "W"),
             numpy_helper.from_array(np.array([-1], np.int64), "axes")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        path = os.path.join(tmp, name + ".onnx")
        onnx.save(model, path)
        paths.append(path)
    return paths


def run_cli(*args):
    return subprocess.run([ONNX_PASS] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=300)


def expected_metrics(refs, cands, top1):
    a = np.concatenate([r.astype(np.float64).ravel() for r in refs])
    b = np.concatenate([c.astype(np.float64).ravel() for c in cands])
    max_abs = np.abs(a - b).max()
    out = {"elements": a.size, "max_abs_error": max_abs,
           "max_rel_error": max_abs / np.abs(a).max(),
           "cosine_similarity": a @ b / np.sqrt((a @ a) * (b @ b))}
    if top1:
        agree = np.concatenate([r.argmax(-1) == c.argmax(-1) for r, c in zip(refs, cands)])
        out["top1_agreement"] = agree.mean()
        out["top1_positions"] = agree.size
    else:
        out["top1_agreement"] = None
        out["top1_positions"] = 0
    return out


def check_metrics(got, want, name):
    for key, value in want.items():
        if value is None or key in ("elements", "top1_positions"):
            assert got[key] == value, (name, key, got[key], value)
        else:
            assert got[key] is not None and abs(got[key] - value) <= 1e-4 * max(1, abs(value)), \
                (name, key, got[key], value)


def test_compare(tmp):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((12, 10)).astype(np.float32)
    w2 = w.copy()
    w2[rng.random(w.shape) < 0.4] = 0  # a "sparsified" candidate
    ref, cand = compare_models(tmp, w, w2)
    folder = os.path.join(tmp, "cmp_in")
    os.makedirs(folder)
    xs = [rng.standard_normal((n, 12)).astype(np.float32) for n in (4, 7, 5)]
    for i, x in enumerate(xs):
        np.savez_compressed(os.path.join(folder, "b%d.npz" % i), x=x)
    # identical models: exact
    p = run_cli("compare", ref, ref, "--inputs", folder, "--json")
    assert p.returncode == 0 and not p.stderr, p.stderr
    doc = json.loads(p.stdout)
    assert set(doc) == {"reference", "candidate", "inputs", "batches", "outputs",
                        "max_rel_error_definition"}, doc.keys()
    assert doc["batches"] == 3 and doc["reference"] == ref and doc["inputs"] == folder
    assert [o["name"] for o in doc["outputs"]] == ["logits", "idx", "s"]
    for o in doc["outputs"]:
        assert set(o) == {"name", "dtype", "elements", "max_abs_error", "max_rel_error",
                          "cosine_similarity", "top1_agreement", "top1_positions"}, o.keys()
        assert o["max_abs_error"] == 0 and o["max_rel_error"] == 0, o
        assert o["cosine_similarity"] == 1, o
    logits, idx, s = doc["outputs"]
    assert logits["dtype"] == "float32" and idx["dtype"] == "int64"
    assert logits["top1_agreement"] == 1 and logits["top1_positions"] == 16
    assert idx["top1_agreement"] is None and s["top1_agreement"] is None  # int, last dim 1
    # the perturbed candidate against numpy
    p = run_cli("compare", ref, cand, "--inputs", folder, "--json")
    assert p.returncode == 0 and not p.stderr, p.stderr
    doc = json.loads(p.stdout)
    refs = [x.astype(np.float64) @ w for x in xs]
    cands = [x.astype(np.float64) @ w2 for x in xs]
    want = expected_metrics(refs, cands, True)
    assert 0 < want["top1_agreement"] < 1 and want["cosine_similarity"] < 0.99, want
    check_metrics(doc["outputs"][0], want, "logits")
    check_metrics(doc["outputs"][1], expected_metrics([r.argmax(-1) for r in refs],
                                                      [c.argmax(-1) for c in cands], False),
                  "idx")
    check_metrics(doc["outputs"][2], expected_metrics([r.sum(-1, keepdims=True) for r in refs],
                                                      [c.sum(-1, keepdims=True) for c in cands],
                                                      False), "s")
    # the text table: a header and one row per output, "-" for undefined top-1
    p = run_cli("compare", ref, cand, "--inputs", folder)
    assert p.returncode == 0 and not p.stderr, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "reference: " + ref and lines[1] == "candidate: " + cand, lines
    assert lines[2] == "inputs:    %s (3 batches)" % folder, lines
    head = lines.index(next(line for line in lines if line.startswith("output ")))
    rows = {line.split()[0]: line.split() for line in lines[head + 1:]}
    assert set(rows) == {"logits", "idx", "s"}, rows
    assert rows["idx"][-1] == "-" and rows["s"][-1] == "-", rows
    assert abs(float(rows["logits"][3]) - want["max_abs_error"]) < 1e-4 * want["max_abs_error"]
    assert abs(float(rows["logits"][-1]) - want["top1_agreement"]) < 1e-5
    # test-data sets give the same numbers as the .npz folder
    sets = os.path.join(tmp, "cmp_sets")
    for i, x in enumerate(xs):
        write_pb(os.path.join(sets, "test_data_set_%d" % i, "input_0.pb"),
                 numpy_helper.from_array(x, "x"))
    p = run_cli("compare", ref, cand, "--inputs", sets, "--json")
    assert p.returncode == 0, p.stderr
    check_metrics(json.loads(p.stdout)["outputs"][0], want, "logits (sets)")


def test_compare_errors(tmp):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((6, 4)).astype(np.float32)
    ref, cand = compare_models(tmp, w, w)
    inputs = os.path.join(tmp, "e.npz")
    np.savez(inputs, x=np.ones((2, 6), np.float32))
    # a candidate with another output set
    m = onnx.load(cand)
    m.graph.output.pop()
    other = os.path.join(tmp, "other.onnx")
    onnx.save(m, other)
    for args, code, needles in (
            (("compare", ref, other, "--inputs", inputs), 1, [other, "'s'"]),
            (("compare", other, ref, "--inputs", inputs), 1, [ref, "'s'"]),
            (("compare", ref, cand), 2, ["--inputs"]),
            (("compare", ref, "--inputs", inputs), 2, ["REF CAND"]),
            (("compare", ref, cand, "--inputs", inputs, "-o", "x"), 2, ["-o"]),
            (("inspect", ref, "--inputs", inputs), 2, ["--inputs"])):
        p = run_cli(*args)
        lines = p.stderr.splitlines()
        assert p.returncode == code and len(lines) == 1 and \
            lines[0].startswith("onnx-pass: error: "), (args, p.returncode, p.stderr)
        for n in needles:
            assert n in lines[0], (args, lines[0], n)
        assert not p.stdout, p.stdout


TESTS = [test_npz_all_dtypes, test_npy_versions_scalars_empty, test_test_data_sets,
         test_npz_folder_order, test_ort_run_identity, test_ort_run_matmul, test_mutations,
         test_zip64_and_methods_refused, test_compare, test_compare_errors]


ORT_TESTS = {test_ort_run_identity, test_ort_run_matmul, test_compare, test_compare_errors}


def main(runner):
    no_ort = None if testutil.have_ort() else testutil.NO_ORT
    with tempfile.TemporaryDirectory() as tmp:
        for test in TESTS:
            runner.check(test.__name__, test, tmp, needs=no_ort if test in ORT_TESTS else None)


if __name__ == "__main__":
    testutil.executable("CALIB_TOOL")
    testutil.main(main, only=sys.argv[1:])
