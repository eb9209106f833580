"""Run ONNX models in ONNX Runtime from test scripts, through the tests/ort-run binary.

ort-run is found through the ORT_RUN environment variable (meson's test_env sets it
when ONNX Runtime was found). Tensor files are ort-run's format: one ASCII line
"ORTT <dtype> <rank> <d0> ... <dn-1>\\n", then the elements, row-major, little-endian.

    import ortlib
    outputs = ortlib.run("model.onnx", [x])             # list of numpy arrays
    named = ortlib.run_named("model.onnx", {"x": x})    # [(output name, array)]

bfloat16 tensors are float32 arrays in numpy: read_tensor widens them (exactly),
write_tensor(..., dtype="bfloat16") rounds float32 to nearest even.
"""

import json
import os
import subprocess
import tempfile

import numpy as np

DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "bfloat16": np.uint16,
    "float64": np.float64,
    "int8": np.int8,
    "uint8": np.uint8,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}
_NAMES = {np.dtype(t): n for n, t in DTYPES.items() if n != "bfloat16"}


class OrtRunError(RuntimeError):
    """ort-run failed; .returncode and .stderr hold the details."""

    def __init__(self, returncode, stderr):
        super().__init__("ort-run exited with %d: %s" % (returncode, stderr.strip()))
        self.returncode = returncode
        self.stderr = stderr


def available():
    """True when ort-run is there (ORT_RUN set and executable)."""
    path = os.environ.get("ORT_RUN", "")
    return bool(path) and os.access(path, os.X_OK)


def ort_run_path():
    path = os.environ.get("ORT_RUN", "")
    if not path:
        raise RuntimeError("ORT_RUN is not set (ONNX Runtime not found at configure time?)")
    return path


def float32_to_bfloat16_bits(a):
    """uint16 bit patterns of float32 values rounded to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(a, dtype=np.float32))
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


def bfloat16_bits_to_float32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def write_tensor(path, array, dtype=None):
    """Write array to path; dtype (a name from DTYPES) defaults to the array's own."""
    array = np.asarray(array)
    if dtype is None:
        dtype = _NAMES.get(array.dtype)
        if dtype is None:
            raise ValueError("unsupported dtype %s" % array.dtype)
    if dtype == "bfloat16":
        data = array if array.dtype == np.uint16 else float32_to_bfloat16_bits(array)
    else:
        data = array.astype(DTYPES[dtype])
    data = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False)
    header = "ORTT %s %d%s\n" % (dtype, array.ndim, "".join(" %d" % d for d in array.shape))
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(data.tobytes())


def read_tensor(path):
    """Read a tensor file into a numpy array (bfloat16 widened to float32)."""
    with open(path, "rb") as f:
        blob = f.read()
    end = blob.index(b"\n")
    words = blob[:end].decode("ascii").split()
    if len(words) < 3 or words[0] != "ORTT" or words[1] not in DTYPES:
        raise ValueError("%s: bad tensor header" % path)
    rank = int(words[2])
    shape = tuple(int(w) for w in words[3:])
    if len(shape) != rank:
        raise ValueError("%s: bad tensor header" % path)
    dt = np.dtype(DTYPES[words[1]]).newbyteorder("<")
    data = np.frombuffer(blob, dtype=dt, offset=end + 1)
    if data.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError("%s: data size does not match the header" % path)
    data = data.astype(dt.newbyteorder("="))
    if words[1] == "bfloat16":
        data = bfloat16_bits_to_float32(data)
    return data.reshape(shape)


def model_input_names(model_path):
    """Graph inputs of a model that are not initializers, in order."""
    import onnx
    model = onnx.load(model_path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def run_named(model_path, inputs, custom_ops=(), optimize=True, dtypes=None, ep=None,
              threads=None, config=(), profile=None, ep_options=(), warm=None):
    """Run model_path in ORT; inputs: a list (graph input order) or a dict by name.

    dtypes optionally gives the file dtype per input position (e.g. "bfloat16").
    ep: an execution-provider library whose OnnxPassSparse device is appended, with
    ep_options ("KEY=VALUE");
    config: "KEY=VALUE" session config entries; profile: a list that gets the
    parsed events of ORT's profiler (each a dict); warm: other inputs (a list) the
    same session runs first.
    Returns [(output name, numpy array)] in the model's output order."""
    if isinstance(inputs, dict):
        names = model_input_names(model_path)
        missing = [n for n in names if n not in inputs]
        if missing or len(names) != len(inputs):
            raise ValueError("inputs %r do not match the model's %r" % (sorted(inputs), names))
        inputs = [inputs[n] for n in names]
    with tempfile.TemporaryDirectory(prefix="ortlib-") as tmp:
        args = [ort_run_path()]
        for lib in custom_ops:
            args += ["--custom-ops", lib]
        if not optimize:
            args.append("--no-optimize")
        if ep:
            args += ["--ep", os.path.abspath(ep)]
        for option in ep_options:
            args += ["--ep-option", option]
        if threads:
            args += ["--threads", str(threads)]
        for entry in config:
            args += ["--config", entry]
        if profile is not None:
            args += ["--profile", os.path.join(tmp, "profile")]
        for i, a in enumerate(warm or []):
            write_tensor(os.path.join(tmp, "warm.%d.bin" % i), a)
        if warm:
            args += ["--warm", os.path.join(tmp, "warm")]
        args.append(model_path)
        for i, a in enumerate(inputs):
            path = os.path.join(tmp, "in%d.bin" % i)
            write_tensor(path, a, dtypes[i] if dtypes else None)
            args.append(path)
        args += ["--", os.path.join(tmp, "out")]
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise OrtRunError(proc.returncode, proc.stderr)
        outputs = []
        for line in proc.stdout.splitlines():
            if line.startswith("profile\t"):
                with open(line.split("\t", 1)[1]) as f:
                    profile.extend(json.load(f))
                continue
            index, name, path = line.split("\t")
            assert int(index) == len(outputs)
            outputs.append((name, read_tensor(path)))
        return outputs


def run(model_path, inputs, **kwargs):
    """As run_named, but only the arrays."""
    return [a for _, a in run_named(model_path, inputs, **kwargs)]
