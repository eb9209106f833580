#!/usr/bin/python3
"""The OnnxPassSparse execution provider (plugin/ort_ep*.c) in the real ONNX Runtime.

tests/ort-run registers libonnxpass.so (ONNX_PASS_LIBRARY) as an EP library and appends
its OnnxPassSparse device (--ep); ORT's profiler tells which EP ran each node. Checks:
  - outputs against the CPU EP alone (relative 1e-5) for MatMul (A of rank 1 to 4,
    M from 1 to 300, odd K and N) and Gemm (transB, alpha, bias [N] / [1, N] / one),
    and that those nodes ran on OnnxPassSparse;
  - Conv (2-D, group 1) against the CPU EP: 1x1 to 7x7 kernels, strides, explicit and
    auto pads, dilations, with and without bias, batch > 1, an input whose size
    changes between runs of one session; a Conv fused with the Add
    and / or Relu after it, a MatMul or Gemm with its Relu, the Reshapes around it
    (ORT's rewrite of a 3-D MatMul + Add) and the Transpose after them (attention's
    heads), and where they must not be;
  - claiming: a dense weight, a weight with half zeros (the cost model predicts no win),
    an fp16 weight, a weight that is a graph input, Gemm
    with transA or beta != 1, grouped, depthwise and 1-D Conv stay on the CPU EP; a
    one-row MatMul is claimed where the graph's activations evict its weight, and one
    too small to pay for the EP's call is not, nor are small convs amid ORT's;
  - a model with external data, a weight stored as a sparse_initializer, a claimed
    node inside an If branch, prepacking
    disabled (the weight is packed at the first run), two graph nodes sharing a weight.
Exit 77 (skipped) without ORT_RUN.
"""

import itertools
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import testutil  # noqa: E402
testutil.require("numpy", "onnx")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
import ortlib  # noqa: E402

LIB = os.environ.get("ONNX_PASS_LIBRARY", "")
EP = "OnnxPassSparse"
from testutil import assert_close  # noqa: E402  (relative 1e-5 of max |want|)


def sparse(rng, shape, density=0.1, dtype=np.float32):
    w = rng.standard_normal(shape).astype(dtype)
    w[rng.random(shape) >= density] = 0
    return w


def save(path, nodes, inputs, outputs, inits, opset=17, **kwargs):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, path, **kwargs)
    return path


def tensor(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def providers(profile):
    """node name -> EP that ran it, from ORT's profiler events."""
    out = {}
    for e in profile:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            out[e["name"][:-len("_kernel_time")]] = e["args"]["provider"]
    return out


def run_both(path, feeds, claim="auto", **kwargs):
    """(outputs of the CPU EP alone, outputs with OnnxPassSparse, node -> EP)."""
    want = ortlib.run(path, feeds, **kwargs)
    profile = []
    got = ortlib.run(path, feeds, ep=LIB, profile=profile, ep_options=["claim=" + claim],
                     **kwargs)
    return want, got, providers(profile)


def check_same(path, feeds, claimed, what, claim="all", **kwargs):
    """Outputs equal to the CPU EP's; the nodes claimed[node] = True, and only those,
    ran on OnnxPassSparse (the CPU EP may rename the others when it rewrites them).
    claim: the EP's option; "all" (every node its kernels support) for the kernel
    tests, "auto" (the cost model) for the claiming tests."""
    want, got, ran = run_both(path, feeds, claim, **kwargs)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, "%s output %d" % (what, i))
    on_ep = sorted(node for node, ep in ran.items() if ep == EP)
    expect = sorted(node for node, claim in claimed.items() if claim)
    assert on_ep == expect, "%s: %s ran on %s, expected %s" % (what, on_ep, EP, expect)


