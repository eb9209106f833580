"""Plain numpy references of the calibration-aware sparsifiers (SPEC 12), for the tests.

Written from the papers, in float64, independently of the C code:
- Wanda (Sun et al. 2023): score |W_ij| * ||X_j||_2, per output row the
  floor(cols * level) lowest scores pruned (a stable sort), or N:M per row.
- SparseGPT (Frantar & Alistarh 2023): OBS with H = X^T X, dead columns zeroed,
  percdamp * mean(diag H) added, U = upper Cholesky factor of H^-1, column sweep
  with immediate in-block and lazy after-block updates; unstructured: per column
  block the floor(numel * level) lowest w^2 / U_jj^2 pruned; N:M per row group.
"""
import numpy as np


def _lowest(keys, k):
    """Boolean array: the k lowest keys, ties to the lower index (stable sort)."""
    out = np.zeros(keys.shape, dtype=bool)
    out[np.argsort(keys, kind="stable")[:k]] = True
    return out


def nm_prunes(n, m, length):
    """A last N:M group of length < m columns: the missing columns count as pruned."""
    return max(0, n - (m - length))


def wanda(w, x, level=0.5, n=0, m=1):
    """w [out, in], x [rows, in] -> mask (True = kept)."""
    norm = np.sqrt((x.astype(np.float64) ** 2).sum(0)).astype(np.float32)
    score = np.abs(w.astype(np.float32)) * norm[None, :]
    prune = np.zeros(w.shape, dtype=bool)
    for i in range(w.shape[0]):
        if m == 1:
            prune[i] = _lowest(score[i], int(w.shape[1] * level))
        else:
            for j in range(0, w.shape[1], m):
                seg = score[i, j:j + m]
                prune[i, j:j + m] = _lowest(seg, nm_prunes(n, m, len(seg)))
    return ~prune


def sparsegpt(w, x, level=0.5, n=0, m=1, percdamp=0.01, blocksize=128):
    """w [out, in], x [rows, in] -> (updated w, mask)."""
    w = w.astype(np.float64).copy()
    rows, cols = w.shape
    h = x.astype(np.float64).T @ x.astype(np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += percdamp * np.mean(np.diag(h)) * np.eye(cols)
    u = np.linalg.cholesky(np.linalg.inv(h)).T          # upper, H^-1 = U^T U
    keep = np.ones(w.shape, dtype=bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1, err1 = w[:, i1:i2].copy(), np.zeros((rows, i2 - i1))
        d = np.diag(u)[i1:i2]
        prune1 = np.zeros(w1.shape, dtype=bool)
        if m == 1:
            keys = (w1 ** 2 / d[None, :] ** 2).astype(np.float32).ravel()
            prune1 = _lowest(keys, int(keys.size * level)).reshape(w1.shape)
        for i in range(i2 - i1):
            if m > 1 and i % m == 0:
                for r in range(rows):
                    seg = (w1[r, i:i + m] ** 2 / d[i:i + m] ** 2).astype(np.float32)
                    prune1[r, i:i + m] = _lowest(seg, nm_prunes(n, m, len(seg)))
            q = np.where(prune1[:, i], 0.0, w1[:, i])
            e = (w1[:, i] - q) / u[i1 + i, i1 + i]
            w1[:, i:] -= np.outer(e, u[i1 + i, i1 + i:i2])
            w1[:, i] = q
            err1[:, i] = e
        w[:, i1:i2] = w1
        keep[:, i1:i2] = ~prune1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return w, keep


def im2col(x, kernel, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1)):
    """x [n, c, h, w] -> patches [n * oh * ow, c * kh * kw] (torch weight.flatten(1) order)."""
    n, c, hh, ww = x.shape
    kh, kw = kernel
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (hh + pads[0] + pads[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (ww + pads[1] + pads[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = np.empty((n, oh, ow, c, kh, kw), dtype=x.dtype)
    for ky in range(kh):
        for kx in range(kw):
            ys = ky * dilation[0]
            xs = kx * dilation[1]
            cols[:, :, :, :, ky, kx] = xp[:, :, ys:ys + stride[0] * oh:stride[0],
                                          xs:xs + stride[1] * ow:stride[1]].transpose(0, 2, 3, 1)
    return cols.reshape(n * oh * ow, c * kh * kw)
