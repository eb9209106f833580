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
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import testutil  # noqa: E402
testutil.require("numpy", "onnx")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ONNX_PASS = os.path.abspath(os.environ.get("ONNX_PASS", ""))


# strace and LeakSanitizer do not mix (ASan builds): no leak check under strace
STRACE_ENV = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")


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


def cpu_seconds(args, runs=2):
    """Best child CPU time (user + system) of a few runs: load on a shared
    machine stretches wall-clock time but hardly CPU time."""
    best = None
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run_ok(args)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best = t if best is None else min(best, t)
    return best


def test_scale_linear(tmp):
    """sparsify (prepare, step, squash, convert) and run prepare,step,squash
    grow linearly with the chain. 16x the nodes must take under 64x the CPU
    time: n log n gives about 20x, the quadratic name scans and node splicing
    this guards against gave 200x and more. The wide margin keeps the check
    about complexity, not speed (sanitizer builds and load change constants)."""
    small, big = 1000, 16000
    paths = {}
    for n in (small, big):
        paths[n] = os.path.join(tmp, "chain%d.onnx" % n)
        onnx.save(chain_model(n), paths[n])
    for cmd in (["sparsify"], ["run", "prepare,step,squash"]):
        t = {n: cpu_seconds(cmd + [paths[n], "-o", os.path.join(tmp, "out.onnx"), "--threads", "1"])
             for n in (small, big)}
        ratio = t[big] / max(t[small], 1e-3)
        print("  %s: %d nodes %.2f s, %d nodes %.2f s CPU, ratio %.1f"
              % (" ".join(cmd), small, t[small], big, t[big], ratio))
        assert ratio < 64, "%s is not linear: ratio %.1f" % (cmd, ratio)
    out = onnx.load(os.path.join(tmp, "out.onnx"))
    assert len(out.graph.node) == big + big // 2, len(out.graph.node)
    assert [n.op_type for n in out.graph.node[:3]] == ["MatMul", "Constant", "MatMul"]


# ------------------------------------------------------------------ output files

