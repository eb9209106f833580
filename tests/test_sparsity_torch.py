#!/usr/bin/python3
"""End-to-end parity of onnx-pass with torch.ao.sparsity (issue 3), through the CLI.

Run from meson (test 'sparsity-torch'): ONNX_PASS is the CLI, ORT_RUN the ONNX Runtime
runner (tests/ort-run; the ORT checks are counted as skipped without it).

 1. masks: torch WeightNormSparsifier / NearlyDiagonalSparsifier on nn.Linear layers vs.
    `onnx-pass prepare` + `step` on the same module exported as Gemm (2-D input) and as
    MatMul (3-D input, weights stored transposed), element for element. The numpy
    reference of SPEC 6 used by parts 3 and 4 is checked against torch here as well.
 2. ONNX Runtime: prepared (all-ones masks) == original; stepped, squashed, converted
    (coo, auto) give the same outputs as torch with the same masks; converted models pass
    onnx.checker and a 90% sparse model is smaller than the dense one; sparsify ==
    prepare + step + convert.
 3. multi-step: a step with --sparsity, scheduled (cubic) steps, a lower-sparsity step that
    restores pruned weights; levels vs. torch's CubicSL, masks vs. torch's sparsifier.
 4. constants_if.onnx (Constant weights, If subgraphs) sparsified at 0 and at 0.5.
 5. state export / state load round trip, --strict / --no-strict.
 6. fp16 / bf16 / fp64 weights.

Prints "N passed, M failed, K skipped" (tests/testutil.py's runner): exits 1 on any failure,
else 77 (skipped) when the ORT checks were skipped, else 0.
"""

import copy
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "models"))

import testutil  # noqa: E402
testutil.require("numpy", "onnx", "torch")
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
import make_models  # noqa: E402
import ortlib  # noqa: E402

import torch  # noqa: E402
from torch.ao.sparsity import CubicSL, NearlyDiagonalSparsifier  # noqa: E402
from torch.ao.sparsity import WeightNormSparsifier  # noqa: E402

STATE_KEY = "onnx_pass.sparsity"
LAYERS = ["fc1", "fc2", "fc3"]
TORCH_CONFIG = [{"tensor_fqn": name + ".weight"} for name in LAYERS]
BLOCKS = [(1, 4), (4, 1), (2, 2), (2, 3), (1, 1)]
LEVELS = [0.0, 0.3, 0.5, 1.0]
NORMS = [1, 2]

STATS = {"masks": 0, "elements": 0, "ref_masks": 0}


# ---------------------------------------------------------------- CLI and model access

def onnx_pass(*args, ok=True):
    exe = os.environ.get("ONNX_PASS")
    if not exe:
        raise RuntimeError("ONNX_PASS is not set (run through meson test)")
    proc = subprocess.run([exe] + [str(a) for a in args], capture_output=True, text=True)
    if ok and proc.returncode != 0:
        raise AssertionError("onnx-pass %s: exit %d: %s"
                             % (" ".join(map(str, args)), proc.returncode, proc.stderr.strip()))
    return proc


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def model_state(model):
    for p in model.metadata_props:
        if p.key == STATE_KEY:
            return json.loads(p.value)
    return None


def to_array(t):
    """Values of a TensorProto as numpy (bfloat16 widened exactly to float32)."""
    if t.data_type == TensorProto.BFLOAT16:
        bits = (np.frombuffer(t.raw_data, dtype="<u2") if t.raw_data
                else np.array(t.int32_data, dtype=np.uint16))
        return ortlib.bfloat16_bits_to_float32(bits).reshape(tuple(t.dims))
    return numpy_helper.to_array(t)


def view2d(a, view):
    """The SPEC 4 2-D view [out, in] of an array stored in the weight's layout."""
    if view == "as_is":
        return a
    if view == "transposed":
        return a.T
    return a.reshape(a.shape[0], -1)


def groups_of(path):
    """alias (or tensor_fqn) -> {"group", "mask" (2-D view, bool), "weight" (2-D view)}."""
    model = onnx.load(path)
    state = model_state(model)
    if state is None:
        raise AssertionError("%s: no %s metadata" % (path, STATE_KEY))
    tensors = testutil.stored_tensors(model.graph)
    out = {}
    for g in state["groups"]:
        mask_t = tensors[g["mask"]]
        if mask_t.data_type != TensorProto.BOOL:
            raise AssertionError("mask %s is not BOOL" % g["mask"])
        mask = to_array(mask_t)
        weight = to_array(tensors[g["weight"]])
        if mask.shape != weight.shape:
            raise AssertionError("mask %s has shape %s, weight %s" % (g["mask"], mask.shape,
                                                                     weight.shape))
        out[g.get("alias") or g["tensor_fqn"]] = {
            "group": g, "mask": view2d(mask, g["view"]).astype(bool),
            "weight": view2d(weight, g["view"])}
    return out


