#!/usr/bin/python3
"""Generate the ONNX test models of onnx-pass and a manifest of expected facts.

Usage: /usr/bin/python3 tests/models/make_models.py OUTDIR [MODEL ...]

Writes each model as OUTDIR/<model>.onnx (default: all of them) and
OUTDIR/manifest.json. Deterministic: every model seeds its own generators.

Models
  mlp_gemm            torch MLP (3 nn.Linear, 2-D input) -> Gemm transB=1, names fc1.weight...
  transformer_matmul  torch transformer block, 3-D input -> MatMul with [in, out] initializers
                      named onnx::MatMul_N (weights transposed by constant folding)
  resnet18            torchvision, weights=None, random BN statistics, Conv+BN folded
  mobilenet_v2        torchvision, as resnet18 (depthwise convs, nested scope names)
  constants_if        onnx.helper model without initializers: every weight is a Constant
                      node; Gemm transB=0/1, MatMul, Conv, and an If whose branches each use a
                      branch-local Constant weight plus one weight of the outer graph
  edge_cases          Gemm transB=0, Transpose(perm=[1,0]) of an initializer, a shared weight,
                      a weight whose consumers disagree on the view, Conv1d/Conv3d/grouped Conv,
                      float_data/raw_data/int32_data/double_data storage, fp16/bf16/fp64,
                      Loop and Scan bodies, and candidates that must be skipped
  external_data       mlp_gemm saved with every tensor in external_data.onnx.data
  unknown_fields      small Gemm model, IR version 10, with protobuf fields onnx 1.12 does
                      not know (see "unknown_fields" in its manifest entry)

manifest.json: {"version": 1, "models": {"<file>.onnx": ENTRY}}, ENTRY:
  source        "torch" or "helper"
  inputs        [{"name", "shape", "dtype"}] graph inputs
  ort           true when ONNX Runtime's CPU provider can run the model
  weights       expected sparsifiable weights, order not significant:
                  name       initializer / Constant output name (tensor_fqn)
                  alias      PyTorch-style name (module + ".weight") from the consumer's
                             scope (SPEC 4), or null
                  op         "Gemm", "MatMul" or "Conv" (first consumer in graph order)
                  view       "as_is" (stored array is [out, in]), "transposed" (stored
                             [in, out]) or "conv" (stored [O, I/g, k...])
                  rows, cols the 2-D view [out, in] / [O, I/g*prod(k)]
                  shape      stored dims; dtype "float32", "float16", "bfloat16", "float64"
                  storage    "raw_data", "float_data", "int32_data", "double_data", "external"
                  location   "initializer", "constant" or "subgraph_initializer"
                  consumers  number of consumer nodes (through a Transpose where "via" is set)
                  via        "Transpose" when the consumer reads a Transpose(perm=[1,0]) of it
                  subgraph   "If", "Loop" or "Scan" when a consumer sits in such a body
                  view_conflict  true when later consumers want another view
                  view_row0  first (up to 8) values of row 0 of the 2-D view
                  sum_abs    sum of |values| (float64)
                (torch Conv weights are folded with BatchNorm, so for them view_row0 and
                sum_abs are computed independently and agree with the file to ~1e-5 relative)
  skipped       candidates that must be skipped: {"name", "reason", "op", "shape", "dtype"};
                reasons: "dtype" (element type not FLOAT/FLOAT16/BFLOAT16/DOUBLE),
                "constant_a" (constant is MatMul input A), "rank" (MatMul B not rank 2)
  external_data (external_data only) [{"name", "location", "offset", "length"}]
  unknown_fields (unknown_fields only) [{"message", "path", "field", "wire_type", "hex"}]:
                the exact bytes appended at the end of each message's serialization
  checker_ir_version (unknown_fields only) IR version to set before onnx.checker
"""

import io
import json
import os
import struct
import sys
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 7

DTYPE_NAMES = {
    TensorProto.FLOAT: "float32",
    TensorProto.FLOAT16: "float16",
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.DOUBLE: "float64",
    TensorProto.INT32: "int32",
    TensorProto.INT64: "int64",
    TensorProto.BOOL: "bool",
}

ROW0_LEN = 8


def view_facts(values, view):
    """rows, cols, view_row0, sum_abs of a weight given as float64 array in stored layout."""
    values = np.asarray(values, dtype=np.float64)
    if view == "as_is":
        v = values
    elif view == "transposed":
        v = values.T
    else:
        v = values.reshape(values.shape[0], -1)
    return {
        "rows": int(v.shape[0]),
        "cols": int(v.shape[1]),
        "view_row0": [float(x) for x in v[0, :ROW0_LEN]],
        "sum_abs": float(np.abs(values).sum()),
    }


