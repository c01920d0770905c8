"""Bit-identity check across a refactoring: digests of every kernel's outputs on named cases.

    FASTNN_NUM_THREADS=2 python scripts/bit_identity.py --save before.json   # on the old tree
    FASTNN_NUM_THREADS=2 python scripts/bit_identity.py --check before.json  # on the new tree

Each entry is the SHA-256 of the output arrays' bytes (and dtype, shape) of one call through the
public API: every backend but ``reference`` (the reference on the small cases only), every op
(conv forward and backward, pool forward and backward with both modes and tie rules, zero_pad,
the activations), both dtypes, on the test matrix's named cases, the benchmark table shrunk to a
batch of 2, and extra shapes that reach each kernel variant (every forward tile, the few-channel
dA_prev gathers, every dW tile width, every pooling channel block, the im2col short-row kernels).
Bits depend on the machine and the thread count: compare only runs on one machine with the same
``FASTNN_NUM_THREADS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys

import numpy as np

import fastnn
from fastnn.testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES, CONV_CASES, POOL_CASES, ConvCase, PoolCase

DTYPES = (np.float32, np.float64)


def _extra_conv():
    out = []
    for C in (1, 2, 3, 4, 5, 16):  # few-channel dA gathers and the phases
        for K in (3, 8, 17, 33):
            out.append(ConvCase(f"x_c{C}_k{K}", 2, 12, 13, C, 3, K, 1, 1))
    for K in (1, 4, 8, 12, 16, 20, 32, 48, 64):  # forward tiles, dW widths
        out.append(ConvCase(f"x_k{K}", 2, 10, 11, 24, 3, K, 1, 1))
        out.append(ConvCase(f"x_k{K}_s2", 2, 15, 14, 24, 3, K, 2, 1))
    for f, C in ((3, 1), (3, 3), (5, 1), (5, 3), (7, 1), (7, 3), (5, 8), (2, 3)):  # im2col px kernels
        out.append(ConvCase(f"x_f{f}c{C}", 2, 20, 19, C, f, 16, 1, f // 2))
        out.append(ConvCase(f"x_f{f}c{C}_s2", 2, 21, 20, C, f, 16, 2, f // 2))
    out.append(ConvCase("x_wide", 2, 9, 40, 40, 3, 70, 1, 1))
    out.append(ConvCase("x_1x1_s2", 2, 12, 12, 40, 1, 24, 2, 0))
    return out


def _extra_pool():
    out = []
    for C in (1, 5, 8, 16, 31, 32, 33, 64, 100):
        out.append(PoolCase(f"x_p3s2_c{C}", 2, 13, 12, C, 3, 2))
        out.append(PoolCase(f"x_p2s2_c{C}", 2, 12, 11, C, 2, 2))
        out.append(PoolCase(f"x_p3s1_c{C}_pad", 2, 9, 10, C, 3, 1, pad=1))
        out.append(PoolCase(f"x_p2s3_c{C}", 2, 10, 11, C, 2, 3))
        out.append(PoolCase(f"x_ties_c{C}", 2, 9, 9, C, 3, 2, ties=True))
    return out


def conv_cases():
    small = [(c, True) for c in CONV_CASES.values()]
    bench = [(dataclasses.replace(c, name=f"bench_{c.name}", m=2), c.name == "seed") for c in BENCH_CONV_SHAPES.values()]
    return small + bench + [(c, False) for c in _extra_conv()]


def pool_cases():
    small = [(c, True) for c in POOL_CASES.values()]
    bench = [(dataclasses.replace(c, name=f"bench_{c.name}", m=2), c.name == "seed") for c in BENCH_POOL_SHAPES.values()]
    return small + bench + [(c, False) for c in _extra_pool()]


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def collect() -> dict:
    out = {}
    backends = fastnn.available_backends()
    for dtype in DTYPES:
        dn = np.dtype(dtype).name
        for case, ref_ok in conv_cases():
            A, W, b, hp, dZ = case.make(dtype, seed=1)
            for be in backends:
                if be == "reference" and not ref_ok:
                    continue
                Z, cache = fastnn.conv_forward(A, W, b, hp, backend=be)
                out[f"conv_forward/{case.name}/{dn}/{be}"] = _digest(Z)
                out[f"conv_backward/{case.name}/{dn}/{be}"] = _digest(*fastnn.conv_backward(dZ, cache, backend=be))
        for case, ref_ok in pool_cases():
            A, hp, dA = case.make(dtype, seed=2)
            for be in backends:
                if be == "reference" and not ref_ok:
                    continue
                for mode in ("max", "average"):
                    P, cache = fastnn.pool_forward(A, hp, mode, backend=be)
                    out[f"pool_forward/{case.name}/{mode}/{dn}/{be}"] = _digest(P)
                    for ties in (("all", "first") if mode == "max" else ("all",)):
                        g = fastnn.pool_backward(dA, cache, mode, ties=ties, backend=be)
                        out[f"pool_backward/{case.name}/{mode}/{ties}/{dn}/{be}"] = _digest(g)
        X, *_ = CONV_CASES["odd_sizes"].make(dtype)
        rng = np.random.RandomState(3)
        Zs = (rng.standard_normal((7, 13)) * 5).astype(dtype)
        dAs = rng.standard_normal(Zs.shape).astype(dtype)
        for be in backends:
            for pad in (0, 1, 3, (2, 0)):
                out[f"zero_pad/{pad}/{dn}/{be}"] = _digest(fastnn.zero_pad(X, pad, backend=be))
            for name in ("relu", "sigmoid"):
                fwd, bwd = getattr(fastnn, name), getattr(fastnn, name + "_backward")
                out[f"{name}/{dn}/{be}"] = _digest(fwd(Zs, backend=be)[0], bwd(dAs, Zs, backend=be))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", metavar="FILE")
    g.add_argument("--check", metavar="FILE")
    args = ap.parse_args(argv)
    digests = collect()
    if args.save:
        with open(args.save, "w") as f:
            json.dump(digests, f, indent=0, sort_keys=True)
        print(f"saved {len(digests)} digests to {args.save}")
        return 0
    with open(args.check) as f:
        old = json.load(f)
    missing = sorted(set(old) - set(digests))
    differ = sorted(k for k in old if k in digests and old[k] != digests[k])
    for k in missing:
        print(f"missing: {k}")
    for k in differ:
        print(f"DIFFERS: {k}")
    print(f"{len(old) - len(missing) - len(differ)} of {len(old)} identical, {len(differ)} differ, "
          f"{len(missing)} missing, {len(set(digests) - set(old))} new")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    sys.exit(main())