def check_matmul(tmp):
    rng = np.random.default_rng(1)
    shapes = [[37], [1, 37], [5, 37], [2, 3, 37], [2, 2, 3, 37], [300, 37], [1, 16, 37],
              [7, 37], [64, 37], [65, 37], [129, 37]]
    for a_shape in shapes:
        k, n = 37, 29
        w = sparse(rng, (k, n))
        path = save(os.path.join(tmp, "mm.onnx"),
                    [helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")],
                    [tensor("a", a_shape)], [tensor("y", None)],
                    [numpy_helper.from_array(w, "w")])
        a = rng.standard_normal(a_shape).astype(np.float32)
        check_same(path, [a], {"mm": True}, "MatMul %s" % a_shape)


def check_matmul_m_sweep(tmp):
    """M = 1..300 on a larger weight, two intra-op threads."""
    rng = np.random.default_rng(2)
    k, n = 200, 130
    w = sparse(rng, (k, n), 0.08)
    path = save(os.path.join(tmp, "sweep.onnx"),
                [helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")],
                [tensor("a", ["m", k])], [tensor("y", ["m", n])],
                [numpy_helper.from_array(w, "w")])
    for m in (1, 2, 3, 4, 5, 8, 9, 15, 16, 17, 31, 33, 63, 64, 100, 128, 200, 300):
        a = rng.standard_normal((m, k)).astype(np.float32)
        check_same(path, [a], {"mm": True}, "MatMul M=%d" % m, threads=2)


def check_gemm(tmp):
    rng = np.random.default_rng(3)
    m, k, n = 23, 41, 19
    cases = [dict(trans_b=0, bias=None), dict(trans_b=1, bias=(n,)),
             dict(trans_b=0, bias=(1, n)), dict(trans_b=1, bias=(1,)),
             dict(trans_b=1, bias=(n,), alpha=0.5), dict(trans_b=0, bias=(), alpha=2.0)]
    for case in cases:
        w = sparse(rng, (n, k) if case["trans_b"] else (k, n))
        inits = [numpy_helper.from_array(w, "w")]
        ins = ["a", "w"]
        if case["bias"] is not None:
            inits.append(numpy_helper.from_array(
                rng.standard_normal(case["bias"]).astype(np.float32), "c"))
            ins.append("c")
        node = helper.make_node("Gemm", ins, ["y"], name="gemm", transB=case["trans_b"],
                                alpha=case.get("alpha", 1.0))
        path = save(os.path.join(tmp, "gemm.onnx"), [node], [tensor("a", [m, k])],
                    [tensor("y", [m, n])], inits)
        a = rng.standard_normal((m, k)).astype(np.float32)
        check_same(path, [a], {"gemm": True}, "Gemm %s" % case)


def check_claiming(tmp):
    rng = np.random.default_rng(4)
    k, n = 256, 192
    dense = rng.standard_normal((k, n)).astype(np.float32)
    sp = sparse(rng, (k, n))
    half = sparse(rng, (k, n)).astype(np.float16)
    half_zero = sparse(rng, (k, n), 0.5)
    nodes = [helper.make_node("MatMul", ["a", "dense"], ["y1"], name="dense"),
             helper.make_node("MatMul", ["a", "half_zero"], ["y7"], name="half_zero"),
             helper.make_node("MatMul", ["a", "sp"], ["y2"], name="sparse"),
             helper.make_node("MatMul", ["a", "dyn"], ["y3"], name="dynamic"),
             helper.make_node("Gemm", ["a", "spt"], ["y4"], name="transA", transA=1),
             helper.make_node("Gemm", ["a", "sp", "c"], ["y5"], name="beta", beta=2.0),
             helper.make_node("Cast", ["a"], ["ah"], to=TensorProto.FLOAT16),
             helper.make_node("MatMul", ["ah", "half"], ["y6"], name="fp16")]
    inits = [numpy_helper.from_array(x, name) for x, name in
             ((dense, "dense"), (sp, "sp"), (half, "half"),
              (np.ascontiguousarray(sparse(rng, (k, k))), "spt"),
              (rng.standard_normal(n).astype(np.float32), "c"), (half_zero, "half_zero"))]
    path = save(os.path.join(tmp, "claim.onnx"), nodes,
                [tensor("a", [k, k]), tensor("dyn", [k, n])],
                [tensor("y%d" % i, None) for i in range(1, 5)] +
                [tensor("y5", None), tensor("y6", None, TensorProto.FLOAT16), tensor("y7", None)],
                inits)
    a = rng.standard_normal((k, k)).astype(np.float32)
    check_same(path, [a, sp], {"dense": False, "sparse": True, "dynamic": False,
                               "transA": False, "beta": False, "fp16": False,
                               "half_zero": False}, "claiming", claim="auto")


CONV_CASES = [
    # (x shape, c_out, kernel, attributes, bias)
    ((1, 4, 9, 9), 8, (3, 3), dict(pads=[1, 1, 1, 1]), True),
    ((2, 5, 7, 6), 3, (1, 1), {}, True),
    ((1, 16, 10, 10), 24, (1, 1), dict(strides=[2, 2]), False),
    ((1, 3, 17, 15), 8, (7, 7), dict(strides=[2, 2], pads=[3, 3, 3, 3]), True),
    ((2, 4, 12, 11), 6, (3, 2), dict(dilations=[2, 3], pads=[0, 1, 2, 0]), True),
    ((1, 6, 9, 8), 5, (3, 3), dict(auto_pad="SAME_UPPER", strides=[2, 2]), False),
    ((1, 6, 9, 8), 5, (2, 2), dict(auto_pad="SAME_LOWER"), True),
    ((1, 6, 9, 8), 5, (3, 3), dict(auto_pad="VALID"), True),
    ((3, 8, 20, 20), 16, (3, 3), dict(pads=[1, 1, 1, 1], strides=[1, 2]), True),
    ((1, 32, 14, 14), 70, (1, 1), {}, True),
]


def check_conv(tmp):
    rng = np.random.default_rng(5)
    for x_shape, c_out, kernel, attrs, bias in CONV_CASES:
        w = sparse(rng, (c_out, x_shape[1]) + kernel, 0.08)
        inits = [numpy_helper.from_array(w, "w")]
        ins = ["x", "w"]
        if bias:
            inits.append(numpy_helper.from_array(
                rng.standard_normal(c_out).astype(np.float32), "b"))
            ins.append("b")
        path = save(os.path.join(tmp, "conv.onnx"),
                    [helper.make_node("Conv", ins, ["y"], name="conv", **attrs)],
                    [tensor("x", list(x_shape))], [tensor("y", None)], inits)
        x = rng.standard_normal(x_shape).astype(np.float32)
        check_same(path, [x], {"conv": True}, "Conv %s %s %s" % (x_shape, kernel, attrs),
                   threads=2)


def check_conv_sizes(tmp):
    """One session runs a Conv of dynamic H and W at two sizes (the EP keeps the
    weight's offsets of the first size it runs, and makes them per run for others)."""
    rng = np.random.default_rng(11)
    w = sparse(rng, (24, 16, 3, 3), 0.1)
    path = save(os.path.join(tmp, "conv_sizes.onnx"),
                [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])],
                [tensor("x", [1, 16, "h", "w"])], [tensor("y", None)],
                [numpy_helper.from_array(w, "w")])
    small, large = (rng.standard_normal((1, 16) + hw).astype(np.float32)
                    for hw in ((7, 9), (12, 10)))
    for first, then in ((small, large), (large, small), (large, large)):
        check_same(path, [then], {"conv": True}, "Conv at %s after %s" % (then.shape, first.shape),
                   warm=[first], threads=2)