def weight_entry(name, alias, op, view, values, dtype, storage, location="initializer", **extra):
    e = {"name": name, "alias": alias, "op": op, "view": view}
    e.update(view_facts(values, view))
    e.update({"shape": [int(d) for d in np.shape(values)], "dtype": dtype, "storage": storage,
        "location": location, "consumers": 1})
    e.update(extra)
    return e


def value_info(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def inputs_of(graph):
    out = []
    for vi in graph.input:
        t = vi.type.tensor_type
        out.append({"name": vi.name, "dtype": DTYPE_NAMES[t.elem_type],
            "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in t.shape.dim]})
    return out


def finish_model(graph, ir_version=IR_VERSION):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="onnx-pass-tests")
    model.ir_version = ir_version
    return model


# ---------------------------------------------------------------- tensors in chosen storage

def bf16_values(rng, shape):
    """float32 values exactly representable in bfloat16, and their 16-bit patterns."""
    f = rng.standard_normal(shape).astype(np.float32)
    bits = (f.view(np.uint32) >> 16).astype(np.uint16)
    exact = (bits.astype(np.uint32) << 16).view(np.float32)
    return exact, bits


def make_tensor(name, values, elem, storage):
    """TensorProto holding values (numpy, already of the right type; uint16 bits for bf16)."""
    t = TensorProto()
    t.name = name
    t.data_type = elem
    t.dims.extend(values.shape)
    flat = values.reshape(-1)
    if storage == "raw_data":
        t.raw_data = flat.astype(flat.dtype.newbyteorder("<")).tobytes()
    elif storage == "float_data":
        assert elem == TensorProto.FLOAT
        t.float_data.extend(flat.tolist())
    elif storage == "double_data":
        assert elem == TensorProto.DOUBLE
        t.double_data.extend(flat.tolist())
    elif storage == "int32_data":
        if elem == TensorProto.FLOAT16:
            flat = flat.view(np.uint16)
        t.int32_data.extend(int(x) for x in flat)
    elif storage == "int64_data":
        t.int64_data.extend(int(x) for x in flat)
    else:
        raise ValueError(storage)
    return t


# ---------------------------------------------------------------- torch exports

def torch_model(name):
    """(module in eval mode, example input, linear op) for a torch-exported model.

    Deterministic: the same call always gives the same weights."""
    import torch
    torch.manual_seed({"mlp_gemm": 1, "transformer_matmul": 2, "resnet18": 3,
        "mobilenet_v2": 4}[name])
    if name == "mlp_gemm":
        m = torch.nn.Sequential()
        m.add_module("fc1", torch.nn.Linear(16, 32))
        m.add_module("act1", torch.nn.ReLU())
        m.add_module("fc2", torch.nn.Linear(32, 24))
        m.add_module("act2", torch.nn.Tanh())
        m.add_module("fc3", torch.nn.Linear(24, 10))
        return m.eval(), torch.randn(4, 16), "Gemm"
    if name == "transformer_matmul":
        return _transformer_block(torch).eval(), torch.randn(2, 8, 32), "MatMul"
    import torchvision
    m = getattr(torchvision.models, name)(weights=None)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.1)
                mod.running_mean.normal_(0.0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                assert mod.weight.shape[0] == n
    return m.eval(), torch.randn(1, 3, 64, 64), "Gemm"


def _transformer_block(torch):
    nn = torch.nn

    class Attention(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.heads = heads
            self.q_proj = nn.Linear(d, d)
            self.k_proj = nn.Linear(d, d)
            self.v_proj = nn.Linear(d, d)
            self.out_proj = nn.Linear(d, d, bias=False)

        def forward(self, x):
            b, s, d = x.shape
            h = self.heads

            def split(t):
                return t.reshape(b, s, h, d // h).transpose(1, 2)
            q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
            a = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)
            return self.out_proj((a @ v).transpose(1, 2).reshape(b, s, d))

    class Block(nn.Module):
        def __init__(self, d=32, heads=2, ffn=64):
            super().__init__()
            self.ln1 = nn.LayerNorm(d)
            self.attn = Attention(d, heads)
            self.ln2 = nn.LayerNorm(d)
            self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Linear(ffn, d))

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.ffn(self.ln2(x))

    return Block()


def torch_export(module, example):
    import torch
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, f, opset_version=OPSET, do_constant_folding=True,
            input_names=["input"], output_names=["output"])
    return onnx.load_from_string(f.getvalue())


def torch_expected(module, linear_op):
    """Expected weights from the module: [(alias, op, view, stored float64 array)]."""
    import torch
    leaves = [(n, m) for n, m in module.named_modules() if len(list(m.children())) == 0]
    out = []
    for i, (name, mod) in enumerate(leaves):
        alias = name + ".weight"
        w = mod.weight.detach().double().numpy() if hasattr(mod, "weight") else None
        if isinstance(mod, torch.nn.Linear):
            if linear_op == "Gemm":
                out.append((alias, "Gemm", "as_is", w))
            else:
                out.append((alias, "MatMul", "transposed", w.T.copy()))
        elif isinstance(mod, torch.nn.Conv2d):
            nxt = leaves[i + 1][1] if i + 1 < len(leaves) else None
            if isinstance(nxt, torch.nn.BatchNorm2d):
                scale = nxt.weight.detach().double() / torch.sqrt(
                    nxt.running_var.double() + nxt.eps)
                w = w * scale.numpy()[:, None, None, None]
            out.append((alias, "Conv", "conv", w))
    return out


def find_initializer(graph, values, exact):
    hits = []
    for init in graph.initializer:
        if list(init.dims) != list(values.shape):
            continue
        a = numpy_helper.to_array(init).astype(np.float64)
        ok = np.array_equal(a, values) if exact else np.allclose(a, values, rtol=1e-5,
            atol=1e-7)
        if ok:
            hits.append(init.name)
    if len(hits) != 1:
        raise RuntimeError("expected one initializer matching a module weight, found %r" % hits)
    return hits[0]


def torch_entry(name):
    module, example, linear_op = torch_model(name)
    model = torch_export(module, example)
    graph = model.graph
    weights = []
    for alias, op, view, values in torch_expected(module, linear_op):
        iname = find_initializer(graph, values, exact=(op != "Conv"))
        consumers = [n for n in graph.node if iname in n.input]
        # Sanity only: the consumer is the expected op, in the module's scope.
        assert len(consumers) == 1 and consumers[0].op_type == op, (iname, consumers)
        scope = consumers[0].name.split("/")
        assert scope[-2].split(".")[-1] == alias[:-len(".weight")].split(".")[-1], scope
        weights.append(weight_entry(iname, alias, op, view, values, "float32", "raw_data"))
    big = [i.name for i in graph.initializer if len(i.dims) >= 2]
    assert len(big) == len(weights), "unexpected rank>=2 initializers: %r" % big
    entry = {"source": "torch", "inputs": inputs_of(graph), "ort": True,
        "weights": weights, "skipped": []}
    return model, entry


# ---------------------------------------------------------------- constants_if

def constant_node(name, values, storage="raw_data", elem=TensorProto.FLOAT):
    return helper.make_node("Constant", [], [name], name=name + "/Constant",
        value=make_tensor(name, values, elem, storage))


def build_constants_if():
    rng = np.random.default_rng(5)

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    w = {"head.w": rand(6, 8), "head.b": rand(6), "mid.w": rand(6, 4), "proj.w": rand(4, 4),
        "conv.w": rand(4, 3, 3, 3), "outer.w": rand(4, 3), "then.w": rand(4, 3),
        "else.w": rand(4, 3)}
    weights = [
        weight_entry("head.w", "head.weight", "Gemm", "as_is", w["head.w"], "float32",
            "float_data", "constant"),
        weight_entry("mid.w", "mid.weight", "Gemm", "transposed", w["mid.w"], "float32",
            "raw_data", "constant"),
        weight_entry("proj.w", "blocks.0.proj.weight", "MatMul", "transposed", w["proj.w"],
            "float32", "raw_data", "constant"),
        weight_entry("conv.w", "stem.conv.weight", "Conv", "conv", w["conv.w"], "float32",
            "raw_data", "constant"),
        weight_entry("outer.w", None, "MatMul", "transposed", w["outer.w"], "float32",
            "raw_data", "constant", consumers=2, subgraph="If"),
        weight_entry("then.w", None, "MatMul", "transposed", w["then.w"], "float32",
            "raw_data", "constant", subgraph="If"),
        weight_entry("else.w", None, "MatMul", "transposed", w["else.w"], "float32",
            "float_data", "constant", subgraph="If"),
    ]

    def branch(tag, local, combine):
        nodes = [
            constant_node(local, w[local], "raw_data" if tag == "then" else "float_data"),
            helper.make_node("MatMul", ["h3", local], [tag + "_a"], name=tag + "_matmul_local"),
            helper.make_node("MatMul", ["h3", "outer.w"], [tag + "_b"],
                name=tag + "_matmul_outer"),
            helper.make_node(combine, [tag + "_a", tag + "_b"], [tag + "_y"],
                name=tag + "_combine"),
        ]
        return helper.make_graph(nodes, tag + "_branch", [],
            [value_info(tag + "_y", TensorProto.FLOAT, [2, 3])])

    nodes = [
        constant_node("head.w", w["head.w"], "float_data"),
        constant_node("head.b", w["head.b"]),
        helper.make_node("Gemm", ["x", "head.w", "head.b"], ["h1"], name="/head/Gemm", transB=1),
        helper.make_node("Relu", ["h1"], ["h1r"], name="/act/Relu"),
        constant_node("mid.w", w["mid.w"]),
        helper.make_node("Gemm", ["h1r", "mid.w"], ["h2"], name="/mid/Gemm", transB=0),
        constant_node("proj.w", w["proj.w"]),
        helper.make_node("MatMul", ["h2", "proj.w"], ["h3"],
            name="/blocks/blocks.0/proj/MatMul"),
        constant_node("outer.w", w["outer.w"]),
        helper.make_node("If", ["cond"], ["y"], name="branch",
            then_branch=branch("then", "then.w", "Add"),
            else_branch=branch("else", "else.w", "Sub")),
        constant_node("conv.w", w["conv.w"]),
        helper.make_node("Conv", ["img", "conv.w"], ["feat"], name="/stem/stem.conv/Conv",
            pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "constants_if",
        [value_info("x", TensorProto.FLOAT, [2, 8]), value_info("cond", TensorProto.BOOL, []),
            value_info("img", TensorProto.FLOAT, [1, 3, 5, 5])],
        [value_info("y", TensorProto.FLOAT, [2, 3]),
            value_info("feat", TensorProto.FLOAT, [1, 4, 5, 5])])
    model = finish_model(graph)
    entry = {"source": "helper", "inputs": inputs_of(graph), "ort": True, "weights": weights,
        "skipped": []}
    return model, entry


def constants_if_reference(model_dir, x, cond, img):
    """numpy forward pass of constants_if.onnx, from the stored Constant values."""
    model = onnx.load(os.path.join(model_dir, "constants_if.onnx"))
    c = {}

    def collect(graph):
        for n in graph.node:
            if n.op_type == "Constant":
                c[n.output[0]] = numpy_helper.to_array(n.attribute[0].t).astype(np.float64)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    collect(a.g)
    collect(model.graph)
    h1 = np.maximum(x @ c["head.w"].T + c["head.b"], 0)
    h3 = (h1 @ c["mid.w"]) @ c["proj.w"]
    y = h3 @ c["then.w"] + h3 @ c["outer.w"] if cond else h3 @ c["else.w"] - h3 @ c["outer.w"]
    w = c["conv.w"]
    p = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)))
    feat = np.zeros((1, 4, 5, 5))
    for i in range(5):
        for j in range(5):
            patch = p[0, :, i:i + 3, j:j + 3]
            feat[0, :, i, j] = (w * patch[None]).sum(axis=(1, 2, 3))
    return [y, feat]


