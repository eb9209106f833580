#!/usr/bin/python3
"""Large external-data tensors, which the library maps instead of reading
(src/store.c): every pass gives the same tensors as on the same model stored
inline, the input files are untouched, nothing is left in the model folder,
and peak memory stays far below the data size (test_python.py checks the
bytes API on such a model).

Run from meson: test 'external-store' runs all but test_memory_bounded, which
is test 'external-memory' (not run in the ASan build, whose shadow memory would
count). Needs ONNX_PASS. Prints "N passed, M failed".
"""

import hashlib
import json
import os
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
MAPPED_MIN = 64 << 10  # OPASS_STORE_MIN_BYTES


def weights(rng):
    """Initializers: mapped ones (>= 64 KiB, several dtypes and views) and small ones."""
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return {
        "fc1.weight": f32(256, 128),                                      # Gemm transB
        "fc1.bias": f32(256),
        "mm.weight": f32(128, 192),                                       # MatMul
        "half.weight": rng.standard_normal((192, 256)).astype(np.float16),
        "wide.weight": rng.standard_normal((256, 64)).astype(np.float64),
        "conv.weight": f32(32, 16, 3, 3),                                 # small: read
        "tail.weight": f32(64, 48),                                       # small: read
    }


def make_model(folder, rng, external=True):
    w = weights(rng)
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h1"], transB=1),
        helper.make_node("MatMul", ["h1", "mm.weight"], ["h2"]),
        helper.make_node("Cast", ["h2"], ["h2h"], to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["h2h", "half.weight"], ["h3h"]),
        helper.make_node("Cast", ["h3h"], ["h3d"], to=TensorProto.DOUBLE),
        helper.make_node("MatMul", ["h3d", "wide.weight"], ["h4d"]),
        helper.make_node("Cast", ["h4d"], ["h4"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["h4", "tail.weight"], ["y"]),
        helper.make_node("Conv", ["img", "conv.weight"], ["z"], pads=[1, 1, 1, 1]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    graph = helper.make_graph(
        nodes, "store",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 128]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 16, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 48]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 32, 8, 8])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = os.path.join(folder, "m.onnx")
    if external:
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="m.onnx.data", size_threshold=0)
    else:
        onnx.save_model(model, path)
    return path


