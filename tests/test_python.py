#!/usr/bin/python3
"""The Python module (python/onnx_pass) over the built libonnxpass.so.

Run from meson (test 'python'): ONNX_PASS_LIBRARY is the built library, PYTHONPATH the
python/ folder, ONNX_PASS the command line tool, STRIP_DOC_PLUGIN the example plugin.
"""

import collections
import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import unittest
import warnings

import testutil
testutil.require("numpy", "onnx", "torch")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import onnx_pass  # noqa: E402

TWO_OF_FOUR = dict(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2)
ZEROS_MESSAGE = ("Number of zeros per block cannot be more than the total number of "
                 "elements in that block.")


def export_mlp():
    """A small torch MLP exported with torch.onnx.export into memory (Gemm, fc1/fc2)."""
    import torch
    torch.manual_seed(0)
    module = torch.nn.Sequential(collections.OrderedDict([
        ("fc1", torch.nn.Linear(16, 32)), ("act", torch.nn.ReLU()),
        ("fc2", torch.nn.Linear(32, 8))])).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.randn(2, 16), buf, input_names=["x"],
                          output_names=["y"], opset_version=13)
    return onnx.load_model_from_string(buf.getvalue())


def tensors(model):
    """name -> numpy array of every dense and sparse initializer (sparse ones densified)."""
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for s in model.graph.sparse_initializer:
        values = numpy_helper.to_array(s.values)
        idx = numpy_helper.to_array(s.indices)
        dense = np.zeros(int(np.prod(s.dims)), dtype=values.dtype)
        flat = idx if idx.ndim == 1 else np.ravel_multi_index(idx.T, tuple(s.dims))
        dense[flat] = values
        out[s.values.name] = dense.reshape(tuple(s.dims))
    return out


def assert_2of4(test, w):
    """Every 1x4 block along the input dim of a [out, in] weight has exactly 2 zeros."""
    blocks = w.reshape(w.shape[0], -1, 4)
    zeros = (blocks == 0).sum(axis=2)
    test.assertTrue(np.all(zeros == 2), zeros)


class PythonModuleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = export_mlp()
        cls.dense = tensors(cls.model)

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="test-python-")

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def check_sparse(self, model):
        got = tensors(model)
        for name in ("fc1.weight", "fc2.weight"):
            assert_2of4(self, got[name])
            kept = got[name] != 0
            np.testing.assert_array_equal(got[name][kept], self.dense[name][kept])
        for name in ("fc1.bias", "fc2.bias"):
            np.testing.assert_array_equal(got[name], self.dense[name])

    def test_modelproto_in_out(self):
        before = self.model.SerializeToString()
        out = onnx_pass.sparsify(self.model, format="dense", **TWO_OF_FOUR)
        self.assertIsInstance(out, onnx.ModelProto)
        self.assertEqual(self.model.SerializeToString(), before)  # input untouched
        self.assertEqual(len(out.graph.sparse_initializer), 0)
        self.check_sparse(out)
        onnx.checker.check_model(out)

    def test_modelproto_coo(self):
        out = onnx_pass.sparsify(self.model, format="coo", **TWO_OF_FOUR)
        sparse = {s.values.name for s in out.graph.sparse_initializer}
        self.assertEqual(sparse, {"fc1.weight", "fc2.weight"})
        self.assertFalse(sparse & {t.name for t in out.graph.initializer})
        self.check_sparse(out)
        dense = onnx_pass.sparsify(self.model, format="dense", **TWO_OF_FOUR)
        for name in sparse:
            np.testing.assert_array_equal(tensors(out)[name], tensors(dense)[name])

    def test_bytes_in_out(self):
        data = self.model.SerializeToString()
        for kind in (bytes, bytearray, memoryview):
            out = onnx_pass.sparsify(kind(data), format="coo", **TWO_OF_FOUR)
            self.assertIsInstance(out, bytes)
            self.assertEqual(onnx.load_model_from_string(out),
                             onnx_pass.sparsify(self.model, format="coo", **TWO_OF_FOUR))

    def test_path_in_out(self):
        src = self.path("mlp.onnx")
        onnx.save(self.model, src)
        want = onnx_pass.sparsify(self.model, **TWO_OF_FOUR)
        out = self.path("mlp.2of4.onnx")
        self.assertIs(onnx_pass.sparsify(src, output=out, **TWO_OF_FOUR), out)
        self.assertEqual(onnx.load(out), want)
        p = pathlib.Path(self.tmp.name) / "again.onnx"
        self.assertIs(onnx_pass.sparsify(pathlib.Path(src), output=p, **TWO_OF_FOUR), p)
        self.assertEqual(onnx.load(str(p)), want)
        # output may be the input (atomic replace)
        onnx_pass.sparsify(src, output=src, **TWO_OF_FOUR)
        self.assertEqual(onnx.load(src), want)
        with self.assertRaises(ValueError):
            onnx_pass.sparsify(src, **TWO_OF_FOUR)

    def test_external_data(self):
        src = self.path("ext.onnx")
        model = onnx.ModelProto()
        model.CopyFrom(self.model)  # onnx.save_model moves the tensors out in place
        onnx.save_model(model, src, save_as_external_data=True,
                        all_tensors_to_one_file=True, location="ext.onnx.data", size_threshold=0)
        out = self.path("ext.2of4.onnx")
        onnx_pass.sparsify(src, output=out, format="dense", **TWO_OF_FOUR)
        stored = onnx.load(out, load_external_data=False)
        self.assertTrue(any(t.data_location == onnx.TensorProto.EXTERNAL
                            for t in stored.graph.initializer))
        got = tensors(onnx.load(out))
        want = tensors(onnx_pass.sparsify(self.model, format="dense", **TWO_OF_FOUR))
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])

    def test_mapped_external_to_bytes(self):
        """A model whose large external tensors the library maps (src/store.c),
        loaded from its file and saved to bytes: the same bytes as the same
        model stored inline gives."""
        import test_external_store as store
        ext = store.make_model(self.tmp.name, np.random.default_rng(7), external=True)
        inline_dir = self.path("inline")
        os.mkdir(inline_dir)
        inl = store.make_model(inline_dir, np.random.default_rng(7), external=False)
        cfg = '{"defaults": {"sparsity_level": 0.5}}'
        outs = []
        for src in (ext, inl):
            with onnx_pass._Session() as s:
                s.load(src, "path")
                s.run("sparsify", cfg)
                outs.append(s.save_bytes())
        self.assertEqual(outs[0], outs[1])
        onnx.checker.check_model(onnx.load_model_from_string(outs[0]))

    def test_mapped_external_saved_twice(self):
        """The first save of a model with mapped external tensors links the work
        file as OUT.data; changes made after it must not reach that file, and a
        second save must hold them."""
        import test_external_store as store
        ext = store.make_model(self.tmp.name, np.random.default_rng(7), external=True)
        before = store.tensors(ext)[0]
        first, second = self.path("first.onnx"), self.path("second.onnx")
        with onnx_pass._Session() as s:
            s.load(ext, "path")
            s.save_file(first, True)
            s.run("sparsify", '{"defaults": {"sparsity_level": 0.5}}')
            s.save_file(second, True)
        got_first, got_second = store.tensors(first)[0], store.tensors(second)[0]
        for name, want in before.items():
            np.testing.assert_array_equal(got_first[name], want)
        # the same job on the model stored inline
        inline_dir = self.path("inline")
        os.mkdir(inline_dir)
        inl = store.make_model(inline_dir, np.random.default_rng(7), external=False)
        want = store.tensors(onnx_pass.sparsify(inl, output=self.path("want.onnx"),
                                                sparsity_level=0.5))[0]
        self.assertEqual(sorted(want), sorted(got_second))
        for name in want:
            np.testing.assert_array_equal(got_second[name], want[name])
        self.assertEqual(np.count_nonzero(got_second["fc1.weight"]),
                         got_second["fc1.weight"].size // 2)

    def test_fsync_same_bytes(self):
        src = self.path("m.onnx")
        onnx.save(self.model, src)
        outs = []
        for fsync in (False, True):
            out = self.path("out%d.onnx" % fsync)
            onnx_pass.run_passes(src, "sparsify", {"defaults": TWO_OF_FOUR}, output=out,
                                 fsync=fsync)
            with open(out, "rb") as f:
                outs.append(f.read())
        self.assertEqual(outs[0], outs[1])

    def test_same_as_cli(self):
        src, out = self.path("mlp.onnx"), self.path("cli.onnx")
        onnx.save(self.model, src)
        proc = subprocess.run([os.environ["ONNX_PASS"], "sparsify", src, "-o", out,
                               "--block", "1x4", "--zeros-per-block", "2", "--sparsity", "1"],
                              capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(onnx.load(out), onnx_pass.sparsify(self.model, **TWO_OF_FOUR))

    def test_steps_equal_sparsify(self):
        prepared = onnx_pass.prepare(self.model, **TWO_OF_FOUR)
        self.assertGreater(len(prepared.graph.node), len(self.model.graph.node))
        stepped = onnx_pass.step(prepared)
        squashed = onnx_pass.squash(stepped)
        self.assertEqual([n.op_type for n in squashed.graph.node],
                         [n.op_type for n in self.model.graph.node])
        self.check_sparse(squashed)
        self.assertEqual(onnx_pass.convert(stepped, format="coo"),
                         onnx_pass.sparsify(self.model, format="coo", **TWO_OF_FOUR))
        chained = onnx_pass.run_passes(self.model, ["prepare", "step", "squash"],
                                       config={"defaults": TWO_OF_FOUR})
        self.assertEqual(chained, squashed)

    def test_inspect(self):
        before = onnx_pass.inspect(self.model)
        self.assertIsInstance(before, dict)
        weights = {w["name"]: w for w in before["weights"]}
        self.assertEqual(set(weights), {"fc1.weight", "fc2.weight"})
        for name, w in weights.items():
            self.assertEqual(w["numel"], self.dense[name].size)
            self.assertEqual(w["nonzeros"], np.count_nonzero(self.dense[name]))
        after = onnx_pass.inspect(onnx_pass.sparsify(self.model, **TWO_OF_FOUR))
        got = tensors(onnx_pass.sparsify(self.model, format="dense", **TWO_OF_FOUR))
        for w in after["weights"]:
            self.assertEqual(w["nonzeros"], np.count_nonzero(got[w["name"]]))
            self.assertAlmostEqual(w["sparsity"], 0.5)
        src = self.path("mlp.onnx")
        onnx.save(self.model, src)
        self.assertEqual(onnx_pass.inspect(src), before)
        self.assertEqual(onnx_pass.inspect(self.model.SerializeToString()), before)

    def test_config(self):
        config = {"exclude": ["fc2*"], "defaults": {"sparsity_level": 0.25}}
        out = tensors(onnx_pass.sparsify(self.model, config=config, format="dense",
                                         sparsity_level=1.0, sparse_block_shape=[1, 4],
                                         zeros_per_block=2))
        assert_2of4(self, out["fc1.weight"])
        np.testing.assert_array_equal(out["fc2.weight"], self.dense["fc2.weight"])
        self.assertEqual(config["defaults"], {"sparsity_level": 0.25})  # caller's dict kept
        text = '{"defaults": {"sparsity_level": 1.0, "zeros_per_block": 2}}'
        a = onnx_pass.sparsify(self.model, config=text)
        cfg = self.path("config.json")
        with open(cfg, "w") as f:
            f.write(text)
        self.assertEqual(a, onnx_pass.sparsify(self.model, config=cfg))
        self.assertEqual(a, onnx_pass.sparsify(self.model, **TWO_OF_FOUR))
        dc = onnx_pass.default_config(self.model)
        self.assertEqual({e["tensor_fqn"] for e in dc["config"]}, {"fc1.weight", "fc2.weight"})

    def cli_error(self, model_path, *args):
        """The message the command line prints for the same failure, without prefixes."""
        proc = subprocess.run([os.environ["ONNX_PASS"]] + list(args), capture_output=True,
                              text=True)
        self.assertNotEqual(proc.returncode, 0)
        prefix = "onnx-pass: error: %s: " % model_path
        self.assertTrue(proc.stderr.startswith(prefix), proc.stderr)
        return proc.stderr[len(prefix):].rstrip("\n")

    def test_errors(self):
        garbage = self.path("garbage.onnx")
        with open(garbage, "wb") as f:
            f.write(b"\xff\xff\xff\xff\x0f\x01\x02")
        with self.assertRaises(onnx_pass.Error) as cm:
            onnx_pass.sparsify(b"\xff\xff\xff\xff\x0f\x01\x02")
        self.assertLess(cm.exception.code, 0)
        self.assertEqual(cm.exception.source, "model")
        self.assertEqual(cm.exception.message, self.cli_error(garbage, "inspect", garbage))
        self.assertEqual(str(cm.exception), cm.exception.message)

        src = self.path("mlp.onnx")
        onnx.save(self.model, src)
        with self.assertRaises(onnx_pass.Error) as cm:
            onnx_pass.sparsify(self.model, zeros_per_block=5)
        self.assertIn(ZEROS_MESSAGE, cm.exception.message)
        self.assertEqual(cm.exception.source, "config")
        self.assertEqual(cm.exception.message, self.cli_error(
            src, "sparsify", src, "-o", self.path("x.onnx"), "--zeros-per-block", "5"))
        with self.assertRaises(onnx_pass.Error) as cm:
            onnx_pass.inspect(self.path("no-such-model.onnx"))
        self.assertEqual(cm.exception.source, "input_file")
        with self.assertRaises(onnx_pass.Error) as cm:
            onnx_pass.run_passes(self.model, "prepare,nope")
        self.assertIn("'nope'", cm.exception.message)
        missing = self.path("missing.onnx")
        with self.assertRaises(onnx_pass.Error) as cm:
            onnx_pass.sparsify(missing, output=self.path("out.onnx"))
        self.assertIn(missing, cm.exception.message)
        self.assertFalse(os.path.exists(self.path("out.onnx")))
        with self.assertRaises(TypeError):
            onnx_pass.sparsify(42)

    def test_plugin(self):
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        model.doc_string = "model doc"
        model.graph.node[0].doc_string = "node doc"
        out = onnx_pass.run_passes(model, "strip-doc-strings,inspect",
                                   plugins=[os.environ["STRIP_DOC_PLUGIN"]], report=True)
        self.assertEqual(out[0].doc_string, "")
        self.assertEqual(out[0].graph.node[0].doc_string, "")
        self.assertIn("cleared 2 doc strings", out[1])
        with self.assertRaises(onnx_pass.Error):
            onnx_pass.run_passes(model, "strip-doc-strings")

    def test_threads(self):
        data = self.model.SerializeToString()
        want = onnx_pass.sparsify(data, format="coo", **TWO_OF_FOUR)
        results = []

        def work():
            for _ in range(3):
                results.append(onnx_pass.sparsify(data, format="coo", **TWO_OF_FOUR) == want)
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [True] * 12)

    def test_library_lookup(self):
        code = "import onnx_pass; print(onnx_pass.library_path())"
        env = dict(os.environ, ONNX_PASS_LIBRARY=self.path("nowhere/libonnxpass.so"))
        proc = subprocess.run([sys.executable, "-c", "import onnx_pass; onnx_pass.version()"],
                              env=env, capture_output=True, text=True, cwd=self.tmp.name)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("onnx_pass.Error", proc.stderr)
        self.assertIn(self.path("nowhere/libonnxpass.so"), proc.stderr)
        del env["ONNX_PASS_LIBRARY"]
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, cwd=self.tmp.name)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        package = os.path.dirname(os.path.abspath(onnx_pass.__file__))
        top = os.path.dirname(os.path.dirname(package))
        found = proc.stdout.strip()
        self.assertTrue(found.startswith(os.path.join(top, "build")), found)
        self.assertTrue(found.endswith("/libonnxpass.so"), found)


    @unittest.skipUnless(os.environ.get("ORT_RUN"), "ONNX Runtime not found at configure time")
    def test_compare(self):
        rng = np.random.default_rng(0)
        batches = [{"x": rng.standard_normal((n, 16)).astype(np.float32)} for n in (2, 2)]
        # identical models, inputs as dicts (written to a temporary .npz folder)
        report = onnx_pass.compare(self.model, self.model.SerializeToString(), batches)
        self.assertEqual(report["batches"], 2)
        self.assertEqual(report["reference"], "<ModelProto>")
        (y,) = report["outputs"]
        self.assertEqual((y["name"], y["elements"], y["max_abs_error"], y["cosine_similarity"],
                          y["top1_agreement"], y["top1_positions"]), ("y", 32, 0, 1, 1, 4))
        # a 2:4 candidate against numpy's forward pass of both models
        sparse = onnx_pass.sparsify(self.model, format="dense", **TWO_OF_FOUR)
        report = onnx_pass.compare(self.model, sparse, iter(batches))
        (y,) = report["outputs"]

        def forward(model, x):
            t = tensors(model)
            w1, b1, w2, b2 = (t[k].astype(np.float64) for k in ("fc1.weight", "fc1.bias",
                                                                  "fc2.weight", "fc2.bias"))
            return np.maximum(x @ w1.T + b1, 0) @ w2.T + b2

        ref = np.concatenate([forward(self.model, b["x"]) for b in batches])
        cand = np.concatenate([forward(sparse, b["x"]) for b in batches])
        max_abs = np.abs(ref - cand).max()
        self.assertAlmostEqual(y["max_abs_error"], max_abs, delta=1e-4 * max_abs)
        self.assertAlmostEqual(y["max_rel_error"], max_abs / np.abs(ref).max(), delta=1e-4)
        cos = (ref * cand).sum() / np.sqrt((ref * ref).sum() * (cand * cand).sum())
        self.assertAlmostEqual(y["cosine_similarity"], cos, delta=1e-5)
        self.assertAlmostEqual(y["top1_agreement"],
                               (ref.argmax(-1) == cand.argmax(-1)).mean(), delta=1e-9)
        # the same through a path, as text
        path = self.path("ref.onnx")
        onnx.save(self.model, path)
        text = onnx_pass.compare(path, path, batches[0], as_json=False)
        self.assertIn("reference: " + path, text)
        # errors: a missing input names the batch file and the input
        with self.assertRaises(onnx_pass.Error) as cm:
            onnx_pass.compare(path, path, [{"z": batches[0]["x"]}])
        self.assertIn("batch_000000.npz: input 'z'", cm.exception.message)
        with self.assertRaises(TypeError):
            onnx_pass.compare(path, path, [{"x": np.array(["s"])}])

    @unittest.skipUnless(testutil.have_ort(), testutil.NO_ORT)
    def test_sparsegpt_calibration(self):
        rng = np.random.default_rng(1)
        batches = [{"x": rng.standard_normal((2, 16)).astype(np.float32)} for _ in range(12)]
        folder = self.path("calib")
        os.makedirs(folder)
        for i, b in enumerate(batches):
            np.savez(os.path.join(folder, "b%02d.npz" % i), **b)
        # an iterable of dicts and the same batches as a folder give the same model
        a = onnx_pass.sparsify(self.model, sparsifier="sparsegpt", format="dense",
                               calibration=iter(batches), sparsity_level=0.5,
                               sparse_block_shape=(1, 1))
        b = onnx_pass.sparsify(self.model, sparsifier="sparsegpt", format="dense",
                               calibration=folder, sparsity_level=0.5, sparse_block_shape=(1, 1))
        ta, tb = tensors(a), tensors(b)
        for name in ("fc1.weight", "fc2.weight"):
            np.testing.assert_array_equal(ta[name], tb[name])
            self.assertAlmostEqual((ta[name] == 0).mean(), 0.5, delta=0.01)
            # kept weights were reconstructed, not only masked
            kept = ta[name] != 0
            self.assertFalse(np.array_equal(ta[name][kept], self.dense[name][kept]))
        # SparseGPT's reconstruction beats magnitude pruning on the calibration data
        mag = onnx_pass.sparsify(self.model, format="dense", sparsity_level=0.5,
                                 sparse_block_shape=(1, 1), zeros_per_block=1)
        err = {k: onnx_pass.compare(self.model, m, batches)["outputs"][0]["max_abs_error"]
               for k, m in (("sparsegpt", a), ("magnitude", mag))}
        self.assertLess(err["sparsegpt"], err["magnitude"])
        # step through prepare with allocate / calibration keywords
        prepared = onnx_pass.prepare(self.model, sparsifier="wanda", allocate="sensitivity",
                                     sparsity_level=0.6, sparse_block_shape=(1, 1))
        stepped = onnx_pass.step(prepared, calibration=batches)
        state = json.loads({p.key: p.value for p in stepped.metadata_props}["onnx_pass.sparsity"])
        self.assertEqual(len([g["allocated_sparsity_level"] for g in state["groups"]]), 2)
        with self.assertRaises(onnx_pass.Error) as cm:
            onnx_pass.step(prepared)
        self.assertIn("--calibration", cm.exception.message)

    def test_calibration_path(self):
        x = np.arange(12, dtype=">f4").reshape(3, 4).T  # big-endian, Fortran order
        with onnx_pass._calibration_path([{"x": x, "n": np.int64(3)}, {"x": x[:1]}]) as folder:
            names = sorted(os.listdir(folder))
            self.assertEqual(names, ["batch_000000.npz", "batch_000001.npz"])
            with np.load(os.path.join(folder, names[0])) as f:
                np.testing.assert_array_equal(f["x"], x)
                self.assertEqual(f["x"].dtype, np.dtype("<f4"))
                self.assertTrue(f["x"].flags.c_contiguous)
                self.assertEqual(int(f["n"]), 3)
        self.assertFalse(os.path.exists(folder))
        with onnx_pass._calibration_path(self.tmp.name) as same:
            self.assertEqual(same, self.tmp.name)
        with self.assertRaises(ValueError):
            with onnx_pass._calibration_path([]):
                pass


if __name__ == "__main__":
    testutil.main(lambda runner: runner.cases(PythonModuleTest))
