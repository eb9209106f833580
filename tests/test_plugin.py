#!/usr/bin/python3
"""The plugin ABI from the command line: the example plugin (plugin/examples/strip_doc.c)
is listed and runs, broken plugins are refused with one clear line and exit code 2.

A plugin of ABI version 1 still loads and runs.

Usage (meson test 'plugin'): test_plugin.py STRIP_DOC.so BAD_ABI.so NO_ENTRY.so ABI1.so
with ONNX_PASS set to the onnx-pass binary.
"""

import copy
import os
import subprocess
import sys
import tempfile
import unittest

import testutil
testutil.require("numpy", "onnx")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ONNX_PASS = os.environ.get("ONNX_PASS", "")
STRIP_DOC, BAD_ABI, NO_ENTRY, ABI1 = (sys.argv[1:5] + [""] * 4)[:4]


def documented_model():
    """A Gemm + If model with doc strings everywhere (model, graphs, nodes, subgraphs,
    and also on value infos and initializers, which the pass must keep)."""
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w")
    w.doc_string = "initializer doc"
    branch_out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])

    def branch(tag, op):
        node = helper.make_node(op, ["h"], ["y"], name=tag + "_op", doc_string=tag + " node doc")
        return helper.make_graph([node], tag, [], [branch_out], doc_string=tag + " graph doc")

    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["h"], name="gemm", transB=1,
                         doc_string="gemm node doc"),
        helper.make_node("If", ["cond"], ["y"], name="if", doc_string="if node doc",
                         then_branch=branch("then", "Relu"), else_branch=branch("else", "Neg")),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    x.doc_string = "input doc"
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    graph = helper.make_graph(nodes, "main", [x, cond],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
                              [w], doc_string="main graph doc")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              doc_string="model doc", producer_name="test_plugin")
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def without_docs(model):
    """What strip-doc-strings must produce, computed here with the onnx package."""
    out = copy.deepcopy(model)
    out.ClearField("doc_string")

    def strip(graph):
        graph.ClearField("doc_string")
        for node in graph.node:
            node.ClearField("doc_string")
            for a in node.attribute:
                if a.HasField("g"):
                    strip(a.g)
                for g in a.graphs:
                    strip(g)
    strip(out.graph)
    return out


def onnx_pass(*args):
    return subprocess.run([ONNX_PASS] + list(args), capture_output=True, text=True)


class PluginTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="test-plugin-")
        self.model = documented_model()
        self.path = os.path.join(self.tmp.name, "doc.onnx")
        onnx.save(self.model, self.path)

    def tearDown(self):
        self.tmp.cleanup()

    def assert_one_line_error(self, proc, *needles):
        self.assertEqual(proc.returncode, 2, proc.stderr)
        lines = proc.stderr.splitlines()
        self.assertEqual(len(lines), 1, proc.stderr)
        self.assertTrue(lines[0].startswith("onnx-pass: error: "), lines[0])
        for n in needles:
            self.assertIn(n, lines[0])
        self.assertEqual(proc.stdout, "")

    def test_list(self):
        proc = onnx_pass("--plugin", STRIP_DOC, "--list")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
        self.assertIn("strip-doc-strings", names)
        self.assertIn("sparsify", names)
        plain = onnx_pass("--list")
        self.assertEqual(plain.returncode, 0, plain.stderr)
        self.assertNotIn("strip-doc-strings", plain.stdout)

    def test_run(self):
        out = os.path.join(self.tmp.name, "out.onnx")
        proc = onnx_pass("--plugin", STRIP_DOC, "run", "strip-doc-strings", self.path, "-o", out)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        # model, 3 graphs (main, then, else) and 4 nodes
        self.assertIn("cleared 8 doc strings", proc.stdout)
        got = onnx.load(out)
        self.assertNotEqual(got, self.model)
        self.assertEqual(got, without_docs(self.model))
        # kept: initializer and input doc strings
        self.assertEqual(got.graph.initializer[0].doc_string, "initializer doc")
        self.assertEqual(got.graph.input[0].doc_string, "input doc")
        onnx.checker.check_model(got)

    def test_run_with_builtin_passes(self):
        out = os.path.join(self.tmp.name, "out.onnx")
        proc = onnx_pass("--plugin", STRIP_DOC, "run", "strip-doc-strings,inspect", self.path,
                         "-o", out)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("cleared 8 doc strings", proc.stdout)
        self.assertIn("w", proc.stdout)
        self.assertEqual(onnx.load(out).doc_string, "")

    def test_unknown_without_plugin(self):
        out = os.path.join(self.tmp.name, "out.onnx")
        proc = onnx_pass("run", "strip-doc-strings", self.path, "-o", out)
        self.assert_one_line_error(proc, "strip-doc-strings")
        self.assertFalse(os.path.exists(out))

    def test_bad_abi(self):
        out = os.path.join(self.tmp.name, "out.onnx")
        proc = onnx_pass("--plugin", BAD_ABI, "run", "strip-doc-strings", self.path, "-o", out)
        self.assert_one_line_error(proc, BAD_ABI, "ABI version 99", "expected 1 to 2")
        self.assertFalse(os.path.exists(out))
        self.assert_one_line_error(onnx_pass("--plugin", BAD_ABI, "--list"), "ABI version")

    def test_abi1_plugin(self):
        """ABI 2 only appended a field to struct onnxpass_error: version 1 plugins load,
        run, and their errors are the model's (exit 1, the model named)."""
        proc = onnx_pass("--plugin", ABI1, "run", "abi1-hello", self.path)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "abi1 plugin ran\n")
        proc = onnx_pass("--plugin", ABI1, "run", "abi1-fail", self.path)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertEqual(proc.stderr, "onnx-pass: error: %s: abi1 plugin refuses this model\n"
                         % self.path)

    def test_no_entry_point(self):
        proc = onnx_pass("--plugin", NO_ENTRY, "--list")
        self.assert_one_line_error(proc, NO_ENTRY, "onnxpass_plugin_entry")

    def test_not_a_shared_object(self):
        proc = onnx_pass("--plugin", self.path, "--list")
        self.assert_one_line_error(proc, self.path, "cannot load plugin")
        missing = os.path.join(self.tmp.name, "missing.so")
        self.assert_one_line_error(onnx_pass("--plugin", missing, "--list"), missing)

    def test_plugin_twice(self):
        proc = onnx_pass("--plugin", STRIP_DOC, "--plugin", STRIP_DOC, "--list")
        self.assert_one_line_error(proc, "strip-doc-strings", "already registered")


if __name__ == "__main__":
    if not ONNX_PASS or not all((STRIP_DOC, BAD_ABI, NO_ENTRY, ABI1)):
        sys.exit("usage: ONNX_PASS=... test_plugin.py STRIP_DOC.so BAD_ABI.so NO_ENTRY.so "
                 "ABI1.so")
    testutil.main(lambda runner: runner.cases(PluginTest))
