"""The numba backend's threaded hand-off: microseconds per ``threads.run_chunks`` call of a copy
kernel in 2 chunks, with the worker's linger after the bell (``config.SPIN_LINGER_US``) set to each
of the given values in alternating rounds (medians of 9 rounds of 500 calls, with their ranges).

    python3 docs/bench/2026-12-07-handoff.py 5,3,2,1

Run it from a tree on ``PYTHONPATH`` to time that tree's hand-off (on a tree before 2026-12-07's
flag-in-the-poll change the linger applies to the caller's wait too). x86-64 with 2+ CPUs only.
"""

import statistics
import sys
import time

import numba
import numpy as np

from fastnn.backends.numba import config, threads


@numba.njit(nogil=True)
def copy2(x, y, c, n):
    for i in range(c * x.shape[0] // n, (c + 1) * x.shape[0] // n):
        y[i] = x[i] * 2.0


def main():
    vals = [float(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "5,2").split(",")]
    config.override_num_threads(2)
    x = np.ones(10)
    threads.run_chunks(copy2, (x, np.empty(10)), 2)  # (compiles; starts a worker; sets polling up)
    if not threads._spin:
        sys.exit("polling is off here (not x86-64, fewer than 2 usable CPUs, or FASTNN_SPIN_US=0)")
    spin, idle, _ = threads._spin
    rate = spin.cycles_per_us()
    for size in (1, 20000, 100000):
        x, y = np.ones(size), np.empty(size)
        t0 = time.perf_counter()
        for _ in range(500):
            copy2(x, y, 0, 1)
        serial = (time.perf_counter() - t0) / 500 * 1e6
        res = {v: [] for v in vals}
        for r in range(9):
            for v in (vals if r % 2 else vals[::-1]):
                threads._spin = (spin, idle, int(v * rate))
                for _ in range(50):
                    threads.run_chunks(copy2, (x, y), 2)
                t0 = time.perf_counter()
                for _ in range(500):
                    threads.run_chunks(copy2, (x, y), 2)
                res[v].append((time.perf_counter() - t0) / 500 * 1e6)
        print(f"{size:6d} elements (serial {serial:.1f} us): " + "  ".join(
            f"linger {v:g}: {statistics.median(t):.1f} [{min(t):.1f}, {max(t):.1f}] us" for v, t in res.items()),
            flush=True)


if __name__ == "__main__":
    main()
