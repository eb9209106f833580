#!/usr/bin/python3
"""Bad input through the command line (SPEC 9, README "Bad input").

Every case builds a small malformed model (onnx.helper or raw protobuf bytes),
runs onnx-pass on it and checks: the documented exit code, exactly one
`onnx-pass: error: FILE: ...` line naming the cause, no output or temp file
left behind, the input folder untouched. Also the defined behaviours (string
weights skipped with a reason, unsorted but acyclic graphs accepted), atomic
output over an existing external-data pair, and the inputs the fuzzers
found (tests/regress/ and the descriptions below).

Run from meson (test 'bad-input'); needs ONNX_PASS. Prints "N passed, M failed".
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testutil  # noqa: E402
testutil.require("numpy", "onnx")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ONNX_PASS = testutil.executable("ONNX_PASS")
HERE = os.path.dirname(os.path.abspath(__file__))
REGRESS = os.path.join(HERE, "regress")
MAX_GRAPH_DEPTH = 64


def run(args, cwd=None, env=None):
    return subprocess.run([ONNX_PASS] + list(args), cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **(env or {})))


def snapshot(folder):
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            digest = ""
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, folder)] = (digest, st.st_size, st.st_mtime_ns)
    return out


class Case:
    """A folder with in/ (the model and its side files) and out/."""

    def __init__(self, tmp, name):
        self.root = tempfile.mkdtemp(prefix=name + "-", dir=tmp)
        self.inp = os.path.join(self.root, "in")
        self.out = os.path.join(self.root, "out")
        os.mkdir(self.inp)
        os.mkdir(self.out)

    def write(self, name, data):
        path = os.path.join(self.inp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(data, onnx.ModelProto):
            data = data.SerializeToString()
        with open(path, "wb") as f:
            f.write(data)
        return path

    def fails(self, args, code, needles, env=None):
        before_in, before_out = snapshot(self.inp), snapshot(self.out)
        p = run(args, cwd=self.root, env=env)
        what = " ".join(os.path.basename(a) for a in args)
        if p.returncode != code:
            raise AssertionError("%s: exit %d, expected %d; stderr %r"
                                 % (what, p.returncode, code, p.stderr))
        lines = p.stderr.splitlines()
        if len(lines) != 1 or not lines[0].startswith("onnx-pass: error: "):
            raise AssertionError("%s: stderr is not one error line: %r" % (what, p.stderr))
        for n in needles:
            if n not in lines[0]:
                raise AssertionError("%s: %r does not mention %r" % (what, lines[0], n))
        if snapshot(self.out) != before_out:
            raise AssertionError("%s: out/ changed: %r" % (what, sorted(snapshot(self.out))))
        if snapshot(self.inp) != before_in:
            raise AssertionError("%s: in/ changed" % what)
        return lines[0]

    def ok(self, args):
        p = run(args, cwd=self.root)
        if p.returncode != 0 or p.stderr:
            raise AssertionError("%s: exit %d, stderr %r" % (" ".join(args), p.returncode,
                                                              p.stderr))
        return p.stdout


def weight(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def gemm_model(initializers=None, nodes=None, inputs=None, outputs=None, ir_version=7):
    """x[1,8] -> Gemm(W [4,8], transB=1) -> y, unless parts are given."""
    if initializers is None:
        initializers = [weight("W", (4, 8))]
    if nodes is None:
        nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], name="/fc/Gemm", transB=1)]
    if inputs is None:
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])]
    if outputs is None:
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = ir_version
    return model


def model_errors(tmp, name, model, needles, commands=("prepare", "inspect", "sparsify")):
    c = Case(tmp, name)
    path = c.write("model.onnx", model)
    for cmd in commands:
        args = [cmd, path] + (["-o", os.path.join(c.out, "out.onnx")]
                              if cmd not in ("inspect", "config") else [])
        c.fails(args, 1, ["model.onnx"] + list(needles))


# ---------------------------------------------------------------- data vs dims

def test_dims_disagree_with_data(tmp):
    w = weight("W", (4, 8))
    w.raw_data = w.raw_data[:-8]  # 30 floats for 32 elements
    model_errors(tmp, "short", gemm_model([w]), ["'W'", "dims hold 32 elements",
                                                 "data holds 30"])
    w = weight("W", (4, 8))
    w.raw_data = w.raw_data + b"\0\0"
    model_errors(tmp, "ragged", gemm_model([w]), ["'W'", "not a multiple of 4"])
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 8], np.ones(32, np.float32).tolist())
    w.float_data.append(1.0)
    model_errors(tmp, "float_data", gemm_model([w]), ["dims hold 32", "data holds 33"])


def test_negative_and_overflowing_dims(tmp):
    w = weight("W", (4, 8))
    w.dims[:] = [-4, -8]
    model_errors(tmp, "negative", gemm_model([w]), ["'W'", "negative dimension -4"],
                 ("prepare", "inspect", "config"))
    w = weight("W", (4, 8))
    w.dims[:] = [1 << 62, 1 << 62]
    model_errors(tmp, "overflow", gemm_model([w]), ["'W'", "dimensions overflow"],
                 ("prepare", "inspect", "config"))


def test_huge_sparse_dims_without_data(tmp):
    """A sparse initializer claiming 10^10 dense elements with 1 value: refused."""
    values = helper.make_tensor("S", TensorProto.FLOAT, [1], [1.0])
    indices = helper.make_tensor("", TensorProto.INT64, [1], [5])
    sparse = helper.make_sparse_tensor(values, indices, [100000, 100000])
    model = gemm_model()
    model.graph.sparse_initializer.append(sparse)
    model_errors(tmp, "sparse", model, ["'S'", "10000000000 elements", "limit"], ("inspect",))


def test_string_weight_skipped(tmp):
    """A STRING constant in a weight slot is skipped with a reason, not an error."""
    s = helper.make_tensor("W", TensorProto.STRING, [4, 8], [b"a"] * 32)
    c = Case(tmp, "string")
    path = c.write("model.onnx", gemm_model([s, weight("V", (8, 4))], nodes=[
        helper.make_node("Gemm", ["x", "W"], ["h"], name="/a/Gemm", transB=1),
        helper.make_node("MatMul", ["h", "V"], ["y"], name="/b/MatMul")]))
    doc = json.loads(c.ok(["config", path]))
    skipped = {s["tensor_fqn"]: s["reason"] for s in doc["skipped"]}
    if "unsupported dtype string" not in skipped.get("W", ""):
        raise AssertionError("W not skipped with the dtype reason: %r" % doc["skipped"])
    if [e["tensor_fqn"] for e in doc["config"]] != ["V"]:
        raise AssertionError("config lists %r" % doc["config"])
    out = os.path.join(c.out, "out.onnx")
    c.ok(["sparsify", path, "-o", out])
    onnx.checker.check_model(onnx.load(out))


# ---------------------------------------------------------------- graph structure

def test_duplicate_names(tmp):
    model_errors(tmp, "dup-init", gemm_model([weight("W", (4, 8)), weight("W", (4, 8), 1)]),
                 ["graph 'g'", "two initializers named 'W'"])
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="a"),
             helper.make_node("Sigmoid", ["x"], ["h"], name="b"),
             helper.make_node("Gemm", ["h", "W"], ["y"], name="/fc/Gemm", transB=1)]
    model_errors(tmp, "dup-output", gemm_model(nodes=nodes),
                 ["value 'h' is produced by two nodes ('a' and 'b')"])
    nodes = [helper.make_node("Relu", ["x"], ["W"], name="r"),
             helper.make_node("Gemm", ["x", "W"], ["y"], name="/fc/Gemm", transB=1)]
    model_errors(tmp, "output-is-init", gemm_model(nodes=nodes),
                 ["node 'r' produces 'W', which is also a graph initializer"])


def test_dangling_references(tmp):
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="/fc/Gemm", transB=1),
             helper.make_node("Add", ["h", "nowhere"], ["y"], name="add")]
    model_errors(tmp, "dangling", gemm_model(nodes=nodes),
                 ["node 'add' reads 'nowhere', which nothing defines"],
                 ("prepare", "inspect", "config", "sparsify"))
    out = [helper.make_tensor_value_info("zz", TensorProto.FLOAT, [1, 4])]
    model_errors(tmp, "dangling-output", gemm_model(outputs=out), ["output 'zz' is defined nowhere"])


def test_cycles(tmp):
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="/fc/Gemm", transB=1),
             helper.make_node("Add", ["h", "b"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("Identity", ["a"], ["y"], name="out")]
    model_errors(tmp, "cycle", gemm_model(nodes=nodes), ["graph 'g' has a cycle", "node 'add'"],
                 ("prepare", "inspect", "config"))
    self_loop = [helper.make_node("Gemm", ["x", "W"], ["h"], name="/fc/Gemm", transB=1),
                 helper.make_node("Add", ["h", "y"], ["y"], name="self")]
    model_errors(tmp, "self-loop", gemm_model(nodes=self_loop), ["has a cycle", "'self'"],
                 ("inspect",))


def test_unsorted_graph_accepted(tmp):
    """Nodes out of topological order but without a cycle: the passes work."""
    nodes = [helper.make_node("Relu", ["h"], ["y"], name="relu"),
             helper.make_node("Gemm", ["x", "W"], ["h"], name="/fc/Gemm", transB=1)]
    c = Case(tmp, "unsorted")
    path = c.write("model.onnx", gemm_model(nodes=nodes))
    out = os.path.join(c.out, "out.onnx")
    c.ok(["sparsify", path, "-o", out, "--format", "coo"])
    m = onnx.load(out)
    if [n.op_type for n in m.graph.node] != ["Relu", "Gemm"] or len(m.graph.sparse_initializer) != 1:
        raise AssertionError("unexpected result: %r" % [n.op_type for n in m.graph.node])


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def nested_if_bytes(levels):
    """ModelProto whose main graph holds an If whose then_branch holds an If...
    (levels graphs in all), written without recursion: sizes inside out, then
    the prefixes outside in."""
    attr_head = b"\x0a\x0bthen_branch" + b"\xa0\x01\x05"  # name, type = GRAPH
    node_head = b"\x22\x02If"                                # op_type
    sizes = [0]                                              # innermost graph: empty
    for _ in range(levels - 1):
        g = sizes[-1]
        attr = len(attr_head) + 1 + len(varint(g)) + g
        node = len(node_head) + 1 + len(varint(attr)) + attr
        sizes.append(1 + len(varint(node)) + node)
    parts = [b"\x08\x07", b"\x42\x02\x10\x0d", b"\x3a" + varint(sizes[-1])]
    for g in reversed(sizes[:-1]):
        attr = len(attr_head) + 1 + len(varint(g)) + g
        node = len(node_head) + 1 + len(varint(attr)) + attr
        parts += [b"\x0a" + varint(node), node_head, b"\x2a" + varint(attr), attr_head,
                  b"\x32" + varint(g)]
    return b"".join(parts)


def test_deep_subgraphs(tmp):
    c = Case(tmp, "deep")
    # Python's protobuf itself refuses deeper nesting: check the generator at 5 levels
    g, depth = onnx.load_from_string(nested_if_bytes(5)).graph, 1
    while g.node:
        g, depth = g.node[0].attribute[0].g, depth + 1
    if depth != 5:
        raise AssertionError("generator wrote %d levels for 5" % depth)
    ok = c.write("ok.onnx", nested_if_bytes(MAX_GRAPH_DEPTH))
    c.ok(["inspect", ok])
    c.ok(["sparsify", ok, "-o", os.path.join(c.out, "ok.onnx")])
    os.unlink(os.path.join(c.out, "ok.onnx"))
    for levels in (MAX_GRAPH_DEPTH + 1, 10000, 200000):
        path = c.write("deep%d.onnx" % levels, nested_if_bytes(levels))
        c.fails(["inspect", path], 1, ["deep%d.onnx" % levels,
                                       "subgraphs nested deeper than %d" % MAX_GRAPH_DEPTH])
        c.fails(["prepare", path, "-o", os.path.join(c.out, "o.onnx")], 1, ["nested deeper"])


def test_corrupt_protobuf(tmp):
    c = Case(tmp, "corrupt")
    good = gemm_model().SerializeToString()
    cases = [
        (good[:len(good) - 3], ["not a valid ONNX model", "past the end"]),
        (b"\x0a\x01\x00" + good, ["not a valid ONNX model",
                                  "ModelProto.ir_version has wire type 2, expected 0"]),
        (b"\x08\x07\x3a\x7f", ["not a valid ONNX model", "length runs past the end"]),
        (b"\x0b" + good, ["not a valid ONNX model", "wire type 3"]),
        (b"", ["model has no graph"]),
        (b"PK\x03\x04 not a model at all", ["not a valid ONNX model"]),
    ]
    for i, (data, needles) in enumerate(cases):
        path = c.write("bad%d.onnx" % i, data)
        c.fails(["inspect", path], 1, ["bad%d.onnx" % i] + needles)


# ---------------------------------------------------------------- external data

def external_model(c, location, offset="0", length="128", extra=()):
    w = weight("W", (4, 8))
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in [("location", location), ("offset", offset), ("length", length)] + list(extra):
        if v is not None:
            e = w.external_data.add()
            e.key, e.value = k, v
    return c.write("model.onnx", gemm_model([w]))


def test_external_data_edges(tmp):
    side = np.arange(64, dtype=np.float32).tobytes()  # 256 bytes
    cases = [
        ("/etc/hostname", {}, ["external data path '/etc/hostname' is absolute"]),
        ("../outside.bin", {}, ["'../outside.bin' leaves the model folder"]),
        ("sub/../../outside.bin", {}, ["leaves the model folder"]),
        ("link.bin", {}, ["'link.bin' leaves the model folder"]),
        ("missing.bin", {}, ["missing.bin", "No such file"]),
        ("w.bin", {"offset": "200"}, ["offset 200 + length 128 is past the end of 'w.bin' (256 bytes)"]),
        ("w.bin", {"offset": "18446744073709551615"}, ["past the end"]),
        ("w.bin", {"offset": "12abc"}, ["external data offset '12abc' is not a number"]),
        ("w.bin", {"offset": "-1"}, ["offset '-1' is not a number"]),
        ("w.bin", {"length": "1e3"}, ["length '1e3' is not a number"]),
        ("w.bin", {"length": "96"}, ["dims hold 32 elements but the data holds 24"]),
        ("", {}, ["external data without a location"]),
        ("adir", {}, ["not a regular file"]),
        ("fifo.bin", {}, ["fifo.bin: not a regular file"]),   # must not block
    ]
    for i, (location, kw, needles) in enumerate(cases):
        c = Case(tmp, "ext%d" % i)
        with open(os.path.join(c.root, "outside.bin"), "wb") as f:
            f.write(side)
        c.write("w.bin", side)
        os.mkdir(os.path.join(c.inp, "adir"))
        os.symlink("../outside.bin", os.path.join(c.inp, "link.bin"))
        os.mkfifo(os.path.join(c.inp, "fifo.bin"))
        path = external_model(c, location, kw.get("offset", "0"), kw.get("length", "128"))
        c.fails(["prepare", path, "-o", os.path.join(c.out, "o.onnx")], 1,
                ["model.onnx"] + needles)
    # a FIFO given as the model is refused at once too
    c = Case(tmp, "fifo-model")
    os.mkfifo(os.path.join(c.inp, "m.onnx"))
    c.fails(["inspect", os.path.join(c.inp, "m.onnx")], 1, ["m.onnx: not a regular file"])
    # inside the folder, through a symlink: fine
    c = Case(tmp, "ext-ok")
    c.write("w.bin", side)
    os.symlink("w.bin", os.path.join(c.inp, "inlink.bin"))
    path = external_model(c, "inlink.bin", "128", "128")
    c.ok(["sparsify", path, "-o", os.path.join(c.out, "o.onnx")])


# ---------------------------------------------------------------- atomic output

def test_failed_save_keeps_external_pair(tmp):
    """OUT is a folder: the model's rename fails after OUT.data was complete.
    The old OUT.data must be back and no temp file left."""
    c = Case(tmp, "atomic")
    src = c.write("model.onnx", gemm_model([weight("W", (64, 8))], nodes=[
        helper.make_node("Gemm", ["x", "W"], ["y"], name="/fc/Gemm", transB=1)],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])]))
    target = os.path.join(c.out, "m.onnx")
    os.mkdir(target)
    with open(target + ".data", "wb") as f:
        f.write(b"old side file")
    c.fails(["sparsify", src, "--external-data", "-o", target], 1, ["m.onnx"])
    # a good save next to a side file no OUT refers to leaves it alone and
    # writes its own under a fresh name
    os.rmdir(target)
    c.ok(["sparsify", src, "--external-data", "-o", target])
    if sorted(os.listdir(c.out)) != ["m.onnx", "m.onnx.1.data", "m.onnx.data"]:
        raise AssertionError("out/ holds %r" % os.listdir(c.out))
    with open(target + ".data", "rb") as f:
        assert f.read() == b"old side file"
    # over an existing pair: the old side file goes once OUT is replaced
    c.ok(["sparsify", src, "--external-data", "-o", target])
    if sorted(os.listdir(c.out)) != ["m.onnx", "m.onnx.2.data", "m.onnx.data"]:
        raise AssertionError("out/ holds %r" % os.listdir(c.out))
    m = onnx.load(target)
    onnx.checker.check_model(m)
    if numpy_helper.to_array(m.graph.initializer[0]).shape != (64, 8):
        raise AssertionError("reloaded weight has the wrong shape")


def test_output_over_input_with_error(tmp):
    """A pass that fails with -o equal to the input leaves the input as it was."""
    c = Case(tmp, "same")
    path = c.write("model.onnx", gemm_model())
    c.ok(["prepare", path, "-o", path])
    c.fails(["prepare", path, "-o", path], 1, ["already prepared"])
    c.fails(["prepare", path, "-o", path, "--sparsity", "2"], 2, ["sparsity"])


# ---------------------------------------------------------------- calibration inputs

def test_bad_calibration(tmp):
    """compare --inputs (and so --calibration) with bad data: one line naming the file
    and the input, exit 1 (2 for usage), nothing written."""
    if not testutil.have_ort():
        # compare opens ONNX Runtime before it reads a batch
        c = Case(tmp, "calib-no-ort")
        model = c.write("model.onnx", gemm_model())
        np.savez(os.path.join(c.inp, "x.npz"), x=np.ones((1, 8), np.float32))
        c.fails(["compare", model, model, "--inputs", os.path.join(c.inp, "x.npz")], 1,
                ["ONNX Runtime support was not built"])
        return
    c = Case(tmp, "calib")
    two = gemm_model(nodes=[
        helper.make_node("Gemm", ["x", "W"], ["g"], name="/fc/Gemm", transB=1),
        helper.make_node("Add", ["g", "b"], ["y"], name="add")],
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
                helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 4])])
    model = c.write("model.onnx", two)
    x = np.ones((1, 8), np.float32)
    b = np.ones((1, 4), np.float32)

    def npz(name, **arrays):
        path = os.path.join(c.inp, name)
        np.savez(path, **arrays)
        return path

    def compare(inputs, needles, code=1, env=None):
        c.fails(["compare", model, model, "--inputs", inputs], code, needles, env=env)

    good = npz("good.npz", x=x, b=b)
    c.ok(["compare", model, model, "--inputs", good])
    compare(npz("missing.npz", x=x), ["missing.npz", "input 'b' is missing"])
    compare(npz("extra.npz", x=x, b=b, z=b), ["extra.npz", "input 'z'", "no such input"])
    # names from the file are shown on one line (control characters as '?'; a zip member
    # name with a newline broke the one-line rule, found by fuzz-calib)
    compare(npz("newline.npz", x=x, b=b, **{"z\nq": b}), ["newline.npz", "input 'z?q'"])
    compare(npz("dtype.npz", x=x.astype(np.float64), b=b),
            ["dtype.npz", "input 'x'", "dtype float64", "expects float32"])
    compare(npz("rank.npz", x=x.reshape(8), b=b), ["rank.npz", "input 'x'", "rank 1"])
    compare(npz("dim.npz", x=np.ones((1, 7), np.float32), b=b),
            ["dim.npz", "input 'x'", "dimension 1 is 7", "expects 8"])
    compare(npz("fortran.npz", x=x, b=np.asfortranarray(np.ones((3, 4), np.float32))),
            ["fortran.npz", "input 'b'", "Fortran"])
    compare(npz("bigendian.npz", x=x.astype(">f4"), b=b), ["bigendian.npz", "input 'x'",
                                                           "big-endian"])
    compare(npz("object.npz", x=np.array(["a"], dtype=object), b=b), ["object.npz", "dtype"])
    with open(good, "rb") as f:
        data = f.read()
    for name, blob, needle in (
            ("truncated.npz", data[:len(data) // 2], "not an .npz"),
            ("short.npz", data[:10], "too short"),
            ("notzip.npz", b"hello world, not a zip archive at all" * 3, "not an .npz"),
            ("corrupt.npz", data[:80] + bytes(b ^ 0x5A for b in data[80:120]) + data[120:],
             "")):
        compare(c.write(name, blob), [name, needle])
    # a deflated member with corrupt compressed bytes
    zpath = os.path.join(c.inp, "deflate.npz")
    np.savez_compressed(zpath, x=np.arange(8, dtype=np.float32).reshape(1, 8), b=b)
    with open(zpath, "rb") as f:
        z = bytearray(f.read())
    z[60] ^= 0xFF
    z[61] ^= 0xFF
    zbad = c.write("deflate-bad.npz", bytes(z))
    compare(zbad, ["deflate-bad.npz"])
    # unreadable: a FIFO where a batch file should be (and mode 000 when not root)
    folder = os.path.join(c.inp, "fifo")
    os.mkdir(folder)
    os.mkfifo(os.path.join(folder, "a.npz"))
    compare(folder, ["a.npz", "not a regular file"])
    if os.geteuid() != 0:
        locked = os.path.join(c.inp, "locked")
        os.mkdir(locked)
        shutil.copy(good, os.path.join(locked, "a.npz"))
        os.chmod(os.path.join(locked, "a.npz"), 0)
        compare(locked, ["a.npz", "Permission denied"])
    empty = os.path.join(c.inp, "empty")
    os.mkdir(empty)
    compare(empty, ["empty", "no calibration data"])
    compare(os.path.join(c.inp, "nonexistent"), ["nonexistent", "No such file"])
    # test-data sets: a corrupt TensorProto, dims that disagree with the data, a
    # name-less tensor past the model's inputs
    sets = os.path.join(c.inp, "sets")
    os.makedirs(os.path.join(sets, "test_data_set_0"))
    with open(os.path.join(sets, "test_data_set_0", "input_0.pb"), "wb") as f:
        f.write(b"\x0a\xff\xff\xff\x0f")
    compare(sets, ["input_0.pb", "not a TensorProto"])
    t = numpy_helper.from_array(x, "x")
    t.raw_data = t.raw_data[:12]
    with open(os.path.join(sets, "test_data_set_0", "input_0.pb"), "wb") as f:
        f.write(t.SerializeToString())
    compare(sets, ["input_0.pb", "'x'", "data holds 3"])
    for j, arr in enumerate((x, b, b)):
        with open(os.path.join(sets, "test_data_set_0", "input_%d.pb" % j), "wb") as f:
            f.write(numpy_helper.from_array(arr, "").SerializeToString())
    compare(sets, ["input_2.pb", "position 2", "2 inputs"])
    # no ONNX Runtime
    compare(good, ["ONNX Runtime not found", "/nonexistent"],
            env={"ONNX_PASS_ORT_LIBRARY": "/nonexistent/libonnxruntime.so"})
    # usage
    c.fails(["compare", model, model], 2, ["--inputs"])


# ---------------------------------------------------------------- fuzzer findings

def test_fuzz_regressions(tmp):
    # fuzz-model: a prepared model without any group made step read an
    # uninitialised worker (opass_parallel_for with no jobs)
    c = Case(tmp, "nogroups")
    path = c.write("model.onnx", gemm_model(initializers=[], nodes=[
        helper.make_node("Relu", ["x"], ["y"], name="relu")],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])]))
    out = os.path.join(c.out, "p.onnx")
    c.ok(["prepare", path, "-o", out])
    c.ok(["step", out, "-o", out])
    c.ok(["convert", out, "-o", out])
    # fuzz-model: prepare leaked the group's args when the weight's data was bad
    # (the ASan build's leak check turns a leak into a failed exit code)
    w = weight("W", (4, 8))
    w.raw_data = w.raw_data[:12]
    model_errors(tmp, "leak", gemm_model([w]), ["data holds 3"], ("prepare",))
    # fuzz-external: a weight with no elements (dims [0, 8], no data) made step
    # memcpy from a NULL array (UBSan's nonnull check in the sanitizer build)
    c = Case(tmp, "empty")
    path = c.write("model.onnx", gemm_model(
        [helper.make_tensor("W", TensorProto.FLOAT, [0, 8], [])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 0])]))
    out = os.path.join(c.out, "e.onnx")
    c.ok(["sparsify", path, "-o", out])
    c.ok(["inspect", out])
    # fuzz-config: a stored state whose two groups share one mask made squash
    # use the mask initializer after the first group had freed it
    c = Case(tmp, "shared-mask")
    two = gemm_model([weight("A", (8, 8)), weight("B", (8, 8), 1)], nodes=[
        helper.make_node("Gemm", ["x", "A"], ["h"], name="/a/Gemm", transB=1),
        helper.make_node("MatMul", ["h", "B"], ["y"], name="/b/MatMul")],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    src = c.write("two.onnx", two)
    prepared = os.path.join(c.root, "prepared.onnx")
    c.ok(["prepare", src, "-o", prepared])

    def tampered(name, edit):
        m = onnx.load(prepared)
        prop = [p for p in m.metadata_props if p.key == "onnx_pass.sparsity"][0]
        state = json.loads(prop.value)
        edit(state["groups"])
        prop.value = json.dumps(state)
        return c.write(name, m)

    def share_mask(groups):
        groups[1]["mask"] = groups[0]["mask"]

    def share_weight(groups):
        groups[1]["weight"] = groups[0]["weight"]

    def wrong_output(groups):
        groups[0]["output"] = "h"   # the Gemm's output, not the mask Mul's

    for name, edit, needles in (("mask.onnx", share_mask, ["group 'B' shares its mask"]),
                                ("weight.onnx", share_weight, ["shares its weight"]),
                                ("output.onnx", wrong_output, ["group 'A': mask nodes not found"])):
        path = tampered(name, edit)
        cmds = [["squash", path, "-o", os.path.join(c.out, "o.onnx")],
                ["convert", path, "-o", os.path.join(c.out, "o.onnx")]]
        if name != "output.onnx":
            cmds += [["step", path, "-o", os.path.join(c.out, "o.onnx")], ["inspect", path],
                     ["state", "export", path]]
        for args in cmds:
            c.fails(args, 1, [name] + needles)
    for name in sorted(os.listdir(REGRESS)) if os.path.isdir(REGRESS) else []:
        if not name.endswith(".onnx"):
            continue
        c = Case(tmp, "regress")
        shutil.copy(os.path.join(REGRESS, name), c.inp)
        path = os.path.join(c.inp, name)
        for cmd in ("inspect", "sparsify", "step", "convert", "state"):
            args = [cmd, path]
            if cmd == "state":
                args = ["state", "export", path]
            elif cmd != "inspect":
                args += ["-o", os.path.join(c.out, "o.onnx")]
            p = run(args, cwd=c.root)
            if p.returncode not in (0, 1) or (p.returncode == 1 and len(p.stderr.splitlines()) != 1):
                raise AssertionError("%s %s: exit %d, stderr %r" % (cmd, name, p.returncode,
                                                                    p.stderr[-2000:]))


TESTS = [test_dims_disagree_with_data, test_negative_and_overflowing_dims,
         test_huge_sparse_dims_without_data, test_string_weight_skipped, test_duplicate_names,
         test_dangling_references, test_cycles, test_unsorted_graph_accepted, test_deep_subgraphs,
         test_corrupt_protobuf, test_external_data_edges, test_failed_save_keeps_external_pair,
         test_output_over_input_with_error, test_bad_calibration, test_fuzz_regressions]


def main(runner):
    with tempfile.TemporaryDirectory(prefix="onnx-pass-bad-") as tmp:
        runner.tests(TESTS, tmp)


if __name__ == "__main__":
    testutil.main(main, only=sys.argv[1:])