def small_model(rows=64, cols=32, seed=1):
    """One Gemm whose weight (8 KiB) goes to external data when asked."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((rows, cols)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["y"], name="/fc/Gemm", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cols])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, rows])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def write_model(tmp, name="in.onnx"):
    path = os.path.join(tmp, name)
    onnx.save(small_model(), path)
    return path


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


def test_output_stdout(tmp):
    """-o - writes to stdout (no file named -), for models and state export."""
    src = write_model(tmp)
    ref = os.path.join(tmp, "ref.onnx")
    run_ok(["sparsify", src, "-o", ref])
    p = subprocess.run([ONNX_PASS, "sparsify", src, "-o", "-"], capture_output=True, cwd=tmp,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == open(ref, "rb").read(), "stdout differs from the file"
    run_ok(["prepare", src, "-o", os.path.join(tmp, "p.onnx")])
    p = run_ok(["state", "export", os.path.join(tmp, "p.onnx"), "-o", "-"], cwd=tmp)
    assert p.stdout.startswith("{"), p.stdout[:40]
    assert not os.path.exists(os.path.join(tmp, "-")), "wrote a file named -"
    # a side file cannot go with a stream: a usage error, nothing written
    p = subprocess.run([ONNX_PASS, "sparsify", src, "--external-data", "-o", "-"],
                       capture_output=True, cwd=tmp, timeout=60)
    lines = p.stderr.decode().splitlines()
    assert p.returncode == 2 and p.stdout == b"" and len(lines) == 1, (p.returncode, lines)
    assert lines[0].startswith("onnx-pass: error: ") and "stream" in lines[0], lines


def test_output_symlink(tmp):
    """A symlinked OUT: the target is replaced, the link stays (relative and
    dangling links too)."""
    src = write_model(tmp)
    os.mkdir(os.path.join(tmp, "d"))
    target = os.path.join(tmp, "d", "real.onnx")
    with open(target, "w") as f:
        f.write("old")
    link = os.path.join(tmp, "link.onnx")
    os.symlink("d/real.onnx", link)
    run_ok(["sparsify", src, "-o", link])
    assert os.path.islink(link), "the symlink was replaced"
    onnx.checker.check_model(onnx.load(target))
    dangling = os.path.join(tmp, "dangling.onnx")
    os.symlink("d/new.onnx", dangling)
    run_ok(["sparsify", src, "-o", dangling])
    assert os.path.islink(dangling)
    onnx.checker.check_model(onnx.load(os.path.join(tmp, "d", "new.onnx")))
    # state export through a link
    run_ok(["prepare", src, "-o", os.path.join(tmp, "p.onnx")])
    slink = os.path.join(tmp, "state.json")
    os.symlink("d/state-real.json", slink)
    run_ok(["state", "export", os.path.join(tmp, "p.onnx"), "-o", slink])
    assert os.path.islink(slink)
    assert open(os.path.join(tmp, "d", "state-real.json")).read().startswith("{")
    assert leftovers(tmp) == [] and leftovers(os.path.join(tmp, "d")) == []


def test_output_fifo_and_device(tmp):
    """A FIFO is written as a stream (not replaced); so is a character device
    (a private /dev/null made with mknod when root)."""
    import stat
    import threading
    src = write_model(tmp)
    ref = os.path.join(tmp, "ref.onnx")
    run_ok(["sparsify", src, "-o", ref])
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    p = run(["sparsify", src, "-o", fifo])
    if p.returncode != 0 or not stat.S_ISFIFO(os.lstat(fifo).st_mode):
        try:                       # release the reader
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    reader.join(60)
    assert p.returncode == 0, p.stderr
    assert got and got[0] == open(ref, "rb").read(), "the FIFO did not get the model"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    if os.geteuid() == 0:
        null = os.path.join(tmp, "null")
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        run_ok(["sparsify", src, "-o", null])
        run_ok(["prepare", src, "-o", os.path.join(tmp, "p.onnx")])
        run_ok(["state", "export", os.path.join(tmp, "p.onnx"), "-o", null])
        assert stat.S_ISCHR(os.lstat(null).st_mode), "the device was replaced"
    assert leftovers(tmp) == []


def test_output_keeps_mode_and_owner(tmp):
    """A rewritten OUT keeps its mode (and its owner, as root); a new one gets
    0666 & ~umask."""
    src = write_model(tmp)
    out = os.path.join(tmp, "out.onnx")
    state = os.path.join(tmp, "state.json")
    run_ok(["prepare", src, "-o", os.path.join(tmp, "p.onnx")])
    for path, cmd in ((out, ["sparsify", src]),
                      (state, ["state", "export", os.path.join(tmp, "p.onnx")])):
        with open(path, "w") as f:
            f.write("old")
        os.chmod(path, 0o640)
        root = os.geteuid() == 0
        if root:
            os.chown(path, 1234, 4321)
        run_ok(cmd + ["-o", path])
        st = os.stat(path)
        assert st.st_mode & 0o7777 == 0o640, "mode %o" % (st.st_mode & 0o7777)
        if root:
            assert (st.st_uid, st.st_gid) == (1234, 4321), (st.st_uid, st.st_gid)
        os.unlink(path)
        run_ok(cmd + ["-o", path], preexec_fn=lambda: os.umask(0o027))
        assert os.stat(path).st_mode & 0o777 == 0o640, "new file: mode %o" % os.stat(path).st_mode
    # with external data: both files
    ext = os.path.join(tmp, "ext.onnx")
    run_ok(["sparsify", src, "-o", ext, "--external-data"])
    os.chmod(ext, 0o600)
    run_ok(["sparsify", src, "-o", ext, "--external-data"])
    assert os.stat(ext).st_mode & 0o777 == 0o600


def test_no_umask_calls(tmp):
    """The library never changes the process umask (it is process-wide: other
    threads would create files with umask 0): no umask() call when saving
    models, external data or state files."""
    src = write_model(tmp)
    run_ok(["prepare", src, "-o", os.path.join(tmp, "p.onnx")])
    for cmd in (["sparsify", src, "-o", os.path.join(tmp, "a.onnx")],
                ["sparsify", src, "-o", os.path.join(tmp, "b.onnx"), "--external-data"],
                ["state", "export", os.path.join(tmp, "p.onnx"), "-o", os.path.join(tmp, "s.json")]):
        p = subprocess.run(["strace", "-f", "-e", "trace=umask", "-o", "/dev/stderr", ONNX_PASS]
                           + cmd, capture_output=True, text=True, timeout=120, env=STRACE_ENV)
        assert p.returncode == 0, p.stderr
        calls = [l for l in p.stderr.splitlines() if "umask(" in l]
        assert not calls, "%s: %r" % (cmd[0], calls)


def test_threaded_saves_keep_umask(tmp):
    """8 threads saving through the C API while a ninth creates files: every
    file the ninth creates has its mode from the unchanged umask."""
    import ctypes
    import threading
    lib_path = os.environ.get("ONNX_PASS_LIBRARY")
    if not lib_path:
        raise AssertionError("ONNX_PASS_LIBRARY is not set")
    lib = ctypes.CDLL(lib_path)
    src = write_model(tmp).encode()
    old = os.umask(0o022)
    bad, stop = [], threading.Event()

    class Error(ctypes.Structure):
        _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 512)]

    def saver(k):
        model, err = ctypes.c_void_p(), Error()
        assert lib.onnxpass_model_load_file(src, ctypes.byref(model), ctypes.byref(err)) == 0
        for i in range(150):
            out = os.path.join(tmp, "t%d.onnx" % k).encode()
            flags = 1 if i % 2 else 0
            assert lib.onnxpass_model_save_file(model, out, flags, ctypes.byref(err)) == 0
        lib.onnxpass_model_free(model)

    def creator():
        i = 0
        while not stop.is_set():
            path = os.path.join(tmp, "c%d" % (i % 50))
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o666)
            os.close(fd)
            mode = os.stat(path).st_mode & 0o777
            os.unlink(path)
            if mode != 0o644:
                bad.append(mode)
            i += 1

    try:
        threads = [threading.Thread(target=saver, args=(k,)) for k in range(8)]
        c = threading.Thread(target=creator)
        c.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        c.join()
        now = os.umask(0o022)
    finally:
        os.umask(old)
    assert now == 0o022, "umask left at %o" % now
    assert not bad, "files created with modes %s" % sorted(set("%o" % m for m in bad))


def test_kill_leaves_no_temp_files(tmp):
    """kill -9 while the output is being written (at its first write, at the
    fsync) leaves no temp file: the output is unnamed until its commit."""
    src = write_model(tmp)
    out_dir = os.path.join(tmp, "out")
    os.mkdir(out_dir)
    out = os.path.join(out_dir, "o.onnx")
    for extra in ([], ["--external-data"]):
        for inject in ("write:signal=KILL:when=1", "fsync:signal=KILL:when=1",
                       "fsync:signal=KILL:when=2"):
            subprocess.run(["strace", "-f", "-o", "/dev/null", "-e", "inject=" + inject,
                            ONNX_PASS, "sparsify", src, "-o", out, "--fsync"] + extra,
                           capture_output=True, timeout=120, env=STRACE_ENV)
            assert leftovers(out_dir) == [], "%s %s: %r" % (inject, extra, os.listdir(out_dir))
            assert not [n for n in os.listdir(out_dir) if n != "o.onnx" and
                        not n.endswith(".data")], os.listdir(out_dir)


def pair_state(path):
    """OUT as onnx.load reads it with its side file, serialised (raises when
    the side file is missing or short)."""
    return onnx.load(path).SerializeToString()


# two configs whose outputs differ in layout: A's OUT read with B's side file
# is neither pair (the probe's short tensors)
ARGS_A = ["sparsify", "--external-data", "--format", "dense", "--sparsity", "0.5"]
ARGS_B = ["prepare", "--external-data"]


def test_external_pair_atomic(tmp):
    """kill -9 at each rename and link of an external-data save: OUT is the
    old pair or the new pair, never the new side file under the old OUT."""
    src = write_model(tmp)
    out = os.path.join(tmp, "o.onnx")
    args_a = ARGS_A[:1] + [src] + ARGS_A[1:]
    args_b = ARGS_B[:1] + [src] + ARGS_B[1:]
    run_ok(args_a + ["-o", out])
    old = pair_state(out)
    new_file = os.path.join(tmp, "want.onnx")
    run_ok(args_b + ["-o", new_file])
    new = pair_state(new_file)
    assert old != new
    for inject in ("rename:signal=KILL:when=1", "rename:signal=KILL:when=2",
                   "rename:signal=KILL:when=3", "linkat:signal=KILL:when=1",
                   "linkat:signal=KILL:when=2", "link:signal=KILL:when=1",
                   "unlink:signal=KILL:when=1"):
        for name in os.listdir(tmp):
            if name.startswith("o.onnx"):
                os.unlink(os.path.join(tmp, name))
        run_ok(args_a + ["-o", out])
        subprocess.run(["strace", "-f", "-o", "/dev/null", "-e", "inject=" + inject, ONNX_PASS]
                       + args_b + ["-o", out], capture_output=True, timeout=120, env=STRACE_ENV)
        got = pair_state(out)
        assert got in (old, new), "%s: OUT reads a mixed pair" % inject


def test_concurrent_writers(tmp):
    """Two runs with different configs writing one OUT at once: OUT is always
    one run's pair, never a mix (a run may fail cleanly when it loses the race
    for the side file's name)."""
    src = write_model(tmp)
    out = os.path.join(tmp, "o.onnx")
    runs = [ARGS_A[:1] + [src] + ARGS_A[1:], ARGS_B[:1] + [src] + ARGS_B[1:]]
    want = []
    for args in runs:
        run_ok(args + ["-o", out])
        want.append(pair_state(out))
    for _ in range(20):
        procs = [subprocess.Popen([ONNX_PASS] + args + ["-o", out], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for args in runs]
        for p in procs:
            p.wait(120)
        assert pair_state(out) in want, "mixed pair"
    assert leftovers(tmp) == [], leftovers(tmp)


def test_input_truncated_while_read(tmp):
    """An input that shrinks while it is read gives an error (or, when the
    load won the race, a normal run), never SIGBUS."""
    big = os.path.join(tmp, "big.onnx")
    m = chain_model(200, dim=256)     # 52 MB
    onnx.save(m, big)
    size = os.path.getsize(big)
    for i in range(6):
        onnx.save(m, big)
        p = subprocess.Popen([ONNX_PASS, "sparsify", big, "-o", os.path.join(tmp, "o.onnx"),
                              "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
        time.sleep(0.002 * i)
        os.truncate(big, size // 3)
        _, err = p.communicate(timeout=300)
        assert p.returncode in (0, 1), "exit %d (signal?) %r" % (p.returncode, err)
        if p.returncode == 1:
            assert err.startswith("onnx-pass: error: ") and len(err.splitlines()) == 1, err


# ------------------------------------------------------------- export pipeline

def torch_pruned_export(path):
    """torch: WeightNormSparsifier, step, squash_mask, then torch.onnx.export.
    Returns the number of nonzero weights."""
    import io
    torch = testutil.import_or_skip("torch")
    from torch.ao.sparsity import WeightNormSparsifier
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    sp = WeightNormSparsifier(sparsity_level=0.5, sparse_block_shape=(1, 4), zeros_per_block=4)
    sp.prepare(net, [{"tensor_fqn": "0.weight"}, {"tensor_fqn": "2.weight"}])
    sp.step()
    sp.squash_mask()
    buf = io.BytesIO()
    torch.onnx.export(net, torch.randn(1, 32), buf)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return int(sum((m.weight != 0).sum() for m in (net[0], net[2])))


def test_convert_torch_pruned(tmp):
    """convert takes a model pruned in torch (no onnx_pass state) as it is:
    the mask is W != 0, for every format."""
    import json
    src = os.path.join(tmp, "pruned.onnx")
    nonzeros = torch_pruned_export(src)
    for fmt in ("auto", "coo", "dense", "ort-sparse"):
        out = os.path.join(tmp, "%s.onnx" % fmt)
        run_ok(["convert", src, "-o", out, "--format", fmt])
        doc = json.loads(run_ok(["inspect", "--json", out]).stdout)
        assert doc["totals"]["nonzeros"] == nonzeros, (fmt, doc["totals"], nonzeros)
        m = onnx.load(out)
        if fmt == "coo":
            assert len(m.graph.sparse_initializer) == 2, fmt
        if fmt == "ort-sparse":
            assert [n.op_type for n in m.graph.node].count("SparseMatMul") == 2, fmt
        assert not [p for p in m.metadata_props if p.key.startswith("onnx_pass.sparsity")]


# ---------------------------------------------------------------- config typos

def test_typos_are_errors(tmp):
    """Unknown keys at every level, bad schedules, unknown keep_params and
    --threads 0 are one-line usage errors (exit 2), found before anything is
    written; Python's unknown keywords raise onnx_pass.Error."""
    import json
    src = write_model(tmp)
    out = os.path.join(tmp, "o.onnx")
    cases = [({"defualts": {}}, "unknown key 'defualts'"),
             ({"config": [{"tensor_fqn": "W", "sparsty_level": 0.5}]}, "sparsty_level"),
             ({"schedule": {"type": "exp"}}, "schedule"),
             ({"schedule": {"type": "cubic", "total_t": 0}}, "total_t")]
    for config, needle in cases:
        path = os.path.join(tmp, "c.json")
        with open(path, "w") as f:
            json.dump(config, f)
        run_error(["prepare", src, "-o", out, "--config", path], 2, needle)
        assert not os.path.exists(out)
    prepared = os.path.join(tmp, "p.onnx")
    run_ok(["prepare", src, "-o", prepared])
    run_error(["squash", prepared, "-o", out, "--keep-params", "foo"], 2, "foo")
    run_error(["sparsify", src, "-o", out, "--threads", "0"], 2, "--threads")
    assert not os.path.exists(out)


def test_python_typos(tmp):
    """Python: unknown keywords raise onnx_pass.Error (they were silently
    dropped into the config: sparsity=0.9 gave 0.5)."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    import onnx_pass
    try:
        onnx_pass.sparsify(small_model(), sparsity=0.9)
    except onnx_pass.Error as e:
        assert "sparsity" in str(e), str(e)
    else:
        raise AssertionError("sparsify(sparsity=0.9) did not raise")


def test_attention_aliases(tmp):
    """nn.TransformerEncoder exports: in_proj and out_proj get their own torch
    names as aliases, and an entry naming one selects only that weight."""
    import io
    import json
    torch = testutil.import_or_skip("torch")
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32,
                                             batch_first=True)
    net = torch.nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, torch.randn(1, 4, 16), buf)
    src = os.path.join(tmp, "enc.onnx")
    with open(src, "wb") as f:
        f.write(buf.getvalue())
    doc = json.loads(run_ok(["inspect", "--json", src]).stdout)
    aliases = sorted(w.get("alias") or w["name"] for w in doc["weights"])
    want = ["layers.0.linear1.weight", "layers.0.linear2.weight",
            "layers.0.self_attn.in_proj_weight", "layers.0.self_attn.out_proj.weight"]
    assert aliases == want, aliases
    for fqn in ("layers.0.self_attn.in_proj_weight", "layers.0.self_attn.out_proj.weight"):
        config = os.path.join(tmp, "c.json")
        with open(config, "w") as f:
            json.dump({"config": [{"tensor_fqn": fqn}]}, f)
        out = os.path.join(tmp, "p.onnx")
        run_ok(["prepare", src, "-o", out, "--config", config])
        m = onnx.load(out)
        state = json.loads([p.value for p in m.metadata_props
                            if p.key == "onnx_pass.sparsity"][0])
        assert len(state["groups"]) == 1, (fqn, [g["tensor_fqn"] for g in state["groups"]])


def test_ort_sparse_never_bigger(tmp):
    """ort-sparse stores a weight as SparseMatMul arrays only when they are
    smaller than the dense weight: a 2:4 weight (every 1x4 block stored, CSR
    as big as dense) stays dense; a 90 % sparse one is converted, smaller."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((128, 96)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="/fc/MatMul")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 96])], [w])
    src = os.path.join(tmp, "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    dense = 128 * 96 * 4
    for flags, converted in ((["--sparsity", "1", "--block", "1x4", "--zeros-per-block", "2"], False),
                             (["--sparsity", "0.5", "--block", "4x1"], True),
                             (["--sparsity", "0.9", "--block", "1x1"], True)):
        out = os.path.join(tmp, "o.onnx")
        run_ok(["sparsify", src, "-o", out, "--format", "ort-sparse", "--min-sparsity", "0.4"]
               + flags)
        m = onnx.load(out)
        ops = [n.op_type for n in m.graph.node]
        stored = sum(len(t.raw_data) for t in m.graph.initializer)
        assert ("SparseMatMul" in ops) == converted, (flags, ops)
        assert stored <= dense, (flags, stored, dense)
        if converted:
            assert stored < dense


def test_inspect_patterns(tmp):
    """inspect names N:M along the output axis, in square blocks, and with
    partial edge groups (these were 'unstructured')."""
    import json

    def model(rows, cols):
        rng = np.random.default_rng(rows * cols)
        w = numpy_helper.from_array(rng.standard_normal((rows, cols)).astype(np.float32), "W")
        graph = helper.make_graph(
            [helper.make_node("Gemm", ["x", "W"], ["y"], name="/fc/Gemm", transB=1)], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cols])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, rows])], [w])
        path = os.path.join(tmp, "m%dx%d.onnx" % (rows, cols))
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    cases = [((32, 64), ["--block", "4x1"], "2:4 along output"),
             ((32, 64), ["--block", "2x2"], "2:4 in 2x2 blocks"),
             ((32, 64), ["--block", "1x4"], "2:4 along input"),
             ((30, 62), ["--block", "1x4"], "2:4 along input"),
             ((30, 62), ["--block", "4x1"], "2:4 along output")]
    for shape, block, want in cases:
        out = os.path.join(tmp, "o.onnx")
        run_ok(["sparsify", model(*shape), "-o", out, "--sparsity", "1", "--zeros-per-block", "2",
                "--format", "dense"] + block)
        doc = json.loads(run_ok(["inspect", "--json", out]).stdout)
        got = doc["weights"][0]["pattern"]
        assert got == want, (shape, block, got, want)


