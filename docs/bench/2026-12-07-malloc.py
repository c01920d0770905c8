"""fastnn's forward+backward per table layer (numba, 2 threads): medians of 7 blocks, to be run
twice in separate processes, with glibc's default malloc and with large blocks kept in the heap:

    python3 docs/bench/2026-12-07-malloc.py > default.txt
    MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=268435456 \\
        python3 docs/bench/2026-12-07-malloc.py > heap.txt

By default glibc serves each block above its (dynamic, at most 32 MB) threshold with a fresh
mmap and unmaps it on free, so every call's large temporaries (padded input, dZ copies, dW
partials, outputs) fault their pages in again.
"""

import statistics

import numpy as np

import fastnn
from fastnn._plan import timed_block
from fastnn.testing.cases import BENCH_CONV_SHAPES

for dt in (np.float32, np.float64):
    for name, case in BENCH_CONV_SHAPES.items():
        if name == "seed":
            continue
        A, W, b, hp, dZ = case.make(dt, seed=0)

        def step():
            _, cache = fastnn.conv_forward(A, W, b, hp, backend="numba")
            fastnn.conv_backward(dZ, cache, backend="numba")

        print(f"{name:14s} {np.dtype(dt).name} {statistics.median(timed_block(step) for _ in range(7)) * 1e3:8.3f} ms",
              flush=True)