def run_ok(args):
    out = subprocess.run([ONNX_PASS] + args, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError("%r failed: %s" % (args, out.stderr))
    return out


def tensors(path):
    """name -> array of every stored tensor (dense and sparse initializers)."""
    m = onnx.load(path)
    out = {k: numpy_helper.to_array(t) for k, t in testutil.stored_tensors(m.graph).items()}
    for s in m.graph.sparse_initializer:
        out[s.values.name] = (numpy_helper.to_array(s.values), numpy_helper.to_array(s.indices))
    return out, m


def digest(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


class Pair:
    """The same model with external data (ext/) and inline (inl/)."""

    def __init__(self, tmp):
        self.ext_dir = tempfile.mkdtemp(dir=tmp, prefix="ext-")
        self.inl_dir = tempfile.mkdtemp(dir=tmp, prefix="inl-")
        self.out_dir = tempfile.mkdtemp(dir=tmp, prefix="out-")
        self.ext = make_model(self.ext_dir, np.random.default_rng(7), True)
        self.inl = make_model(self.inl_dir, np.random.default_rng(7), False)
        m = onnx.load(self.ext, load_external_data=False)
        mapped = [t.name for t in m.graph.initializer
                  if int(dict((e.key, e.value) for e in t.external_data)["length"]) >= MAPPED_MIN]
        if sorted(mapped) != ["fc1.weight", "half.weight", "mm.weight", "wide.weight"]:
            raise AssertionError("the test model maps %r" % mapped)

    def compare(self, cmd, flags, steps=1):
        """Run cmd on both models (steps times, each on the last output); the
        tensors must be equal and the external output must keep a side file."""
        results, paths = [], []
        for src, tag in ((self.ext, "e"), (self.inl, "i")):
            cur = src
            for k in range(steps):
                out = os.path.join(self.out_dir, "%s%d.onnx" % (tag, k))
                run_ok([cmd[min(k, len(cmd) - 1)], cur, "-o", out] + flags)
                cur = out
            results.append(tensors(cur))
            paths.append(cur)
        (ext, ext_model), (inl, _) = results
        if sorted(ext) != sorted(inl):
            raise AssertionError("%s: tensors %r vs %r" % (cmd, sorted(ext), sorted(inl)))
        for name in ext:
            a, b = ext[name], inl[name]
            same = (all(np.array_equal(x, y) for x, y in zip(a, b)) if isinstance(a, tuple)
                    else a.dtype == b.dtype and np.array_equal(a, b))
            if not same:
                raise AssertionError("%s %s: tensor %s differs" % (cmd, flags, name))
        if not any(t.data_location == TensorProto.EXTERNAL for t in
                   onnx.load(paths[0], load_external_data=False).graph.initializer) and \
                not ext_model.graph.sparse_initializer:
            raise AssertionError("%s: the external model's output has no external data" % cmd)
        return ext


def test_passes_match_inline(tmp):
    p = Pair(tmp)
    before = digest(p.ext_dir)
    sparse = p.compare(["sparsify"], ["--sparsity", "0.5", "--block", "1x4"])
    if np.count_nonzero(sparse["fc1.weight"]) != sparse["fc1.weight"].size // 2:
        raise AssertionError("fc1.weight is not 50% sparse")
    p.compare(["sparsify"], ["--sparsity", "0.9", "--block", "1x1", "--format", "coo"])
    p.compare(["sparsify"], ["--sparsity", "0.9", "--block", "1x1", "--format", "ort-sparse"])
    p.compare(["sparsify"], ["--sparsity", "1", "--block", "1x4", "--zeros-per-block", "2",
                             "--format", "dense"])
    # the passes one by one, each output loaded again (prepared models map too)
    p.compare(["prepare", "step", "step", "squash"],
              ["--sparsity", "0.6", "--block", "2x2"], steps=4)
    p.compare(["prepare", "step", "convert"], ["--sparsity", "0.8", "--block", "4x1"], steps=3)
    if digest(p.ext_dir) != before:
        raise AssertionError("the input folder changed: %r -> %r" % (before, digest(p.ext_dir)))


def test_inspect_matches_inline(tmp):
    p = Pair(tmp)
    docs = []
    for src, tag in ((p.ext, "e"), (p.inl, "i")):
        out = os.path.join(p.out_dir, tag + ".onnx")
        run_ok(["prepare", src, "-o", out, "--sparsity", "0.5"])
        run_ok(["step", out, "-o", out])
        docs.append(json.loads(run_ok(["inspect", "--json", out]).stdout))
    strip = lambda doc: [{k: v for k, v in w.items() if k != "storage"}  # noqa: E731
                         for w in doc["weights"]]
    if strip(docs[0]) != strip(docs[1]):
        raise AssertionError("inspect differs:\n%r\n%r" % (docs[0], docs[1]))
    storage = {w["name"]: w["storage"] for w in docs[0]["weights"]}
    if storage.get("fc1.weight") != "external":
        raise AssertionError("storage of fc1.weight: %r" % storage)


def test_output_over_input(tmp):
    """-o equal to the input: the mapped bytes come from the input's side file,
    which the save replaces."""
    p = Pair(tmp)
    run_ok(["sparsify", p.ext, "-o", p.ext, "--sparsity", "0.5"])
    out = os.path.join(p.out_dir, "i.onnx")
    run_ok(["sparsify", p.inl, "-o", out, "--sparsity", "0.5"])
    (a, _), (b, _) = tensors(p.ext), tensors(out)
    for name in b:
        if not np.array_equal(a[name], b[name]):
            raise AssertionError("tensor %s differs" % name)
    # a fresh side-file name; the replaced model's side file is removed
    if sorted(os.listdir(p.ext_dir)) != ["m.onnx", "m.onnx.1.data"]:
        raise AssertionError("files left in the model folder: %r" % os.listdir(p.ext_dir))


def test_save_links_work_file(tmp):
    """A dense sparsify keeps every mapped tensor: the save links the work file
    as OUT.data instead of copying the bytes again (traced: the only copies are
    the load's, one per mapped tensor)."""
    p = Pair(tmp)
    out = os.path.join(p.out_dir, "o.onnx")
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"  # no LSan under ptrace
    run = subprocess.run(["strace", "-f", "-e", "trace=copy_file_range,linkat", "-o", "/dev/stderr",
                          ONNX_PASS, "sparsify", p.ext, "-o", out, "--sparsity", "0.5",
                          "--format", "dense"], capture_output=True, text=True, env=env,
                         timeout=300)
    if run.returncode != 0:
        raise AssertionError("sparsify failed: " + run.stderr)
    calls = [l for l in run.stderr.splitlines() if "copy_file_range(" in l or "linkat(" in l]
    copies = [l for l in calls if "copy_file_range(" in l]
    # the work file is linked as OUT.data, then OUT (unnamed until then) under a temp name
    if len(copies) != 4 or len(calls) != 6 or "o.onnx.data" not in calls[-2]:
        raise AssertionError("expected 4 copies, then the links: %r" % calls)
    got = tensors(out)[0]
    inl_out = os.path.join(p.out_dir, "i.onnx")
    run_ok(["sparsify", p.inl, "-o", inl_out, "--sparsity", "0.5", "--format", "dense"])
    want = tensors(inl_out)[0]
    for name in want:
        if not np.array_equal(got[name], want[name]):
            raise AssertionError("tensor %s differs" % name)


def make_chain(folder):
    """40 MatMul weights of 2 MiB (512 x 1024), all in external data (run in a
    child process, test_memory_bounded: the arrays need not stay in this one)."""
    rng = np.random.default_rng(1)
    inits, nodes, prev = [], [], "x"
    for i in range(40):
        shape = (1024, 512) if i % 2 == 0 else (512, 1024)
        inits.append(numpy_helper.from_array(
            rng.standard_normal(shape).astype(np.float32), "w%d" % i))
        nodes.append(helper.make_node("MatMul", [prev, "w%d" % i], ["h%d" % i]))
        prev = "h%d" % i
    graph = helper.make_graph(nodes, "chain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1024])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 1024])],
                              inits)
    onnx.save_model(helper.make_model(graph), os.path.join(folder, "big.onnx"),
                    save_as_external_data=True, location="big.onnx.data", size_threshold=0)


def test_memory_bounded(tmp):
    """Peak RSS of sparsify on make_chain's model stays below a third of its
    data (an inline model holds all of it)."""
    folder = tempfile.mkdtemp(dir=tmp, prefix="big-")
    subprocess.run([sys.executable, os.path.abspath(__file__), "--make-chain", folder], check=True)
    path = os.path.join(folder, "big.onnx")
    size = os.path.getsize(path + ".data")
    out = os.path.join(folder, "out.onnx")
    # GNU time reports the peak RSS of onnx-pass alone (a child forked from
    # this Python process would count this process's pages too); meson's
    # MALLOC_PERTURB_ would make malloc touch every page it hands out
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_PERTURB_"}
    run = subprocess.run(["/usr/bin/time", "-f", "%M", ONNX_PASS, "sparsify", path, "-o", out,
                          "--threads", "1", "--sparsity", "0.5", "--block", "1x4"],
                         capture_output=True, text=True, timeout=300, env=env)
    if run.returncode != 0:
        raise AssertionError("sparsify failed: " + run.stderr)
    rss = int(run.stderr.split()[-1]) * 1024
    if rss * 3 > size:
        raise AssertionError("peak RSS %d bytes for %d bytes of external data" % (rss, size))
    w = numpy_helper.to_array(onnx.load(out).graph.initializer[5])
    if np.count_nonzero(w) != w.size // 2:
        raise AssertionError("w5 is not 50% sparse")


TESTS = [test_passes_match_inline, test_inspect_matches_inline, test_output_over_input,
         test_save_links_work_file, test_memory_bounded]


def main(runner):
    with tempfile.TemporaryDirectory(prefix="onnx-pass-store-") as tmp:
        runner.tests(TESTS, tmp)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--make-chain"]:
        make_chain(sys.argv[2])
        sys.exit(0)
    testutil.main(main, only=sys.argv[1:] or [t.__name__ for t in TESTS
                                              if t is not test_memory_bounded])