def check_conv_stays(tmp):
    """Grouped and depthwise convolutions, and 1-D ones, stay on the CPU EP."""
    rng = np.random.default_rng(10)
    nodes = [helper.make_node("Conv", ["x", "wg"], ["y1"], name="grouped", group=2),
             helper.make_node("Conv", ["x", "wd"], ["y2"], name="depthwise", group=4),
             helper.make_node("Conv", ["x1", "w1"], ["y3"], name="conv1d")]
    inits = [numpy_helper.from_array(sparse(rng, (8, 2, 3, 3)), "wg"),
             numpy_helper.from_array(sparse(rng, (4, 1, 3, 3)), "wd"),
             numpy_helper.from_array(sparse(rng, (8, 4, 3)), "w1")]
    path = save(os.path.join(tmp, "convs.onnx"), nodes,
                [tensor("x", [1, 4, 9, 9]), tensor("x1", [1, 4, 9])],
                [tensor("y%d" % i, None) for i in range(1, 4)], inits)
    feeds = [rng.standard_normal((1, 4, 9, 9)).astype(np.float32),
             rng.standard_normal((1, 4, 9)).astype(np.float32)]
    check_same(path, feeds, {"grouped": False, "depthwise": False, "conv1d": False},
               "Conv that stays")


def avx512():
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and " avx512f" in line for line in f)


def check_conv_chains(tmp):
    """A 1x1 conv that wins alone (64 -> 256 at 56x56, 92 % zeros) is claimed when it
    is the graph's only conv; behind nine depthwise convs that stay with ORT (so ORT's
    NCHWc layout stays and reorders surround it) the AVX-512 cost model declines it."""
    rng = np.random.default_rng(11)
    w = numpy_helper.from_array(sparse(rng, (256, 64, 1, 1), 0.08), "w")
    pw = helper.make_node("Conv", ["h9", "w"], ["y"], name="pw")
    x = rng.standard_normal((1, 64, 56, 56)).astype(np.float32)
    alone = save(os.path.join(tmp, "alone.onnx"), [pw], [tensor("h9", [1, 64, 56, 56])],
                 [tensor("y", None)], [w])
    check_same(alone, [x], {"pw": True}, "a lone conv", claim="auto")
    dws = [helper.make_node("Conv", ["h%d" % i, "dw"], ["h%d" % (i + 1)], name="dw%d" % i,
                            group=64, pads=[1, 1, 1, 1]) for i in range(9)]
    dw = numpy_helper.from_array(sparse(rng, (64, 1, 3, 3), 0.5), "dw")
    behind = save(os.path.join(tmp, "behind.onnx"), dws + [pw], [tensor("h0", [1, 64, 56, 56])],
                  [tensor("y", None)], [w, dw])
    claimed = {"dw%d" % i: False for i in range(9)}
    claimed["pw"] = not avx512()
    check_same(behind, [x], claimed, "a conv behind depthwise convs", claim="auto")


def check_small_convs(tmp):
    """Small convs amid ORT's (a digits CNN at 8x8: 1 -> 32, 32 -> 64, a pool, 64 -> 64 at
    4x4, 95 % zeros) stay with the CPU EP: each would pay a call and two reorders that
    cost more than its few products."""
    rng = np.random.default_rng(13)
    shapes = [(32, 1, 3, 3), (64, 32, 3, 3), (64, 64, 3, 3)]
    inits = [numpy_helper.from_array(sparse(rng, s, 0.05), "w%d" % i)
             for i, s in enumerate(shapes)]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Conv", ["p", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["y"], name="relu2")]
    path = save(os.path.join(tmp, "small_convs.onnx"), nodes, [tensor("x", [1, 1, 8, 8])],
                [tensor("y", None)], inits)
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    check_same(path, [x], {"conv0": False, "conv1": False, "conv2": False}, "small convs",
               claim="auto", threads=2)


