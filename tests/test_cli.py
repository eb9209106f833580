#!/usr/bin/python3
"""Behaviour of the onnx-pass command line (SPEC 5, 7, 9).

--help, --version, --list; `config` against the generated models' manifest;
`inspect --json` before and after prepare/step/convert; every failure gives
the documented exit code, one `onnx-pass: error: ` line on stderr, no output
or temp file, and leaves the input untouched; `-o` may equal the input.

Run from meson (test 'cli'); needs ONNX_PASS and SRCDIR in the environment.
Prints "N passed, M failed".
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "models"))

import testutil  # noqa: E402
testutil.require("numpy", "onnx", "torch")
import onnx  # noqa: E402
import make_models  # noqa: E402

ONNX_PASS = testutil.executable("ONNX_PASS")
SRCDIR = os.environ.get("SRCDIR", os.path.dirname(HERE))
PASSES = ["config", "inspect", "prepare", "step", "squash", "convert", "sparsify",
    "state-export", "state-load"]
TORCH_ZEROS_MSG = ("Number of zeros per block cannot be more than the total number of "
    "elements in that block.")


def run(args, cwd=None):
    return subprocess.run([ONNX_PASS] + list(args), cwd=cwd, capture_output=True, text=True,
        timeout=600)


def run_ok(args, cwd=None):
    p = run(args, cwd)
    if p.returncode != 0:
        raise AssertionError("onnx-pass %s: exit %d\n%s" % (" ".join(args), p.returncode,
            p.stderr))
    if p.stderr:
        raise AssertionError("onnx-pass %s: stderr on success: %r" % (" ".join(args), p.stderr))
    return p


def snapshot(folder):
    """name -> (sha256, size, mtime_ns) of every entry of folder."""
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        st = os.lstat(path)
        digest = ""
        if os.path.isfile(path):
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        out[name] = (digest, st.st_size, st.st_mtime_ns)
    return out


def check_one_error_line(p, code, what):
    if p.returncode != code:
        raise AssertionError("%s: exit %d, expected %d (stderr %r)" % (what, p.returncode, code,
            p.stderr))
    lines = p.stderr.splitlines()
    if len(lines) != 1 or not lines[0].startswith("onnx-pass: error: "):
        raise AssertionError("%s: stderr is not one 'onnx-pass: error: ' line: %r"
            % (what, p.stderr))
    return lines[0]


class Workspace:
    """in/ holds the inputs, out/ receives outputs, cfg/ holds config files."""

    def __init__(self, root, models_dir, models):
        self.root = tempfile.mkdtemp(prefix="ws-", dir=root)
        self.inp = os.path.join(self.root, "in")
        self.out = os.path.join(self.root, "out")
        self.cfg = os.path.join(self.root, "cfg")
        for d in (self.inp, self.out, self.cfg):
            os.mkdir(d)
        for m in models:
            shutil.copy2(os.path.join(models_dir, m), os.path.join(self.inp, m))
            if os.path.exists(os.path.join(models_dir, m + ".data")):
                shutil.copy2(os.path.join(models_dir, m + ".data"), self.inp)

    def model(self, name):
        return os.path.join(self.inp, name)

    def config(self, name, text):
        path = os.path.join(self.cfg, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def fails(self, args, code, needles=(), what=None):
        """Run a command that must fail cleanly; returns its error line."""
        what = what or " ".join(os.path.basename(a) for a in args)
        before_in, before_out = snapshot(self.inp), snapshot(self.out)
        p = run(args, cwd=self.root)
        line = check_one_error_line(p, code, what)
        for n in needles:
            if n not in line:
                raise AssertionError("%s: %r does not mention %r" % (what, line, n))
        if snapshot(self.out) != before_out:
            raise AssertionError("%s: output folder changed: %r" % (what, os.listdir(self.out)))
        if snapshot(self.inp) != before_in:
            raise AssertionError("%s: input folder changed" % what)
        return line


# ---------------------------------------------------------------- tests

def test_help(ctx):
    p = run_ok(["--help"])
    if "Usage" not in p.stdout:
        raise AssertionError("--help prints no usage")
    for cmd in ["config", "inspect", "prepare", "step", "squash", "convert", "sparsify",
            "state export", "state load", "--list", "--version", "--config", "--sparsity",
            "--block", "--zeros-per-block", "--external-data"]:
        if cmd not in p.stdout:
            raise AssertionError("--help does not mention %r" % cmd)


def test_version(ctx):
    p = run_ok(["--version"])
    with open(os.path.join(SRCDIR, "meson.build")) as f:
        version = re.search(r"version:\s*'([^']+)'", f.read()).group(1)
    if p.stdout.strip() != "onnx-pass " + version:
        raise AssertionError("--version printed %r, project version is %s" % (p.stdout, version))


def test_list(ctx):
    p = run_ok(["--list"])
    names = [line.split()[0] for line in p.stdout.splitlines() if line.strip()]
    for name in PASSES:
        if name not in names:
            raise AssertionError("--list lacks %s: %r" % (name, names))
    for line in p.stdout.splitlines():
        if len(line.split()) < 2:
            raise AssertionError("--list line without a summary: %r" % line)


def check_config_output(model_file, entry, out):
    doc = json.loads(out)
    got = {e["tensor_fqn"]: e for e in doc["config"]}
    want = {w["name"]: w for w in entry["weights"]}
    if sorted(got) != sorted(want) or len(doc["config"]) != len(want):
        raise AssertionError("%s: config lists %r, expected %r" % (model_file, sorted(got),
            sorted(want)))
    for name, w in want.items():
        e = got[name]
        checks = [("alias", e.get("alias"), w["alias"]), ("op", e.get("op"), w["op"]),
            ("view", e.get("view"), w["view"]),
            ("view_shape", e.get("view_shape"), [w["rows"], w["cols"]]),
            ("shape", e.get("shape"), w["shape"]), ("dtype", e.get("dtype"), w["dtype"]),
            ("module_type", e.get("module_type"), "conv" if w["op"] == "Conv" else "linear")]
        for key, g, x in checks:
            if g != x:
                raise AssertionError("%s %s: %s is %r, expected %r" % (model_file, name, key, g, x))
    skipped = {s["tensor_fqn"]: s for s in doc.get("skipped", [])}
    if sorted(skipped) != sorted(s["name"] for s in entry["skipped"]):
        raise AssertionError("%s: skipped %r, expected %r" % (model_file, sorted(skipped),
            [s["name"] for s in entry["skipped"]]))
    for s in entry["skipped"]:
        if skipped[s["name"]].get("op") != s["op"] or not skipped[s["name"]].get("reason"):
            raise AssertionError("%s: skipped %s: %r" % (model_file, s["name"],
                skipped[s["name"]]))
    if doc.get("sparsifier") != "weight_norm" or not isinstance(doc.get("defaults"), dict):
        raise AssertionError("%s: no sparsifier/defaults: %r" % (model_file, doc))


def test_config_matches_manifest(ctx):
    for model_file, entry in sorted(ctx["manifest"]["models"].items()):
        p = run_ok(["config", os.path.join(ctx["models"], model_file)])
        check_config_output(model_file, entry, p.stdout)


def test_config_filters(ctx):
    """module_types and exclude filter the listing (make_config_from_model)."""
    ws = Workspace(ctx["tmp"], ctx["models"], ["edge_cases.onnx"])
    entry = ctx["manifest"]["models"]["edge_cases.onnx"]
    cfg = ws.config("c.json", json.dumps({"module_types": ["conv"], "exclude": ["*3d*"]}))
    doc = json.loads(run_ok(["config", ws.model("edge_cases.onnx"), "--config", cfg]).stdout)
    got = sorted(e["tensor_fqn"] for e in doc["config"])
    want = sorted(w["name"] for w in entry["weights"] if w["op"] == "Conv"
        and "3d" not in w["name"] and "3d" not in (w["alias"] or ""))
    if got != want or not got:
        raise AssertionError("filtered config %r, expected %r" % (got, want))


def check_inspect(what, out, entry, prepared):
    doc = json.loads(out)
    names = sorted(w["name"] for w in doc["weights"])
    want = sorted(w["name"] for w in entry["weights"])
    if names != want:
        raise AssertionError("%s: inspect lists %r, expected %r" % (what, names, want))
    for w in doc["weights"]:
        numel = 1
        for d in w["shape"]:
            numel *= d
        if w["numel"] != numel or not 0 <= w["nonzeros"] <= numel:
            raise AssertionError("%s %s: numel %r nonzeros %r for shape %r" % (what, w["name"],
                w["numel"], w["nonzeros"], w["shape"]))
        if numel and abs(w["sparsity"] - (1 - w["nonzeros"] / numel)) > 1e-6:
            raise AssertionError("%s %s: sparsity %r for %d/%d" % (what, w["name"],
                w["sparsity"], w["nonzeros"], numel))
    totals = doc["totals"]
    if totals["weights"] != len(want) or totals["numel"] != sum(w["numel"] for w in doc["weights"]):
        raise AssertionError("%s: totals %r" % (what, totals))
    if prepared:
        groups = sorted(g["tensor_fqn"] for g in doc["state"]["groups"])
        if groups != want:
            raise AssertionError("%s: groups %r, expected %r" % (what, groups, want))
    elif doc.get("state"):
        raise AssertionError("%s: state on an unprepared model" % what)
    return doc


def test_inspect_pipeline(ctx):
    """inspect --json is valid before and after prepare, step and convert."""
    for model_file, entry in sorted(ctx["manifest"]["models"].items()):
        ws = Workspace(ctx["tmp"], ctx["models"], [model_file])
        src = ws.model(model_file)
        steps = [("prepare", src, "prepared.onnx", True), ("step", "prepared.onnx", "stepped.onnx",
            True), ("convert", "stepped.onnx", "converted.onnx", False)]
        doc = check_inspect(model_file, run_ok(["inspect", "--json", src]).stdout, entry, False)
        if doc["totals"]["nonzeros"] != doc["totals"]["numel"]:
            raise AssertionError("%s: generated weights already hold zeros" % model_file)
        docs = {}
        for cmd, inp, out, prepared in steps:
            inp = os.path.join(ws.out, inp) if inp != src else src
            out = os.path.join(ws.out, out)
            run_ok([cmd, inp, "-o", out])
            onnx.load(out)
            what = "%s after %s" % (model_file, cmd)
            docs[cmd] = check_inspect(what, run_ok(["inspect", "--json", out]).stdout, entry,
                prepared)
        # prepare changes no weight; step prunes; convert keeps the masked values
        if docs["prepare"]["totals"]["nonzeros"] != doc["totals"]["numel"]:
            raise AssertionError("%s: prepare changed nonzeros" % model_file)
        if docs["step"]["totals"]["nonzeros"] >= doc["totals"]["numel"]:
            raise AssertionError("%s: step pruned nothing" % model_file)
        if docs["convert"]["totals"]["nonzeros"] != docs["step"]["totals"]["nonzeros"]:
            raise AssertionError("%s: convert changed nonzeros %d -> %d" % (model_file,
                docs["step"]["totals"]["nonzeros"], docs["convert"]["totals"]["nonzeros"]))
        outputs = ["converted.onnx", "prepared.onnx", "stepped.onnx"]
        if "external_data" in entry:
            outputs += [f + ".data" for f in outputs]
        if sorted(os.listdir(ws.out)) != sorted(outputs):
            raise AssertionError("%s: output folder holds %r" % (model_file,
                sorted(os.listdir(ws.out))))
        shutil.rmtree(ws.root)


def config_error_cases(ws, model):
    bad_json = '{"defaults": {"sparsity_level": 0.5,\n  "x": }\n}\n'
    try:
        json.loads(bad_json)
        raise AssertionError("bad_json parses")
    except json.JSONDecodeError as e:
        line_col = (e.lineno, e.colno)
    return [
        ("malformed JSON", ["--config", ws.config("bad.json", bad_json)],
            ["line %d" % line_col[0], "column %d" % line_col[1], "bad.json"]),
        ("zeros_per_block > block", ["--config", ws.config("z.json", json.dumps(
            {"defaults": {"sparse_block_shape": [1, 4], "zeros_per_block": 5}}))],
            [TORCH_ZEROS_MSG]),
        ("zeros_per_block > block (flag)", ["--block", "2x2", "--zeros-per-block", "5"],
            [TORCH_ZEROS_MSG]),
        ("zeros_per_block > block (entry)", ["--config", ws.config("ze.json", json.dumps(
            {"config": [{"tensor_fqn": "fc1.weight", "sparse_block_shape": [1, 2],
                "zeros_per_block": 3}]}))], [TORCH_ZEROS_MSG]),
        ("negative zeros_per_block", ["--zeros-per-block", "-1"], ["zeros"]),
        ("even nearliness", ["--sparsifier", "nearly_diagonal", "--nearliness", "2"],
            ["nearliness"]),
        # fc3.weight is [10, 24]: nearliness // 2 = 10 >= min(rows, cols)
        ("nearliness too large", ["--sparsifier", "nearly_diagonal", "--nearliness", "21"],
            ["nearliness", "fc3.weight"]),
        ("block dim 0", ["--block", "0x4"], ["block"]),
        ("block dim 0 (config)", ["--config", ws.config("b.json", json.dumps(
            {"defaults": {"sparse_block_shape": [1, 0]}}))], ["block"]),
        ("sparsity 1.5", ["--sparsity", "1.5"], ["1.5"]),
        ("sparsity -0.1", ["--sparsity", "-0.1"], ["-0.1"]),
        ("unknown sparsifier", ["--sparsifier", "magnitude"], ["magnitude"]),
        ("entry matching nothing", ["--config", ws.config("m.json", json.dumps(
            {"config": [{"tensor_fqn": "fc1.weight"}, {"tensor_fqn": "nothing.*"}]}))],
            ["nothing.*"]),
        ("missing config file", ["--config", os.path.join(ws.cfg, "absent.json")],
            ["absent.json"]),
    ]


def test_config_errors(ctx):
    ws = Workspace(ctx["tmp"], ctx["models"], ["mlp_gemm.onnx"])
    model = ws.model("mlp_gemm.onnx")
    for what, extra, needles in config_error_cases(ws, model):
        for cmd in ("prepare", "sparsify"):
            out = os.path.join(ws.out, "out.onnx")
            ws.fails([cmd, model, "-o", out] + extra, 2, needles, "%s: %s" % (cmd, what))
            # -o equal to the input: the input is still untouched
            ws.fails([cmd, model, "-o", model] + extra, 2, needles,
                "%s -o input: %s" % (cmd, what))


def test_strict_false(ctx):
    ws = Workspace(ctx["tmp"], ctx["models"], ["mlp_gemm.onnx"])
    cfg = ws.config("m.json", json.dumps({"strict": False, "config": [
        {"tensor_fqn": "fc1.weight"}, {"tensor_fqn": "nothing.*"}]}))
    out = os.path.join(ws.out, "out.onnx")
    run_ok(["prepare", ws.model("mlp_gemm.onnx"), "--config", cfg, "-o", out])
    doc = json.loads(run_ok(["inspect", "--json", out]).stdout)
    groups = [g["tensor_fqn"] for g in doc["state"]["groups"]]
    if groups != ["fc1.weight"]:
        raise AssertionError("strict=false prepared %r" % groups)


def test_model_errors(ctx):
    ws = Workspace(ctx["tmp"], ctx["models"], ["mlp_gemm.onnx"])
    model = ws.model("mlp_gemm.onnx")
    out = os.path.join(ws.out, "out.onnx")
    with open(model, "rb") as f:
        data = f.read()
    trunc = os.path.join(ws.inp, "truncated.onnx")
    with open(trunc, "wb") as f:
        f.write(data[:len(data) // 2])
    missing = os.path.join(ws.inp, "missing.onnx")
    prepared = os.path.join(ws.inp, "prepared.onnx")
    run_ok(["prepare", model, "-o", prepared])
    cases = [
        (["prepare", missing, "-o", out], ["missing.onnx"]),
        (["inspect", missing], ["missing.onnx"]),
        (["prepare", trunc, "-o", out], ["truncated.onnx"]),
        (["config", trunc], ["truncated.onnx"]),
        (["step", model, "-o", out], ["mlp_gemm.onnx", "prepare"]),
        (["prepare", prepared, "-o", out], ["prepared.onnx"]),
        (["step", model, "-o", model], ["mlp_gemm.onnx"]),
        (["prepare", prepared, "-o", prepared], ["prepared.onnx"]),
        (["prepare", model, "-o", os.path.join(ws.out, "no", "such", "out.onnx")],
            ["out.onnx"]),
    ]
    for args, needles in cases:
        ws.fails(args, 1, needles)


def test_usage_errors(ctx):
    ws = Workspace(ctx["tmp"], ctx["models"], ["mlp_gemm.onnx"])
    model = ws.model("mlp_gemm.onnx")
    cases = [
        (["prepare", model], ["-o"]),
        (["config"], ["model"]),
        (["prepare", model, "-o", os.path.join(ws.out, "x.onnx"), "--sparsity", "abc"], ["abc"]),
        (["prepare", model, "-o", os.path.join(ws.out, "x.onnx"), "--no-such-option"],
            ["no-such-option"]),
        (["no-such-command", model], ["no-such-command"]),
        (["state", "frob", model], ["state"]),
    ]
    errors = []
    for args, needles in cases:
        try:
            ws.fails(args, 2, needles)
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        raise AssertionError("\n".join(errors))


def test_output_equals_input(ctx):
    ws = Workspace(ctx["tmp"], ctx["models"], ["mlp_gemm.onnx", "external_data.onnx"])
    model = ws.model("mlp_gemm.onnx")
    with open(model, "rb") as f:
        before = f.read()
    run_ok(["prepare", model, "-o", model])
    with open(model, "rb") as f:
        after = f.read()
    if after == before:
        raise AssertionError("prepare -o input did not replace the file")
    onnx.checker.check_model(onnx.load(model))
    run_ok(["step", model, "-o", model])
    run_ok(["convert", model, "-o", model])
    onnx.checker.check_model(onnx.load(model))
    doc = json.loads(run_ok(["inspect", "--json", model]).stdout)
    if doc["totals"]["nonzeros"] >= doc["totals"]["numel"]:
        raise AssertionError("the replaced model is not sparse")
    if sorted(os.listdir(ws.inp)) != ["external_data.onnx", "external_data.onnx.data",
            "mlp_gemm.onnx"]:
        raise AssertionError("stray files: %r" % os.listdir(ws.inp))
    # with external data: both files are replaced and consistent
    ext = ws.model("external_data.onnx")
    run_ok(["sparsify", ext, "-o", ext])
    loaded = onnx.load(ext)
    onnx.checker.check_model(loaded)
    doc = json.loads(run_ok(["inspect", "--json", ext]).stdout)
    if doc["totals"]["nonzeros"] >= doc["totals"]["numel"]:
        raise AssertionError("the replaced external-data model is not sparse")
    # the new side file has a fresh name; the old one is removed after the rename
    if sorted(os.listdir(ws.inp)) != ["external_data.onnx", "external_data.onnx.1.data",
            "mlp_gemm.onnx"]:
        raise AssertionError("stray files: %r" % os.listdir(ws.inp))


def test_external_data_flag(ctx):
    ws = Workspace(ctx["tmp"], ctx["models"], ["mlp_gemm.onnx"])
    out = os.path.join(ws.out, "ext.onnx")
    run_ok(["prepare", ws.model("mlp_gemm.onnx"), "--external-data", "-o", out])
    if sorted(os.listdir(ws.out)) != ["ext.onnx", "ext.onnx.data"]:
        raise AssertionError("--external-data wrote %r" % os.listdir(ws.out))
    m = onnx.load(out, load_external_data=False)
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer):
        raise AssertionError("no external tensor in the output")
    onnx.checker.check_model(onnx.load(out))


def fsync_calls(cmd):
    """The fsync calls a run of onnx-pass makes (traced with strace)."""
    # LeakSanitizer cannot run under ptrace (ASan build); the same paths are
    # leak-checked by the other tests
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    out = subprocess.run(["strace", "-f", "-e", "trace=fsync,fdatasync", "-o", "/dev/stderr",
                          ONNX_PASS] + cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise AssertionError("%r failed: %s" % (cmd, out.stderr))
    return [l for l in out.stderr.splitlines() if "fsync(" in l or "fdatasync(" in l]


def remove_outputs(folder):
    """Empty folder (a save over an existing external-data pair picks a
    fresh side-file name)."""
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))


def test_fsync(ctx):
    """--fsync makes the output durable (file and folder fsynced) and changes no byte."""
    ws = Workspace(ctx["tmp"], ctx["models"], ["mlp_gemm.onnx"])
    for extra, files in (([], 1), (["--external-data"], 2)):
        outs = []
        for sync in (False, True):
            out = os.path.join(ws.out, "s.onnx")
            remove_outputs(ws.out)
            calls = fsync_calls(["sparsify", ws.model("mlp_gemm.onnx"), "-o", out] + extra +
                                (["--fsync"] if sync else []))
            # each file, then the folder after the rename
            if len(calls) != (files + 1 if sync else 0):
                raise AssertionError("%s: fsync calls %r" % (extra + ["--fsync"] * sync, calls))
            outs.append([open(p, "rb").read() for p in (out, out + ".data")[:files]])
        if outs[0] != outs[1]:
            raise AssertionError("--fsync changed the output")


def test_sparsify_equals_passes(ctx):
    """sparsify (one state, masks applied in step) writes the same bytes as
    prepare, step and convert run one by one."""
    names = sorted(ctx["manifest"]["models"])
    ws = Workspace(ctx["tmp"], ctx["models"], names)
    configs = [["--sparsity", "0.5", "--block", "1x4"],
               ["--sparsity", "1", "--block", "1x4", "--zeros-per-block", "2", "--format", "coo"],
               ["--sparsity", "0.9", "--block", "1x1", "--format", "ort-sparse"],
               ["--sparsity", "0.6", "--block", "2x2", "--norm", "1", "--format", "dense"],
               ["--sparsifier", "nearly_diagonal", "--nearliness", "3"],
               ["--sparsity", "0.7", "--freeze"]]
    for name in names:
        model = ws.model(name)
        for flags in configs:
            out = os.path.join(ws.out, "o.onnx")
            written = []
            for cmd in (["sparsify"], ["run", "prepare,step,convert"]):
                remove_outputs(ws.out)
                run_ok(cmd + [model, "-o", out] + flags)
                written.append([open(p, "rb").read() for p in (out, out + ".data")
                                if os.path.exists(p)])
            if written[0] != written[1]:
                raise AssertionError("%s %s: sparsify differs from prepare,step,convert"
                                     % (name, " ".join(flags)))


def test_threads(ctx):
    """--threads changes how the work is spread, never the result; bad counts are usage errors."""
    ws = Workspace(ctx["tmp"], ctx["models"], ["transformer_matmul.onnx"])
    outs = []
    for n in ("1", "2", "3"):
        out = os.path.join(ws.out, "t%s.onnx" % n)
        run_ok(["sparsify", ws.model("transformer_matmul.onnx"), "-o", out, "--threads", n,
                "--sparsity", "0.7", "--block", "1x1", "--format", "coo"])
        with open(out, "rb") as f:
            outs.append(f.read())
    if any(o != outs[0] for o in outs):
        raise AssertionError("--threads changed the output")
    for bad in ("-1", "0", "1.5", "x", "5000"):
        ws.fails(["sparsify", ws.model("transformer_matmul.onnx"), "-o",
                  os.path.join(ws.out, "bad.onnx"), "--threads", bad], 2, what="--threads " + bad)


def inspect_json(path):
    return json.loads(run_ok(["inspect", "--json", path]).stdout)


def test_inspect_patterns(ctx):
    """inspect names the structure each pruning config leaves (SPEC 7: N:M, blocks)."""
    ws = Workspace(ctx["tmp"], ctx["models"], ["transformer_matmul.onnx"])
    cases = [
        (["--sparsity", "1", "--block", "1x4", "--zeros-per-block", "2"], "2:4 along input"),
        (["--sparsity", "1", "--block", "1x8", "--zeros-per-block", "4"], "4:8 along input"),
        (["--sparsity", "0.5", "--block", "1x4"], "1x4 blocks"),
        (["--sparsity", "0.5", "--block", "4x1"], "4x1 blocks"),
        (["--sparsity", "0.9", "--block", "1x1"], "unstructured"),
        (["--sparsity", "0", "--block", "1x1"], "dense"),
    ]
    for flags, want in cases:
        out = os.path.join(ws.out, "p.onnx")
        run_ok(["sparsify", ws.model("transformer_matmul.onnx"), "-o", out, "--format", "dense"]
               + flags)
        got = {w["pattern"] for w in inspect_json(out)["weights"]}
        if got != {want}:
            raise AssertionError("%s: patterns %r, expected %r" % (" ".join(flags), got, want))


def test_inspect_ort_sparse(ctx):
    """Weights rewritten to SparseMatMul are still listed, with the same nonzeros."""
    ws = Workspace(ctx["tmp"], ctx["models"], ["transformer_matmul.onnx"])
    flags = ["--sparsity", "0.9", "--block", "1x4"]
    dense, ort = os.path.join(ws.out, "d.onnx"), os.path.join(ws.out, "o.onnx")
    run_ok(["sparsify", ws.model("transformer_matmul.onnx"), "-o", dense, "--format", "dense"]
           + flags)
    run_ok(["sparsify", ws.model("transformer_matmul.onnx"), "-o", ort, "--format", "ort-sparse"]
           + flags)
    d, o = inspect_json(dense), inspect_json(ort)
    by_alias = {w["alias"]: w for w in d["weights"]}
    if len(o["weights"]) != len(d["weights"]):
        raise AssertionError("ort-sparse lists %d weights, dense %d"
                             % (len(o["weights"]), len(d["weights"])))
    for w in o["weights"]:
        ref = by_alias[w["alias"]]
        if w["storage"] != "ort-sparse" or w["op"] != "SparseMatMul" or w["pattern"] != "BSR 1x4":
            raise AssertionError("ort-sparse row %r" % w)
        if (w["nonzeros"], w["numel"]) != (ref["nonzeros"], ref["numel"]):
            raise AssertionError("%s: %d/%d nonzeros, dense has %d/%d" % (w["alias"],
                w["nonzeros"], w["numel"], ref["nonzeros"], ref["numel"]))
        if w["bytes"] >= ref["bytes"]:
            raise AssertionError("%s: ort-sparse storage %d bytes >= dense %d"
                                 % (w["alias"], w["bytes"], ref["bytes"]))


TESTS = [test_help, test_version, test_list, test_config_matches_manifest, test_config_filters,
    test_inspect_pipeline, test_config_errors, test_strict_false, test_model_errors,
    test_usage_errors, test_output_equals_input, test_external_data_flag, test_fsync, test_sparsify_equals_passes,
    test_threads,
    test_inspect_patterns, test_inspect_ort_sparse]


def main(runner):
    with tempfile.TemporaryDirectory(prefix="onnx-pass-cli-") as tmp:
        models = os.path.join(tmp, "models")
        ctx = {"tmp": tmp, "models": models, "manifest": make_models.generate(models)}
        runner.tests(TESTS, ctx)


if __name__ == "__main__":
    testutil.main(main)
