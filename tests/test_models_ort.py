#!/usr/bin/python3
"""Generate the test models and check them: onnx.checker, manifest vs. the stored tensors,
ONNX Runtime (tests/ort-run) vs. torch / numpy, and ort-run's own error handling.

Run from meson (test 'models-ort'); needs ORT_RUN for the ONNX Runtime checks, which are
reported as skipped without it (exit 77 when nothing failed).
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
from onnx import numpy_helper  # noqa: E402
import make_models  # noqa: E402
import ortlib  # noqa: E402

ATOL = 1e-4  # ONNX Runtime vs. torch / numpy


def assert_close(got, want, what, atol=ATOL, rtol=0.0):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError("%s: shape %s, expected %s" % (what, got.shape, want.shape))
    err = np.abs(got - want) - rtol * np.abs(want)
    if not np.all(err <= atol):
        i = np.unravel_index(np.argmax(err), err.shape)
        raise AssertionError("%s: max error at %s: got %r, expected %r"
                             % (what, i, got[i], want[i]))


def to_float(t):
    if t.data_type == onnx.TensorProto.BFLOAT16:
        bits = (np.frombuffer(t.raw_data, dtype="<u2") if t.raw_data
                else np.array(t.int32_data, dtype=np.uint16))
        return ortlib.bfloat16_bits_to_float32(bits).reshape(tuple(t.dims)).astype(np.float64)
    return numpy_helper.to_array(t).astype(np.float64)


def check_checker(path, entry):
    model = onnx.load(path)
    if entry.get("checker_ir_version"):
        model.ir_version = entry["checker_ir_version"]
    onnx.checker.check_model(model, full_check=True)


def check_manifest(path, entry):
    """The manifest's facts agree with the tensors actually stored in the file."""
    model = onnx.load(path)
    tensors = testutil.stored_tensors(model.graph)
    dtypes = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
              onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.DOUBLE: "float64",
              onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64"}
    for w in entry["weights"] + entry["skipped"]:
        t = tensors[w["name"]]
        assert list(t.dims) == w["shape"], (w["name"], t.dims)
        assert dtypes[t.data_type] == w["dtype"], (w["name"], t.data_type)
    for w in entry["weights"]:
        v = to_float(tensors[w["name"]])
        v2 = {"as_is": v, "transposed": v.T}.get(w["view"])
        v2 = v.reshape(v.shape[0], -1) if v2 is None else v2
        assert list(v2.shape) == [w["rows"], w["cols"]], w["name"]
        assert_close(v2[0, :len(w["view_row0"])], w["view_row0"], w["name"] + " row 0",
                     atol=1e-7, rtol=1e-5)
        assert_close(np.abs(v).sum(), w["sum_abs"], w["name"] + " sum_abs", atol=0, rtol=1e-5)
        if w["storage"] != "external":
            t = tensors[w["name"]]
            assert t.HasField("raw_data") == (w["storage"] == "raw_data"), w["name"]


def check_torch(outdir, name, model_file):
    import torch
    module, example, _ = make_models.torch_model(name)
    torch.manual_seed(100)
    x = torch.randn(example.shape)
    with torch.no_grad():
        want = module(x).numpy()
    (got,) = ortlib.run(os.path.join(outdir, model_file), [x.numpy()])
    assert_close(got, want, model_file)


def check_constants_if(outdir):
    rng = np.random.default_rng(11)
    path = os.path.join(outdir, "constants_if.onnx")
    x = rng.standard_normal((2, 8)).astype(np.float32)
    img = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    for cond in (True, False):
        got = ortlib.run(path, {"x": x, "cond": np.array(cond), "img": img})
        want = make_models.constants_if_reference(outdir, x, cond, img)
        assert_close(got[0], want[0], "y (cond=%s)" % cond)
        assert_close(got[1], want[1], "feat")


def check_unknown_fields(outdir):
    path = os.path.join(outdir, "unknown_fields.onnx")
    model = onnx.load(path)
    data = model.SerializeToString()
    with open(path, "rb") as f:
        assert f.read() == data, "python protobuf does not keep the unknown fields"
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    x = np.random.default_rng(12).standard_normal((2, 4)).astype(np.float32)
    (got,) = ortlib.run(path, [x])
    assert_close(got, x.astype(np.float64) @ w["fc.w"].T + w["fc.b"], "unknown_fields")


def check_ort_run_errors(outdir):
    """ort-run fails cleanly: corrupt model, wrong input count, bad tensor file."""
    exe = ortlib.ort_run_path()
    bad = os.path.join(outdir, "corrupt.onnx")
    with open(bad, "wb") as f:
        f.write(b"\x08\x07\x12\xff\xff\xff\xff\x0fgarbage")
    good = os.path.join(outdir, "mlp_gemm.onnx")
    x = os.path.join(outdir, "x.bin")
    ortlib.write_tensor(x, np.zeros((4, 16), np.float32))
    short = os.path.join(outdir, "short.bin")
    with open(short, "wb") as f:
        f.write(b"ORTT float32 2 4 16\n" + bytes(12))
    cases = [[bad, x], [good], [good, x, x], [good, short], [good, os.path.join(outdir, "nope")]]
    for args in cases:
        p = subprocess.run([exe] + args + ["--", os.path.join(outdir, "o")],
                           capture_output=True, text=True)
        assert p.returncode != 0 and p.stderr.startswith("ort-run: "), (args, p.stderr)
    ok = subprocess.run([exe, good, x, "--", os.path.join(outdir, "o")], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("0\toutput\t"), ok.stderr


def main(runner):
    no_ort = None if ortlib.available() else "no ORT_RUN"
    with tempfile.TemporaryDirectory(prefix="models-ort-") as outdir:
        manifest = make_models.generate(outdir)
        for model_file, entry in sorted(manifest["models"].items()):
            path = os.path.join(outdir, model_file)
            runner.check("checker " + model_file, check_checker, path, entry)
            runner.check("manifest " + model_file, check_manifest, path, entry)
        for name in make_models.TORCH_MODELS:
            runner.check("ort vs torch " + name, check_torch, outdir, name, name + ".onnx",
                         needs=no_ort)
        runner.check("ort vs torch external_data", check_torch, outdir, "mlp_gemm",
                     "external_data.onnx", needs=no_ort)
        runner.check("ort vs numpy constants_if", check_constants_if, outdir, needs=no_ort)
        runner.check("ort unknown_fields", check_unknown_fields, outdir, needs=no_ort)
        runner.check("ort-run errors", check_ort_run_errors, outdir, needs=no_ort)


if __name__ == "__main__":
    testutil.main(main)