def check_stem(tmp):
    """A chained CNN's stem (a Conv of the graph input whose Relu only a MaxPool reads)
    stays with the CPU EP, whose NCHWc Conv hands the pool its blocked layout; the same
    Conv is claimed when a Conv reads its Relu instead. Six 1x1 convs (95 % zeros) keep
    the graph's convs chained."""
    rng = np.random.default_rng(19)
    inits = [numpy_helper.from_array(sparse(rng, (64, 3, 7, 7), 0.05), "stem_w"),
             numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "stem_b")]
    inits += [numpy_helper.from_array(sparse(rng, (64, 64, 1, 1), 0.05), "w%d" % i)
              for i in range(6)]
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    for pool in (True, False):
        nodes = [helper.make_node("Conv", ["x", "stem_w", "stem_b"], ["s"], name="stem",
                                  strides=[2, 2], pads=[3, 3, 3, 3]),
                 helper.make_node("Relu", ["s"], ["r"], name="relu")]
        if pool:
            nodes.append(helper.make_node("MaxPool", ["r"], ["h0"], name="pool",
                                          kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
        nodes += [helper.make_node("Conv", ["h%d" % i if i or pool else "r", "w%d" % i],
                                   ["h%d" % (i + 1)], name="pw%d" % i) for i in range(6)]
        path = save(os.path.join(tmp, "stem.onnx"), nodes, [tensor("x", [1, 3, 224, 224])],
                    [tensor("h6", None)], inits)
        want = ortlib.run(path, [x], threads=2)
        profile = []
        got = ortlib.run(path, [x], ep=LIB, profile=profile, threads=2)
        assert_close(got[0], want[0], "stem, pool %s" % pool)
        # ORT renames the nodes it rewrites: count the convs the CPU EP ran
        cpu_convs = {e["name"] for e in profile if e.get("cat") == "Node" and
                     e["args"].get("op_name") == "Conv" and e["args"]["provider"] != EP}
        if pool:
            assert len(cpu_convs) == 1, "before a pool: %s ran on the CPU EP" % cpu_convs
        elif avx512():
            assert not cpu_convs, "no pool: %s ran on the CPU EP" % cpu_convs


def zen_costs():
    """AVX-512 and not Intel: the cost model takes its Zen 5 costs (opass_spmm_cost_flags)."""
    with open("/proc/cpuinfo") as f:
        return avx512() and not any(line.startswith("vendor_id") and "GenuineIntel" in line
                                    for line in f)


def check_streams(tmp):
    """One row through a 1024 x 1024 weight with 72 % zeros: alone, every cost model
    declines the MatMul; where the graph's other nodes write 36 MB (an Expand), the
    weight would come from memory each run, and the AVX-512 Zen 5 one claims it (its
    one-row kernel reads 5.7 bytes a nonzero where MLAS reads 4 an element)."""
    rng = np.random.default_rng(12)
    w = numpy_helper.from_array(sparse(rng, (1024, 1024), 0.28), "w")
    mm = helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")
    a = rng.standard_normal((1, 1024)).astype(np.float32)
    alone = save(os.path.join(tmp, "alone.onnx"), [mm], [tensor("a", [1, 1024])],
                 [tensor("y", None)], [w])
    check_same(alone, [a], {"mm": False}, "a lone one-row MatMul", claim="auto")
    big = [helper.make_node("Expand", ["s", "shape"], ["e"], name="expand"),
           helper.make_node("ReduceSum", ["e"], ["z"], name="sum", keepdims=0)]
    shape = numpy_helper.from_array(np.array([9 << 20], dtype=np.int64), "shape")
    path = save(os.path.join(tmp, "streams.onnx"), [mm] + big,
                [tensor("a", [1, 1024]), tensor("s", [1])],
                [tensor("y", None), tensor("z", None)], [w, shape])
    check_same(path, [a, np.ones(1, np.float32)],
               {"mm": zen_costs(), "expand": False, "sum": False},
               "a one-row MatMul beside 36 MB of activations", claim="auto")


def check_tiny(tmp):
    """A call's fixed cost: one row through 64 x 64 at 95 % zeros stays on the CPU EP
    (the EP ran it 2x slower), through 200 x 200 it is claimed."""
    rng = np.random.default_rng(13)
    for d, claimed in ((64, False), (200, True)):
        w = numpy_helper.from_array(sparse(rng, (d, d), 0.05), "w")
        path = save(os.path.join(tmp, "tiny.onnx"),
                    [helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")],
                    [tensor("a", [1, d])], [tensor("y", None)], [w])
        check_same(path, [rng.standard_normal((1, d)).astype(np.float32)], {"mm": claimed},
                   "a one-row MatMul of %dx%d" % (d, d), claim="auto")


def check_fused(path, feeds, what, on_cpu, n_on_ep, fuse="1", optimize=True):
    """Outputs equal to the CPU EP's; exactly the nodes on_cpu ran on the CPU EP, and
    n_on_ep nodes (single Convs and fused groups, which ORT names itself) on ours."""
    want = ortlib.run(path, feeds, threads=2, optimize=optimize)
    profile = []
    got = ortlib.run(path, feeds, ep=LIB, profile=profile, threads=2, optimize=optimize,
                     ep_options=["claim=all", "fuse=" + fuse])
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, "%s output %d" % (what, i))
    ran = providers(profile)
    cpu = sorted(node for node, ep in ran.items() if ep != EP)
    ours = [node for node, ep in ran.items() if ep == EP]
    assert cpu == sorted(on_cpu), "%s: %s ran on the CPU EP, expected %s" % (what, cpu, on_cpu)
    assert len(ours) == n_on_ep, "%s: %s ran on %s, expected %d nodes" % (
        what, ours, EP, n_on_ep)


def check_conv_fusion(tmp):
    """A claimed Conv takes in the Relu, Add, or Add and Relu after it (outputs equal to
    the CPU EP's, those nodes gone from the CPU EP): residual blocks with a symbolic
    batch, an Add after two Convs (fused with one of them); not fused: a Conv output
    that is also a graph output, an Add that broadcasts, and everything with the
    option fuse=0."""
    rng = np.random.default_rng(12)
    inits = [numpy_helper.from_array(sparse(rng, (16, 8, 3, 3)), "w"),
             numpy_helper.from_array(sparse(rng, (16, 8, 1, 1)), "w1"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")]
    x = rng.standard_normal((2, 8, 9, 9)).astype(np.float32)
    r = rng.standard_normal((2, 16, 9, 9)).astype(np.float32)
    q = rng.standard_normal((1, 16, 1, 1)).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])
    conv1 = helper.make_node("Conv", ["x", "w1"], ["y1"], name="conv1")
    relu = helper.make_node("Relu", ["s"], ["z"], name="relu")
    x_in, r_in = tensor("x", ["N", 8, 9, 9]), tensor("r", ["N", 16, 9, 9])
    cases = [
        ("Conv -> Relu", [conv, helper.make_node("Relu", ["y"], ["z"], name="relu")],
         [x_in], ["z"], [x], [], 1),
        ("Conv -> Add -> Relu", [conv, helper.make_node("Add", ["r", "y"], ["s"], name="add"),
                                 relu], [x_in, r_in], ["z"], [x, r], [], 1),
        ("Conv -> Add", [conv, helper.make_node("Add", ["y", "r"], ["z"], name="add")],
         [x_in, r_in], ["z"], [x, r], [], 1),
        ("two Convs -> Add -> Relu", [conv, conv1, helper.make_node("Add", ["y", "y1"], ["s"],
                                                                    name="add"), relu],
         [x_in], ["z"], [x], [], 2),
        ("a Conv output also a graph output", [conv, helper.make_node("Relu", ["y"], ["z"],
                                                                      name="relu")],
         [x_in], ["y", "z"], [x], ["relu"], 1),
        ("an Add that broadcasts", [conv, helper.make_node("Add", ["y", "q"], ["s"],
                                                           name="add"), relu],
         [x_in, tensor("q", [1, 16, 1, 1])], ["z"], [x, q], ["add", "relu"], 1),
    ]
    for what, nodes, ins, outs, feeds, on_cpu, n_on_ep in cases:
        path = save(os.path.join(tmp, "fuse.onnx"), nodes, ins,
                    [tensor(o, None) for o in outs], inits)
        check_fused(path, feeds, what, on_cpu, n_on_ep)
        unfused = [n.name for n in nodes if n.op_type != "Conv"]
        check_fused(path, feeds, what + ", fuse=0", unfused,
                    sum(n.op_type == "Conv" for n in nodes), fuse="0")
    check_fusion_subgraph(tmp, rng, inits, x)


def check_fusion_subgraph(tmp, rng, inits, x):
    """Conv -> Relu fused inside both branches of an If: the weight of one from the
    outer scope, of the other from the branch; and a Conv whose X is a constant
    (ORT would drop it from a fused node's inputs) is claimed but not fused."""
    w2 = numpy_helper.from_array(sparse(rng, (16, 8, 3, 3)), "w2")
    branch = lambda name, w: helper.make_graph(
        [helper.make_node("Conv", ["x", w], [name + "_y"], name=name + "_conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", [name + "_y"], [name + "_z"], name=name + "_relu")],
        name, [], [tensor(name + "_z", [2, 16, 9, 9])], [w2] if w == "w2" else [])
    node = helper.make_node("If", ["cond"], ["z"], name="if", then_branch=branch("then", "w"),
                            else_branch=branch("else", "w2"))
    path = save(os.path.join(tmp, "fuse-if.onnx"), [node],
                [tensor("x", [2, 8, 9, 9]), tensor("cond", [], TensorProto.BOOL)],
                [tensor("z", [2, 16, 9, 9])], inits)
    for cond in (True, False):
        check_fused(path, [x, np.array(cond)], "If %s" % cond, ["if"], 1)
    const_x = numpy_helper.from_array(x, "xc")
    path = save(os.path.join(tmp, "fuse-const.onnx"),
                [helper.make_node("Conv", ["xc", "w1"], ["y"], name="conv"),
                 helper.make_node("Relu", ["y"], ["z"], name="relu")],
                [], [tensor("z", None)], inits + [const_x])
    check_fused(path, [], "a constant X (no constant folding)", ["relu"], 1, optimize=False)


def check_matmul_fusion(tmp):
    """A claimed MatMul or Gemm (transB, alpha, bias) takes in the Relu after it; a Gemm
    whose bias is computed (a graph input) is claimed but not fused."""
    rng = np.random.default_rng(13)
    k, n = 40, 24
    inits = [numpy_helper.from_array(sparse(rng, (k, n)), "w"),
             numpy_helper.from_array(sparse(rng, (n, k)), "wt"),
             numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "c"),
             numpy_helper.from_array(np.array(0.25, dtype=np.float32), "c0")]
    relu = helper.make_node("Relu", ["y"], ["z"], name="relu")
    cases = [
        ("MatMul -> Relu", helper.make_node("MatMul", ["a", "w"], ["y"], name="mm"), [], []),
        ("Gemm -> Relu", helper.make_node("Gemm", ["a", "wt", "c"], ["y"], name="gemm",
                                          transB=1, alpha=0.5), [], []),
        ("Gemm with a scalar bias -> Relu", helper.make_node("Gemm", ["a", "wt", "c0"], ["y"],
                                                             name="gemm", transB=1), [], []),
        ("Gemm with a computed bias", helper.make_node("Gemm", ["a", "wt", "cin"], ["y"],
                                                       name="gemm", transB=1),
         [tensor("cin", [n])], ["relu"]),
    ]
    # 5 rows: scalar stores; 37: 16x16 transposed blocks and a tail
    for (what, node, extra_in, on_cpu), m in itertools.product(cases, (5, 37)):
        a = rng.standard_normal((m, k)).astype(np.float32)
        path = save(os.path.join(tmp, "fuse-mm.onnx"), [node, relu],
                    [tensor("a", [m, k])] + extra_in, [tensor("z", None)], inits)
        feeds = [a] + [rng.standard_normal(n).astype(np.float32) for _ in extra_in]
        check_fused(path, feeds, "%s, M = %d" % (what, m), on_cpu, 1)
        check_fused(path, feeds, "%s, M = %d, fuse=0" % (what, m), ["relu"], 1, fuse="0")


def check_reshape_fusion(tmp):
    """A claimed MatMul / Gemm takes in the Reshape (constant shape) that gives it A and
    the one after it, then the Relu after those: hand-made graphs (shapes with -1, A of
    rank 3 through the Reshape, a Reshape feeding MatMul alone), and ORT's own rewrite
    of a 3-D MatMul + Add into Reshape -> Gemm -> Reshape; not fused: a Reshape whose
    shape is computed, or whose output is also a graph output."""
    rng = np.random.default_rng(17)
    k, n = 40, 24
    shape = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.int64), name)
    inits = [numpy_helper.from_array(sparse(rng, (n, k)), "wt"),
             numpy_helper.from_array(sparse(rng, (k, n)), "w"),
             numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "c"),
             shape("flat", [-1, k]), shape("back", [2, -1, n]), shape("three", [2, 19, k])]
    x = rng.standard_normal((2, 19, k)).astype(np.float32)
    pre = helper.make_node("Reshape", ["x", "flat"], ["a"], name="pre")
    gemm = helper.make_node("Gemm", ["a", "wt", "c"], ["y"], name="gemm", transB=1)
    post = helper.make_node("Reshape", ["y", "back"], ["r"], name="post")
    relu = helper.make_node("Relu", ["r"], ["z"], name="relu")
    to3 = helper.make_node("Reshape", ["x2", "three"], ["a3"], name="to3")
    mm = helper.make_node("MatMul", ["a3", "w"], ["y3"], name="mm")
    relu3 = helper.make_node("Relu", ["y3"], ["z"], name="relu")
    dyn = helper.make_node("Reshape", ["x", "s"], ["a"], name="pre")
    xin, x2in = tensor("x", [2, 19, k]), tensor("x2", [38, k])
    sin = tensor("s", [2], TensorProto.INT64)
    x2, s = x.reshape(38, k), np.array([-1, k], dtype=np.int64)
    cases = [  # (what, nodes, inputs, feeds, outputs, on the CPU EP, on ours)
        ("Reshape -> Gemm -> Reshape -> Relu", [pre, gemm, post, relu], [xin], [x], ["z"], [], 1),
        ("Reshape to 3-D -> MatMul -> Relu", [to3, mm, relu3], [x2in], [x2], ["z"], [], 1),
        ("a computed shape", [dyn, gemm, post, relu], [xin, sin], [x, s], ["z"], ["pre"], 1),
        ("a Reshape output also a graph output", [pre, gemm, post, relu], [xin], [x],
         ["z", "a"], ["pre"], 1),
    ]
    for what, nodes, ins, feeds, outs, on_cpu, n_on_ep in cases:
        path = save(os.path.join(tmp, "fuse-reshape.onnx"), nodes, ins,
                    [tensor(o, None) for o in outs], inits)
        check_fused(path, feeds, what, on_cpu, n_on_ep, optimize=False)
        check_fused(path, feeds, what + ", fuse=0",
                    [nd.name for nd in nodes if nd.op_type not in ("Gemm", "MatMul")], 1,
                    fuse="0", optimize=False)
    check_transpose_fusion(tmp, rng, x)
    # ORT rewrites MatMul [2, 19, K] + Add into Reshape -> Gemm -> Reshape: all ours
    path = save(os.path.join(tmp, "fuse-ort.onnx"),
                [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                 helper.make_node("Add", ["m", "c"], ["r"], name="add"), relu],
                [xin], [tensor("z", None)], inits)
    check_fused(path, [x], "ORT's MatMul + Add -> Relu", [], 1)


