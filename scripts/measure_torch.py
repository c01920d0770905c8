"""fastnn's ``auto`` against PyTorch CPU, on the built-in table and on held-out layers.

PyTorch runs with the same thread count, in the better of NCHW and channels_last per layer
(picked by a short timing first). Each row is timed in rounds of one block per library
(untimed calls for 0.15 s after switching, then ``--block`` timed calls: ``fastnn._plan.timed_block``),
the order alternating per round; printed: the median over rounds of the per-round ratio
torch time / fastnn time (> 1: fastnn faster) with its range, the backend ``auto`` ran, and for
convolutions fastnn's share of the GEMM rate (NumPy matmul of a 1024 square, same dtype).

    python scripts/measure_torch.py --set table --rounds 5
    python scripts/measure_torch.py --set heldout --rounds 5 --autotune
    python scripts/measure_torch.py --set cnn --rounds 5       # fastnn train --model cnn's layers

The last lines count the rows that meet issue 19's bars (:func:`bars`) and list those that miss.

``--autotune`` turns on ``fastnn.set_autotune(True)``: a layer's key is tuned on first sight
(in the untimed warm-up), as a user with ``FASTNN_AUTOTUNE=1`` would run it. The held-out
layers were never used to tune anything.
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
from fastnn import _params as P
from fastnn._plan import timed_block
from fastnn.testing.cases import BENCH_CONV_SHAPES, BENCH_POOL_SHAPES, ConvCase, PoolCase

#: Realistic layers outside the built-in table (ResNet, VGG, MobileNet, AlexNet shapes, odd sizes).
HELDOUT_CONV = [
    ConvCase("resnet14_256", 8, 14, 14, 256, 3, 256, 1, 1),
    ConvCase("resnet_down", 8, 28, 28, 128, 3, 256, 2, 1),
    ConvCase("vgg56_64", 4, 56, 56, 64, 3, 64, 1, 1),
    ConvCase("mobilenet_pw", 8, 14, 14, 512, 1, 512, 1, 0),
    ConvCase("alexnet_5x5", 4, 27, 27, 64, 5, 192, 1, 2),
    ConvCase("odd_7x7_s2", 4, 57, 57, 3, 7, 32, 2, 3),
]
HELDOUT_POOL = [
    PoolCase("pool3s2_128", 8, 28, 28, 128, 3, 2),
    PoolCase("pool2s2_96", 8, 14, 14, 96, 2, 2),
    PoolCase("pool3s2_odd", 4, 55, 55, 96, 3, 2),
]


#: The layers of ``fastnn train --model cnn`` (batch 16, the cat images): tuned on (the dW tile
#: rule for a one-vector channel tile was measured on them), so reported apart from both sets.
CNN_CONV = [
    ConvCase("cnn_c1", 16, 64, 64, 3, 3, 8, 1, 1),
    ConvCase("cnn_c2", 16, 32, 32, 8, 3, 16, 1, 1),
    ConvCase("cnn_c3", 16, 16, 16, 16, 3, 32, 1, 1),
]
CNN_POOL = [
    PoolCase("cnn_p1", 16, 64, 64, 8, 2, 2),
    PoolCase("cnn_p2", 16, 32, 32, 16, 2, 2),
    PoolCase("cnn_p3", 16, 16, 16, 32, 2, 2),
]


def _torch_conv(A, W, b, hp, dZ, layout):
    p = P.conv_params(A, W, b, hp)
    assert (p.ph, p.pw) == (p.pb, p.pr), "uneven padding: not in these sets"
    nchw = P.conv_layout(hp) == "NCHW"  # (the arrays are channels-first already)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    to_t = (lambda a: a) if nchw else (lambda a: a.transpose(0, 3, 1, 2))  # noqa: E731
    x = torch.from_numpy(np.ascontiguousarray(to_t(A))).contiguous(memory_format=fmt)
    w = torch.from_numpy(np.ascontiguousarray(W if nchw else W.transpose(3, 2, 0, 1))).contiguous(memory_format=fmt)
    bias = torch.from_numpy(b.reshape(-1).copy())
    g = torch.from_numpy(np.ascontiguousarray(to_t(dZ))).contiguous(memory_format=fmt)
    kw = dict(stride=(p.sh, p.sw), padding=(p.ph, p.pw), dilation=(p.dh, p.dw), groups=p.G)

    def fwd():
        with torch.no_grad():
            return F.conv2d(x, w, bias, **kw)

    xg, wg, bg = (t.clone().requires_grad_(True) for t in (x, w, bias))

    def both():
        xg.grad = wg.grad = bg.grad = None
        F.conv2d(xg, wg, bg, **kw).backward(g)

    return {"fwd": fwd, "fwd+bwd": both}


def _torch_pool(A, hp, dA, mode, layout):
    f, s, pad = P._pair(hp["f"]), P._pair(hp["stride"]), P._pair(hp.get("pad", 0))
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.from_numpy(np.ascontiguousarray(A.transpose(0, 3, 1, 2))).contiguous(memory_format=fmt)
    g = torch.from_numpy(np.ascontiguousarray(dA.transpose(0, 3, 1, 2))).contiguous(memory_format=fmt)
    op = F.max_pool2d if mode == "max" else F.avg_pool2d

    def fwd():
        with torch.no_grad():
            return op(x, f, s, pad)

    xg = x.clone().requires_grad_(True)

    def both():
        xg.grad = None
        op(xg, f, s, pad).backward(g)

    return {"fwd": fwd, "fwd+bwd": both}


def _best_layout(make):
    """The faster of NCHW and channels_last for torch (on the forward+backward)."""
    t = {}
    for layout in ("nchw", "channels_last"):
        t[layout] = timed_block(make(layout)["fwd+bwd"], 3)
    return min(t, key=t.get)


def _gemm_rate(dtype) -> float:
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(dtype)
    return 2 * 1024 ** 3 / timed_block(lambda: a @ a, 5)


def _rows(which):
    if which == "table":
        convs = [c for n, c in BENCH_CONV_SHAPES.items() if n != "seed"]
        pools = [c for n, c in BENCH_POOL_SHAPES.items() if n != "seed"]
    elif which == "cnn":
        convs, pools = CNN_CONV, CNN_POOL
    else:
        convs, pools = HELDOUT_CONV, HELDOUT_POOL
    for case in convs:
        for dtype in (np.float32, np.float64):
            A, W, b, hp, dZ = case.make(dtype, seed=0)
            p = P.conv_params(A, W, b, hp)

            def fwd(A=A, W=W, b=b, hp=hp):
                return fastnn.conv_forward(A, W, b, hp)

            def both(fwd=fwd, dZ=dZ):
                _, cache = fwd()
                fastnn.conv_backward(dZ, cache)

            layout = _best_layout(lambda lay, A=A, W=W, b=b, hp=hp, dZ=dZ: _torch_conv(A, W, b, hp, dZ, lay))
            ref = _torch_conv(A, W, b, hp, dZ, layout)
            flops = None if p.G == p.C > 1 else p.flops  # (depthwise: memory-bound, no GEMM share)
            yield (f"conv {case.name}", dtype, {"fwd": fwd, "fwd+bwd": both}, ref,
                   {"fwd": ("conv_forward", p, flops), "fwd+bwd": ("conv_backward", p, 3 * flops if flops else None)},
                   layout)
    for case in pools:
        for dtype in (np.float32, np.float64):
            A, hp, dA = case.make(dtype, seed=0)
            for mode in ("max", "average"):
                p = P.pool_params(A, hp, mode)

                def fwd(A=A, hp=hp, mode=mode):
                    return fastnn.pool_forward(A, hp, mode)

                def both(fwd=fwd, dA=dA, mode=mode):
                    _, cache = fwd()
                    fastnn.pool_backward(dA, cache, mode)

                layout = _best_layout(lambda lay, A=A, hp=hp, dA=dA, mode=mode: _torch_pool(A, hp, dA, mode, lay))
                yield (f"{mode}pool {case.name}", dtype, {"fwd": fwd, "fwd+bwd": both},
                       _torch_pool(A, hp, dA, mode, layout),
                       {"fwd": ("pool_forward", p, None), "fwd+bwd": ("pool_backward", p, None)}, layout)


def bars(p, dtype, what: str, ratio: float, gemm_pct) -> list:
    """Issue 19's bars for one row as (label, value, bar) triples (issue 22's >= 1.0x for a
    depthwise convolution, a memory-bound op with no GEMM share): float64 convolution forward
    >= 1.5x (pointwise, one GEMM, >= 1.0x), forward+backward >= 1.2x; float32 forward >= 0.95x
    (3 input channels or fewer: >= 0.9x) and >= 85% of the GEMM rate where C_in >= 32,
    forward+backward >= 1.0x; pooling >= 1.0x."""
    if isinstance(p, P.PoolParams) or p.G == p.C > 1:
        return [("ratio", ratio, 1.0)]
    if np.dtype(dtype) == np.float64:
        pointwise = p.fh == p.fw == p.sh == p.sw == 1 and p.ph == p.pw == 0
        return [("ratio", ratio, (1.0 if pointwise else 1.5) if what == "fwd" else 1.2)]
    if what != "fwd":
        return [("ratio", ratio, 1.0)]
    out = [("ratio", ratio, 0.9 if p.C <= 3 else 0.95)]
    if p.C >= 32 and gemm_pct is not None:
        out.append(("% of GEMM", gemm_pct, 85.0))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=("table", "heldout", "cnn"), default="table")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--autotune", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from fastnn.backends.numba.config import override_num_threads

    override_num_threads(args.threads)
    if args.autotune:
        fastnn.set_autotune(True)
    peak = {np.dtype(d): _gemm_rate(d) for d in (np.float32, np.float64)}
    print(f"GEMM peak (1024^2 matmul): float32 {peak[np.dtype(np.float32)] / 1e9:.1f}, "
          f"float64 {peak[np.dtype(np.float64)] / 1e9:.1f} GFLOP/s; torch {torch.__version__}, {args.threads} threads")
    summary, checked = [], []
    for name, dtype, ours, theirs, keys, layout in _rows(args.set):
        for what in ours:
            ratios, ts = [], []
            for r in range(args.rounds):
                order = ("ours", "torch") if r % 2 == 0 else ("torch", "ours")
                t = {w: timed_block(ours[what] if w == "ours" else theirs[what], args.block) for w in order}
                ratios.append(t["torch"] / t["ours"])
                ts.append(t["ours"])
            op, p, flops = keys[what]
            med = statistics.median(ratios)
            share = (f" {100 * flops / statistics.median(ts) / peak[np.dtype(dtype)]:5.1f}% of GEMM"
                     if flops else "")
            summary.append(med)
            gemm_pct = 100 * flops / statistics.median(ts) / peak[np.dtype(dtype)] if flops else None
            for label, value, bar in bars(p, dtype, what, med, gemm_pct):
                checked.append((f"{name} {np.dtype(dtype).name} {what} {label}", value, bar))
            print(f"{name:<22} {np.dtype(dtype).name:<8} {what:<8} auto={_dispatch.resolve_name(op, None, p):<7} "
                  f"torch/fastnn {med:.3f} [{min(ratios):.3f}, {max(ratios):.3f}]{share}  (torch {layout})", flush=True)
    print(f"{len(summary)} rows: median {statistics.median(summary):.3f}, from {min(summary):.3f} to "
          f"{max(summary):.3f}; rows below 1.0: {sum(r < 1.0 for r in summary)}")
    missed = [(what, v, bar) for what, v, bar in checked if v < bar]
    print(f"bars (issue 19's; a depthwise row: issue 22's >= 1.0x): {len(checked) - len(missed)} of {len(checked)} met"
          + ("; missed:" if missed else ""))
    for what, v, bar in missed:
        print(f"  {what} {v:.3f} < {bar:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
