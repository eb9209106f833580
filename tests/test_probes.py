#!/usr/bin/python3
"""What a new user and a fault-injection probe hit (issue 12), kept fixed.

Each check drives the command line (ONNX_PASS) on models made here: scale
(every pass linear in the model), output files (-o semantics, modes, umask,
external-data atomicity, kill -9), inputs changing while read, the export
pipeline (convert of a model pruned in torch) and config typos.

Run from meson (test 'probes'); needs ONNX_PASS in the environment.
Prints "N passed, M failed". Arguments: names of checks to run (default all).
"""

import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import testutil  # noqa: E402

ONNX_PASS = os.environ.get("ONNX_PASS", "")


def run(args, **kw):
    return subprocess.run([ONNX_PASS] + list(args), capture_output=True, text=True,
                          timeout=600, **kw)


def run_ok(args, **kw):
    p = run(args, **kw)
    if p.returncode != 0 or p.stderr:
        raise AssertionError("onnx-pass %s: exit %d\n%s" % (" ".join(args), p.returncode,
                                                            p.stderr))
    return p


def run_error(args, code, needle=None, **kw):
    """Fails with exit code `code` and one error line (containing needle)."""
    p = run(args, **kw)
    lines = p.stderr.splitlines()
    assert p.returncode == code, "exit %d, want %d: %r" % (p.returncode, code, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("onnx-pass: error: "), p.stderr
    assert needle is None or needle in lines[0], "%r not in %r" % (needle, lines[0])
    return lines[0]


def chain_model(n, dim=8, seed=0):
    """x -> MatMul(W0) -> ... -> MatMul(Wn-1): even weights are initializers,
    odd ones Constant nodes (both kinds of weight prepare splices after)."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(n):
        w = rng.standard_normal((dim, dim)).astype(np.float32)
        name = "w%d" % i
        if i % 2:
            nodes.append(helper.make_node("Constant", [], [name],
                                          value=numpy_helper.from_array(w, name + "_value")))
        else:
            inits.append(numpy_helper.from_array(w, name))
        nodes.append(helper.make_node("MatMul", [prev, name], ["y%d" % i],
                                      name="/l%d/MatMul" % i))
        prev = "y%d" % i
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dim])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, dim])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def timed(args, runs=2):
    best = None
    for _ in range(runs):
        t = time.monotonic()
        run_ok(args)
        t = time.monotonic() - t
        best = t if best is None else min(best, t)
    return best


def test_scale_linear(tmp):
    """sparsify (prepare, step, squash, convert) and run prepare,step,squash
    grow linearly with the chain: 4x the nodes take well under 16x the time
    (quadratic name scans and node splicing took 13-16x)."""
    small, big = 4000, 16000
    paths = {}
    for n in (small, big):
        paths[n] = os.path.join(tmp, "chain%d.onnx" % n)
        onnx.save(chain_model(n), paths[n])
    for cmd in (["sparsify"], ["run", "prepare,step,squash"]):
        t = {n: timed(cmd + [paths[n], "-o", os.path.join(tmp, "out.onnx"), "--threads", "1"])
             for n in (small, big)}
        ratio = t[big] / t[small]
        print("  %s: %d nodes %.2f s, %d nodes %.2f s, ratio %.1f"
              % (" ".join(cmd), small, t[small], big, t[big], ratio))
        assert ratio < 8, "%s is not linear: ratio %.1f" % (cmd, ratio)
    out = onnx.load(os.path.join(tmp, "out.onnx"))
    assert len(out.graph.node) == big + big // 2, len(out.graph.node)
    assert [n.op_type for n in out.graph.node[:3]] == ["MatMul", "Constant", "MatMul"]


TESTS = [test_scale_linear]


def main():
    only = sys.argv[1:]
    checks = testutil.Checks()
    for test in TESTS:
        if only and test.__name__ not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            checks.run(test.__name__, test, tmp)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())