def check_transpose_fusion(tmp, rng, x):
    """Reshape -> Gemm -> Reshape [2, 19, heads, size] -> Transpose fused into one node
    whose store writes the transposed layout: attention's query / value ([0, 2, 1, 3]) and
    key ([0, 2, 3, 1]) perms, a perm mixing the row and column dims, the default
    (reversed) perm of a 2-D product, one token, a batch of one; a Transpose of five
    dims stays on the CPU EP. 64 columns in heads of 32 (full 16x16 blocks, blocks across
    tokens' groups) or of 8, and 4 in heads of 2 whose size goes outer (column offsets
    0, 2, 1, 3: a block's ends are 3 apart, but its columns are not contiguous)."""
    k = x.shape[-1]
    inits = lambda n: [numpy_helper.from_array(sparse(rng, (n, k)), "wt"),
                       numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "c"),
                       numpy_helper.from_array(np.array([-1, k], dtype=np.int64), "flat")]
    cases = [  # (what, x, heads, size, perm, on the CPU EP)
        ("query / value perm", x, 2, 32, [0, 2, 1, 3], []),
        ("key perm", x, 2, 32, [0, 2, 3, 1], []),
        ("key perm, heads of 8", x, 3, 8, [0, 2, 3, 1], []),
        ("a mixed perm", x, 2, 32, [3, 1, 0, 2], []),
        ("heads of 2 swapped with their size 2", x, 2, 2, [0, 1, 3, 2], []),
        ("one token", x[:, :1], 2, 32, [0, 2, 3, 1], []),
        ("a batch of one", x[:1], 2, 32, [0, 2, 1, 3], []),
        ("the default perm of a 2-D product", x, None, 64, None, []),
        ("five dims", x, (2, 4), 8, [0, 2, 1, 3, 4], ["t"]),
    ]
    for what, xc, heads, size, perm, on_cpu in cases:
        b, t = xc.shape[:2]
        heads_dims = list(heads) if isinstance(heads, tuple) else [heads] if heads else []
        n = int(np.prod(heads_dims or [1])) * size
        back = [b * t, n] if heads is None else [b, t] + heads_dims + [size]
        shape = numpy_helper.from_array(np.array(back, dtype=np.int64), "back")
        nodes = [helper.make_node("Reshape", ["x", "flat"], ["a"], name="pre"),
                 helper.make_node("Gemm", ["a", "wt", "c"], ["y"], name="gemm", transB=1),
                 helper.make_node("Reshape", ["y", "back"], ["r"], name="post"),
                 helper.make_node("Transpose", ["r"], ["z"], name="t",
                                  **({"perm": perm} if perm else {}))]
        path = save(os.path.join(tmp, "fuse-transpose.onnx"), nodes, [tensor("x", list(xc.shape))],
                    [tensor("z", None)], inits(n) + [shape])
        check_fused(path, [xc], "Transpose: " + what, on_cpu, 1, optimize=False)