def max_diff(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError("shape %s vs %s" % (a.shape, b.shape))
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def assert_close(got, want, what, atol):
    d = max_diff(got, want)
    if not d <= atol:
        raise AssertionError("%s: max |difference| %.3g > %.1g" % (what, d, atol))


def describe_mismatch(got, want):
    bad = np.argwhere(got != want)
    return "%d of %d elements differ, first at %s (onnx-pass %d, expected %d)" % (
        len(bad), got.size, tuple(bad[0]), got[tuple(bad[0])], want[tuple(bad[0])])


def compare_mask(got, want, what, count=True):
    got = np.asarray(got, dtype=bool)
    want = np.asarray(want, dtype=bool)
    if got.shape != want.shape:
        raise AssertionError("%s: mask shape %s, expected %s" % (what, got.shape, want.shape))
    if count:
        STATS["masks"] += 1
        STATS["elements"] += got.size
    if not np.array_equal(got, want):
        raise AssertionError("%s: %s" % (what, describe_mismatch(got, want)))


# ---------------------------------------------------------------- numpy reference of SPEC 6

def ref_weight_norm(v, level, block, zeros_per_block, norm, wide=False):
    """weight_norm mask of the 2-D view v (already masked), ties to the lower index.

    Written from SPEC 6, independently of the C code; part 1 checks it against torch."""
    return ref_weight_norm_ties(v, level, block, zeros_per_block, norm, wide)[0]


def same(a, b):
    """a == b, NaN equal to NaN (NaN scores tie with each other)."""
    return (a == b) | (np.isnan(a) & np.isnan(b))


def ref_weight_norm_ties(v, level, block, zeros_per_block, norm, wide=False):
    """(mask, ambiguous): ambiguous marks the elements whose mask value depends on how
    equal scores are ordered (the SPEC takes the lower index first; torch's topk leaves the
    order among equal values unspecified)."""
    dt = np.float64 if wide else np.float32
    v = np.asarray(v).astype(dt)
    h, w = v.shape
    r, c = block
    amb = np.zeros((h, w), bool)
    if level <= 0 or zeros_per_block == 0:
        return np.ones((h, w), bool), amb
    if level >= 1 and zeros_per_block == r * c:
        return np.zeros((h, w), bool), amb
    n = np.abs(v) if norm == 1 else v * v
    nbr, nbc = -(-h // r), -(-w // c)
    spans = [(i * r, min(h, i * r + r), j * c, min(w, j * c + c))
             for i in range(nbr) for j in range(nbc)]
    scores = np.array([dt(n[a:b, p:q].astype(np.float64).sum() / ((b - a) * (q - p)))
                       for a, b, p, q in spans], dtype=dt)
    tmask = np.ones((h, w), bool)
    if level >= 1:
        tmask[:] = False
    else:
        k = max(0, min(len(spans) - 1, int(round(level * len(spans)))))
        order = np.argsort(scores, kind="stable")   # NaN sorts last
        for idx in order[:k]:
            a, b, p, q = spans[idx]
            tmask[a:b, p:q] = False
        if 0 < k < len(spans) and same(scores[order[k - 1]], scores[order[k]]):
            for idx in np.flatnonzero(same(scores, scores[order[k - 1]])):
                a, b, p, q = spans[idx]
                amb[a:b, p:q] = True
    if zeros_per_block >= r * c:
        return tmask, amb
    bmask = np.ones((h, w), bool)
    for a, b, p, q in spans:
        vals = n[a:b, p:q].reshape(-1)
        order = np.argsort(vals, kind="stable")
        sub = np.ones(vals.size, bool)
        sub[order[:zeros_per_block]] = False
        bmask[a:b, p:q] = sub.reshape(b - a, q - p)
        z = zeros_per_block
        if 0 < z < vals.size and same(vals[order[z - 1]], vals[order[z]]):
            amb[a:b, p:q] |= same(vals, vals[order[z - 1]]).reshape(b - a, q - p)
    return tmask | bmask, amb


def ref_nearly_diagonal(h, w, nearliness):
    if nearliness <= 0:
        return np.zeros((h, w), bool)
    i, j = np.indices((h, w))
    return np.abs(i - j) <= nearliness // 2


# ---------------------------------------------------------------- torch side

def make_mlp(seed, dims=(24, 48, 24, 12)):
    torch.manual_seed(seed)
    nn = torch.nn
    m = nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(dims[0], dims[1])), ("act1", nn.ReLU()),
        ("fc2", nn.Linear(dims[1], dims[2])), ("act2", nn.ReLU()),
        ("fc3", nn.Linear(dims[2], dims[3]))]))
    return m.eval()


