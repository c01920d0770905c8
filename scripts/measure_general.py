"""The layers beyond the course's (issue 22) against PyTorch CPU and against fastnn's own
baselines, timed in alternating rounds (the median of the per-round ratios, with its range):

* depthwise 3x3 (groups = C): torch/fastnn, and the share of the copy bandwidth (the bytes the
  layer must move, input read + output written, against ``np.copyto`` of as many bytes);
* dilated 3x3 (dilation 2): fastnn's time over its own undilated layer's, and torch/fastnn;
* grouped (groups 2, 4): "apart"/fastnn, running the groups as separate calls over the time of
  one grouped call (>= 1: the grouped call is at least as fast);
* NCHW: fastnn's NCHW call over its NHWC call (<= 1.15 is the bar), and torch/fastnn.

    python scripts/measure_general.py --rounds 5              # forward and forward+backward
    python scripts/measure_general.py --rounds 5 --autotune   # auto tunes each key on first sight

PyTorch runs with the same thread count in the layout that matches fastnn's (channels_last for
NHWC, contiguous for NCHW) and in the other, the faster taken per row.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np
import torch
import torch.nn.functional as F

import fastnn
from fastnn import _dispatch
from fastnn._plan import timed_block
from fastnn.testing.cases import ConvCase

#: Realistic layers (MobileNet, DeepLab, ResNeXt shapes); none was used to tune a kernel.
DEPTHWISE = [
    ConvCase("dw56_128", 8, 56, 56, 128, 3, 128, 1, 1, groups=128),
    ConvCase("dw28_256_s2", 8, 28, 28, 256, 3, 256, 2, 1, groups=256),
    ConvCase("dw14_512", 8, 14, 14, 512, 3, 512, 1, 1, groups=512),
    ConvCase("dw_odd_96_5x5", 4, 29, 31, 96, 5, 96, 1, 2, groups=96),
]
DILATED = [
    (ConvCase("dil28_64", 8, 28, 28, 64, 3, 64, 1, 2, dilation=2), ConvCase("und28_64", 8, 28, 28, 64, 3, 64, 1, 1)),
    (ConvCase("dil14_256", 8, 14, 14, 256, 3, 256, 1, 2, dilation=2),
     ConvCase("und14_256", 8, 14, 14, 256, 3, 256, 1, 1)),
]
GROUPED = [
    ConvCase("g2_28_128", 8, 28, 28, 128, 3, 128, 1, 1, groups=2),
    ConvCase("g4_28_128", 8, 28, 28, 128, 3, 128, 1, 1, groups=4),
    ConvCase("g4_14_256_s2", 8, 28, 28, 256, 3, 256, 2, 1, groups=4),
]
NCHW = [
    (ConvCase("nchw_28_128", 16, 28, 28, 128, 3, 128, 1, 1, layout="NCHW"),
     ConvCase("nhwc_28_128", 16, 28, 28, 128, 3, 128, 1, 1)),
    (ConvCase("nchw_32_32", 64, 32, 32, 32, 3, 32, 1, 1, layout="NCHW"), ConvCase("nhwc_32_32", 64, 32, 32, 32, 3, 32, 1, 1)),
    (ConvCase("nchw_14_256_s2", 8, 28, 28, 256, 3, 256, 2, 1, layout="NCHW"),
     ConvCase("nhwc_14_256_s2", 8, 28, 28, 256, 3, 256, 2, 1)),
]


def _fastnn(case, dtype):
    A, W, b, hp, dZ = case.make(dtype, seed=0)

    def fwd():
        return fastnn.conv_forward(A, W, b, hp)

    def both():
        _, cache = fwd()
        fastnn.conv_backward(dZ, cache)

    return {"fwd": fwd, "fwd+bwd": both}


def _apart(case, dtype):
    """The groups of a grouped layer as separate fastnn calls, as a user would run them: each
    group's channels sliced out of the NHWC arrays (copies), the outputs concatenated."""
    A, W, b, hp, dZ = case.make(dtype, seed=0)
    G, Cg, Kg = case.groups, case.C // case.groups, case.K // case.groups
    hp1 = {"stride": case.stride, "pad": case.pad}
    cs = [slice(g * Cg, (g + 1) * Cg) for g in range(G)]
    ks = [slice(g * Kg, (g + 1) * Kg) for g in range(G)]

    def fwd():
        outs = [fastnn.conv_forward(np.ascontiguousarray(A[..., c]), np.ascontiguousarray(W[..., k]), b[..., k], hp1)
                for c, k in zip(cs, ks)]
        return np.concatenate([z for z, _ in outs], axis=3), outs

    def both():
        _, outs = fwd()
        grads = [fastnn.conv_backward(np.ascontiguousarray(dZ[..., k]), cache) for k, (_, cache) in zip(ks, outs)]
        return (np.concatenate([g[0] for g in grads], axis=3), np.concatenate([g[1] for g in grads], axis=3),
                np.concatenate([g[2] for g in grads], axis=3))

    return {"fwd": fwd, "fwd+bwd": both}


