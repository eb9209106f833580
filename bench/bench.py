#!/usr/bin/python3
"""onnx-pass benchmark (SPEC 10): sparsify against cp and against PyTorch.

Usage: bench.py [--onnx-pass PATH] [--workdir DIR] [--runs N] [--quick] [--external-gb G]

Generates the workloads (bench/make_models.py), then for each model and config
times `onnx-pass sparsify` (best of N runs, wall clock, peak RSS of the process via
wait4) against `cp` of the same file (best of N), both writing over an existing
output (as a rerun does) and both writing a new file (the old output removed,
untimed); on BERT-12 also `onnx-pass --fsync` against `cp` + fsync, and the same
job in PyTorch (WeightNormSparsifier prepare/step/squash_mask, 2 threads, step +
squash timed). ns/weight (sparsify over an existing output, per fp32 weight)
shows how the time scales with the model. With --external-gb G, a MatMul chain
with G GB of external data is sparsified too (peak RSS against the data size).
Prints one table; nothing here asserts a time.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = [
    ("50% 1x4 blocks", ["--sparsity", "0.5", "--block", "1x4"],
     dict(sparsity_level=0.5, sparse_block_shape=(1, 4), zeros_per_block=4)),
    ("2:4", ["--sparsity", "1", "--block", "1x4", "--zeros-per-block", "2"],
     dict(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2)),
    ("90% 1x1", ["--sparsity", "0.9", "--block", "1x1"],
     dict(sparsity_level=0.9, sparse_block_shape=(1, 1), zeros_per_block=1)),
]


def run_measured(cmd):
    """Wall seconds and peak RSS (bytes) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed: {err}")
    return wall, usage.ru_maxrss * 1024


def best(n, fn):
    """Best time and largest RSS of n runs; dirty pages are flushed before each
    run (not timed) so that one run's writeback does not slow the next."""
    results = []
    for _ in range(n):
        os.sync()
        results.append(fn())
    return min(r[0] for r in results), max(r[1] for r in results)