def export(module, example, path, expect_op):
    model = make_models.torch_export(module, example)
    ops = [n.op_type for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    if ops != [expect_op] * len(LAYERS):
        raise RuntimeError("export gave %r, expected %s nodes" % (ops, expect_op))
    onnx.save(model, path)
    return path


def torch_masks(sparsifier, module):
    """Prepare a copy of module with sparsifier, step once; (model, {fqn: mask})."""
    m = copy.deepcopy(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparsifier.prepare(m, copy.deepcopy(TORCH_CONFIG))
        sparsifier.step()
    return m, current_torch_masks(m)


def current_torch_masks(m):
    return {name + ".weight": getattr(m, name).parametrizations.weight[0].mask.detach()
            .numpy().astype(bool) for name in LAYERS}


def torch_weights(module):
    """fqn -> float64 [out, in] weight (original, unmasked)."""
    out = {}
    for name in LAYERS:
        lin = getattr(module, name)
        w = (lin.parametrizations.weight.original if hasattr(lin, "parametrizations")
             else lin.weight)
        out[name + ".weight"] = w.detach().double().numpy()
    return out


def compare_with_torch(path, want_masks, module, what, wn_args=None):
    """The masks of the prepared model at path equal torch's, per alias; the group's weight
    is the module's weight (so the alias really names that layer).

    With wn_args (level, block, zeros_per_block, norm, wide), a mismatch is accepted when it
    only concerns tied scores (compare_tied), the mask being the SPEC 6 reference's."""
    groups = groups_of(path)
    if sorted(groups) != sorted(want_masks):
        raise AssertionError("%s: groups %r, expected %r" % (what, sorted(groups),
                                                             sorted(want_masks)))
    weights = torch_weights(module)
    for fqn, want in want_masks.items():
        g = groups[fqn]
        if not np.array_equal(g["weight"].astype(np.float64), weights[fqn], equal_nan=True):
            raise AssertionError("%s: group %s does not hold the module's weight" % (what, fqn))
        if wn_args is None:
            compare_mask(g["mask"], want, "%s %s" % (what, fqn))
        else:
            compare_tied(g["mask"], want, g["weight"], wn_args, "%s %s" % (what, fqn))


# ---------------------------------------------------------------- part 1: mask parity

def wn_config_file(path, level, block, zpb, norm, extra=None):
    obj = {"sparsifier": "weight_norm",
           "defaults": {"sparsity_level": level, "sparse_block_shape": list(block),
                        "zeros_per_block": zpb, "norm": norm},
           "config": copy.deepcopy(TORCH_CONFIG)}
    obj.update(extra or {})
    return write_json(path, obj)


def weight_norm_grid():
    """(level, block, zeros_per_block, norm): full blocks, 1 and half zeros per block."""
    out = []
    for block in BLOCKS:
        size = block[0] * block[1]
        for zpb in sorted({size, 1, size // 2}, reverse=True):
            for level in LEVELS:
                for norm in NORMS:
                    out.append((level, block, zpb, norm))
    return out


def onnx_masks_for(tmp, model_path, config_path, tag):
    prepared = os.path.join(tmp, tag + "-prepared.onnx")
    stepped = os.path.join(tmp, tag + "-stepped.onnx")
    onnx_pass("prepare", model_path, "-o", prepared, "--config", config_path)
    onnx_pass("step", prepared, "-o", stepped)
    return stepped


def part1_weight_norm(tmp, exports, module, level, block, zpb, norm):
    sp = WeightNormSparsifier(sparsity_level=level, sparse_block_shape=block,
                              zeros_per_block=zpb, norm=norm)
    _, want = torch_masks(sp, module)
    # The numpy reference against torch (no ties with random weights).
    w = torch_weights(module)
    for fqn in want:
        ref = ref_weight_norm(w[fqn].astype(np.float32), level, block, zpb, norm)
        STATS["ref_masks"] += 1
        if not np.array_equal(ref, want[fqn]):
            raise AssertionError("test bug: numpy reference != torch for %s: %s"
                                 % (fqn, describe_mismatch(ref, want[fqn])))
    cfg = wn_config_file(os.path.join(tmp, "cfg.json"), level, block, zpb, norm)
    failures = []
    for kind, path in exports.items():
        try:
            stepped = onnx_masks_for(tmp, path, cfg, kind)
            compare_with_torch(stepped, want, module, kind)
        except AssertionError as e:
            failures.append(str(e))
    if failures:
        raise AssertionError("; ".join(failures))


def part1_nearly_diagonal(tmp, exports, module, nearliness):
    _, want = torch_masks(NearlyDiagonalSparsifier(nearliness=nearliness), module)
    for fqn, m in want.items():
        if not np.array_equal(m, ref_nearly_diagonal(m.shape[0], m.shape[1], nearliness)):
            raise AssertionError("test bug: nearly-diagonal reference != torch for " + fqn)
    cfg = write_json(os.path.join(tmp, "cfg.json"), {
        "sparsifier": "nearly_diagonal", "defaults": {"nearliness": nearliness},
        "config": copy.deepcopy(TORCH_CONFIG)})
    for kind, path in exports.items():
        compare_with_torch(onnx_masks_for(tmp, path, cfg, kind), want, module,
                           kind + " nearly_diagonal")


def part1_mixed(tmp, exports, module):
    """Per-entry overrides on top of the defaults, as torch's prepare(config) does."""
    config = [{"tensor_fqn": "fc1.weight"},
              {"tensor_fqn": "fc2.weight", "sparsity_level": 0.8, "norm": 1},
              {"tensor_fqn": "fc3.weight", "sparse_block_shape": [1, 1],
               "zeros_per_block": 1, "sparsity_level": 0.25}]
    m = copy.deepcopy(module)
    sp = WeightNormSparsifier(sparsity_level=0.5, sparse_block_shape=(2, 2), zeros_per_block=4,
                              norm=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # torch's norm is a sparsifier-wide setting: run fc2 (norm 1) with its own sparsifier.
        sp.prepare(m, [copy.deepcopy(c) for c in config if c["tensor_fqn"] != "fc2.weight"])
        sp.step()
        sp1 = WeightNormSparsifier(sparsity_level=0.8, sparse_block_shape=(2, 2),
                                   zeros_per_block=4, norm=1)
        sp1.prepare(m, [{"tensor_fqn": "fc2.weight"}])
        sp1.step()
    want = current_torch_masks(m)
    cfg = write_json(os.path.join(tmp, "cfg.json"), {
        "sparsifier": "weight_norm",
        "defaults": {"sparsity_level": 0.5, "sparse_block_shape": [2, 2], "zeros_per_block": 4,
                     "norm": 2},
        "config": config})
    for kind, path in exports.items():
        compare_with_torch(onnx_masks_for(tmp, path, cfg, kind), want, module, kind + " mixed")


NAN_CONFIGS = [((1, 4), 4, 0.5, 2), ((1, 4), 2, 0.5, 1), ((1, 1), 1, 0.5, 2),
               ((2, 2), 1, 1.0, 2), ((2, 3), 3, 0.97, 1), ((4, 1), 4, 0.9, 1)]


def part1_nan(tmp, module, kind):
    """NaN weights count as the largest values (torch's topk order): never pruned first."""
    m = copy.deepcopy(module)
    with torch.no_grad():
        m.fc1.weight[0, 0:4] = float("nan")     # a whole 1x4 block
        m.fc1.weight[5, 7] = float("nan")
        m.fc2.weight[3, 3] = float("nan")
        m.fc3.weight[11, 20:24] = float("nan")
    example = torch.randn(3, 24) if kind == "Gemm" else torch.randn(2, 5, 24)
    path = export(m, example, os.path.join(tmp, "nan-%s.onnx" % kind), kind)
    failures = []
    for block, zpb, level, norm in NAN_CONFIGS:
        sp = WeightNormSparsifier(sparsity_level=level, sparse_block_shape=block,
                                  zeros_per_block=zpb, norm=norm)
        _, want = torch_masks(sp, m)
        cfg = wn_config_file(os.path.join(tmp, "cfg.json"), level, block, zpb, norm)
        what = "NaN %s %s zpb=%d level=%g norm=%d" % (kind, block, zpb, level, norm)
        try:
            compare_with_torch(onnx_masks_for(tmp, path, cfg, "nan"), want, m, what,
                               (level, block, zpb, norm, False))
        except AssertionError as e:
            failures.append(str(e))
    if failures:
        raise AssertionError("; ".join(failures))


PARTIAL_DIMS = (10, 7, 9, 5)       # no block shape below divides every weight
PARTIAL_BLOCKS = [(2, 3), (1, 4), (4, 1), (3, 3)]


def part1_partial(tmp, exports, module, level, block, zpb):
    """Edge blocks that stick out of the weight: SPEC 6 reference only, because torch 1.13's
    WeightNormSparsifier raises for shapes the block does not divide (mask.reshape)."""
    w = torch_weights(module)
    cfg = wn_config_file(os.path.join(tmp, "cfg.json"), level, block, zpb, 2)
    for kind, path in exports.items():
        groups = groups_of(onnx_masks_for(tmp, path, cfg, "partial-" + kind))
        for fqn, want in w.items():
            ref = ref_weight_norm(want.astype(np.float32), level, block, zpb, 2)
            compare_mask(groups[fqn]["mask"], ref, "partial %s %s" % (kind, fqn), count=False)
            STATS["ref_only"] = STATS.get("ref_only", 0) + 1


# ---------------------------------------------------------------- part 2: ONNX Runtime

def ort_out(path, x):
    outs = ortlib.run(path, [x])
    if len(outs) != 1:
        raise AssertionError("%s: %d outputs" % (path, len(outs)))
    return outs[0]


def part2_prepared_identity(tmp, kind, path, x):
    prepared = os.path.join(tmp, kind + "-p2a.onnx")
    onnx_pass("prepare", path, "-o", prepared, "--sparsity", "0.5", "--block", "1x4")
    groups = groups_of(prepared)
    if len(groups) != 3 or not all(g["mask"].all() for g in groups.values()):
        raise AssertionError("prepared masks are not all ones")
    a, b = ort_out(path, x), ort_out(prepared, x)
    d = max_diff(a, b)
    print("     %s prepared vs original: max |diff| %.3g%s" % (kind, d,
                                                             " (bitwise)" if d == 0 else ""))
    assert_close(b, a, kind + " prepared vs original", 1e-6)


def part2_pipeline(tmp, kind, path, module, x):
    """step 0.5 (1,4): prepared == squashed == converted (coo, auto) == torch."""
    prepared = os.path.join(tmp, kind + "-p2b-prep.onnx")
    stepped = os.path.join(tmp, kind + "-p2b-step.onnx")
    onnx_pass("prepare", path, "-o", prepared, "--sparsity", "0.5", "--block", "1x4")
    onnx_pass("step", prepared, "-o", stepped)
    tm, want = torch_masks(WeightNormSparsifier(sparsity_level=0.5, sparse_block_shape=(1, 4)),
                           module)
    compare_with_torch(stepped, want, module, kind + " step 0.5 1x4")
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    variants = {"stepped": stepped}
    squashed = os.path.join(tmp, kind + "-p2b-squash.onnx")
    onnx_pass("squash", stepped, "-o", squashed)
    variants["squashed"] = squashed
    for fmt in ("coo", "auto"):
        out = os.path.join(tmp, "%s-p2b-convert-%s.onnx" % (kind, fmt))
        onnx_pass("convert", stepped, "-o", out, "--format", fmt)
        variants["convert " + fmt] = out
    check_squashed(squashed, want, kind)
    check_coo(variants["convert coo"], squashed, kind)
    for name, p in variants.items():
        if name.startswith("convert"):
            check_converted(p)
    outs = {name: ort_out(p, x) for name, p in variants.items()}
    for name, out in outs.items():
        assert_close(out, outs["stepped"], "%s %s vs stepped" % (kind, name), 1e-6)
        assert_close(out, ref, "%s %s vs torch" % (kind, name), 1e-5)
    print("     %s: stepped/squashed/coo/auto vs torch: max |diff| %.3g" % (
        kind, max(max_diff(o, ref) for o in outs.values())))


def check_converted(path):
    """onnx.checker.check_model (not full_check: onnx 1.12's shape inference types a
    sparse_initializer as sparse_tensor(float), which no dense op accepts, for any model that
    uses sparse initializers), and full_check on the same model with the sparse initializers
    made dense again (what ORT does at load time)."""
    model = onnx.load(path)
    onnx.checker.check_model(model)
    dense = copy.deepcopy(model)
    for s in dense.graph.sparse_initializer:
        idx = numpy_helper.to_array(s.indices).reshape(-1)
        vals = numpy_helper.to_array(s.values)
        full = np.zeros(int(np.prod(s.dims)), vals.dtype)
        full[idx] = vals
        dense.graph.initializer.append(numpy_helper.from_array(
            full.reshape(tuple(s.dims)), s.values.name))
    del dense.graph.sparse_initializer[:]
    onnx.checker.check_model(dense, full_check=True)


def check_squashed(path, want, kind):
    model = onnx.load(path)
    if model_state(model) is not None:
        raise AssertionError("%s squash left the %s metadata" % (kind, STATE_KEY))
    ops = [n.op_type for n in model.graph.node]
    if "Cast" in ops or "Mul" in ops or any(t.data_type == TensorProto.BOOL
                                            for t in model.graph.initializer):
        raise AssertionError("%s squash left mask nodes or initializers: %r" % (kind, ops))
    consumers = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    inits = {t.name: t for t in model.graph.initializer}
    for n, fqn in zip(consumers, sorted(want)):
        w = to_array(inits[n.input[1]])
        w = w if n.op_type == "Gemm" else w.T
        if not np.array_equal(w != 0, want[fqn]):
            raise AssertionError("%s squash: nonzeros of %s != mask" % (kind, n.input[1]))
        if np.signbit(w[~want[fqn]]).any():
            raise AssertionError("%s squash: pruned values of %s are not +0.0" % (kind, fqn))


def check_coo(path, squashed, kind):
    """convert --format coo: every weight a COO sparse_initializer equal to the squashed."""
    model = onnx.load(path)
    dense = {t.name: to_array(t) for t in onnx.load(squashed).graph.initializer}
    sparse = {s.values.name: s for s in model.graph.sparse_initializer}
    if len(sparse) != len(LAYERS):
        raise AssertionError("%s coo: %d sparse initializers" % (kind, len(sparse)))
    for name, s in sparse.items():
        idx = numpy_helper.to_array(s.indices).reshape(-1)
        if s.indices.data_type != TensorProto.INT64 or np.any(np.diff(idx) <= 0):
            raise AssertionError("%s coo %s: indices not INT64 strictly increasing" % (kind,
                                                                                       name))
        full = np.zeros(int(np.prod(s.dims)), np.float32)
        full[idx] = numpy_helper.to_array(s.values)
        if not np.array_equal(full.reshape(tuple(s.dims)), dense[name]):
            raise AssertionError("%s coo %s != squashed weight" % (kind, name))


def part2_size(tmp, kind, path):
    """90% unstructured (1x1): prepare+step+convert and sparsify pass onnx.checker, store
    sparse initializers, are smaller than the dense original, and hold the same weights.
    Returns the paths for part2_sparsify_ort."""
    flags = ["--sparsity", "0.9", "--block", "1x1"]
    paths = {n: os.path.join(tmp, "%s-p2c-%s.onnx" % (kind, n))
             for n in ("prep", "step", "convert", "sparsify")}
    onnx_pass("prepare", path, "-o", paths["prep"], *flags)
    onnx_pass("step", paths["prep"], "-o", paths["step"])
    onnx_pass("convert", paths["step"], "-o", paths["convert"])
    onnx_pass("sparsify", path, "-o", paths["sparsify"], *flags)
    for p in (paths["convert"], paths["sparsify"]):
        check_converted(p)
    size0, size1 = os.path.getsize(path), os.path.getsize(paths["convert"])
    print("     %s 90%% 1x1: dense %d bytes, converted %d bytes (%.0f%%)"
          % (kind, size0, size1, 100.0 * size1 / size0))
    if not size1 < size0:
        raise AssertionError("%s: converted 90%% model (%d B) not smaller than dense (%d B)"
                             % (kind, size1, size0))
    a, b = onnx.load(paths["convert"]).graph, onnx.load(paths["sparsify"]).graph
    if len(a.sparse_initializer) != len(LAYERS):
        raise AssertionError("%s: --format auto at 90%% did not store sparse initializers"
                             % kind)
    if [s.SerializeToString() for s in a.sparse_initializer] != [
            s.SerializeToString() for s in b.sparse_initializer]:
        raise AssertionError("%s: sparsify and prepare+step+convert store different sparse "
                             "weights" % kind)
    return paths


def part2_sparsify_ort(kind, paths, x):
    a = ort_out(paths["convert"], x)
    assert_close(ort_out(paths["sparsify"], x), a, kind + " sparsify vs prepare+step+convert",
                 0.0)
    assert_close(a, ort_out(paths["step"], x), kind + " converted vs stepped", 1e-6)


# ---------------------------------------------------------------- part 3: multi-step

SCHEDULES = {
    # the brief's sequence: --sparsity 0.3, four cubic steps, --sparsity 0.1, one more step
    "cubic": ({"type": "cubic", "init_sl": 0.0, "init_t": 0, "delta_t": 1, "total_t": 4},
              0.8, [0.3, None, None, None, None, 0.1, None]),
    # initially_zero before init_t, delta_t != 1, a non-zero init_sl
    "cubic-delayed": ({"type": "cubic", "init_sl": 0.1, "init_t": 2, "delta_t": 2,
                       "total_t": 3, "initially_zero": True},
                      0.7, [None] * 10),
}


def part3_multistep(tmp, kind, path, module, sched_name):
    """Steps (None: scheduled level, else --sparsity) vs torch's sparsifier + CubicSL."""
    schedule, target, sequence = SCHEDULES[sched_name]
    cfg = wn_config_file(os.path.join(tmp, "cfg3.json"), target, (1, 4), 4, 2,
                         {"schedule": schedule})
    tag = "%s-p3-%s" % (kind, sched_name)
    cur = os.path.join(tmp, tag + "-0.onnx")
    onnx_pass("prepare", path, "-o", cur, "--config", cfg)
    m = copy.deepcopy(module)
    sp = WeightNormSparsifier(sparsity_level=target, sparse_block_shape=(1, 4),
                              zeros_per_block=4, norm=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp.prepare(m, copy.deepcopy(TORCH_CONFIG))
        sched = CubicSL(sp, **{k: v for k, v in schedule.items() if k != "type"})
    prev = groups_of(cur)
    original = {fqn: g["weight"].copy() for fqn, g in prev.items()}
    report, levels = [], []
    for t, override in enumerate(sequence):
        if override is not None:
            for g in sp.groups:
                g["sparsity_level"] = override
        level = sp.groups[0]["sparsity_level"]
        if override is None:
            want_level = CubicSL.sparsity_compute_fn(
                schedule["init_sl"], target, t, schedule["init_t"], schedule["delta_t"],
                schedule["total_t"], schedule.get("initially_zero", False))
            if abs(level - want_level) > 1e-12:
                raise AssertionError("test bug: torch scheduler level %r != %r" % (level,
                                                                                    want_level))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sp.step()
            sched.step()
        want = current_torch_masks(m)
        nxt = os.path.join(tmp, "%s-%d.onnx" % (tag, t + 1))
        extra = ["--sparsity", str(override)] if override is not None else []
        onnx_pass("step", cur, "-o", nxt, *extra)
        groups = groups_of(nxt)
        what = "%s %s step %d (level %.4g)" % (kind, sched_name, t, level)
        step_count = model_state(onnx.load(nxt)).get("step_count")
        if step_count != t + 1:
            raise AssertionError("%s: step_count %r, expected %d" % (what, step_count, t + 1))
        for fqn, g in groups.items():
            got_level = g["group"].get("current_sparsity_level")
            if got_level is None or abs(got_level - level) > 1e-9:
                raise AssertionError("%s %s: current_sparsity_level %r, torch %r"
                                     % (what, fqn, got_level, level))
            if not np.array_equal(g["weight"], original[fqn]):
                raise AssertionError("%s: weight %s changed (must keep the original)"
                                     % (what, fqn))
            masked_before = original[fqn].astype(np.float32) * prev[fqn]["mask"]
            compare_tied(g["mask"], want[fqn], masked_before, (level, (1, 4), 4, 2, False),
                         what + " " + fqn)
            if t > 0 and level < levels[-1]:
                check_restored(g["mask"], prev[fqn]["mask"], level, what + " " + fqn)
        report.append("%.4g" % level)
        levels.append(level)
        prev, cur = groups, nxt
    print("     %s %s levels per step: %s" % (kind, sched_name, " ".join(report)))


def check_restored(mask, prev_mask, level, what):
    """A lower level restores pruned weights: round(level * blocks) whole 1x4 blocks stay
    zero, all of them already zero before; the rest is unmasked again (the prepared model
    kept the original weights)."""
    nb = mask.size // 4
    want_zeros = 4 * int(round(level * nb))
    if (~mask).sum() != want_zeros:
        raise AssertionError("%s: %d zeros after the lower step, expected %d"
                             % (what, (~mask).sum(), want_zeros))
    if np.any(~mask & prev_mask):
        raise AssertionError("%s: the lower step pruned weights that were kept" % what)
    if not (~prev_mask).sum() > want_zeros:
        raise AssertionError("test bug: %s restores nothing" % what)


def compare_tied(got, want, masked_before, wn_args, what):
    """Mask vs torch's where torch's topk order among equal scores is unspecified.

    The mask must be the SPEC 6 reference's (ties: lower index first). Against torch:
    equal outside the elements whose value depends on the order of equal scores, and the
    same number of zeros (tie-independent with whole blocks)."""
    level, block, zpb, norm, wide = wn_args
    ref, amb = ref_weight_norm_ties(masked_before, level, block, zpb, norm, wide)
    compare_mask(got, ref, what + " vs SPEC 6 reference", count=False)
    STATS["masks"] += 1
    STATS["elements"] += got.size
    if np.array_equal(got, want):
        return
    if not np.array_equal(got[~amb], want[~amb]):
        raise AssertionError("%s vs torch (untied elements): %s"
                             % (what, describe_mismatch(np.where(amb, want, got), want)))
    if (~got).sum() != (~want).sum():
        raise AssertionError("%s vs torch: %d zeros, torch %d (differences only at tied "
                             "scores)" % (what, (~got).sum(), (~want).sum()))
    STATS["tie_only"] = STATS.get("tie_only", 0) + 1
    print("     %s: %d of %d elements differ from torch, all at tied scores"
          % (what, int((got != want).sum()), got.size))


# ---------------------------------------------------------------- part 4: constants_if

def part4_setup(tmp):
    """Generate constants_if.onnx, sparsify it at 0 and at 0.5 (1x4); inputs for ORT."""
    d0 = os.path.join(tmp, "cif")
    make_models.generate(d0, ["constants_if"])
    ctx = {"dir": d0, "src": os.path.join(d0, "constants_if.onnx"),
           "zero": os.path.join(tmp, "cif-0.onnx"), "half": os.path.join(tmp, "cif-half.onnx"),
           "expected_dir": os.path.join(tmp, "cif-expected")}
    onnx_pass("sparsify", ctx["src"], "-o", ctx["zero"], "--sparsity", "0")
    onnx_pass("sparsify", ctx["src"], "-o", ctx["half"], "--sparsity", "0.5", "--block", "1x4")
    rng = np.random.default_rng(31)
    ctx["x"] = rng.standard_normal((2, 8)).astype(np.float32)
    ctx["img"] = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    return ctx


def part4_pruned_weights(ctx):
    """At 0.5 (1x4), every weight (Constant, If branches too) is pruned as the SPEC 6
    reference says (partial edge blocks included); inspect --json counts agree."""
    with open(os.path.join(ctx["dir"], "manifest.json")) as f:
        entries = json.load(f)["models"]["constants_if.onnx"]["weights"]
    info = json.loads(onnx_pass("inspect", ctx["half"], "--json").stdout)
    by_name = {w["name"]: w for w in info["weights"]}
    orig = testutil.stored_tensors(onnx.load(ctx["src"]).graph)
    got_t = testutil.stored_tensors(onnx.load(ctx["half"]).graph)
    expected_model = onnx.load(ctx["src"])
    exp_t = testutil.stored_tensors(expected_model.graph)
    zeros = numel = 0
    for e in entries:
        w = to_array(orig[e["name"]])
        v = view2d(w, e["view"])
        pruned = v * ref_weight_norm(v, 0.5, (1, 4), 4, 2)
        pruned = pruned.T if e["view"] == "transposed" else pruned.reshape(w.shape)
        got = to_array(got_t[e["name"]])
        if not np.array_equal(got, pruned):
            raise AssertionError("constants_if %s: pruned values differ from the reference "
                                 "(%d vs %d nonzeros)" % (e["name"], np.count_nonzero(got),
                                                          np.count_nonzero(pruned)))
        exp_t[e["name"]].CopyFrom(numpy_helper.from_array(pruned.astype(np.float32),
                                                          e["name"]))
        if e["name"] not in by_name:
            raise AssertionError("inspect --json does not list " + e["name"])
        nz = by_name[e["name"]]["nonzeros"]
        if nz != np.count_nonzero(pruned) or by_name[e["name"]]["numel"] != w.size:
            raise AssertionError("inspect %s: nonzeros %d numel %d, expected %d %d"
                                 % (e["name"], nz, by_name[e["name"]]["numel"],
                                    np.count_nonzero(pruned), w.size))
        zeros += w.size - nz
        numel += w.size
    tot = info["totals"]
    if tot["numel"] != numel or tot["nonzeros"] != numel - zeros:
        raise AssertionError("inspect totals %r, expected numel %d nonzeros %d"
                             % (tot, numel, numel - zeros))
    print("     constants_if 0.5 1x4: %d of %d weight values zero (%.1f%%), %d weights"
          % (zeros, numel, 100.0 * zeros / numel, len(entries)))
    if not 0.35 <= zeros / numel <= 0.65:
        raise AssertionError("sparsity %.3f is not about half" % (zeros / numel))
    os.makedirs(ctx["expected_dir"], exist_ok=True)
    onnx.save(expected_model, os.path.join(ctx["expected_dir"], "constants_if.onnx"))


def part4_feeds(ctx):
    return {c: {"x": ctx["x"], "cond": np.array(c), "img": ctx["img"]} for c in (True, False)}


def part4_ort_zero(ctx):
    """sparsify --sparsity 0 keeps the outputs of both If branches."""
    for c, f in part4_feeds(ctx).items():
        for name, a, b in zip(("y", "feat"), ortlib.run(ctx["src"], f),
                              ortlib.run(ctx["zero"], f)):
            assert_close(b, a, "constants_if sparsity 0 %s (cond=%s)" % (name, c), 0.0)


def part4_ort_half(ctx):
    """The 0.5 model runs in ORT and equals numpy on the reference-pruned weights."""
    if not os.path.exists(os.path.join(ctx["expected_dir"], "constants_if.onnx")):
        raise AssertionError("no reference-pruned model (the pruned-weights check failed)")
    for c, f in part4_feeds(ctx).items():
        got = ortlib.run(ctx["half"], f)
        want = make_models.constants_if_reference(ctx["expected_dir"], ctx["x"], c, ctx["img"])
        for i, name in enumerate(("y", "feat")):
            assert_close(got[i], want[i], "constants_if 0.5 %s (cond=%s)" % (name, c), 1e-4)


# ---------------------------------------------------------------- part 5: state

def unpack_bits(text, shape):
    import base64
    n = int(np.prod(shape))
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8), bitorder="little")
    return bits[:n].reshape(shape).astype(bool)


def part5_state(tmp, path):
    prepared = os.path.join(tmp, "p5-prep.onnx")
    stepped = os.path.join(tmp, "p5-step.onnx")
    onnx_pass("prepare", path, "-o", prepared, "--sparsity", "0.6", "--block", "2x2",
              "--zeros-per-block", "2")
    onnx_pass("step", prepared, "-o", stepped)
    state_path = os.path.join(tmp, "p5-state.json")
    onnx_pass("state", "export", stepped, "-o", state_path)
    state = json.load(open(state_path))
    before = groups_of(stepped)
    for g in state["groups"]:
        data = g.get("mask_data") or g.get("mask")
        if not isinstance(data, dict):
            raise AssertionError("state export: group %s has no mask data" % g["tensor_fqn"])
        m = unpack_bits(data["bits"], tuple(data["shape"]))
        stored = view2d(m, g["view"])
        compare_mask(before[g["alias"]]["mask"], stored,
                     "state export bits of " + g["tensor_fqn"], count=False)
    loaded = os.path.join(tmp, "p5-loaded.onnx")
    onnx_pass("state", "load", path, state_path, "-o", loaded)
    after = groups_of(loaded)
    if sorted(after) != sorted(before):
        raise AssertionError("state load: groups %r, expected %r" % (sorted(after),
                                                                     sorted(before)))
    for fqn, g in before.items():
        compare_mask(after[fqn]["mask"], g["mask"], "state load " + fqn, count=False)
        if after[fqn]["group"]["args"] != g["group"]["args"]:
            raise AssertionError("state load %s: args %r, expected %r"
                                 % (fqn, after[fqn]["group"]["args"], g["group"]["args"]))
    st_after = model_state(onnx.load(loaded))
    if st_after.get("step_count") != state.get("step_count"):
        raise AssertionError("state load: step_count %r, expected %r"
                             % (st_after.get("step_count"), state.get("step_count")))
    # A further step on the loaded model gives the same masks as on the stepped one.
    s2a, s2b = os.path.join(tmp, "p5-s2a.onnx"), os.path.join(tmp, "p5-s2b.onnx")
    onnx_pass("step", stepped, "-o", s2a, "--sparsity", "0.8")
    onnx_pass("step", loaded, "-o", s2b, "--sparsity", "0.8")
    ga, gb = groups_of(s2a), groups_of(s2b)
    for fqn in ga:
        compare_mask(gb[fqn]["mask"], ga[fqn]["mask"], "step after state load " + fqn,
                     count=False)


def part5_strict(tmp, path):
    prepared = os.path.join(tmp, "p5s-prep.onnx")
    stepped = os.path.join(tmp, "p5s-step.onnx")
    onnx_pass("prepare", path, "-o", prepared, "--sparsity", "0.5", "--block", "1x4")
    onnx_pass("step", prepared, "-o", stepped)
    state_path = os.path.join(tmp, "p5s-state.json")
    onnx_pass("state", "export", stepped, "-o", state_path)
    state = json.load(open(state_path))
    extra = copy.deepcopy(state["groups"][0])
    for key in ("tensor_fqn", "alias", "weight"):
        extra[key] = "nonexistent.weight"
    for key in ("mask", "cast_output", "output"):
        if key in extra and isinstance(extra[key], str):
            extra[key] = "nonexistent.weight_" + key
    state["groups"].append(extra)
    bad_path = write_json(os.path.join(tmp, "p5s-extra.json"), state)

    strict_out = os.path.join(tmp, "p5s-strict.onnx")
    p = onnx_pass("state", "load", path, bad_path, "-o", strict_out, ok=False)
    if p.returncode == 0:
        raise AssertionError("strict state load with a nonexistent tensor succeeded")
    if os.path.exists(strict_out):
        raise AssertionError("failed strict state load left %s behind" % strict_out)
    if not p.stderr.startswith("onnx-pass: error:") or "nonexistent.weight" not in p.stderr:
        raise AssertionError("strict state load error does not name the tensor: %r"
                             % p.stderr)
    print("     strict: exit %d, %s" % (p.returncode, p.stderr.strip().splitlines()[0]))

    loose = os.path.join(tmp, "p5s-loose.onnx")
    onnx_pass("state", "load", path, bad_path, "-o", loose, "--no-strict")
    want, got = groups_of(stepped), groups_of(loose)
    if sorted(got) != sorted(want):
        raise AssertionError("--no-strict load: groups %r, expected %r" % (sorted(got),
                                                                          sorted(want)))
    for fqn in want:
        compare_mask(got[fqn]["mask"], want[fqn]["mask"], "--no-strict load " + fqn,
                     count=False)


# ---------------------------------------------------------------- part 6: dtypes

DTYPE_CONFIGS = [((1, 4), 4, 0.5, 2), ((2, 2), 2, 0.5, 1), ((1, 1), 1, 0.3, 2),
                 ((2, 3), 3, 1.0, 1), ((4, 1), 1, 0.7, 2), ((2, 3), 6, 0.4, 1)]
ELEM = {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
        "float64": TensorProto.DOUBLE}


def dtype_tensor(name, values, dtype):
    """TensorProto of float64 values rounded to dtype (raw_data)."""
    t = TensorProto()
    t.name = name
    t.data_type = ELEM[dtype]
    t.dims.extend(values.shape)
    if dtype == "bfloat16":
        bits = ortlib.float32_to_bfloat16_bits(values.astype(np.float32))
        t.raw_data = bits.astype("<u2").tobytes()
    else:
        t.raw_data = values.astype(np.float16 if dtype == "float16" else "<f8").tobytes()
    return t


def helper_model(weights, dtype, op, path):
    """onnx.helper MLP (no bias) from [out, in] weights; MatMul stores them as [in, out]."""
    elem = ELEM[dtype]
    nodes, inits, cur = [], [], "input"
    for i, name in enumerate(LAYERS):
        w = weights[name + ".weight"]
        wname = name + ".weight" if op == "Gemm" else name + ".weight_t"
        inits.append(dtype_tensor(wname, w if op == "Gemm" else w.T.copy(), dtype))
        out = "/%s/%s_output_0" % (name, op)
        attrs = {"transB": 1} if op == "Gemm" else {}
        nodes.append(helper.make_node(op, [cur, wname], [out], name="/%s/%s" % (name, op),
                                      **attrs))
        cur = out
        if i + 1 < len(LAYERS):
            nodes.append(helper.make_node("Relu", [cur], [cur + "_relu"],
                                          name="/act%d/Relu" % (i + 1)))
            cur += "_relu"
    d_in = weights["fc1.weight"].shape[1]
    d_out = weights["fc3.weight"].shape[0]
    graph = helper.make_graph(nodes, "mlp_" + dtype, [helper.make_tensor_value_info(
        "input", elem, [3, d_in])], [helper.make_tensor_value_info(cur, elem, [3, d_out])],
        inits)
    model = make_models.finish_model(graph)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def dtype_models(tmp, dtype):
    """(module torch computes the reference masks on, {layout: path}, how it was built)."""
    base = make_mlp(7)
    tdt = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}[dtype]
    native = copy.deepcopy(base).to(tdt)
    paths, how = {}, {}
    for op, example in (("Gemm", torch.randn(3, 24)), ("MatMul", torch.randn(2, 5, 24))):
        path = os.path.join(tmp, "%s-%s.onnx" % (dtype, op))
        try:
            export(native, example.to(tdt), path, op)
            how[op] = "torch.onnx.export"
        except Exception as e:   # fp16 Linear does not run on CPU in torch 1.13
            weights = {n + ".weight": getattr(native, n).weight.detach().double().numpy()
                       for n in LAYERS}
            helper_model(weights, dtype, op, path)
            how[op] = "onnx.helper (export failed: %s)" % str(e).splitlines()[0][:60]
        paths[op] = path
    if dtype == "float64":
        ref_module = native                  # torch computes on the float64 weights
    else:
        ref_module = copy.deepcopy(native).float()   # fp16/bf16 widened exactly to float32
    return ref_module, paths, how


def part6_dtype(tmp, dtype, ref_module, paths):
    failures = []
    for block, zpb, level, norm in DTYPE_CONFIGS:
        sp = WeightNormSparsifier(sparsity_level=level, sparse_block_shape=block,
                                  zeros_per_block=zpb, norm=norm)
        _, want = torch_masks(sp, ref_module)
        cfg = wn_config_file(os.path.join(tmp, "cfg6.json"), level, block, zpb, norm)
        for op, path in paths.items():
            what = "%s %s %s zpb=%d level=%g norm=%d" % (dtype, op, block, zpb, level, norm)
            try:
                stepped = onnx_masks_for(tmp, path, cfg, "%s-%s" % (dtype, op))
                model = onnx.load(stepped)
                types = {t.name: t.data_type for t in model.graph.initializer}
                for g in model_state(model)["groups"]:
                    if types[g["weight"]] != ELEM[dtype]:
                        raise AssertionError("weight %s is no longer %s" % (g["weight"],
                                                                            dtype))
                compare_with_torch(stepped, want, ref_module, what,
                                   (level, block, zpb, norm, dtype == "float64"))
            except AssertionError as e:
                failures.append(str(e))
    if failures:
        raise AssertionError("; ".join(failures))


# ---------------------------------------------------------------- driver

def main(runner):
    no_ort = None if ortlib.available() else "no ORT_RUN"
    check = runner.check
    result = runner.result

    with tempfile.TemporaryDirectory(prefix="sparsity-torch-") as tmp:
        module = make_mlp(3)
        exports = {
            "Gemm": export(module, torch.randn(3, 24), os.path.join(tmp, "mlp-gemm.onnx"),
                           "Gemm"),
            "MatMul": export(module, torch.randn(2, 5, 24),
                             os.path.join(tmp, "mlp-matmul.onnx"), "MatMul")}

        print("# 1. mask parity with torch.ao (Gemm and MatMul exports)")
        grid = weight_norm_grid()
        n0, p0 = result.testsRun, result.n_pass
        for level, block, zpb, norm in grid:
            name = "weight_norm level=%g block=%s zpb=%d norm=%d" % (level, block, zpb, norm)
            check(name, part1_weight_norm, tmp, exports, module, level, block, zpb, norm,
                  quiet=True)
        for nearliness in (1, 3):
            check("nearly_diagonal nearliness=%d" % nearliness, part1_nearly_diagonal, tmp,
                  exports, module, nearliness, quiet=True)
        check("per-entry config overrides", part1_mixed, tmp, exports, module, quiet=True)
        for kind in exports:
            check("NaN weights (%s)" % kind, part1_nan, tmp, module, kind, quiet=True)
        n_run, n_ok = result.testsRun - n0, result.n_pass - p0
        print("ok   %d of %d configs x 2 exports: %d masks, %d elements compared with torch "
              "(%d reference masks checked)" % (n_ok, n_run, STATS["masks"],
                                                 STATS["elements"], STATS["ref_masks"]))
        n0, p0 = result.testsRun, result.n_pass
        pmodule = make_mlp(9, PARTIAL_DIMS)
        pexports = {
            "Gemm": export(pmodule, torch.randn(3, PARTIAL_DIMS[0]),
                           os.path.join(tmp, "partial-gemm.onnx"), "Gemm"),
            "MatMul": export(pmodule, torch.randn(2, 5, PARTIAL_DIMS[0]),
                             os.path.join(tmp, "partial-matmul.onnx"), "MatMul")}
        for block in PARTIAL_BLOCKS:
            size = block[0] * block[1]
            for zpb in sorted({size, 1, size // 2}, reverse=True):
                for level in (0.3, 0.5, 1.0):
                    check("partial blocks %s zpb=%d level=%g" % (block, zpb, level),
                          part1_partial, tmp, pexports, pmodule, level, block, zpb, quiet=True)
        n_run, n_ok = result.testsRun - n0, result.n_pass - p0
        print("ok   %d of %d partial-block configs x 2 exports: %d masks vs the SPEC 6 "
              "reference" % (n_ok, n_run, STATS.get("ref_only", 0)))

        print("# 2. ONNX Runtime")
        torch.manual_seed(5)
        xs = {"Gemm": torch.randn(3, 24).numpy(), "MatMul": torch.randn(2, 5, 24).numpy()}
        for kind, path in exports.items():
            check("%s prepared == original" % kind, part2_prepared_identity, tmp, kind, path,
                  xs[kind], needs=no_ort)
            check("%s step/squash/convert == torch" % kind, part2_pipeline, tmp, kind, path,
                  module, xs[kind], needs=no_ort)
            paths = check("%s 90%% 1x1: checker, size, sparsify weights" % kind, part2_size,
                          tmp, kind, path)
            if paths is not None:
                check("%s 90%% 1x1: sparsify == prepare+step+convert in ORT" % kind,
                      part2_sparsify_ort, kind, paths, xs[kind], needs=no_ort)

        print("# 3. multi-step with a cubic schedule")
        for kind, path in exports.items():
            for sched_name in SCHEDULES:
                check("%s multi-step (%s) vs torch CubicSL + sparsifier" % (kind, sched_name),
                      part3_multistep, tmp, kind, path, module, sched_name)

        print("# 4. constants_if (Constant weights, If subgraphs)")
        ctx = check("constants_if sparsify 0 and 0.5", part4_setup, tmp)
        if ctx is not None:
            check("constants_if 0.5: pruned weights, inspect --json", part4_pruned_weights, ctx)
            check("constants_if 0: ORT outputs unchanged (both branches)", part4_ort_zero, ctx,
                  needs=no_ort)
            check("constants_if 0.5: ORT == numpy on pruned weights", part4_ort_half, ctx,
                  needs=no_ort)

        print("# 5. state export / load")
        check("state round trip", part5_state, tmp, exports["Gemm"])
        check("state load --strict / --no-strict", part5_strict, tmp, exports["Gemm"])

        print("# 6. fp16 / bf16 / fp64 weights")
        for dtype in ("float16", "bfloat16", "float64"):
            built = check("%s models" % dtype, dtype_models, tmp, dtype, quiet=True)
            if built is None:
                continue
            ref_module, paths, how = built
            for op, h in how.items():
                print("     %s %s: %s" % (dtype, op, h))
            check("%s masks vs torch (%s)" % (dtype, "float64 weights" if dtype == "float64"
                                              else "weights widened to float32"),
                  part6_dtype, tmp, dtype, ref_module, paths)

    print("compared %d masks, %d elements with torch (%d equal to torch only up to ties)"
          % (STATS["masks"], STATS["elements"], STATS.get("tie_only", 0)))


if __name__ == "__main__":
    testutil.main(main)
