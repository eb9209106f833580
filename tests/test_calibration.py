"""wanda and sparsegpt (SPEC 12) end to end through the CLI and ONNX Runtime, against
the numpy references of calib_ref.py: masks and reconstructed weights for Gemm (transB
0 and 1), MatMul [in, out] on rank-3 inputs and Conv (strides, pads, dilations, groups);
exact N:M; streaming statistics (one batch file or three give the same result);
sequential pruning; sensitivity allocation; errors."""
import json
import os
import subprocess
import sys
import tempfile

import testutil
testutil.require("numpy", "onnx")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import calib_ref  # noqa: E402
from testutil import stored_tensors  # noqa: E402

ONNX_PASS = testutil.executable("ONNX_PASS")
RNG = np.random.default_rng(1234)


def layer_model(kind):
    """A one-layer model, its weight's name, and fn(x) -> (view of the weight
    as [out, in] and the activation rows per conv group)."""
    w_in = None
    if kind in ("gemm_t", "gemm"):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", 24])
        w = RNG.standard_normal((16, 24) if kind == "gemm_t" else (24, 16)).astype(np.float32)
        node = helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1 if kind == "gemm_t" else 0)
        inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.ones(16, np.float32), "b")]
        view = (lambda v: v) if kind == "gemm_t" else (lambda v: v.T)
        rows = lambda xs: [xs.reshape(-1, 24)]
        shape = (None, 24)
    elif kind == "matmul":
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "t", 24])
        w = RNG.standard_normal((24, 16)).astype(np.float32)
        node = helper.make_node("MatMul", ["x", "W"], ["y"])
        inits = [numpy_helper.from_array(w, "W")]
        view = lambda v: v.T
        rows = lambda xs: [xs.reshape(-1, 24)]
        shape = (2, None, 24)
    else:
        groups = 2 if kind == "conv_group" else 1
        c = 4 if groups == 2 else 3
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", c, 9, 9])
        w = RNG.standard_normal((8, c // groups, 3, 3)).astype(np.float32)
        attrs = dict(strides=[2, 2], pads=[1, 0, 1, 2], dilations=[2, 1], group=groups)
        node = helper.make_node("Conv", ["x", "W", "b"], ["y"], **attrs)
        inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.ones(8, np.float32), "b")]
        view = lambda v: v.reshape(v.shape[0], -1)
        cg = c // groups
        rows = lambda xs: [calib_ref.im2col(xs[:, g * cg:(g + 1) * cg], (3, 3), (2, 2), (1, 0, 1, 2), (2, 1))
                           for g in range(groups)]
        shape = (None, c, 9, 9)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model, w, view, rows, shape


def batches(shape, n_files, n_rows):
    """n_files arrays of the input shape, n_rows along the free dimension."""
    out = []
    for _ in range(n_files):
        dims = [n_rows if d is None else d for d in shape]
        out.append(RNG.standard_normal(dims).astype(np.float32) * np.linspace(0.2, 2, dims[-1],
                                                                                 dtype=np.float32))
    return out


def write_calib(folder, arrays):
    os.makedirs(folder, exist_ok=True)
    for i, a in enumerate(arrays):
        np.savez(os.path.join(folder, "b%02d.npz" % i), x=a)
    return folder


