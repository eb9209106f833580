#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Reference masks from torch.ao.sparsity (torch 1.13) for tests/test-torch-masks.c.

Usage: torch_masks.py OUT_FILE

Every case is an nn.Linear whose weight [rows, cols] is prepared with
WeightNormSparsifier or NearlyDiagonalSparsifier and stepped one or more times
(the level or nearliness may change between steps; each step sees the weight
masked by the previous step, as torch's parametrization gives it).

File format, little-endian:
  header: b"OPTM", u32 version (1), u32 number of cases
  case:   u32 kind (0 weight_norm, 1 nearly_diagonal), u32 wide (1: float64),
          u32 rows, u32 cols, u32 steps, f64 weight[rows * cols] (unmasked)
  step:   f64 sparsity_level, i64 block_rows, i64 block_cols,
          i64 zeros_per_block, i64 norm, i64 nearliness,
          u8 torch_mask[rows * cols]
"""
import struct
import sys

import torch
from torch import nn
from torch.ao.sparsity import NearlyDiagonalSparsifier, WeightNormSparsifier

KIND_WEIGHT_NORM = 0
KIND_NEARLY_DIAGONAL = 1


def make_linear(rows, cols, seed, wide, weight=None):
    torch.manual_seed(seed)
    model = nn.Linear(cols, rows, bias=False)
    if wide:
        model = model.double()
    with torch.no_grad():
        if weight is None:
            model.weight.copy_(torch.randn(rows, cols, dtype=model.weight.dtype))
        else:
            model.weight.copy_(torch.tensor(weight, dtype=model.weight.dtype).reshape(rows, cols))
    return model


def run_steps(model, sparsifier, key, values):
    """Prepare, then step once per value of the group argument `key`."""
    weight = model.weight.detach().clone()
    sparsifier.prepare(model, config=[{"tensor_fqn": "weight"}])
    masks = []
    for value in values:
        sparsifier.groups[0][key] = value
        sparsifier.step()
        mask = model.parametrizations.weight[0].mask
        masks.append(mask.detach().to(torch.uint8).flatten().tolist())
    return weight, masks


def weight_norm_case(rows, cols, seed, wide, block, zeros, norm, levels, weight=None):
    model = make_linear(rows, cols, seed, wide, weight)
    sparsifier = WeightNormSparsifier(sparsity_level=levels[0], sparse_block_shape=block,
                                      zeros_per_block=zeros, norm=norm)
    w, masks = run_steps(model, sparsifier, "sparsity_level", levels)
    steps = [((level, block[0], block[1], zeros, norm, 0), m) for level, m in zip(levels, masks)]
    return (KIND_WEIGHT_NORM, wide, rows, cols, w, steps)


def nearly_diagonal_case(rows, cols, seed, nearliness_steps):
    model = make_linear(rows, cols, seed, False)
    sparsifier = NearlyDiagonalSparsifier(nearliness=nearliness_steps[0])
    w, masks = run_steps(model, sparsifier, "nearliness", nearliness_steps)
    steps = [((0.0, 0, 0, 0, 0, n), m) for n, m in zip(nearliness_steps, masks)]
    return (KIND_NEARLY_DIAGONAL, False, rows, cols, w, steps)


def grid_cases():
    blocks = [(1, 4), (4, 1), (2, 2), (2, 3), (1, 1)]
    levels = [0.0, 0.3, 0.5, 0.77, 1.0]
    shapes = [(12, 24), (8, 36)]
    seed = 1000
    for block in blocks:
        size = block[0] * block[1]
        for zeros in sorted({1, max(1, size // 2), size}):
            for level in levels:
                for norm in (1, 2):
                    for rows, cols in shapes:
                        seed += 1
                        yield weight_norm_case(rows, cols, seed, False, block, zeros, norm,
                                               [level])


def special_cases():
    # Several steps: later steps see the weight masked by the earlier ones.
    # Levels only grow with full-block zeros, so the already zeroed blocks (all
    # tied at score 0) are all pruned again and torch's tie order never matters.
    yield weight_norm_case(12, 24, 7, False, (1, 4), 4, 2, [0.3, 0.6])
    yield weight_norm_case(12, 24, 8, False, (2, 2), 2, 2, [0.3, 0.6, 0.8])
    yield weight_norm_case(8, 36, 9, False, (1, 4), 2, 1, [0.6, 0.3])
    yield weight_norm_case(8, 36, 10, False, (2, 3), 3, 2, [0.5, 1.0])
    yield weight_norm_case(8, 36, 11, False, (1, 1), 1, 1, [0.2, 0.5, 0.9])
    # float64 weights: norms and block scores in double.
    yield weight_norm_case(12, 24, 20, True, (1, 4), 4, 2, [0.5])
    yield weight_norm_case(12, 24, 21, True, (2, 3), 3, 1, [0.77])
    yield weight_norm_case(8, 36, 22, True, (1, 4), 2, 2, [1.0])
    yield weight_norm_case(8, 36, 23, True, (2, 2), 4, 2, [0.3, 0.6])
    # Block sums accumulate in float32, row-major: [1 + 2^-23, 0, 0] scores
    # fl((1 + 2^-23) / 3) while [1, 2^-24, 2^-24] sums to 1 in float32 and
    # scores fl(1 / 3), one float below: the second block goes.
    t = 2.0 ** -24
    yield weight_norm_case(1, 6, 0, False, (1, 3), 3, 1, [0.5],
                           weight=[1 + 2 * t, 0, 0, 1, t, t])
    for nearliness in (1, 3, 5):
        yield nearly_diagonal_case(8, 12, 30 + nearliness, [nearliness])
    yield nearly_diagonal_case(12, 8, 40, [5])
    yield nearly_diagonal_case(8, 12, 41, [3, 1, 7])


def write_case(out, case):
    kind, wide, rows, cols, weight, steps = case
    out.write(struct.pack("<5I", kind, int(wide), rows, cols, len(steps)))
    values = weight.double().flatten().tolist()
    out.write(struct.pack("<%dd" % len(values), *values))
    for (level, br, bc, zeros, norm, nearliness), mask in steps:
        out.write(struct.pack("<d5q", level, br, bc, zeros, norm, nearliness))
        out.write(bytes(mask))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: torch_masks.py OUT_FILE")
    cases = list(grid_cases()) + list(special_cases())
    with open(sys.argv[1], "wb") as out:
        out.write(b"OPTM" + struct.pack("<2I", 1, len(cases)))
        for case in cases:
            write_case(out, case)
    print("torch_masks.py: %d cases" % len(cases))


if __name__ == "__main__":
    main()
