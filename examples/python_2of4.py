#!/usr/bin/python3
"""2:4 sparsity from Python: torch model -> ONNX -> onnx_pass.sparsify -> ONNX Runtime.

Usage: PYTHONPATH=python examples/python_2of4.py [OUT.onnx]

1. exports a small torch MLP (three Linear layers) with torch.onnx.export,
2. sparsifies it to 2:4 with onnx_pass.sparsify (sparse weights stored as COO),
3. runs the result in ONNX Runtime: the onnxruntime package when installed, else this
   repository's ort-run tool (tests/ortlib.py; ORT_RUN, or build*/tests/ort-run when
   ORT_RUN is not in the environment: an empty ORT_RUN means none),
4. checks it against torch itself: the same module sparsified by
   torch.ao.sparsity.WeightNormSparsifier (prepare, step, squash_mask).
Exits 1 when the outputs differ, 77 (skipped, as meson counts it) when there is no
ONNX Runtime to run the model in.
"""
import collections
import glob
import io
import os
import sys
import tempfile
import warnings

import numpy as np
import onnx
import torch

import onnx_pass

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
TWO_OF_FOUR = dict(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2)
SKIPPED = 77


def make_net():
    return torch.nn.Sequential(collections.OrderedDict([
        ("fc1", torch.nn.Linear(32, 64)), ("act1", torch.nn.ReLU()),
        ("fc2", torch.nn.Linear(64, 64)), ("act2", torch.nn.ReLU()),
        ("fc3", torch.nn.Linear(64, 10))]))


def export(module, x):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, x, buf, input_names=["x"], output_names=["y"],
                          opset_version=13)
    return onnx.load_model_from_string(buf.getvalue())


def torch_2of4(module):
    """The module's weights sparsified by torch itself (every Linear weight)."""
    from torch.ao.sparsity import WeightNormSparsifier
    sparsifier = WeightNormSparsifier(**TWO_OF_FOUR)
    names = [n for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    sparsifier.prepare(module, config=[{"tensor_fqn": n + ".weight"} for n in names])
    sparsifier.step()
    sparsifier.squash_mask()
    return module


def ort_run(path, x):
    """Output 0 of the model in ONNX Runtime."""
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None:
        return onnxruntime.InferenceSession(path).run(None, {"x": x})[0]
    sys.path.insert(0, os.path.join(TOP, "tests"))
    import ortlib
    if not ortlib.available():
        found = [] if "ORT_RUN" in os.environ else sorted(
            glob.glob(os.path.join(TOP, "build*", "tests", "ort-run")),
            key=os.path.getmtime, reverse=True)
        if not found:
            print("python_2of4: skipped: no onnxruntime package and no ort-run "
                  "(build the tests with ONNX Runtime)")
            sys.exit(SKIPPED)
        os.environ["ORT_RUN"] = found[0]
    return ortlib.run(path, [x])[0]


def main(argv):
    torch.manual_seed(0)
    module = make_net().eval()
    x = torch.randn(4, 32)
    model = export(module, x)

    sparse = onnx_pass.sparsify(model, format="coo", **TWO_OF_FOUR)
    report = onnx_pass.inspect(sparse)
    for w in report["weights"]:
        print("%-14s %-18s %-26s sparsity %.2f" % (w["name"], w["shape"], w["pattern"],
                                                   w["sparsity"]))

    with tempfile.TemporaryDirectory() as tmp:
        out = argv[1] if len(argv) > 1 else os.path.join(tmp, "net.2of4.onnx")
        onnx.save(sparse, out)
        got = ort_run(out, x.numpy())

    with torch.no_grad():
        dense = module(x).numpy()
        want = torch_2of4(module)(x).numpy()
    err = float(np.max(np.abs(got - want)))
    print("ONNX Runtime vs torch (2:4): max abs difference %.3g" % err)
    print("2:4 vs dense torch:         max abs difference %.3g" % np.max(np.abs(want - dense)))
    if got.shape != want.shape or err > 1e-4:
        print("python_2of4: ONNX Runtime output differs from torch", file=sys.stderr)
        return 1
    if len(report["weights"]) != 3 or any(w["sparsity"] < 0.5 for w in report["weights"]):
        print("python_2of4: a weight is not 2:4 sparse", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