def check_external_data(tmp):
    rng = np.random.default_rng(6)
    k, n = 256, 96
    w = sparse(rng, (k, n))
    folder = os.path.join(tmp, "ext")
    os.makedirs(folder, exist_ok=True)
    path = save(os.path.join(folder, "ext.onnx"),
                [helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")],
                [tensor("a", [3, k])], [tensor("y", None)], [numpy_helper.from_array(w, "w")],
                save_as_external_data=True, location="ext.bin", size_threshold=0)
    assert os.path.getsize(os.path.join(folder, "ext.bin")) >= w.nbytes
    a = rng.standard_normal((3, k)).astype(np.float32)
    check_same(path, [a], {"mm": True}, "external data")


def check_sparse_initializer(tmp):
    """A weight stored as a sparse_initializer (ORT densifies it on load) is claimed."""
    rng = np.random.default_rng(11)
    k, n = 64, 40
    w = sparse(rng, (k, n))
    idx = np.flatnonzero(w).astype(np.int64)
    st = helper.make_sparse_tensor(numpy_helper.from_array(w.ravel()[idx], "w"),
                                   numpy_helper.from_array(idx, "w_idx"), [k, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")], "g",
                              [tensor("a", [5, k])], [tensor("y", None)], sparse_initializer=[st])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = os.path.join(tmp, "sparse_init.onnx")
    onnx.save(model, path)
    a = rng.standard_normal((5, k)).astype(np.float32)
    check_same(path, [a], {"mm": True}, "sparse_initializer")
    assert_close(ortlib.run(path, [a], ep=LIB, ep_options=["claim=all"])[0], a @ w,
                 "sparse_initializer (numpy)")


def check_if_branch(tmp):
    rng = np.random.default_rng(7)
    k, n = 48, 40
    w = sparse(rng, (k, n))
    w2 = sparse(rng, (k, n))
    then_g = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["t"], name="then_mm")],
                               "then", [], [tensor("t", [4, n])])
    else_g = helper.make_graph([helper.make_node("MatMul", ["a", "w2"], ["e"], name="else_mm")],
                               "else", [], [tensor("e", [4, n])],
                               [numpy_helper.from_array(w2, "w2")])
    node = helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g,
                            else_branch=else_g)
    path = save(os.path.join(tmp, "if.onnx"), [node],
                [tensor("a", [4, k]), tensor("cond", [], TensorProto.BOOL)],
                [tensor("y", [4, n])], [numpy_helper.from_array(w, "w")])
    a = rng.standard_normal((4, k)).astype(np.float32)
    for cond in (True, False):
        want, got, ran = run_both(path, [a, np.array(cond)], claim="all")
        assert_close(got[0], want[0], "If %s" % cond)
        assert_close(got[0], a @ (w if cond else w2), "If %s (numpy)" % cond)
        node = "then_mm" if cond else "else_mm"
        assert ran.get(node) == EP, "If: %s ran on %s" % (node, ran.get(node))