def test_python_strings(tmp):
    """Python: a NUL in a path, config or pass list and lone surrogates raise
    onnx_pass.Error (nothing written); a config string that is neither JSON
    nor a file is an error, not opened as a path."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    import onnx_pass
    src = write_model(tmp)
    model = small_model()
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        calls = [lambda: onnx_pass.sparsify(src, output="x\0y.onnx"),
                 lambda: onnx_pass.sparsify(src + "\0junk", output="o.onnx"),
                 lambda: onnx_pass.sparsify(model, config='{"defaults": {}}\0{"x": 1}'),
                 lambda: onnx_pass.run_passes(model, "prepare\0,step"),
                 lambda: onnx_pass.sparsify(model, config='{"exclude": ["\ud800"]}'),
                 lambda: onnx_pass.run_passes(model, "prep\udcffare"),
                 lambda: onnx_pass.sparsify(src, output="o\ud800.onnx"),
                 lambda: onnx_pass.sparsify(model, config=" null_typo"),
                 lambda: onnx_pass.sparsify(model, config="no-such-config.json")]
        for i, call in enumerate(calls):
            try:
                call()
            except onnx_pass.Error:
                pass
            else:
                raise AssertionError("call %d did not raise onnx_pass.Error" % i)
        assert sorted(os.listdir(tmp)) == ["in.onnx"], os.listdir(tmp)
        # JSON text and a file still work
        with open("c.json", "w") as f:
            f.write('{"defaults": {"sparsity_level": 0.7}}')
        onnx_pass.sparsify(model, config="c.json")
        onnx_pass.sparsify(model, config=' {"defaults": {"sparsity_level": 0.7}}')
    finally:
        os.chdir(cwd)


# --------------------------------------------------------------- small things

def test_small_things(tmp):
    """A missing file is named once; an unknown command or pass is a usage
    error, not the model's; levels print as Python does (0.9); a run that
    changes the model needs -o; a strict state load replaces the model's
    groups with the state's (a group the state lacks is squashed away)."""
    import json
    src = write_model(tmp)
    line = run_error(["inspect", os.path.join(tmp, "missing.onnx")], 1)
    assert line.count("missing.onnx") == 1, line
    line = run_error(["frobnicate", src], 2, "unknown command 'frobnicate'")
    assert "in.onnx" not in line, line
    run_error(["run", "prepare,frob", src, "-o", os.path.join(tmp, "x.onnx")], 2, "'frob'")
    run_error(["run", "prepare,step", src], 2, "-o")
    prepared = os.path.join(tmp, "p.onnx")
    run_ok(["prepare", src, "-o", prepared, "--sparsity", "0.9"])
    text = run_ok(["inspect", prepared]).stdout
    assert "0.9" in text and "0.90000000000000002" not in text, text
    # two groups; the state keeps one
    chain = os.path.join(tmp, "chain.onnx")
    onnx.save(chain_model(2, dim=16), chain)
    run_ok(["prepare", chain, "-o", prepared])
    state = json.loads(run_ok(["state", "export", prepared, "-o", "-"]).stdout)
    assert [g["tensor_fqn"] for g in state["groups"]] == ["w0", "w1"]
    state["groups"] = state["groups"][:1]
    state_file = os.path.join(tmp, "state.json")
    with open(state_file, "w") as f:
        json.dump(state, f)
    out = os.path.join(tmp, "loaded.onnx")
    run_ok(["state", "load", prepared, state_file, "-o", out])
    loaded = json.loads(run_ok(["state", "export", out, "-o", "-"]).stdout)
    assert [g["tensor_fqn"] for g in loaded["groups"]] == ["w0"], loaded["groups"]
    m = onnx.load(out)
    onnx.checker.check_model(m)
    assert [n.op_type for n in m.graph.node].count("Mul") == 1