def time_cp(src, dst, runs, sync=False, fresh=False):
    """Best wall time of `cp src dst` (then fsync of dst when sync; dst removed
    first, untimed, when fresh)."""
    def once():
        if fresh and os.path.exists(dst):
            os.unlink(dst)
        t0 = time.perf_counter()
        subprocess.run(["cp", src, dst], check=True)
        if sync:
            fd = os.open(dst, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        return time.perf_counter() - t0, 0
    return best(runs, once)[0]


def time_tool(cmd, out, runs, fresh=False):
    """Best time and largest peak RSS of cmd writing out (removed first, untimed,
    when fresh)."""
    def once():
        if fresh:
            for p in (out, out + ".data"):
                if os.path.exists(p):
                    os.unlink(p)
        return run_measured(cmd)
    return best(runs, once)


def fp32_weights(path):
    """Number of stored elements of the model's initializers (counted in a child
    process: onnx.load here would add the model to the peak RSS that every
    later child forked from this process reports)."""
    code = ("import onnx, sys, math\n"
            "m = onnx.load(sys.argv[1], load_external_data=False)\n"
            "print(sum(math.prod(t.dims) for t in m.graph.initializer))\n")
    out = subprocess.run(["/usr/bin/python3", "-c", code, path], check=True,
                         capture_output=True, text=True)
    return int(out.stdout)


def torch_seconds(layers, args):
    """PyTorch's own job on the same weights: step + squash_mask (2 threads)."""
    code = f"""
import sys, time, torch
sys.path.insert(0, {os.path.join(HERE, '..', 'examples')!r})
from make_example import Encoder
from torch.ao.sparsity import WeightNormSparsifier
torch.set_num_threads(2)
torch.manual_seed(0)
m = Encoder(layers={layers}, d=768, ffn=3072, heads=12).eval()
cfg = [{{'tensor_fqn': n + '.weight'}} for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)]
s = WeightNormSparsifier(**{args!r})
s.prepare(m, cfg)
best = 1e9
for _ in range(2):
    t0 = time.perf_counter(); s.step(); t1 = time.perf_counter()
    best = min(best, t1 - t0)
t0 = time.perf_counter(); s.squash_mask(); t2 = time.perf_counter()
print(best + (t2 - t0))
"""
    out = subprocess.run(["/usr/bin/python3", "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx-pass", default=os.path.join(HERE, "..", "build", "cli", "onnx-pass"))
    ap.add_argument("--workdir", default=os.path.join(HERE, "..", "build", "bench"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="BERT-12 only, no torch, no scaling")
    ap.add_argument("--external-gb", type=float, default=0)
    args = ap.parse_args()
    layers = [12] if args.quick else [3, 6, 12]
    gen = ["/usr/bin/python3", os.path.join(HERE, "make_models.py"), args.workdir,
           "--layers", *map(str, layers)]
    if not args.quick:
        gen.append("--resnet")
    if args.external_gb:
        gen += ["--external-gb", str(args.external_gb)]
    subprocess.run(gen, check=True)

    models = [f"bert-{n}.onnx" for n in layers] + ([] if args.quick else ["resnet50.onnx"])
    out = os.path.join(args.workdir, "out.onnx")
    print(f"{'model':<14} {'config':<15} {'MB':>5} {'seconds':>8} {'x cp':>6} {'new file':>8} "
          f"{'x cp':>6} {'ns/weight':>9} {'--fsync':>8} {'x cp+fsync':>10} {'torch s':>8} "
          f"{'vs torch':>8} {'RSS/file':>8}")
    for name in models:
        path = os.path.join(args.workdir, name)
        size = os.path.getsize(path)
        weights = fp32_weights(path)
        big = name == "bert-12.onnx"
        cp = time_cp(path, out, args.runs)
        cp_new = time_cp(path, out, args.runs, fresh=True)
        cps = time_cp(path, out, args.runs, sync=True) if big else None
        for label, flags, torch_args in CONFIGS:
            cmd = [args.onnx_pass, "sparsify", path, "-o", out, *flags]
            secs, rss = time_tool(cmd, out, args.runs)
            secs_new, rss_new = time_tool(cmd, out, args.runs, fresh=True)
            cols = f"{'-':>8} {'-':>10}"
            if big:
                secs_sync, _ = time_tool(cmd + ["--fsync"], out, args.runs)
                cols = f"{secs_sync:8.3f} {secs_sync / cps:10.2f}"
            tsec = torch_seconds(12, torch_args) if big and not args.quick else None
            tcol = f"{tsec:8.2f} {tsec / secs:7.1f}x" if tsec else f"{'-':>8} {'-':>8}"
            print(f"{name:<14} {label:<15} {size / 1e6:5.0f} {secs:8.3f} {secs / cp:6.2f} "
                  f"{secs_new:8.3f} {secs_new / cp_new:6.2f} {secs / weights * 1e9:9.2f} {cols} "
                  f"{tcol} {max(rss, rss_new) / size:8.2f}", flush=True)
        cps_col = f"{cps:8.3f}" if cps else f"{'-':>8}"
        print(f"{'':<14} {'cp':<15} {size / 1e6:5.0f} {cp:8.3f} {'':>6} {cp_new:8.3f} {'':>6} "
              f"{'':>9} {cps_col}", flush=True)
    if args.external_gb:
        path = os.path.join(args.workdir, "big-external.onnx")
        size = os.path.getsize(path + ".data")
        cmd = [args.onnx_pass, "sparsify", path, "-o", out, "--sparsity", "0.5", "--block", "1x4"]
        secs, rss = time_tool(cmd, out, args.runs, fresh=True)
        cp_new = time_cp(path + ".data", out + ".data", args.runs, fresh=True)
        print(f"{'big-external':<14} {'50% 1x4 blocks':<15} {size / 1e6:5.0f} {'-':>8} {'-':>6} "
              f"{secs:8.3f} {secs / cp_new:6.2f} {secs / (size / 4) * 1e9:9.2f} {'-':>8} {'-':>10} "
              f"{'-':>8} {'-':>8} {rss / size:8.2f}")
    for p in (out, out + ".data"):
        if os.path.exists(p):
            os.unlink(p)


if __name__ == "__main__":
    main()
