"""onnx-pass from Python: torch.ao.pruning's sparsifier workflow on ONNX models.

A thin ctypes layer over the C library libonnxpass.so; nothing is compiled.

    import onnx_pass

    model = onnx_pass.sparsify(model, sparsity_level=1.0, sparse_block_shape=(1, 4),
                               zeros_per_block=2, format="coo")     # 2:4, sparse storage
    report = onnx_pass.inspect(model)                              # a dict

Every function takes the model as an onnx.ModelProto (and returns one), as bytes
(returns bytes) or as a path (str or os.PathLike; the result is written to the
required output= path, which is returned). Paths go through the library's file
API, so models with external data work and are written back the same way.

The config is a dict (or JSON text, or a path to a JSON file) shaped like the
command line's --config file (SPEC 5): "sparsifier", "defaults", "config",
"exclude", ..., plus an "options" object for the passes' options. Keyword
arguments add to it (see each function).

The library is found through the ONNX_PASS_LIBRARY environment variable, else
next to this package, else in the meson build folders of a source checkout
(build*/libonnxpass.so, the newest first), else on the system library path.
Failures raise onnx_pass.Error with the library's one-line message, its errno and
its source: what the failure is about ("model", "usage", "config", "input_file",
"output", "data" or "runtime"; see enum onnxpass_error_source in onnxpass.h).
"""

import contextlib
import ctypes
import ctypes.util
import glob
import json
import os
import shutil
import tempfile
import threading

__all__ = ["Error", "sparsify", "run_passes", "prepare", "step", "squash", "convert",
           "inspect", "default_config", "compare", "version", "library_path"]

_SAVE_EXTERNAL_DATA = 1
_SAVE_FSYNC = 2
_COMPARE_JSON = 1


class Error(Exception):
    """A failure reported by libonnxpass; .message is its text, .code a negative errno,
    .source what it is about (one of SOURCES)."""

    def __init__(self, message, code=None, source="model"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.source = source


# enum onnxpass_error_source, in order
SOURCES = ("model", "usage", "config", "input_file", "output", "data", "runtime")


class _CError(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 1024),
                ("source", ctypes.c_int)]


_lib = None
_lib_path = None
_lib_lock = threading.Lock()


