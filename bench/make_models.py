#!/usr/bin/python3
"""Generate the benchmark workloads at bench time.

Usage: make_models.py OUTDIR [--layers N ...] [--resnet] [--external-gb G]

bert-L.onnx: a BERT-base-sized encoder (d = 768, FFN 3072, 12 heads, L layers)
exported by torch.onnx.export with default constant folding: 6 MatMul weights per
layer (85M fp32 weights in 72 MatMul initializers for L = 12, ~340 MB).
resnet50.onnx: torchvision ResNet-50 (weights=None), Conv+BN folded on export.
big-external.onnx: a MatMul chain whose weights live in external data, G GB in all.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from make_example import Encoder  # noqa: E402


def export_bert(path, layers):
    torch.manual_seed(0)
    model = Encoder(layers=layers, d=768, ffn=3072, heads=12).eval()
    x = torch.randn(1, 128, 768)
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, opset_version=13, input_names=["x"],
                          output_names=["y"])


def export_resnet50(path):
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), path, opset_version=13)


def make_external(path, gigabytes):
    """A chain of [4096, 4096] MatMuls whose weights are external data."""
    d = 4096
    n = max(1, int(gigabytes * 2**30 / (d * d * 4)))
    rng = np.random.default_rng(0)
    inits, nodes = [], []
    prev = "x"
    for i in range(n):
        w = rng.standard_normal((d, d), dtype=np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"], name=f"/l{i}/MatMul"))
        prev = f"h{i}"
    graph = helper.make_graph(nodes, "chain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, d])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, d])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(path) + ".data", size_threshold=0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--layers", type=int, nargs="*", default=[12])
    ap.add_argument("--resnet", action="store_true")
    ap.add_argument("--external-gb", type=float, default=0)
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    for n in args.layers:
        path = os.path.join(args.outdir, f"bert-{n}.onnx")
        if not os.path.exists(path):
            export_bert(path, n)
    if args.resnet and not os.path.exists(os.path.join(args.outdir, "resnet50.onnx")):
        export_resnet50(os.path.join(args.outdir, "resnet50.onnx"))
    if args.external_gb > 0 and not os.path.exists(os.path.join(args.outdir, "big-external.onnx")):
        make_external(os.path.join(args.outdir, "big-external.onnx"), args.external_gb)


if __name__ == "__main__":
    main()
