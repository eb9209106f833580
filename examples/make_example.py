#!/usr/bin/python3
"""Write the bundled example model: a small transformer encoder exported by torch.

Usage: make_example.py OUT.onnx

Two encoder layers (d = 64, FFN 256, 4 heads) exported with torch.onnx.export and
default constant folding, as a user would export a BERT-like model: every Linear
becomes a MatMul with an `onnx::MatMul_*` weight and a scoped node name that gives
the PyTorch alias (`layers.0.attn.q.weight`, ...).
"""
import sys

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        b, s, d = x.shape
        h = self.heads

        def split(t):
            return t.reshape(b, s, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, s, d))


class Layer(nn.Module):
    def __init__(self, d, ffn, heads):
        super().__init__()
        self.attn = Attention(d, heads)
        self.norm1 = nn.LayerNorm(d)
        self.up = nn.Linear(d, ffn)
        self.down = nn.Linear(ffn, d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.down(torch.relu(self.up(x))))


class Encoder(nn.Module):
    def __init__(self, layers=2, d=64, ffn=256, heads=4):
        super().__init__()
        self.layers = nn.ModuleList(Layer(d, ffn, heads) for _ in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_example.py OUT.onnx")
    torch.manual_seed(0)
    model = Encoder().eval()
    x = torch.randn(1, 16, 64)
    torch.onnx.export(model, (x,), sys.argv[1], opset_version=13, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch", 1: "seq"}})


if __name__ == "__main__":
    main()