def cli(*args, env=None, ok=True):
    p = subprocess.run([ONNX_PASS, *args], capture_output=True, text=True, env=env)
    if ok and p.returncode != 0:
        raise AssertionError("onnx-pass %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr))
    return p


def sparsify(tmp, model, calib, *flags):
    src, out = os.path.join(tmp, "in.onnx"), os.path.join(tmp, "out.onnx")
    onnx.save(model, src)
    cli("sparsify", src, "-o", out, "--calibration", calib, "--format", "dense", *flags)
    return onnx.load(out)


def weight(model, name="W"):
    return numpy_helper.to_array(stored_tensors(model.graph)[name])


def reference(kind, method, w, view, rows, xs, **kw):
    """Per conv group, the reference on the view's rows."""
    v = view(w).astype(np.float32)
    groups = rows(np.concatenate(xs, axis=0))
    per = v.shape[0] // len(groups)
    outs, masks = [], []
    for g, x in enumerate(groups):
        part = v[g * per:(g + 1) * per]
        if method == "wanda":
            mask = calib_ref.wanda(part, x, **kw)
            outs.append(part * mask)
        else:
            new, mask = calib_ref.sparsegpt(part, x, **kw)
            outs.append(new)
        masks.append(mask)
    return np.concatenate(outs), np.concatenate(masks)


PATTERNS = {"50%": dict(level=0.5), "70%": dict(level=0.7), "2:4": dict(n=2, m=4)}
FLAGS = {"50%": ["--sparsity", "0.5"], "70%": ["--sparsity", "0.7"],
         "2:4": ["--block", "1x4", "--zeros-per-block", "2"]}
KINDS = ("gemm_t", "gemm", "matmul", "conv", "conv_group")


def check_method(method, extra_flags=(), **extra):
    for kind in KINDS:
        for pat in PATTERNS:
            model, w, view, rows, shape = layer_model(kind)
            xs = batches(shape, 3, 10)
            with tempfile.TemporaryDirectory() as tmp:
                out = sparsify(tmp, model, write_calib(os.path.join(tmp, "c"), xs),
                               "--sparsifier", method, *FLAGS[pat], *extra_flags)
                got = view(weight(out))
            ref, mask = reference(kind, method, w, view, rows, xs, **PATTERNS[pat], **extra)
            where = "%s %s %s" % (method, kind, pat)
            got_mask = got != 0
            agree = (got_mask == mask).mean()
            if method == "wanda":
                assert agree == 1.0, "%s: masks differ in %d places" % (where, (got_mask != mask).sum())
                assert np.array_equal(got, ref), where
            else:
                assert agree >= 0.99, "%s: masks agree on %.3f only" % (where, agree)
                rows_ok = (got_mask == mask).all(axis=1)
                scale = np.abs(ref).max()
                np.testing.assert_allclose(got[rows_ok], ref[rows_ok], rtol=2e-3, atol=2e-4 * scale,
                                           err_msg=where)
                # the reconstruction moved kept weights (that is SparseGPT's point)
                assert not np.allclose(got[got_mask], view(w)[got_mask]), where


def test_wanda_matches_reference(_):
    check_method("wanda")


def test_sparsegpt_matches_reference(_):
    check_method("sparsegpt")


def test_sparsegpt_lazy_blocks(_):
    # blocks of 8 columns: the 24 or 27 inputs span several lazy blocks
    check_method("sparsegpt", ("--blocksize", "8"), blocksize=8)


def test_nm_exact(_):
    for kind in KINDS:
        for n, m in ((2, 4), (4, 8)):
            model, w, view, rows, shape = layer_model(kind)
            xs = batches(shape, 2, 8)
            for method in ("wanda", "sparsegpt"):
                with tempfile.TemporaryDirectory() as tmp:
                    out = sparsify(tmp, model, write_calib(os.path.join(tmp, "c"), xs), "--sparsifier",
                                   method, "--block", "1x%d" % m, "--zeros-per-block", str(n))
                    v = view(weight(out))
                for j in range(0, v.shape[1], m):
                    seg = v[:, j:j + m]
                    zeros = (seg == 0).sum(axis=1)
                    want = calib_ref.nm_prunes(n, m, seg.shape[1])
                    assert (zeros == want).all(), "%s %s %d:%d" % (method, kind, n, m)


def test_streaming_equals_full_batch(_):
    for kind in KINDS:
        model, w, view, rows, shape = layer_model(kind)
        xs = batches(shape, 3, 12)
        with tempfile.TemporaryDirectory() as tmp:
            three = view(weight(sparsify(tmp, model, write_calib(os.path.join(tmp, "a"), xs),
                                         "--sparsifier", "sparsegpt")))
            one = view(weight(sparsify(tmp, model, write_calib(os.path.join(tmp, "b"),
                                                              [np.concatenate(xs, axis=1 if kind == "matmul" else 0)]),
                                       "--sparsifier", "sparsegpt")))
        assert np.array_equal(three != 0, one != 0), kind
        np.testing.assert_allclose(three, one, rtol=1e-4, atol=1e-5 * np.abs(one).max(), err_msg=kind)


def chain_model(sizes):
    """x -> MatMul W0 -> Relu -> MatMul W1 -> ... (weights [in, out])."""
    nodes, inits, prev = [], [], "x"
    ws = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        w = RNG.standard_normal((a, b)).astype(np.float32) / np.sqrt(a)
        ws.append(w)
        inits.append(numpy_helper.from_array(w, "W%d" % i))
        nodes.append(helper.make_node("MatMul", [prev, "W%d" % i], ["h%d" % i]))
        prev = "h%d" % i
        if i + 2 < len(sizes):
            nodes.append(helper.make_node("Relu", [prev], ["r%d" % i]))
            prev = "r%d" % i
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                        ["m", sizes[0]])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model, ws


