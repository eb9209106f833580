"""Helpers shared by the Python tests (run with /usr/bin/python3 from tests/)."""
import sys
import traceback

import numpy as np
import onnx


class Checks:
    """Named checks run one by one: an ok/FAIL/SKIP line each (with the
    traceback of a failure), then 'N passed, M failed[, K skipped]'."""

    def __init__(self):
        self.results = []

    def run(self, name, fn, *args):
        try:
            fn(*args)
        except Exception:
            self.results.append("fail")
            print("FAIL %s" % name)
            traceback.print_exc(file=sys.stdout)
            return
        self.results.append("pass")
        print("ok   %s" % name)

    def skip(self, name, why):
        self.results.append("skip")
        print("SKIP %s (%s)" % (name, why))

    def summary(self):
        """Print the counts; the exit code: 1 on a failure, else 77 (meson's
        "skipped") when something was skipped, else 0."""
        n_pass, n_fail, n_skip = (self.results.count(k) for k in ("pass", "fail", "skip"))
        print("%d passed, %d failed%s" % (n_pass, n_fail,
                                          ", %d skipped" % n_skip if n_skip else ""))
        if n_fail:
            return 1
        return 77 if n_skip else 0


def run_tests(tests, arg, only=()):
    """Run each test(arg) as a Checks entry; returns the process exit code."""
    checks = Checks()
    for test in tests:
        if not only or test.__name__ in only:
            checks.run(test.__name__, test, arg)
    return checks.summary()


def stored_tensors(graph, out=None):
    """name -> TensorProto of initializers and Constant values, subgraphs included."""
    out = {} if out is None else out
    for t in graph.initializer:
        out[t.name] = t
    for n in graph.node:
        if n.op_type == "Constant":
            out[n.output[0]] = n.attribute[0].t
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                stored_tensors(a.g, out)
    return out


def assert_close(got, want, what, rtol=1e-5):
    """Max |got - want| within rtol of max |want| (shapes equal), in float64."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError("%s: shape %s, expected %s" % (what, got.shape, want.shape))
    scale = max(np.abs(want).max(initial=0.0), 1e-30)
    err = np.abs(got - want).max(initial=0.0)
    if not err <= rtol * scale:
        raise AssertionError("%s: max error %g > %g * %g" % (what, err, rtol, scale))
