#!/usr/bin/python3
"""Seed corpora for the libFuzzer targets, generated from the test models.

Usage: /usr/bin/python3 fuzz/make_corpus.py OUTDIR ONNX_PASS

Writes OUTDIR/model (serialised models: the small generated test models and
what prepare/step/convert make of them), OUTDIR/config (config JSON, with and
without options.state), OUTDIR/external (descriptor texts, see
fuzz/fuzz-external.c) and OUTDIR/calib (.npz and TensorProto files behind a
form byte, see fuzz/fuzz-calib.c). ONNX_PASS is the command line tool used to derive the
prepared models and the exported state.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_MODELS = os.path.join(HERE, "..", "tests", "models", "make_models.py")
SMALL_MODELS = ["mlp_gemm", "constants_if", "edge_cases", "unknown_fields"]
# Larger files slow every fuzzing iteration down; the small ones cover the same code.
MAX_SEED_BYTES = 64 * 1024

CONFIGS = [
    {},
    {"sparsifier": "weight_norm",
     "defaults": {"sparsity_level": 0.5, "sparse_block_shape": [1, 4], "zeros_per_block": 4,
                  "norm": 2},
     "config": [{"tensor_fqn": "layer*.weight", "sparsity_level": 0.8},
                {"tensor_fqn": "w1", "sparse_block_shape": [1, 1], "zeros_per_block": 1}],
     "module_types": ["linear", "conv"], "exclude": ["*embed*"]},
    {"sparsifier": "nearly_diagonal", "defaults": {"nearliness": 3}},
    {"defaults": {"sparsity_level": 1, "sparse_block_shape": [1, 4], "zeros_per_block": 2},
     "options": {"format": "auto", "keep_params": ["sparsity_level"], "json": True}},
    {"defaults": {"sparsity_level": 0.9, "conv_view": "ohwi"}, "strict": False,
     "config": [{"tensor_fqn": "w[01]"}, {"tensor_fqn": "nothing?"}],
     "schedule": {"type": "cubic", "init_sl": 0.0, "init_t": 0, "delta_t": 1, "total_t": 4,
                  "initially_zero": True}},
    {"schedule": {"type": "linear", "total_t": 3}, "options": {"sparsity_level": 0.25,
                                                                "freeze": False}},
    {"config": None, "module_types": ["linear"], "exclude": ["w0"]},
]
BROKEN_CONFIGS = [
    '{"defaults": {"zeros_per_block": 9, "sparse_block_shape": [2, 2]}}',
    '{"sparsifier": "nearly_diagonal", "defaults": {"nearliness": 2}}',
    '{"defaults": {"sparsity_level": 1.5}}',
    '{"config": [{"tensor_fqn": 5}]}',
    '{"defaults": {"sparse_block_shape": [0, 4]}',
    '[1, 2, {"a": "\\u00e9"}]',
]

EXTERNAL = [
    "location=w.data\noffset=0\nlength=256\n",
    "location=w.data\noffset=256\nlength=256\ntensor\nlocation=sub/x.data\nlength=256\n",
    "location=inlink.data\noffset=64\nlength=256\nchecksum=abc\n",
    "location=dirlink/x.data\noffset=0\nlength=256\n",
    "location=link.data\nlength=256\n",
    "location=../outside.data\nlength=256\n",
    "location=/etc/hostname\n",
    "location=missing.data\n",
    "location=w.data\noffset=4000\nlength=256\n",
    "location=w.data\noffset=18446744073709551615\nlength=2\n",
    "location=w.data\noffset=1e3\n",
    "location=adir\n",
    "location=empty.data\ndims=0,8\n",
    "location=w.data\nlength=512\ndims=8,8\ndtype=11\n",
    "location=w.data\nlength=128\ndims=8,8\ndtype=10\ntensor\nlocation=w.data\nlength=128\ndtype=16\n",
    "location=w.data\nlength=256\ndims=-1,-64\n",
    "location=w.data\nlength=256\ndims=4611686018427387904,4\n",
    "offset=0\n",
    "location=\n",
    "location=w.data\nlocation=sub/x.data\nlength=256\n",
    "inline=1\ntensor\nlocation=w.data\nlength=256\n",
]


def run(cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)


def write(path, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as f:
        f.write(data)


def model_seeds(onnx_pass, work, outdir):
    subprocess.run([sys.executable, MAKE_MODELS, work] + SMALL_MODELS, check=True,
                   stdout=subprocess.DEVNULL)
    seeds = []
    for name in SMALL_MODELS:
        src = os.path.join(work, name + ".onnx")
        seeds.append(src)
        out = {tag: os.path.join(work, "%s.%s.onnx" % (name, tag))
               for tag in ("prepare", "step", "convert", "squash")}
        for tag, cmd, model in (("prepare", "prepare", src), ("step", "step", out["prepare"]),
                                ("convert", "convert", out["step"]),
                                ("squash", "squash", out["step"])):
            if not os.path.exists(model):
                continue
            extra = ["--format", "coo"] if cmd == "convert" else []
            if run([onnx_pass, cmd, model, "--sparsity", "0.5", "-o", out[tag]] + extra).returncode == 0:
                seeds.append(out[tag])
    for src in seeds:
        if os.path.getsize(src) <= MAX_SEED_BYTES:
            shutil.copy(src, os.path.join(outdir, os.path.basename(src)))
    return seeds


def config_seeds(onnx_pass, work, outdir):
    texts = [json.dumps(c) for c in CONFIGS] + BROKEN_CONFIGS + state_seeds(onnx_pass, work)
    state = run([onnx_pass, "state", "export", os.path.join(work, "mlp_gemm.step.onnx")])
    if state.returncode == 0 and state.stdout:
        saved = json.loads(state.stdout)
        texts.append(json.dumps({"options": {"state": saved, "strict": False}}))
        texts.append(json.dumps({"options": {"state": saved}}))
    for i, text in enumerate(texts):
        write(os.path.join(outdir, "config-%02d.json" % i), text)


def state_seeds(onnx_pass, work):
    """The state prepare stores for fuzz_model_new(2) (fuzz/common.c): the same
    graph built here, prepared by the tool, its metadata taken out."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    import onnx

    ws = [numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(8, 8) - 11, n)
          for n in ("w0", "w1")]
    nodes = [helper.make_node("Gemm", ["x", "w0"], ["h1"], name="/layer0/Gemm", transB=1),
             helper.make_node("MatMul", ["h1", "w1"], ["h2"], name="/layer1/MatMul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, None)],
                              [helper.make_tensor_value_info("h2", 1, None)], ws)
    src, dst = os.path.join(work, "small.onnx"), os.path.join(work, "small.prep.onnx")
    onnx.save(helper.make_model(graph), src)
    texts = []
    for args in ([], ["--sparsifier", "nearly_diagonal", "--nearliness", "3"]):
        if run([onnx_pass, "prepare", src, "-o", dst] + args).returncode != 0:
            continue
        for cmd in ([], ["step"]):
            if cmd and run([onnx_pass, "step", dst, "-o", dst]).returncode != 0:
                continue
            for p in onnx.load(dst).metadata_props:
                if p.key == "onnx_pass.sparsity":
                    texts.append(p.value)
    return texts


def calib_seeds(outdir):
    """fuzz-calib: a form byte (even: .npz, odd: input_0.pb), then the file."""
    import io
    import zipfile
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    x = np.arange(24, dtype=np.float32).reshape(3, 8)
    i = np.array([1, 2], np.int64)
    for k, saver in enumerate((np.savez, np.savez_compressed)):
        buf = io.BytesIO()
        saver(buf, x=x, i=i)
        write(os.path.join(outdir, "npz-%d" % k), b"\0" + buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, arr, version in (("x", x, (2, 0)), ("i", i, (3, 0))):
            b = io.BytesIO()
            np.lib.format.write_array(b, arr, version=version)
            z.writestr(name + ".npy", b.getvalue())
    write(os.path.join(outdir, "npz-versions"), b"\0" + buf.getvalue())
    write(os.path.join(outdir, "pb-raw"), b"\1" + numpy_helper.from_array(x, "x").SerializeToString())
    typed = helper.make_tensor("i", TensorProto.INT64, [2], [1, 2])
    write(os.path.join(outdir, "pb-typed"), b"\1" + typed.SerializeToString())


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    outdir, onnx_pass = argv[1], argv[2]
    dirs = {k: os.path.join(outdir, k) for k in ("model", "config", "external", "calib")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    work = tempfile.mkdtemp(prefix="onnx-pass-corpus-")
    try:
        model_seeds(onnx_pass, work, dirs["model"])
        config_seeds(onnx_pass, work, dirs["config"])
    finally:
        shutil.rmtree(work)
    for i, text in enumerate(EXTERNAL):
        write(os.path.join(dirs["external"], "external-%02d.txt" % i), text)
    calib_seeds(dirs["calib"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
