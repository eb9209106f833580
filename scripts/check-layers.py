#!/usr/bin/python3
"""Check the layering of ARCHITECTURE.md from the sources and the built library.

Usage: check-layers.py SRCDIR [LIBONNXPASS.so]

1. Every quoted #include of src/, passes/, plugin/, cli/ and include/ resolves to a
   file of the same or a lower layer (public < core < passes < hosts), and the
   modules (a .c with its .h) include each other without a cycle.
2. With the library: its writable data (.data, .bss and their thread-local
   forms; not .data.rel.ro) holds nothing but the allowed process-wide state
   (ORT's custom-op domain, the CPU feature probe, and the C runtime's own).
Prints each violation and exits 1, else prints a summary and exits 0.
"""
import os
import re
import subprocess
import sys

LAYERS = [("include/", 0), ("src/", 1), ("passes/", 2), ("plugin/", 3), ("cli/", 3)]
ALLOWED_STATE = {
    "ops_lock", "ops_domain", "sparse_matmul_op",        # plugin/ort_ops.c: the ORT domain
    "__cpu_model", "__cpu_features2",                    # the ISA probe (libgcc)
    "completed.0", "__dso_handle", "__TMC_END__",        # the C runtime's
}
# what sanitizer and coverage instrumentation adds (ASan's ODR indicators...)
INSTRUMENTATION = ("__odr_asan", "__asan", "__ubsan", "__sanitizer", "__sancov", "__llvm")


def layer(path):
    for prefix, rank in LAYERS:
        if path.startswith(prefix):
            return rank
    return None


def sources(top):
    out = []
    for prefix, _ in LAYERS:
        for root, _, files in os.walk(os.path.join(top, prefix)):
            out += [os.path.relpath(os.path.join(root, f), top) for f in files
                    if f.endswith((".c", ".h"))]
    return sorted(out)


def include_edges(top, files):
    by_suffix = {}
    for f in files:
        by_suffix.setdefault(os.path.basename(f), []).append(f)
    edges, errors = set(), []
    for f in files:
        with open(os.path.join(top, f), encoding="utf-8") as fh:
            for line in fh:
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if not m:
                    continue
                cands = [c for c in by_suffix.get(os.path.basename(m.group(1)), [])
                         if c.endswith(m.group(1))]
                if not cands:
                    continue  # generated (onnx.pb-c.h) or foreign
                target = cands[0]
                if layer(target) > layer(f):
                    errors.append("upward include: %s -> %s" % (f, target))
                a, b = os.path.splitext(f)[0], os.path.splitext(target)[0]
                if a != b:
                    edges.add((a, b))
    return edges, errors


def cycles(edges):
    """Strongly connected components of more than one module (iterative Tarjan)."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter[0]
                counter[0] += 1
                stack.append(v)
                on.add(v)
            if i < len(graph[v]):
                work.append((v, i + 1))
                w = graph[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return found


def mutable_state(lib):
    out = subprocess.run(["objdump", "-t", lib], check=True, capture_output=True,
                         text=True).stdout
    names = []
    for line in out.splitlines():
        m = re.search(r"\s(\.bss|\.data|\.tbss|\.tdata)\s+[0-9a-f]+\s+(\S+)$", line)
        if m and " O " in line and not m.group(2).startswith(INSTRUMENTATION):
            names.append(m.group(2))
    return sorted(set(names))


def main():
    top = sys.argv[1]
    files = sources(top)
    edges, errors = include_edges(top, files)
    errors += ["include cycle: " + " <-> ".join(c) for c in cycles(edges)]
    state = []
    if len(sys.argv) > 2:
        state = mutable_state(sys.argv[2])
        errors += ["process-wide mutable state: %s" % n for n in state if n not in ALLOWED_STATE]
    for e in errors:
        print(e)
    if errors:
        return 1
    print("%d files, %d module includes: no upward include, no cycle; writable data: %s"
          % (len(files), len(edges), " ".join(state) or "(not checked)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
