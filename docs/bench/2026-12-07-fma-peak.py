"""fastnn's and PyTorch's float32 convolution forwards against the core's measured FMA peak.

    python3 docs/bench/2026-12-07-fma-peak.py [--threads 1|2] [--rounds 5]

The bound NumPy's 1024-square GEMM gives (the other scripts' "share of GEMM") is OpenBLAS's rate,
not the machine's. This script measures the machine's: a generated Numba kernel (fastnn's
compile options) that runs 12 independent chains of 512-bit fused multiply-adds on registers
only, on one thread. In rounds,
one process, it times that peak, the numba backend's forward and PyTorch's (channels_last,
``set_num_threads``) on the table's float32 convolutions and scripts/measure_torch.py's
held-out layers, and prints each library's median share of the peak measured in the same round,
and the median of the per-round ratios torch time / fastnn time. The peak kernel's chains are
long enough that its own loop costs nothing measurable; PyTorch's oneDNN kernels can read
slightly above 100% where the peak kernel's clock differs a little from theirs.

With ``--threads`` above 1 the forwards run on that many threads and only their ratios are
printed: on the 2-vCPU AMD EPYC VM the peak kernel run on two threads at once took twice as
long as on one (117 GFLOP/s together), while PyTorch's and fastnn's forwards ran 1.5-1.9x
faster on two threads than on one, so no two-thread peak is quoted.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))

import torch  # noqa: E402

import fastnn  # noqa: E402
import measure_torch as MT  # noqa: E402
from fastnn._jit import load_generated  # noqa: E402
from fastnn._plan import timed_block  # noqa: E402
from fastnn.backends.numba import config as cfg  # noqa: E402
from fastnn.testing.cases import BENCH_CONV_SHAPES  # noqa: E402

CHAINS, LANES = 12, 16  # 12 accumulators of one 512-bit float32 vector: more than 2 ports x 4 cycles


def _peak_kernel():
    lines = ["@kernel(fastmath=FASTMATH_CONV)", "def fma_peak(x, w, n, out, chunk, nchunks):"]
    lines += [f"    a{i}_{k} = x[chunk, {i}, {k}]" for i in range(CHAINS) for k in range(LANES)]
    lines += [f"    w{k} = w[0, {k}]" for k in range(LANES)] + [f"    v{k} = w[1, {k}]" for k in range(LANES)]
    lines += ["    for it in range(n):"]
    lines += [f"        a{i}_{k} = a{i}_{k} * w{k} + v{k}" for i in range(CHAINS) for k in range(LANES)]
    lines += [f"    out[chunk, {i}, {k}] = a{i}_{k}" for i in range(CHAINS) for k in range(LANES)]
    src = "\n".join(["import numpy as np", "", "from fastnn._jit import FASTMATH_CONV, kernel", ""] + lines) + "\n"
    return load_generated("bench_fma_peak", src).fma_peak


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    nt = args.threads
    torch.set_num_threads(nt)
    kernel = _peak_kernel()
    x = np.ones((1, CHAINS, LANES), np.float32)
    w = np.full((2, LANES), 0.5, np.float32)
    out = np.empty_like(x)
    n = 2_000_000

    def peak():  # FLOP/s of one thread
        t0 = time.perf_counter()
        kernel(x, w, n, out, 0, 1)
        return 2 * n * CHAINS * LANES / (time.perf_counter() - t0)

    peak()
    names = ["cat_c1", "cifar", "res_3x3", "stride2", "pointwise", "stem7x7"]
    cases = [("table", BENCH_CONV_SHAPES[k]) for k in names] + [("held-out", c) for c in MT.HELDOUT_CONV]
    print(f"{nt} thread(s), {args.rounds} rounds; fastnn pinned to numba; torch {torch.__version__} channels_last")
    for where, case in cases:
        A, W, b, hp, _ = case.make(np.float32, seed=0)
        p = case.params
        flops = 2 * p.m * p.Ho * p.Wo * p.K * p.fh * p.fw * p.C // p.G
        tx = torch.from_numpy(np.ascontiguousarray(A.transpose(0, 3, 1, 2))).contiguous(memory_format=torch.channels_last)
        tw = torch.from_numpy(np.ascontiguousarray(W.transpose(3, 2, 0, 1))).contiguous(memory_format=torch.channels_last)
        tb = torch.from_numpy(b.reshape(-1).copy())
        assert (p.ph, p.pw) == (p.pb, p.pr)

        def ours():
            return fastnn.conv_forward(A, W, b, hp, backend="numba")

        def theirs():
            with torch.no_grad():
                return torch.nn.functional.conv2d(tx, tw, tb, stride=(p.sh, p.sw), padding=(p.ph, p.pw))

        pk, fs, ts = [], [], []
        with cfg.use_num_threads(nt):
            for r in range(args.rounds):
                if nt == 1:
                    pk.append(peak())
                order = ((fs, ours), (ts, theirs)) if r % 2 == 0 else ((ts, theirs), (fs, ours))
                for acc, fn in order:
                    acc.append(flops / timed_block(fn, 3))
        share = lambda rates: 100 * statistics.median([a / q for a, q in zip(rates, pk)])
        ratio = [f / t for f, t in zip(fs, ts)]
        shares = (f"peak {statistics.median(pk) / 1e9:4.0f} GFLOP/s  fastnn {share(fs):4.0f}%  torch {share(ts):4.0f}%  "
                  if nt == 1 else f"fastnn {statistics.median(fs) / 1e9:4.0f} GFLOP/s  torch {statistics.median(ts) / 1e9:4.0f}  ")
        print(f"{where:8s} {case.name:14s} {shares}torch/fastnn {statistics.median(ratio):.2f} "
              f"[{min(ratio):.2f}, {max(ratio):.2f}]", flush=True)


if __name__ == "__main__":
    main()
