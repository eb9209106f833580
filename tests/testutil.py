"""Helpers shared by the Python tests (run with /usr/bin/python3 from tests/)."""
import importlib
import os
import sys
import unittest

SKIP = 77  # meson's exit code for a skipped test


def require(*modules):
    """Import the modules the whole file needs (numpy, onnx, torch...); exit 77
    (skipped) naming the first one missing. Call it before importing them."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            skip_file("no python module %s (%s)" % (name, e))


def skip_file(reason):
    """The whole file cannot run here (no ONNX Runtime, no torch): exit 77."""
    print("SKIP: %s" % reason)
    sys.exit(SKIP)


def executable(var):
    """The program $VAR names (meson sets it); exit 1 when it is not there."""
    path = os.environ.get(var, "")
    if not path or not os.access(path, os.X_OK):
        print("%s is not set to an executable (run through meson test)" % var)
        sys.exit(1)
    return path


def have_ort():
    """The library was built with ONNX Runtime support (meson's ONNX_PASS_HAVE_ORT)."""
    return os.environ.get("ONNX_PASS_HAVE_ORT", "1") == "1"


NO_ORT = "built without ONNX Runtime headers"


def import_or_skip(name):
    """The module, or skip the running check (unittest.SkipTest)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise unittest.SkipTest("no python module %s (%s)" % (name, e))


class Check(unittest.TestCase):
    """One named check, fn(*args), as a unittest case; its return value is kept
    in .value (None when it failed or was skipped)."""

    def __init__(self, name, fn, args=(), quiet=False):
        super().__init__("runTest")
        self.name, self.fn, self.args, self.quiet = name, fn, args, quiet
        self.value = None

    def runTest(self):
        self.value = self.fn(*self.args)

    def __str__(self):
        return self.name


class Result(unittest.TestResult):
    """Prints a line a check: "ok   NAME" (not for quiet ones), "FAIL NAME" and
    the traceback, "SKIP NAME (why)"; counts them."""

    def __init__(self):
        super().__init__()
        self.n_pass = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.n_pass += 1
        if not getattr(test, "quiet", False):
            print("ok   %s" % name_of(test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.print_failure(test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self.print_failure(test, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        print("SKIP %s (%s)" % (name_of(test), reason))

    def print_failure(self, test, err):
        print("FAIL %s" % name_of(test))
        print(self._exc_info_to_string(err, test), end="", flush=True)


def name_of(test):
    """A check's name, a TestCase's method name (or, for a failed setUpClass,
    what unittest calls it)."""
    if isinstance(test, Check):
        return test.name
    return getattr(test, "_testMethodName", None) or str(test)


class Runner:
    """The one runner of the Python tests: runs checks (Check) and unittest
    TestCase classes as they come, in order, into one Result."""

    def __init__(self, only=()):
        self.only = set(only)
        self.result = Result()

    def check(self, name, fn, *args, quiet=False, needs=None):
        """Run fn(*args) as the check NAME (unless a name filter leaves it out);
        returns its value, or None. needs: a reason to skip it instead
        (e.g. "no ORT_RUN"), or None to run it."""
        if self.only and name not in self.only:
            return None
        case = Check(name, fn, args, quiet)
        if needs:
            self.result.startTest(case)
            self.result.addSkip(case, needs)
            self.result.stopTest(case)
            return None
        case.run(self.result)
        return case.value

    def tests(self, fns, *args):
        """Run each fn(*args) as a check named after the function."""
        for fn in fns:
            self.check(fn.__name__, fn, *args)

    def cases(self, *classes):
        """Run the test methods of unittest TestCase classes (a suite, for
        their setUpClass)."""
        loader = unittest.defaultTestLoader
        for cls in classes:
            cases = [case for case in loader.loadTestsFromTestCase(cls)
                     if not self.only or case._testMethodName in self.only]
            unittest.TestSuite(cases).run(self.result)

    def summary(self):
        """Print the counts; the exit code: 1 when a check failed (or none
        ran), else 77 when one was skipped (a skipped check never counts as
        passing), else 0."""
        r = self.result
        n_fail, n_skip = len(r.failures) + len(r.errors), len(r.skipped)
        print("%d passed, %d failed%s" % (r.n_pass, n_fail,
                                          ", %d skipped" % n_skip if n_skip else ""))
        if n_fail or not (r.n_pass or n_skip):
            return 1  # a failure, or nothing ran
        return SKIP if n_skip else 0


def main(body, only=()):
    """The entry point of every Python test file: body(runner) runs the checks;
    exits with runner.summary()'s code."""
    runner = Runner(only)
    body(runner)
    sys.exit(runner.summary())


def stored_tensors(graph, out=None):
    """name -> TensorProto of initializers and Constant values, subgraphs included."""
    import onnx
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
    import numpy as np
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError("%s: shape %s, expected %s" % (what, got.shape, want.shape))
    scale = max(np.abs(want).max(initial=0.0), 1e-30)
    err = np.abs(got - want).max(initial=0.0)
    if not err <= rtol * scale:
        raise AssertionError("%s: max error %g > %g * %g" % (what, err, rtol, scale))