# ---------------------------------------------------------------- edge_cases

class Builder:
    """Collects nodes, initializers and expectations of a helper-built graph."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.weights, self.skipped = [], []

    def rand(self, *shape):
        return self.rng.standard_normal(shape).astype(np.float32)

    def node(self, op, ins, outs, name, **attrs):
        self.nodes.append(helper.make_node(op, ins, outs, name=name, **attrs))

    def init(self, name, values, elem=TensorProto.FLOAT, storage="raw_data"):
        self.inits.append(make_tensor(name, values, elem, storage))

    def output(self, name, elem, shape):
        self.outputs.append(value_info(name, elem, shape))

    def weight(self, name, alias, op, view, values, dtype, storage, **extra):
        self.weights.append(weight_entry(name, alias, op, view, values, dtype, storage, **extra))

    def skip(self, name, reason, op, values, dtype):
        self.skipped.append({"name": name, "reason": reason, "op": op,
            "shape": list(values.shape), "dtype": dtype})


def edge_float_cases(b):
    w = b.rand(8, 6)
    b.init("gemm_t0.w", w, storage="float_data")
    b.node("Gemm", ["x", "gemm_t0.w"], ["y_gemm_t0"], "/gemm_t0/Gemm", transB=0)
    b.output("y_gemm_t0", TensorProto.FLOAT, [2, 6])
    b.weight("gemm_t0.w", "gemm_t0.weight", "Gemm", "transposed", w, "float32", "float_data")

    w = b.rand(6, 8)
    b.init("proj_t.w", w)
    b.node("Transpose", ["proj_t.w"], ["proj_t.wt"], "/proj_t/Transpose", perm=[1, 0])
    b.node("MatMul", ["x", "proj_t.wt"], ["y_proj_t"], "/proj_t/MatMul")
    b.output("y_proj_t", TensorProto.FLOAT, [2, 6])
    b.weight("proj_t.w", "proj_t.weight", "MatMul", "as_is", w, "float32", "raw_data",
        via="Transpose")

    w = b.rand(8, 6)
    b.init("shared.w", w)
    b.node("MatMul", ["x", "shared.w"], ["y_shared_a"], "/shared_a/MatMul")
    b.node("Relu", ["x"], ["x_relu"], "relu")
    b.node("MatMul", ["x_relu", "shared.w"], ["y_shared_b"], "/shared_b/MatMul")
    b.output("y_shared_a", TensorProto.FLOAT, [2, 6])
    b.output("y_shared_b", TensorProto.FLOAT, [2, 6])
    b.weight("shared.w", "shared_a.weight", "MatMul", "transposed", w, "float32", "raw_data",
        consumers=2)

    w = b.rand(8, 8)
    b.init("conflict.w", w)
    b.node("MatMul", ["x", "conflict.w"], ["y_conflict_mm"], "conflict_matmul")
    b.node("Gemm", ["x", "conflict.w"], ["y_conflict_gemm"], "conflict_gemm", transB=1)
    b.output("y_conflict_mm", TensorProto.FLOAT, [2, 8])
    b.output("y_conflict_gemm", TensorProto.FLOAT, [2, 8])
    b.weight("conflict.w", None, "MatMul", "transposed", w, "float32", "raw_data",
        consumers=2, view_conflict=True)


def edge_conv_cases(b):
    w = b.rand(6, 4, 3)
    b.init("conv1d.w", w, storage="float_data")
    b.node("Conv", ["x1d", "conv1d.w"], ["y_conv1d"], "/enc/enc.conv1d/Conv")
    b.output("y_conv1d", TensorProto.FLOAT, [1, 6, 8])
    b.weight("conv1d.w", "enc.conv1d.weight", "Conv", "conv", w, "float32", "float_data")

    w = b.rand(4, 2, 2, 2, 2)
    b.init("conv3d.w", w)
    b.node("Conv", ["x3d", "conv3d.w"], ["y_conv3d"], "/enc/blocks/blocks.0/Conv")
    b.output("y_conv3d", TensorProto.FLOAT, [1, 4, 3, 3, 3])
    b.weight("conv3d.w", "enc.blocks.0.weight", "Conv", "conv", w, "float32", "raw_data")

    w = b.rand(8, 2, 3, 3)
    b.init("gconv.w", w)
    b.node("Conv", ["x2d", "gconv.w"], ["y_gconv"], "/gconv/Conv", group=2)
    b.output("y_gconv", TensorProto.FLOAT, [1, 8, 4, 4])
    b.weight("gconv.w", "gconv.weight", "Conv", "conv", w, "float32", "raw_data")


def edge_dtype_cases(b):
    for elem, tag in ((TensorProto.FLOAT16, "f16"), (TensorProto.BFLOAT16, "bf16"),
            (TensorProto.DOUBLE, "f64"), (TensorProto.INT32, "i32"),
            (TensorProto.INT64, "i64")):
        b.node("Cast", ["x"], ["x_" + tag], "cast_" + tag, to=elem)

    w = b.rand(8, 4).astype(np.float16)
    b.init("fp16_mm.w", w, TensorProto.FLOAT16, "int32_data")
    b.node("MatMul", ["x_f16", "fp16_mm.w"], ["y_fp16_mm"], "/fp16_mm/MatMul")
    b.output("y_fp16_mm", TensorProto.FLOAT16, [2, 4])
    b.weight("fp16_mm.w", "fp16_mm.weight", "MatMul", "transposed", w, "float16",
        "int32_data")

    w = b.rand(4, 4, 1, 1).astype(np.float16)
    b.init("fp16_conv.w", w, TensorProto.FLOAT16)
    b.node("Cast", ["x2d"], ["x2d_f16"], "cast_x2d_f16", to=TensorProto.FLOAT16)
    b.node("Conv", ["x2d_f16", "fp16_conv.w"], ["y_fp16_conv"], "/fp16_conv/Conv")
    b.output("y_fp16_conv", TensorProto.FLOAT16, [1, 4, 6, 6])
    b.weight("fp16_conv.w", "fp16_conv.weight", "Conv", "conv", w, "float16", "raw_data")

    exact, bits = bf16_values(b.rng, (8, 4))
    b.init("bf16_mm.w", bits, TensorProto.BFLOAT16, "int32_data")
    b.node("MatMul", ["x_bf16", "bf16_mm.w"], ["y_bf16_mm"], "/bf16_mm/MatMul")
    b.output("y_bf16_mm", TensorProto.BFLOAT16, [2, 4])
    b.weight("bf16_mm.w", "bf16_mm.weight", "MatMul", "transposed", exact, "bfloat16",
        "int32_data")

    exact, bits = bf16_values(b.rng, (4, 8))
    b.init("bf16_gemm.w", bits, TensorProto.BFLOAT16)
    b.node("Gemm", ["x_bf16", "bf16_gemm.w"], ["y_bf16_gemm"], "/bf16_gemm/Gemm", transB=1)
    b.output("y_bf16_gemm", TensorProto.BFLOAT16, [2, 4])
    b.weight("bf16_gemm.w", "bf16_gemm.weight", "Gemm", "as_is", exact, "bfloat16",
        "raw_data")

    w = b.rng.standard_normal((4, 8))
    b.init("fp64_gemm.w", w, TensorProto.DOUBLE, "double_data")
    b.node("Gemm", ["x_f64", "fp64_gemm.w"], ["y_fp64_gemm"], "/fp64_gemm/Gemm", transB=1)
    b.output("y_fp64_gemm", TensorProto.DOUBLE, [2, 4])
    b.weight("fp64_gemm.w", "fp64_gemm.weight", "Gemm", "as_is", w, "float64", "double_data")

    w = b.rng.standard_normal((8, 4))
    b.init("fp64_mm.w", w, TensorProto.DOUBLE)
    b.node("MatMul", ["x_f64", "fp64_mm.w"], ["y_fp64_mm"], "/fp64_mm/MatMul")
    b.output("y_fp64_mm", TensorProto.DOUBLE, [2, 4])
    b.weight("fp64_mm.w", "fp64_mm.weight", "MatMul", "transposed", w, "float64", "raw_data")


def edge_skipped_cases(b):
    w = b.rng.integers(-8, 8, (8, 4)).astype(np.int32)
    b.init("int32_mm.w", w, TensorProto.INT32, "int32_data")
    b.node("MatMul", ["x_i32", "int32_mm.w"], ["y_int32_mm"], "/int32_mm/MatMul")
    b.output("y_int32_mm", TensorProto.INT32, [2, 4])
    b.skip("int32_mm.w", "dtype", "MatMul", w, "int32")

    w = b.rng.integers(-8, 8, (4, 8)).astype(np.int64)
    b.init("int64_gemm.w", w, TensorProto.INT64, "int64_data")
    b.node("Gemm", ["x_i64", "int64_gemm.w"], ["y_int64_gemm"], "/int64_gemm/Gemm", transB=1)
    b.output("y_int64_gemm", TensorProto.INT64, [2, 4])
    b.skip("int64_gemm.w", "dtype", "Gemm", w, "int64")

    w = b.rand(4, 2)
    b.init("const_a.w", w)
    b.node("MatMul", ["const_a.w", "x"], ["y_const_a"], "/const_a/MatMul")
    b.output("y_const_a", TensorProto.FLOAT, [4, 8])
    b.skip("const_a.w", "constant_a", "MatMul", w, "float32")

    w = b.rand(3, 8, 4)
    b.init("rank3.w", w)
    b.node("MatMul", ["x", "rank3.w"], ["y_rank3"], "/rank3/MatMul")
    b.output("y_rank3", TensorProto.FLOAT, [3, 2, 4])
    b.skip("rank3.w", "rank", "MatMul", w, "float32")


def edge_subgraph_cases(b):
    # Loop: the body uses an initializer of the outer graph.
    w = b.rand(8, 8)
    b.init("loop.w", w)
    b.init("loop.trips", np.array(2, np.int64), TensorProto.INT64)
    b.init("loop.cond", np.array(True), TensorProto.BOOL)
    body = helper.make_graph([
        helper.make_node("Identity", ["cond_in"], ["cond_out"], name="loop_cond"),
        helper.make_node("MatMul", ["v_in", "loop.w"], ["v_mm"], name="loop_body_matmul"),
        helper.make_node("Tanh", ["v_mm"], ["v_out"], name="loop_tanh"),
    ], "loop_body", [value_info("i", TensorProto.INT64, []),
        value_info("cond_in", TensorProto.BOOL, []), value_info("v_in", TensorProto.FLOAT, [2, 8])],
        [value_info("cond_out", TensorProto.BOOL, []),
            value_info("v_out", TensorProto.FLOAT, [2, 8])])
    b.node("Loop", ["loop.trips", "loop.cond", "x"], ["y_loop"], "loop", body=body)
    b.output("y_loop", TensorProto.FLOAT, [2, 8])
    b.weight("loop.w", None, "MatMul", "transposed", w, "float32", "raw_data",
        subgraph="Loop")

    # Scan: the body has its own initializer.
    w = b.rand(8, 4)
    b.init("scan.s0", np.zeros((1, 4), np.float32))
    body = helper.make_graph([
        helper.make_node("MatMul", ["x_t", "scan.w"], ["y_t"], name="scan_body_matmul"),
        helper.make_node("Add", ["s_in", "y_t"], ["s_out"], name="scan_add"),
    ], "scan_body", [value_info("s_in", TensorProto.FLOAT, [1, 4]),
        value_info("x_t", TensorProto.FLOAT, [1, 8])],
        [value_info("s_out", TensorProto.FLOAT, [1, 4]),
            value_info("y_t", TensorProto.FLOAT, [1, 4])],
        [make_tensor("scan.w", w, TensorProto.FLOAT, "raw_data")])
    b.node("Scan", ["scan.s0", "xs"], ["y_scan_state", "y_scan"], "scan", body=body,
        num_scan_inputs=1)
    b.output("y_scan_state", TensorProto.FLOAT, [1, 4])
    b.output("y_scan", TensorProto.FLOAT, [3, 1, 4])
    b.weight("scan.w", None, "MatMul", "transposed", w, "float32", "raw_data",
        location="subgraph_initializer", subgraph="Scan")


def build_edge_cases():
    b = Builder(6)
    b.inputs = [value_info("x", TensorProto.FLOAT, [2, 8]),
        value_info("x1d", TensorProto.FLOAT, [1, 4, 10]),
        value_info("x2d", TensorProto.FLOAT, [1, 4, 6, 6]),
        value_info("x3d", TensorProto.FLOAT, [1, 2, 4, 4, 4]),
        value_info("xs", TensorProto.FLOAT, [3, 1, 8])]
    edge_float_cases(b)
    edge_conv_cases(b)
    edge_dtype_cases(b)
    edge_skipped_cases(b)
    edge_subgraph_cases(b)
    graph = helper.make_graph(b.nodes, "edge_cases", b.inputs, b.outputs, b.inits)
    model = finish_model(graph)
    entry = {"source": "helper", "inputs": inputs_of(graph), "ort": False,
        "weights": b.weights, "skipped": b.skipped}
    return model, entry


# ---------------------------------------------------------------- unknown fields

def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7f
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_bytes(field, wire_type, payload):
    key = varint((field << 3) | wire_type)
    if wire_type == 0:
        return key + varint(payload)
    if wire_type == 1:
        return key + struct.pack("<Q", payload)
    if wire_type == 2:
        return key + varint(len(payload)) + payload
    if wire_type == 5:
        return key + struct.pack("<I", payload)
    raise ValueError(wire_type)


def with_unknown(msg, extra):
    """Copy of msg whose serialization ends with the bytes extra (kept as unknown fields)."""
    out = type(msg)()
    out.ParseFromString(msg.SerializeToString() + extra)
    return out


def build_unknown_fields():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    nested = field_bytes(1, 2, b"nested") + field_bytes(2, 0, 42)
    extras = [
        ("ModelProto", "model", 1000, 0, 123456789),
        ("GraphProto", "model.graph", 997, 5, 0xDEADBEEF),
        ("NodeProto", "model.graph.node[0]", 998, 1, 0x0123456789ABCDEF),
        ("TensorProto", "model.graph.initializer[0]", 999, 2, b"onnx-pass unknown field"),
        ("TensorProto", "model.graph.initializer[0]", 996, 2, nested),
    ]
    raw = {(m, p): b"" for m, p, _, _, _ in extras}
    for m, p, field, wt, payload in extras:
        raw[(m, p)] += field_bytes(field, wt, payload)

    winit = with_unknown(make_tensor("fc.w", w, TensorProto.FLOAT, "raw_data"),
        raw[("TensorProto", "model.graph.initializer[0]")])
    node = with_unknown(helper.make_node("Gemm", ["x", "fc.w", "fc.b"], ["y"], name="/fc/Gemm",
        transB=1), raw[("NodeProto", "model.graph.node[0]")])
    graph = helper.make_graph([node], "unknown_fields", [value_info("x", TensorProto.FLOAT,
        [2, 4])], [value_info("y", TensorProto.FLOAT, [2, 3])],
        [winit, make_tensor("fc.b", bias, TensorProto.FLOAT, "raw_data")])
    graph = with_unknown(graph, raw[("GraphProto", "model.graph")])
    model = finish_model(graph, ir_version=10)
    model = with_unknown(model, raw[("ModelProto", "model")])
    data = model.SerializeToString()
    for extra in raw.values():
        assert extra in data
    entry = {"source": "helper", "inputs": inputs_of(model.graph), "ort": True,
        "weights": [weight_entry("fc.w", "fc.weight", "Gemm", "as_is", w, "float32",
            "raw_data")],
        "skipped": [], "ir_version": 10, "checker_ir_version": 8,
        "unknown_fields": [{"message": m, "path": p, "field": f, "wire_type": wt,
            "hex": field_bytes(f, wt, pl).hex()} for m, p, f, wt, pl in extras]}
    return model, entry


# ---------------------------------------------------------------- driver

def save_external(model, entry, outdir):
    loc = "external_data.onnx.data"
    path = os.path.join(outdir, loc)
    if os.path.exists(path):
        os.unlink(path)
    onnx.save_model(model, os.path.join(outdir, "external_data.onnx"),
        save_as_external_data=True, all_tensors_to_one_file=True, location=loc,
        size_threshold=0)
    saved = onnx.load(os.path.join(outdir, "external_data.onnx"), load_external_data=False)
    ext = []
    for t in saved.graph.initializer:
        kv = {e.key: e.value for e in t.external_data}
        assert t.data_location == TensorProto.EXTERNAL and kv["location"] == loc
        ext.append({"name": t.name, "location": loc, "offset": int(kv.get("offset", 0)),
            "length": int(kv["length"])})
    entry = json.loads(json.dumps(entry))
    for wt in entry["weights"]:
        wt["storage"] = "external"
    entry["external_data"] = ext
    return entry


MODELS = ["mlp_gemm", "transformer_matmul", "resnet18", "mobilenet_v2", "constants_if",
    "edge_cases", "external_data", "unknown_fields"]
TORCH_MODELS = ["mlp_gemm", "transformer_matmul", "resnet18", "mobilenet_v2"]


def generate(outdir, names=None):
    """Write the models (default: all) and manifest.json into outdir; return the manifest."""
    names = list(MODELS if not names else names)
    for n in names:
        if n not in MODELS:
            raise ValueError("unknown model %r (known: %s)" % (n, ", ".join(MODELS)))
    os.makedirs(outdir, exist_ok=True)
    builders = {"constants_if": build_constants_if, "edge_cases": build_edge_cases,
        "unknown_fields": build_unknown_fields}
    manifest = {"version": 1, "models": {}}
    for n in names:
        if n == "external_data":
            model, entry = torch_entry("mlp_gemm")
            entry = save_external(model, entry, outdir)
        else:
            model, entry = torch_entry(n) if n in TORCH_MODELS else builders[n]()
            with open(os.path.join(outdir, n + ".onnx"), "wb") as f:
                f.write(model.SerializeToString())
        manifest["models"][n + ".onnx"] = entry
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    return manifest


def main(argv):
    if len(argv) < 2 or argv[1].startswith("-"):
        sys.stderr.write("usage: %s OUTDIR [MODEL ...]\nmodels: %s\n"
            % (argv[0], " ".join(MODELS)))
        return 2
    try:
        manifest = generate(argv[1], argv[2:])
    except ValueError as e:
        sys.stderr.write("make_models: %s\n" % e)
        return 2
    print("make_models: wrote %d models to %s" % (len(manifest["models"]), argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