def test_python_state_dict(tmp):
    """Python state_dict() / load_state_dict() round-trip a stepped state
    into an unprepared model."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    import onnx_pass
    model = chain_model(3, dim=16)
    stepped = onnx_pass.step(onnx_pass.prepare(model, sparsity_level=0.75))
    state = onnx_pass.state_dict(stepped)
    assert [g["tensor_fqn"] for g in state["groups"]] == ["w0", "w1", "w2"]
    loaded = onnx_pass.load_state_dict(model, state)
    assert onnx_pass.state_dict(loaded) == state
    assert onnx_pass.inspect(loaded)["totals"] == onnx_pass.inspect(stepped)["totals"]


# Checks that load libonnxpass.so into this interpreter (ctypes): not under ASan.
PYTHON_TESTS = [test_python_state_dict, test_python_strings, test_threaded_saves_keep_umask,
                test_python_typos]
TESTS = [test_scale_linear, test_output_stdout, test_output_symlink, test_output_fifo_and_device,
         test_output_keeps_mode_and_owner, test_no_umask_calls, test_kill_leaves_no_temp_files,
         test_external_pair_atomic, test_concurrent_writers, test_input_truncated_while_read,
         test_convert_torch_pruned, test_attention_aliases, test_typos_are_errors,
         test_inspect_patterns, test_ort_sparse_never_bigger, test_small_things]


def main(runner):
    """Arguments: check names; "python" runs PYTHON_TESTS (default: TESTS)."""
    only = [a for a in sys.argv[1:] if a != "python"]
    tests = PYTHON_TESTS if "python" in sys.argv[1:] else TESTS
    if only:
        tests = [t for t in TESTS + PYTHON_TESTS if t.__name__ in only]
    for test in tests:
        with tempfile.TemporaryDirectory() as tmp:
            runner.check(test.__name__, test, tmp)


if __name__ == "__main__":
    testutil.main(main)