def check_no_prepack(tmp):
    rng = np.random.default_rng(8)
    w = sparse(rng, (64, 33))
    path = save(os.path.join(tmp, "np.onnx"),
                [helper.make_node("MatMul", ["a", "w"], ["h"], name="mm1"),
                 helper.make_node("Gemm", ["h", "w2"], ["y"], name="gemm", transB=1)],
                [tensor("a", [9, 64])], [tensor("y", None)],
                [numpy_helper.from_array(w, "w"),
                 numpy_helper.from_array(sparse(rng, (17, 33)), "w2")])
    a = rng.standard_normal((9, 64)).astype(np.float32)
    check_same(path, [a], {"mm1": True, "gemm": True}, "no prepacking",
               config=["session.disable_prepacking=1"])


def check_shared_weight(tmp):
    rng = np.random.default_rng(9)
    w = sparse(rng, (40, 40))
    path = save(os.path.join(tmp, "shared.onnx"),
                [helper.make_node("MatMul", ["a", "w"], ["h"], name="mm1"),
                 helper.make_node("Sigmoid", ["h"], ["r"]),
                 helper.make_node("MatMul", ["r", "w"], ["y"], name="mm2")],
                [tensor("a", [6, 40])], [tensor("y", None)], [numpy_helper.from_array(w, "w")])
    a = rng.standard_normal((6, 40)).astype(np.float32)
    check_same(path, [a], {"mm1": True, "mm2": True}, "shared weight", threads=2)