def test_sequential(_):
    model, ws = chain_model([16, 24, 12])
    xs = batches((None, 16), 2, 40)
    x = np.concatenate(xs)
    with tempfile.TemporaryDirectory() as tmp:
        calib = write_calib(os.path.join(tmp, "c"), xs)
        seq = sparsify(tmp, model, calib, "--sparsifier", "sparsegpt", "--sequential")
        par = sparsify(tmp, model, calib, "--sparsifier", "sparsegpt")
    w0, _ = calib_ref.sparsegpt(ws[0].T, x)
    # sequential: the second layer sees the first one pruned
    w1_seq, _ = calib_ref.sparsegpt(ws[1].T, np.maximum(x @ w0.T, 0))
    w1_par, _ = calib_ref.sparsegpt(ws[1].T, np.maximum(x @ ws[0], 0))
    for out, w1 in ((seq, w1_seq), (par, w1_par)):
        np.testing.assert_allclose(weight(out, "W0").T, w0, rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(weight(out, "W1").T, w1, rtol=2e-3, atol=1e-4)
    assert not np.allclose(w1_seq, w1_par, atol=1e-3)


def test_sequential_stages(_):
    # "sequential": N groups the layers into N stages: 1 stage is one run (one shot),
    # as many stages as layers is layer by layer, and with 2 stages of a 4-layer
    # chain the first two layers see the dense model, the last two see them pruned
    # (and the last one sees the third dense)
    model, ws = chain_model([16, 24, 20, 18, 12])
    xs = batches((None, 16), 2, 40)
    x = np.concatenate(xs)
    names = ("W0", "W1", "W2", "W3")
    with tempfile.TemporaryDirectory() as tmp:
        calib = write_calib(os.path.join(tmp, "c"), xs)
        runs = {k: sparsify(tmp, model, calib, "--sparsifier", "sparsegpt", *extra)
                for k, extra in (("one", ()), ("seq", ("--sequential",)), ("s1", ("--stages", "1")),
                                 ("s2", ("--stages", "2")), ("s9", ("--stages", "9")))}
        w = {k: {n: weight(out, n) for n in names} for k, out in runs.items()}
        p = cli("sparsify", os.path.join(tmp, "in.onnx"), "-o", os.path.join(tmp, "x.onnx"),
                "--sparsifier", "sparsegpt", "--calibration", calib, "--stages", "0", ok=False)
        assert p.returncode != 0 and "number of stages" in p.stderr, p.stderr
    for n in names:
        np.testing.assert_array_equal(w["s1"][n], w["one"][n], err_msg=n)
        np.testing.assert_array_equal(w["s9"][n], w["seq"][n], err_msg=n)
    s2 = w["s2"]
    x2 = np.maximum(np.maximum(x @ s2["W0"], 0) @ s2["W1"], 0)
    w2, _ = calib_ref.sparsegpt(ws[2].T, x2)
    w3, _ = calib_ref.sparsegpt(ws[3].T, np.maximum(x2 @ ws[2], 0))
    for n, ref in (("W0", w["one"]["W0"].T), ("W1", w["one"]["W1"].T), ("W2", w2), ("W3", w3)):
        np.testing.assert_allclose(s2[n].T, ref, rtol=2e-3, atol=1e-4, err_msg=n)
    assert not np.allclose(s2["W3"], w["seq"]["W3"], atol=1e-3)
    assert not np.allclose(s2["W3"], w["one"]["W3"], atol=1e-3)


def test_statistics_budget(_):
    # options.statistics_memory_mb 0: one run over the calibration set per layer, which
    # must not change the result (one-shot runs go from the last layer to the first)
    model, _ = chain_model([16, 24, 20, 12])
    xs = batches((None, 16), 2, 40)
    with tempfile.TemporaryDirectory() as tmp:
        calib = write_calib(os.path.join(tmp, "c"), xs)
        small = os.path.join(tmp, "small.json")
        with open(small, "w") as f:
            json.dump({"options": {"statistics_memory_mb": 0}}, f)
        for extra in ((), ("--sequential",)):
            one = sparsify(tmp, model, calib, "--sparsifier", "sparsegpt", *extra)
            runs = sparsify(tmp, model, calib, "--sparsifier", "sparsegpt", "--config", small, *extra)
            for name in ("W0", "W1", "W2"):
                np.testing.assert_array_equal(weight(runs, name), weight(one, name), err_msg=name)
        with open(small, "w") as f:
            json.dump({"options": {"statistics_memory_mb": "1"}}, f)
        p = cli("sparsify", os.path.join(tmp, "in.onnx"), "-o", os.path.join(tmp, "x.onnx"),
                "--sparsifier", "sparsegpt", "--calibration", calib, "--config", small, ok=False)
        assert p.returncode == 2 and "statistics_memory_mb" in p.stderr, p.stderr


def test_sensitivity_allocation(_):
    # three layers of different sensitivity: the middle one has 85% of tiny weights, so
    # pruning it deep costs little; its own generator keeps the test independent of order
    global RNG
    saved, RNG = RNG, np.random.default_rng(7)
    try:
        model, ws = chain_model([32, 48, 48, 16])
        xs = batches((None, 32), 2, 64)
    finally:
        RNG = saved
    tiny = np.random.default_rng(8).random(ws[1].shape) < 0.85
    ws[1][tiny] *= 1e-3
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(ws[1], "W1"))
    with tempfile.TemporaryDirectory() as tmp:
        calib = write_calib(os.path.join(tmp, "c"), xs)
        src, prep, out = (os.path.join(tmp, n) for n in ("in.onnx", "p.onnx", "s.onnx"))
        onnx.save(model, src)
        cli("prepare", src, "-o", prep, "--sparsifier", "sparsegpt", "--sparsity", "0.7",
            "--allocate", "sensitivity")
        cli("step", prep, "-o", out, "--calibration", calib)
        stepped = onnx.load(out)
        state = json.loads({p.key: p.value for p in stepped.metadata_props}["onnx_pass.sparsity"])
        levels = [g["allocated_sparsity_level"] for g in state["groups"]]
        # config lists the chosen levels, so that the allocation can be given back to prepare
        listed = json.loads(cli("config", out).stdout)["config"]
        assert {e["tensor_fqn"]: e["sparsity_level"] for e in listed} == \
            {g["tensor_fqn"]: g["allocated_sparsity_level"] for g in state["groups"]}, listed
        assert "sparsity_level" not in json.loads(cli("config", src).stdout)["config"][0]
        cli("squash", out, "-o", out)
        squashed = onnx.load(out)
    sizes = [w.size for w in ws]
    zeros = [(weight(squashed, "W%d" % i) == 0).sum() for i in range(3)]
    assert abs(sum(zeros) / sum(sizes) - 0.7) < 0.005, zeros
    assert abs(np.dot(levels, sizes) / sum(sizes) - 0.7) < 1e-6, levels
    assert levels[1] > 0.8 and levels[1] > max(levels[0], levels[2]), levels
    # the model's output moves less than with the uniform 70% SparseGPT prunes
    x = np.concatenate(xs)

    def forward(w):
        return np.maximum(np.maximum(x @ w[0], 0) @ w[1], 0) @ w[2]

    with tempfile.TemporaryDirectory() as tmp:
        uniform = sparsify(tmp, model, write_calib(os.path.join(tmp, "c"), xs), "--sparsifier",
                           "sparsegpt", "--sparsity", "0.7")
    y = forward(ws)

    def rel(m):
        return ((forward([weight(m, "W%d" % i) for i in range(3)]) - y) ** 2).sum() / (y ** 2).sum()

    assert rel(squashed) < rel(uniform), (rel(squashed), rel(uniform))


