#!/usr/bin/python3
"""Time and peak memory of calibration-aware pruning on a BERT-base-sized encoder (SPEC 12).

Usage: sparsegpt_time.py [--build DIR] [--work DIR] [--layers 12] [--sequences 128]
                         [--sparsifier sparsegpt] [--runs 1]

bert-L.onnx from bench/make_models.py (85M fp32 weights in 72 MatMul initializers for
L = 12, 340 MB; input x [1, 128, 768]), calibration: SEQUENCES .npz files of one
128-token sequence each (random activations: the timing does not depend on them).
Runs `onnx-pass sparsify --sparsifier S --calibration DIR --format dense` under
/usr/bin/time and prints wall time, CPU time and peak RSS / file size (best of runs).
"""
import argparse
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--work", default=os.path.join(HERE, "..", "build", "bench-sparsegpt"))
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--sequences", type=int, default=128)
    ap.add_argument("--sparsifier", default="sparsegpt")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--extra", default="", help="more onnx-pass flags, e.g. '--block 1x4 --zeros-per-block 2'")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    subprocess.run([sys.executable, os.path.join(HERE, "make_models.py"), args.work, "--layers",
                    str(args.layers)], check=True)
    model = os.path.join(args.work, "bert-%d.onnx" % args.layers)
    calib = os.path.join(args.work, "calib-%d" % args.sequences)
    if not os.path.isdir(calib):
        os.makedirs(calib)
        rng = np.random.default_rng(0)
        for i in range(args.sequences):
            np.savez(os.path.join(calib, "s%04d.npz" % i),
                     x=rng.standard_normal((1, 128, 768)).astype(np.float32))
    out = os.path.join(args.work, "out.onnx")
    best = None
    for _ in range(args.runs):
        cmd = ["/usr/bin/time", "-f", "TIME %e %U %S %M", os.path.join(args.build, "cli", "onnx-pass"),
               "sparsify", model, "-o", out, "--sparsifier", args.sparsifier, "--calibration", calib,
               "--format", "dense"] + args.extra.split()
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit("sparsify failed: " + p.stderr)
        wall, user, system, rss = re.search(r"TIME (\S+) (\S+) (\S+) (\d+)", p.stderr).groups()
        run = (float(wall), float(user) + float(system), int(rss) * 1024)
        best = run if best is None or run[0] < best[0] else best
    size = os.path.getsize(model)
    print("model %s: %.0f MB, %d calibration sequences of 128 tokens" % (os.path.basename(model),
                                                                        size / 1e6, args.sequences))
    print("%s %s: wall %.1f s, CPU %.1f s, peak RSS %.0f MB = %.2f x the file (best of %d)"
          % (args.sparsifier, args.extra, best[0], best[1], best[2] / 1e6, best[2] / size, args.runs))


if __name__ == "__main__":
    main()