def _candidates():
    env = os.environ.get("ONNX_PASS_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(glob.glob(os.path.join(here, "libonnxpass.so*")))
    top = os.path.dirname(os.path.dirname(here))
    builds = glob.glob(os.path.join(top, "build*", "libonnxpass.so"))
    found += sorted(builds, key=os.path.getmtime, reverse=True)
    system = ctypes.util.find_library("onnxpass")
    if system:
        found.append(system)
    return found


def _declare(lib):
    p, c = ctypes.c_void_p, ctypes.c_char_p
    pp, err = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(_CError)
    sigs = {
        "onnxpass_version": (c, []),
        "onnxpass_free": (None, [p]),
        "onnxpass_model_load_file": (ctypes.c_int, [c, pp, err]),
        "onnxpass_model_load_bytes": (ctypes.c_int, [c, ctypes.c_size_t, c, pp, err]),
        "onnxpass_model_save_file": (ctypes.c_int, [p, c, ctypes.c_uint, err]),
        "onnxpass_model_save_bytes": (ctypes.c_int, [p, pp, ctypes.POINTER(ctypes.c_size_t), err]),
        "onnxpass_model_free": (p, [p]),
        "onnxpass_registry_new": (ctypes.c_int, [pp, err]),
        "onnxpass_registry_free": (p, [p]),
        "onnxpass_registry_load_plugin": (ctypes.c_int, [p, c, err]),
        "onnxpass_registry_run": (ctypes.c_int, [p, p, c, c, pp, err]),
        "onnxpass_compare": (ctypes.c_int, [c, c, c, ctypes.c_uint, pp, err]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def _library():
    global _lib, _lib_path
    with _lib_lock:
        if _lib is not None:
            return _lib
        tried = []
        for path in _candidates():
            try:
                lib = ctypes.CDLL(path)
                _declare(lib)
            except (OSError, AttributeError) as e:
                tried.append("%s (%s)" % (path, e))
                continue
            _lib, _lib_path = lib, path
            return lib
        raise Error("libonnxpass.so not found: set ONNX_PASS_LIBRARY; tried: %s"
                    % ("; ".join(tried) or "nothing"))


def library_path():
    """Path of the libonnxpass.so in use (loading it if needed)."""
    _library()
    return _lib_path


def version():
    """The library's version string."""
    return _library().onnxpass_version().decode()


def _check(r, err):
    if r < 0:
        source = SOURCES[err.source] if 0 <= err.source < len(SOURCES) else "model"
        raise Error(err.message.decode("utf-8", "replace"), r, source)


_EINVAL = -22


def _c_string(text, what):
    """text as a C string: a NUL would cut it short, a lone surrogate cannot
    be encoded; both are errors, not silently different strings."""
    try:
        data = os.fsencode(text) if what == "path" else text.encode("utf-8")
    except UnicodeError as e:
        raise Error("%s %r cannot be encoded: %s" % (what, text, e.reason), _EINVAL,
                    "usage") from None
    if b"\0" in data:
        raise Error("%s %r contains a NUL byte" % (what, text), _EINVAL, "usage")
    return data


def _fspath(path):
    return _c_string(path, "path")


def _kind(model):
    if isinstance(model, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(model, (str, os.PathLike)):
        return "path"
    if hasattr(model, "SerializeToString"):
        return "proto"
    raise TypeError("model must be an onnx.ModelProto, bytes or a path, not %s"
                    % type(model).__name__)


def _config_is_path(text):
    """A config string is JSON text unless it is not JSON and names a file;
    neither is an error (a typo'd JSON text is not opened as a path)."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        return False
    try:
        json.loads(text)
        return False
    except ValueError:
        pass
    if "\0" not in text and os.path.isfile(text):
        return True
    raise Error("config: neither JSON text nor a file: %r" % text[:80], _EINVAL, "config")


def _config_text(config, top=None, defaults=None, options=None):
    """The config JSON text: config (dict, JSON text or file) with the overrides merged."""
    if isinstance(config, os.PathLike) or (isinstance(config, str) and _config_is_path(config)):
        try:
            with open(config, encoding="utf-8") as f:
                config = f.read()
        except (OSError, UnicodeError, ValueError) as e:
            raise Error("config: %s: %s" % (config, e), _EINVAL, "input_file") from None
    overrides = {k: v for k, v in (("", top), ("defaults", defaults), ("options", options)) if v}
    if config is None:
        config = {}
    elif isinstance(config, str):
        if not overrides:
            return config
        try:
            config = json.loads(config)
        except ValueError:
            return config  # the library reports line and column
    if not isinstance(config, dict):
        raise TypeError("config must be a dict, JSON text or a path, not %s"
                        % type(config).__name__)
    config = json.loads(json.dumps(config))
    for key, values in overrides.items():
        target = config if key == "" else config.setdefault(key, {})
        if not isinstance(target, dict):
            raise TypeError("config[%r] must be an object" % key)
        target.update({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()})
    return json.dumps(config)


class _Session:
    """One library model + registry; everything freed on exit."""

    def __init__(self, plugins=()):
        self.lib = _library()
        self.model = ctypes.c_void_p()
        self.registry = ctypes.c_void_p()
        self.plugins = list(plugins)

    def __enter__(self):
        err = _CError()
        _check(self.lib.onnxpass_registry_new(ctypes.byref(self.registry), ctypes.byref(err)), err)
        for plugin in self.plugins:
            r = self.lib.onnxpass_registry_load_plugin(self.registry, _fspath(plugin),
                                                       ctypes.byref(err))
            _check(r, err)
        return self

    def __exit__(self, *exc):
        self.lib.onnxpass_model_free(self.model)
        self.lib.onnxpass_registry_free(self.registry)

    def load(self, model, kind):
        err = _CError()
        if kind == "path":
            r = self.lib.onnxpass_model_load_file(_fspath(model), ctypes.byref(self.model),
                                                  ctypes.byref(err))
        else:
            data = model.SerializeToString() if kind == "proto" else bytes(model)
            r = self.lib.onnxpass_model_load_bytes(data, len(data), None,
                                                   ctypes.byref(self.model), ctypes.byref(err))
        _check(r, err)

    def run(self, passes, config_text):
        err = _CError()
        report = ctypes.c_void_p()
        r = self.lib.onnxpass_registry_run(self.registry, self.model,
                                           _c_string(passes, "pass list"),
                                           _c_string(config_text, "config"),
                                           ctypes.byref(report), ctypes.byref(err))
        _check(r, err)
        if not report.value:
            return ""
        try:
            return ctypes.string_at(report).decode("utf-8", "replace")
        finally:
            self.lib.onnxpass_free(report)

    def save_file(self, path, external_data, fsync=False):
        err = _CError()
        flags = (_SAVE_EXTERNAL_DATA if external_data else 0) | (_SAVE_FSYNC if fsync else 0)
        _check(self.lib.onnxpass_model_save_file(self.model, _fspath(path), flags,
                                                 ctypes.byref(err)), err)

    def save_bytes(self):
        err = _CError()
        data, size = ctypes.c_void_p(), ctypes.c_size_t()
        _check(self.lib.onnxpass_model_save_bytes(self.model, ctypes.byref(data),
                                                  ctypes.byref(size), ctypes.byref(err)), err)
        try:
            return ctypes.string_at(data, size.value)
        finally:
            self.lib.onnxpass_free(data)


def _pass_list(passes):
    if isinstance(passes, str):
        return passes
    return ",".join(passes)


def _transform(model, passes, config_text, output, external_data=False, plugins=(),
               want_model=True, fsync=False):
    """Run passes; returns (result of the input's kind or None, report text)."""
    kind = _kind(model)
    if kind == "path" and want_model and output is None:
        raise ValueError("output= is required when the model is given as a path")
    with _Session(plugins) as s:
        s.load(model, kind)
        report = s.run(_pass_list(passes), config_text)
        if not want_model:
            return None, report
        if output is not None:
            s.save_file(output, external_data, fsync)
        if kind == "path":
            return output, report
        data = s.save_bytes()
    if kind == "bytes":
        return data, report
    import onnx
    return onnx.load_model_from_string(data), report


def run_passes(model, passes, config=None, output=None, external_data=False, plugins=(),
               report=False, fsync=False):
    """Run a pass list ("prepare,step" or ["prepare", "step"]) on a model.

    plugins: paths of plugin .so files whose passes become available.
    external_data: with output=, store large tensors in OUTPUT.data.
    fsync: with output=, make the written files durable before returning.
    report=True returns (result, report text) for passes that print
    (config, inspect, state-export)."""
    result, text = _transform(model, passes, _config_text(config), output, external_data,
                              plugins, fsync=fsync)
    return (result, text) if report else result


def _run(model, passes, config, output, top=None, defaults=None, options=None, calibration=None):
    if calibration is None:
        return _transform(model, passes, _config_text(config, top, defaults, options), output)[0]
    with _calibration_path(calibration) as path:
        options = dict(options or {}, calibration=path)
        return _transform(model, passes, _config_text(config, top, defaults, options), output)[0]


def _top(sparsifier, allocate, sequential):
    top = {k: v for k, v in (("sparsifier", sparsifier), ("allocate", allocate),
                             ("sequential", sequential)) if v is not None}
    return top or None


def sparsify(model, config=None, output=None, passes="sparsify", sparsifier=None, format=None,
             calibration=None, allocate=None, sequential=None, **defaults):
    """prepare + step + convert in one run.

    Keyword arguments set the config's defaults (sparsity_level=0.5,
    sparse_block_shape=(1, 4), zeros_per_block=rows*cols of the block (4 for 1x4),
    norm=2, nearliness=..., percdamp=0.01, blocksize=128); sparsifier="weight_norm" |
    "nearly_diagonal" | "wanda" | "sparsegpt"; format="auto" | "coo" | "dense" is the
    storage of the sparse weights. passes replaces the pass list (e.g.
    "prepare,step,squash"). wanda and sparsegpt need calibration: a PATH (a .npz, a
    folder of .npz or of test_data_set_N), one {input_name: array} dict or an iterable
    of them (one batch each); allocate="sensitivity" chooses per-layer levels,
    sequential=True prunes layer by layer, sequential=N in N stages of consecutive
    layers."""
    options = {"format": format} if format is not None else None
    return _run(model, passes, config, output, _top(sparsifier, allocate, sequential), defaults,
                options, calibration)


def prepare(model, config=None, output=None, sparsifier=None, allocate=None, sequential=None,
            **defaults):
    """Add masks and mask nodes (torch's prepare); keywords as for sparsify()."""
    return _run(model, "prepare", config, output, _top(sparsifier, allocate, sequential), defaults)


def step(model, config=None, output=None, calibration=None, **options):
    """Recompute the masks of a prepared model (step). Options: sparsity_level
    (this step only), freeze=True / unfreeze=True (enable_mask_update);
    calibration as for sparsify() (wanda and sparsegpt)."""
    return _run(model, "step", config, output, options=options, calibration=calibration)


def squash(model, config=None, output=None, **options):
    """Fold the masks into dense weights (squash_mask). Options: keep_params=[...]."""
    return _run(model, "squash", config, output, options=options)


def convert(model, config=None, output=None, **options):
    """squash, then store sparse weights as sparse initializers. Options:
    format="auto" | "coo" | "dense", keep_params=[...]."""
    return _run(model, "convert", config, output, options=options)


def _report_json(model, passes, config):
    text = _transform(model, passes, _config_text(config, options={"json": True}), None,
                      want_model=False)[1]
    return json.loads(text)


def state_dict(model):
    """The sparsifier state of a prepared model (torch's state_dict()): groups,
    args, step count, schedule and bit-packed masks, as a dict."""
    return json.loads(_transform(model, "state-export", "{}", None, want_model=False)[1])


def load_state_dict(model, state, output=None, strict=True):
    """torch's load_state_dict(): the model prepared with the state's groups and
    masks (prepared first when it is not). strict=False skips groups that name
    no weight of the model."""
    return _run(model, "state-load", None, output, options={"state": state, "strict": strict})


def inspect(model, config=None):
    """Per-weight sparsity, N:M pattern, storage and sizes (groups if prepared), as a dict."""
    return _report_json(model, "inspect", config)


def default_config(model, config=None):
    """The default config of a model (torch's make_config_from_model), as a dict."""
    return _report_json(model, "config", config)


def _npz_array(name, value):
    import numpy as np
    a = np.asarray(value)
    if a.dtype.kind not in "biuf" or a.dtype.itemsize > 8:
        raise TypeError("calibration input %r: dtype %s is not supported (bool, int8-64, "
                        "uint8-64, float16/32/64)" % (name, a.dtype))
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    # C order: np.save writes Fortran-ordered arrays as such, which the reader refuses
    return np.ascontiguousarray(a)


@contextlib.contextmanager
def _calibration_path(data):
    """A calibration PATH for --calibration / compare --inputs, as a context manager.

    data: a path (str or os.PathLike; yielded unchanged), one {input_name: array}
    dict (one batch), or an iterable of such dicts (one batch each). Batches are
    written with np.savez into a temporary folder (batch_000000.npz, ...), which
    is removed on exit:

        with _calibration_path(batches) as path:
            ... "--calibration", path ...
    """
    if isinstance(data, (str, os.PathLike)):
        yield os.fspath(data)
        return
    import numpy as np
    if isinstance(data, dict):
        data = [data]
    folder = tempfile.mkdtemp(prefix="onnx-pass-calibration-")
    try:
        n = 0
        for batch in data:
            if not isinstance(batch, dict):
                raise TypeError("calibration batches must be dicts {input_name: array}, not %s"
                                % type(batch).__name__)
            arrays = {str(k): _npz_array(k, v) for k, v in batch.items()}
            np.savez(os.path.join(folder, "batch_%06d.npz" % n), **arrays)
            n += 1
        if n == 0:
            raise ValueError("no calibration batches given")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _model_path(model, folder, name):
    """A path for a model given as a path, bytes or ModelProto."""
    kind = _kind(model)
    if kind == "path":
        yield os.fspath(model)
        return
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(model.SerializeToString() if kind == "proto" else bytes(model))
    yield path


def compare(ref, cand, inputs, as_json=True):
    """Run a reference and a candidate model in ONNX Runtime on the same inputs
    (onnx-pass compare) and measure the candidate's outputs against the reference's.

    ref, cand: onnx.ModelProto, bytes or paths. inputs: a calibration PATH (a
    folder of test_data_set_N/input_M.pb, a folder of .npz files, one .npz), one
    {input_name: numpy array} dict or an iterable of them (one batch each).
    Returns, with as_json=True, a dict {"reference", "candidate", "inputs",
    "batches", "outputs": [{"name", "dtype", "elements", "max_abs_error",
    "max_rel_error", "cosine_similarity", "top1_agreement", "top1_positions"}]}
    (max_rel_error = max|ref - cand| / max|ref|; None where undefined), else the
    text table. ONNX Runtime is loaded from $ONNX_PASS_ORT_LIBRARY or the
    library's build-time location."""
    lib = _library()
    with tempfile.TemporaryDirectory(prefix="onnx-pass-compare-") as tmp, \
            _model_path(ref, tmp, "reference.onnx") as ref_path, \
            _model_path(cand, tmp, "candidate.onnx") as cand_path, \
            _calibration_path(inputs) as inputs_path:
        err = _CError()
        report = ctypes.c_void_p()
        r = lib.onnxpass_compare(_fspath(ref_path), _fspath(cand_path), _fspath(inputs_path),
                                 _COMPARE_JSON if as_json else 0, ctypes.byref(report),
                                 ctypes.byref(err))
        _check(r, err)
        try:
            text = ctypes.string_at(report).decode("utf-8", "replace")
        finally:
            lib.onnxpass_free(report)
    if not as_json:
        return text
    result = json.loads(text)
    # name what was given rather than the temporary files
    for key, given in (("reference", ref), ("candidate", cand), ("inputs", inputs)):
        if not isinstance(given, (str, os.PathLike)):
            result[key] = "<%s>" % type(given).__name__
    return result