def test_sensitivity_allocation_nm(_):
    # 2:4 with --allocate sensitivity: whole layers get 2:4 or stay dense, the cheapest
    # first, until the zeros of --sparsity (the share of full 2:4) are met. W1 (48 x 48,
    # 85 % tiny weights) alone holds half of the three layers' 2:4 zeros.
    rng = np.random.default_rng(9)
    global RNG
    saved, RNG = RNG, rng
    try:
        model, ws = chain_model([32, 48, 48, 16])
        xs = batches((None, 32), 2, 64)
    finally:
        RNG = saved
    ws[1][rng.random(ws[1].shape) < 0.85] *= 1e-3
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(ws[1], "W1"))
    with tempfile.TemporaryDirectory() as tmp:
        calib = write_calib(os.path.join(tmp, "c"), xs)
        out = {}
        for level in ("0.5", "1"):
            out[level] = sparsify(tmp, model, calib, "--sparsifier", "sparsegpt", "--block", "1x4",
                                  "--zeros-per-block", "2", "--sparsity", level,
                                  "--allocate", "sensitivity")
        full = sparsify(tmp, model, calib, "--sparsifier", "sparsegpt", "--block", "1x4",
                        "--zeros-per-block", "2")

    def two_of_four(w):  # view [out, in]: 2 zeros in every 4 inputs
        groups = (w.T == 0).reshape(w.shape[1], -1, 4).sum(axis=2)
        return bool((groups >= 2).all())

    half = [weight(out["0.5"], "W%d" % i) for i in range(3)]
    assert two_of_four(half[1]), "W1 is not 2:4"
    for i in (0, 2):
        np.testing.assert_array_equal(half[i], ws[i], err_msg="W%d should stay dense" % i)
    for i in range(3):
        assert two_of_four(weight(out["1"], "W%d" % i)), "level 1: W%d is not 2:4" % i
        np.testing.assert_array_equal(weight(out["1"], "W%d" % i), weight(full, "W%d" % i),
                                      err_msg="level 1 must equal plain 2:4")