def _torch(case, dtype, fmt):
    A, W, b, hp, dZ = case.make(dtype, seed=0)
    p = case.params
    nchw = case.layout == "NCHW"
    mem = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    x = torch.from_numpy(np.ascontiguousarray(A if nchw else A.transpose(0, 3, 1, 2))).contiguous(memory_format=mem)
    w = torch.from_numpy(np.ascontiguousarray(W if nchw else W.transpose(3, 2, 0, 1))).contiguous(memory_format=mem)
    bias = torch.from_numpy(b.reshape(-1).copy())
    g = torch.from_numpy(np.ascontiguousarray(dZ if nchw else dZ.transpose(0, 3, 1, 2))).contiguous(memory_format=mem)
    even = (p.ph, p.pw) == (p.pb, p.pr)
    assert even
    kw = dict(stride=(p.sh, p.sw), padding=(p.ph, p.pw), dilation=(p.dh, p.dw), groups=p.G)

    def fwd():
        with torch.no_grad():
            return F.conv2d(x, w, bias, **kw)

    xg, wg, bg = (t.clone().requires_grad_(True) for t in (x, w, bias))

    def both():
        xg.grad = wg.grad = bg.grad = None
        F.conv2d(xg, wg, bg, **kw).backward(g)

    return {"fwd": fwd, "fwd+bwd": both}


def _best_torch(case, dtype):
    cands = {fmt: _torch(case, dtype, fmt) for fmt in ("nchw", "channels_last")}
    t = {fmt: timed_block(c["fwd+bwd"], 3) for fmt, c in cands.items()}
    fmt = min(t, key=t.get)
    return cands[fmt], fmt


def _copy_rate(nbytes: int) -> float:
    """Bytes moved per second (read + written) by np.copyto of nbytes / 2 bytes."""
    n = max(1, nbytes // 16)
    src, dst = np.ones(n), np.empty(n)
    return 2 * src.nbytes / timed_block(lambda: np.copyto(dst, src), 7)


def _ratios(a, b, rounds, block):
    """Per-round time(b) / time(a), a and b alternating first; and a's times."""
    ratios, ta = [], []
    for r in range(rounds):
        order = ("a", "b") if r % 2 == 0 else ("b", "a")
        t = {k: timed_block(a if k == "a" else b, block) for k in order}
        ratios.append(t["b"] / t["a"])
        ta.append(t["a"])
    return ratios, ta


def _line(name, dtype, what, label, ratios, extra=""):
    print(f"{name:<16} {np.dtype(dtype).name:<8} {what:<8} {label:<22} {statistics.median(ratios):6.3f} "
          f"[{min(ratios):.3f}, {max(ratios):.3f}]{extra}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--autotune", action="store_true")
    ap.add_argument("--only", choices=("depthwise", "dilated", "grouped", "nchw"), action="append")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from fastnn.backends.numba.config import override_num_threads

    override_num_threads(args.threads)
    if args.autotune:
        fastnn.set_autotune(True)
    only = set(args.only or ("depthwise", "dilated", "grouped", "nchw"))
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds of {args.block} calls")
    R, B = args.rounds, args.block
    for dtype in (np.float32, np.float64):
        if "depthwise" in only:
            for case in DEPTHWISE:
                ours = _fastnn(case, dtype)
                theirs, fmt = _best_torch(case, dtype)
                p = case.params
                it = np.dtype(dtype).itemsize
                moved = {"fwd": (p.m * p.H * p.W * p.C + p.m * p.Ho * p.Wo * p.K) * it}
                moved["fwd+bwd"] = moved["fwd"] + (2 * p.m * p.H * p.W * p.C + 2 * p.m * p.Ho * p.Wo * p.K) * it
                for what in ("fwd", "fwd+bwd"):
                    ratios, ts = _ratios(ours[what], theirs[what], R, B)
                    share = moved[what] / statistics.median(ts) / _copy_rate(moved[what])
                    op = "conv_forward" if what == "fwd" else "conv_backward"
                    _line(case.name, dtype, what, "torch/fastnn", ratios,
                          f"  {100 * share:5.1f}% of copy  auto={_dispatch.resolve_name(op, None, p)}  (torch {fmt})")
        if "dilated" in only:
            for dil, und in DILATED:
                ours, base = _fastnn(dil, dtype), _fastnn(und, dtype)
                theirs, fmt = _best_torch(dil, dtype)
                for what in ("fwd", "fwd+bwd"):
                    _line(dil.name, dtype, what, f"fastnn {dil.name}/{und.name}", _ratios(base[what], ours[what], R, B)[0])
                    _line(dil.name, dtype, what, "torch/fastnn", _ratios(ours[what], theirs[what], R, B)[0],
                          f"  (torch {fmt})")
        if "grouped" in only:
            for case in GROUPED:
                ours, apart = _fastnn(case, dtype), _apart(case, dtype)
                theirs, fmt = _best_torch(case, dtype)
                for what in ("fwd", "fwd+bwd"):
                    _line(case.name, dtype, what, "apart/grouped", _ratios(ours[what], apart[what], R, B)[0])
                    _line(case.name, dtype, what, "torch/fastnn", _ratios(ours[what], theirs[what], R, B)[0],
                          f"  (torch {fmt})")
        if "nchw" in only:
            for nchw, nhwc in NCHW:
                ours, base = _fastnn(nchw, dtype), _fastnn(nhwc, dtype)
                theirs, fmt = _best_torch(nchw, dtype)
                for what in ("fwd", "fwd+bwd"):
                    _line(nchw.name, dtype, what, "fastnn NCHW/NHWC", _ratios(base[what], ours[what], R, B)[0])
                    _line(nchw.name, dtype, what, "torch/fastnn", _ratios(ours[what], theirs[what], R, B)[0],
                          f"  (torch {fmt})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
