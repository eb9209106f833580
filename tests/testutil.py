"""Helpers shared by the Python tests (run with /usr/bin/python3 from tests/)."""
import sys
import traceback

import onnx


def run_tests(tests, arg, only=()):
    """Run each test(arg), printing ok/FAIL lines and the closing
    'N passed, M failed' line; returns the process exit code."""
    n_pass = n_fail = 0
    for test in tests:
        if only and test.__name__ not in only:
            continue
        try:
            test(arg)
        except Exception:
            n_fail += 1
            print("FAIL %s" % test.__name__)
            traceback.print_exc(file=sys.stdout)
            continue
        n_pass += 1
        print("ok   %s" % test.__name__)
    print("%d passed, %d failed" % (n_pass, n_fail))
    return 1 if n_fail else 0


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