def test_errors(_):
    model, _, _, _, shape = layer_model("gemm_t")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "in.onnx"), os.path.join(tmp, "out.onnx")
        onnx.save(model, src)
        calib = write_calib(os.path.join(tmp, "c"), batches(shape, 1, 4))
        cases = [
            (["--sparsifier", "sparsegpt"], 2, "--calibration"),
            (["--sparsifier", "wanda", "--block", "1x4", "--zeros-per-block", "4",
              "--calibration", calib], 2, "N < M"),
            (["--sparsifier", "sparsegpt", "--block", "2x2", "--calibration", calib], 2, "[1, 1]"),
            (["--sparsifier", "weight_norm", "--allocate", "sensitivity"], 2, "allocate"),
            (["--sparsifier", "sparsegpt", "--calibration", os.path.join(tmp, "missing")], 1, "missing"),
        ]
        for flags, code, text in cases:
            p = cli("sparsify", src, "-o", out, *flags, ok=False)
            lines = p.stderr.strip().splitlines()
            assert p.returncode == code and len(lines) == 1 and text in lines[0], (flags, p.returncode, p.stderr)
            assert lines[0].startswith("onnx-pass: error: ") and not os.path.exists(out), flags
        env = dict(os.environ, ONNX_PASS_ORT_LIBRARY="/nonexistent/libonnxruntime.so")
        p = cli("sparsify", src, "-o", out, "--sparsifier", "wanda", "--calibration", calib, env=env,
                ok=False)
        assert p.returncode == 1 and "ONNX Runtime" in p.stderr and not os.path.exists(out), p.stderr


TESTS = [test_wanda_matches_reference, test_sparsegpt_matches_reference, test_sparsegpt_lazy_blocks,
         test_nm_exact, test_streaming_equals_full_batch, test_sequential, test_sequential_stages, test_statistics_budget,
         test_sensitivity_allocation, test_sensitivity_allocation_nm,
         test_errors]


def main(runner):
    no_ort = None if testutil.have_ort() else testutil.NO_ORT
    for test in TESTS:
        # test_errors checks the no-ORT message too
        runner.check(test.__name__, test, None, needs=None if test is test_errors else no_ort)


if __name__ == "__main__":
    testutil.main(main, only=sys.argv[1:])