def main(runner):
    with tempfile.TemporaryDirectory(prefix="ort-ep-") as tmp:
        for name, fn in (("MatMul: ranks 1-4, odd K and N", check_matmul),
                         ("MatMul: M = 1..300, 2 threads", check_matmul_m_sweep),
                         ("Gemm: transB, alpha, bias shapes", check_gemm),
                         ("claiming: dense, fp16, dynamic, transA, beta", check_claiming),
                         ("claiming convs alone and behind depthwise ones", check_conv_chains),
                         ("claiming one row when the weights leave the cache", check_streams),
                         ("a tiny MatMul stays on the CPU EP", check_tiny),
                         ("small convs amid ORT's stay", check_small_convs),
                         ("a CNN's stem before its pool stays", check_stem),
                         ("Conv: kernels, strides, pads, dilations, bias", check_conv),
                         ("Conv: one session, two input sizes", check_conv_sizes),
                         ("Conv: grouped, depthwise, 1-D stay", check_conv_stays),
                         ("Conv fused with Add / Relu", check_conv_fusion),
                         ("MatMul / Gemm fused with Relu", check_matmul_fusion),
                         ("MatMul / Gemm fused with Reshapes", check_reshape_fusion),
                         ("external data", check_external_data),
                         ("sparse_initializer weight", check_sparse_initializer),
                         ("If branches", check_if_branch),
                         ("prepacking disabled", check_no_prepack),
                         ("shared weight", check_shared_weight)):
            runner.check(name, fn, tmp)


if __name__ == "__main__":
    if not ortlib.available() or not LIB:
        testutil.skip_file("ORT_RUN or ONNX_PASS_LIBRARY not set")
    testutil.main(main)
