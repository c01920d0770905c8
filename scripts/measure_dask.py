"""Measure fastnn on Dask: out-of-core peak memory, data-parallel step overheads, and the scaling model.

    python scripts/measure_dask.py outofcore --size 4GiB --chunks 32MiB --file /tmp/fastnn-4g.h5
    python scripts/measure_dask.py outofcore --size 64MiB --chunks 64MiB    # one chunk: the control
    python scripts/measure_dask.py overhead --rounds 7                      # local:2, the course's cnn
    python scripts/measure_dask.py model --per-example-ms 0.9 --overhead-ms 20 --per-task-ms 4

``outofcore`` writes a synthetic float32 image file (N x 64 x 64 x 3, seeded normal values; kept
if ``--file`` names it and it has the size already), then in a fresh process streams it through
conv3x3(3->8, pad 1) -> ReLU -> maxpool 2 -> conv3x3(8->16, pad 1) -> ReLU -> mean over H, W
with :mod:`fastnn.dask` on the local threaded scheduler, and reports the resident memory the
computation added: the peak RSS (``VmHWM``, reset just before it starts) less the RSS before
(imports done, kernels compiled on a few examples). ``--json`` prints one JSON object.

``overhead`` times training steps of ``fastnn train --model cnn``'s network (batch 16, the
course's images, else random ones) on one process and on ``local:2`` (2 worker processes x 1
thread), and splits the Dask step into its parts. ``model`` prints, from such figures, when
2, 8 and 32 workers pay off on a 10 Gbit/s link (``docs/bench/2026-12-06-dask.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMAGE = (64, 64, 3)
KEY = "x"


def parse_size(text: str) -> int:
    from dask.utils import parse_bytes

    return int(parse_bytes(text))


# ------------------------------------------------------------------------- out of core


def make_file(path: Path, size: int, slab_bytes: int = 64 << 20) -> int:
    """A float32 (N, 64, 64, 3) data set of about ``size`` bytes at ``path`` (written in slabs,
    so this process never holds more than one). Returns N."""
    import h5py

    per = int(np.prod(IMAGE)) * 4
    n = max(1, size // per)
    if path.is_file():
        with h5py.File(path, "r") as f:
            if KEY in f and f[KEY].shape == (n, *IMAGE) and f[KEY].dtype == np.float32:
                return n
    step = max(1, slab_bytes // per)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(KEY, shape=(n, *IMAGE), dtype=np.float32)
        for k, lo in enumerate(range(0, n, step)):
            hi = min(n, lo + step)
            dset[lo:hi] = np.random.default_rng([7, k]).standard_normal((hi - lo, *IMAGE), dtype=np.float32)
    return n


def _status() -> dict:
    with open("/proc/self/status") as f:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.startswith(("VmRSS", "VmHWM"))}


def _reset_peak() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Sampler:
    """The highest RSS seen every 5 ms (where the peak cannot be reset)."""

    def __init__(self):
        import threading

        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _status()["VmRSS"])
            self._stop.wait(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status()["VmRSS"])


def layer_params():
    rng = np.random.default_rng(3)
    W1 = (rng.standard_normal((3, 3, 3, 8)) * 0.2).astype(np.float32)
    W2 = (rng.standard_normal((3, 3, 8, 16)) * 0.1).astype(np.float32)
    return W1, np.zeros((1, 1, 1, 8), np.float32), W2, np.zeros((1, 1, 1, 16), np.float32)


def pipeline(ops, X):
    """conv -> relu -> pool -> conv -> relu -> mean over the pixels, with ``ops`` (fastnn or fastnn.dask)."""
    W1, b1, W2, b2 = layer_params()
    Z, _ = ops.conv_forward(X, W1, b1, {"stride": 1, "pad": 1})
    A, _ = ops.relu(Z)
    P, _ = ops.pool_forward(A, {"f": 2, "stride": 2})
    Z, _ = ops.conv_forward(P, W2, b2, {"stride": 1, "pad": 1})
    A, _ = ops.relu(Z)
    return A.mean(axis=(1, 2))


def stream(path: str, chunks: str, workers: int) -> dict:
    """In this (fresh) process: the pipeline over the whole file, chunk by chunk; memory and time."""
    import dask

    import fastnn
    import fastnn.dask as fd

    X = fd.read_hdf5(path, KEY, chunks=chunks)
    first = np.asarray(X[:4])
    expected = pipeline(fastnn, first)  # compiles the kernels; the reference for the first examples
    before = _status()["VmRSS"]
    sampler = None if _reset_peak() else _Sampler().__enter__()
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=workers):
        features = pipeline(fd, X).compute()
    seconds = time.perf_counter() - t0
    if sampler is not None:
        sampler.__exit__()
    peak = sampler.peak if sampler is not None else _status()["VmHWM"]
    np.testing.assert_allclose(features[:4], expected, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(expected).max())))
    n = X.shape[0]
    return {"file_bytes": os.path.getsize(path), "examples": n, "chunk_examples": int(X.chunks[0][0]),
            "chunk_bytes": int(X.chunks[0][0]) * int(np.prod(IMAGE)) * 4, "chunks": len(X.chunks[0]),
            "workers": workers, "rss_before": before, "rss_peak": peak, "added": peak - before, "seconds": seconds,
            "peak_by": "sampling" if sampler is not None else "VmHWM", "features": list(features.shape)}


def outofcore(size: str, chunks: str, file: str = None, workers: int = 2, keep: bool = False) -> dict:
    tmp = None
    if file is None:
        tmp = tempfile.TemporaryDirectory(prefix="fastnn-ooc-")
        path = Path(tmp.name) / "images.h5"
    else:
        path = Path(file)
    try:
        t0 = time.perf_counter()
        make_file(path, parse_size(size))
        made = time.perf_counter() - t0
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'scripts')!r}); import measure_dask as m; "
                f"print(json.dumps(m.stream({str(path)!r}, {chunks!r}, {workers})))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise RuntimeError(f"the streaming process failed:\n{res.stderr}")
        out = json.loads(res.stdout.strip().splitlines()[-1])
        out["make_file_s"] = made
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()
        elif not keep and file is None:
            path.unlink(missing_ok=True)


def _mib(n):
    return f"{n / 2**20:.1f} MiB"


def print_outofcore(r: dict) -> None:
    print(f"file {_mib(r['file_bytes'])} ({r['examples']} images 64x64x3 float32), chunks of {r['chunk_examples']} "
          f"images ({_mib(r['chunk_bytes'])}, {r['chunks']} chunks), {r['workers']} threads")
    print(f"RSS before {_mib(r['rss_before'])}, peak {_mib(r['rss_peak'])} ({r['peak_by']}): the computation added "
          f"{_mib(r['added'])} = {r['added'] / r['file_bytes']:.3f} of the file, {r['added'] / r['chunk_bytes']:.1f} chunks; "
          f"{r['seconds']:.1f} s ({r['file_bytes'] / r['seconds'] / 2**20:.0f} MiB/s); writing the file took "
          f"{r['make_file_s']:.1f} s")


# -------------------------------------------------------------------------- overheads


def _course_or_random(m: int, seed: int = 0):
    try:
        from fastnn.data import load_cat_data

        X, Y = load_cat_data(layout="nhwc", dtype=np.float64)[:2]
        return X[:m], Y.reshape(-1)[:m].astype(np.float64), "the course's images"
    except Exception:  # noqa: BLE001 - no data here: random images of the same size
        rng = np.random.default_rng(seed)
        return rng.random((m, *IMAGE)), (rng.random(m) > 0.5).astype(np.float64), "random 64x64x3 images"


def _zero_gradients(state, X, Y, m):
    """A shard's result with no compute: zero gradients of the parameters' shapes."""
    return 0.0, 0.0, {k: np.zeros_like(v) for k, v in state["params"].items()}


def _pickled(obj) -> int:
    import pickle

    return len(pickle.dumps(obj, protocol=5))


def overhead(rounds: int = 7, batch: int = 16, workers: int = 2, dtype: str = "float64") -> dict:
    """Median and range over ``rounds`` of: one cnn step here, the same step on local:N (and its
    parts), a no-op task round trip, and the bytes a step moves."""
    from distributed import Client

    from fastnn.dask import DataParallel, local_cluster
    from fastnn.nn import trainer

    X, Y, source = _course_or_random(batch)
    X, Y = X.astype(dtype), Y.astype(dtype).reshape(-1, 1)
    config = trainer.CnnRun.new_config(IMAGE, {"model": "cnn", "dtype": dtype, "batch_size": batch, "lr": 0.001,
                                               "seed": 2})
    here = trainer.CnnRun(config)
    state = here.shard_state()
    here.gradients(X, Y, batch)  # compile / warm
    from fastnn.backends.numba.config import use_num_threads

    shard_X, shard_Y = X[: -(-batch // workers)], Y[: -(-batch // workers)]
    t_local, t_shard = [], []
    for _ in range(rounds):  # alternating: the whole batch on this process's threads, one shard on one thread
        t0 = time.perf_counter()
        here.gradients(X, Y, batch)
        t_local.append(time.perf_counter() - t0)
        with use_num_threads(1):
            t0 = time.perf_counter()
            here.gradients(shard_X, shard_Y, batch)
            t_shard.append(time.perf_counter() - t0)
    with local_cluster(workers) as cluster, Client(cluster, set_as_default=False) as client:
        dp = DataParallel(client)
        for _ in range(2):  # warm: imports and kernels on the workers
            dp.gradients(trainer.shard_gradients, state, X, Y, axis=0)
        dp.timings.clear()
        noop = []
        for _ in range(rounds):
            dp.gradients(trainer.shard_gradients, state, X, Y, axis=0)
            t0 = time.perf_counter()
            client.gather([client.submit(int, k, pure=False) for k in range(workers)])
            noop.append(time.perf_counter() - t0)
        steps = list(dp.timings)
        # the overhead alone, by shard count: shards that compute nothing but send back zero gradients
        import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # (workers cannot import this script)
        empty = {}
        for shards in (1, 2, 4, 8, 16):
            par = DataParallel(client, shards)
            for _ in range(rounds + 2):
                par.gradients(_zero_gradients, state, X, Y, axis=0)
            empty[shards] = [t["step_s"] for t in par.timings[2:]]
    grads = here.gradients(X, Y, batch)[2]
    out = {"source": source, "batch": batch, "workers": workers, "dtype": dtype, "rounds": rounds,
           "local_step_s": t_local, "dask_step_s": [s["step_s"] for s in steps],
           "scatter_s": [s["scatter_s"] for s in steps], "submit_s": [s["submit_s"] for s in steps],
           "gather_s": [s["gather_s"] for s in steps], "shard_compute_s": [max(s["shard_s"]) for s in steps],
           "noop_roundtrip_s": noop, "state_bytes": _pickled(state), "shard_bytes": _pickled(shard_X) + _pickled(shard_Y),
           "local_shard_1thread_s": t_shard, "threads_here": _threads_here(),
           "grad_bytes": _pickled(grads), "params": int(sum(v.size for v in state["params"].values())),
           "empty_step_s": {str(k): v for k, v in empty.items()}}
    return out


def _threads_here() -> int:
    from fastnn.backends.numba.config import num_threads

    return num_threads()


def _med(xs):
    return f"{1e3 * statistics.median(xs):.1f} ms ({1e3 * min(xs):.1f}-{1e3 * max(xs):.1f})"


def print_overhead(r: dict) -> None:
    print(f"cnn step, batch {r['batch']} {r['dtype']} ({r['source']}), {r['params']} parameters; medians (range) of "
          f"{r['rounds']} rounds")
    print(f"  one process, {r['threads_here']} threads:  {_med(r['local_step_s'])}")
    print(f"  one shard here, 1 thread: {_med(r['local_shard_1thread_s'])}")
    print(f"  local:{r['workers']} whole step:     {_med(r['dask_step_s'])}")
    print(f"    scatter parameters:    {_med(r['scatter_s'])}")
    print(f"    submit {r['workers']} shards:       {_med(r['submit_s'])}")
    print(f"    wait + gather:         {_med(r['gather_s'])}")
    print(f"    slowest shard compute: {_med(r['shard_compute_s'])}")
    over = [s - c for s, c in zip(r["dask_step_s"], r["shard_compute_s"])]
    print(f"    step - slowest shard:  {_med(over)}  (the per-step overhead)")
    print(f"  no-op task round trip:   {_med(r['noop_roundtrip_s'])}")
    print(f"  bytes: parameters {r['state_bytes']}, one shard {r['shard_bytes']}, one shard's gradients {r['grad_bytes']}")
    print(f"  steps of shards that compute nothing (scatter, tasks, zero gradients back, the sum), by shard count:")
    for k, v in r["empty_step_s"].items():
        print(f"    {k:>2} shards: {_med(v)}")


# ------------------------------------------------------------------------------ model


def model_table(per_example_s: float, overhead_s: float, per_task_s: float, param_bytes: float, example_bytes: float,
                link_bytes_s: float = 10e9 / 8, workers=(2, 8, 32)) -> list:
    """When N workers beat one process, for a batch of b examples per step.

    One process: T1 = b c. N workers: T_N = b c / N + F(N) + b x / L, where F(N) = o + N t (the
    step's fixed cost: Dask's overhead o and t per shard task) + (P + N G) / L (the parameters go
    out once, the scheduler and workers copy them on; N gradient sets of G = P bytes come back),
    and the examples' x bytes each leave the driver over its link of L bytes/s. Returns, per N,
    the batch from which T_N < T1 (break-even) and from which T_N <= 2 T1 / N (half the ideal
    speed-up), infinite where the driver's link cannot feed the workers."""
    rows = []
    c, x, L = per_example_s, example_bytes, link_bytes_s
    for n in workers:
        fixed = overhead_s + n * per_task_s + (param_bytes + n * param_bytes) / L
        even = c * (1 - 1 / n) - x / L
        half = c / n - x / L
        rows.append({"workers": n, "fixed_s": fixed,  # (a batch has at least one example per shard)
                     "breakeven_batch": max(n, fixed / even) if even > 0 else float("inf"),
                     "half_batch": max(n, fixed / half) if half > 0 else float("inf")})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    o = sub.add_parser("outofcore")
    o.add_argument("--size", default="256MiB")
    o.add_argument("--chunks", default="16MiB", help="bytes per chunk, or examples per chunk")
    o.add_argument("--file", default=None, help="keep the synthetic file here (reused when it has the size)")
    o.add_argument("--workers", type=int, default=2)
    o.add_argument("--json", action="store_true")
    v = sub.add_parser("overhead")
    v.add_argument("--rounds", type=int, default=7)
    v.add_argument("--batch", type=int, default=16)
    v.add_argument("--workers", type=int, default=2)
    v.add_argument("--dtype", default="float64")
    v.add_argument("--json", action="store_true")
    m = sub.add_parser("model")
    m.add_argument("--per-example-ms", type=float, required=True, help="forward+backward compute per example")
    m.add_argument("--overhead-ms", type=float, required=True, help="per-step overhead, the part that does not grow with the shards")
    m.add_argument("--per-task-ms", type=float, default=0.0, help="overhead per shard task")
    m.add_argument("--param-bytes", type=float, default=8 * 8081, help="bytes of parameters (and of gradients): the cnn float64")
    m.add_argument("--example-bytes", type=float, default=8 * 64 * 64 * 3, help="bytes per example leaving the driver (0: the workers read their shards)")
    m.add_argument("--gbit", type=float, default=10.0)
    args = ap.parse_args(argv)
    if args.what == "outofcore":
        chunks = int(args.chunks) if args.chunks.isdigit() else args.chunks
        r = outofcore(args.size, chunks, args.file, args.workers)
        print(json.dumps(r) if args.json else "", end="\n" if args.json else "")
        if not args.json:
            print_outofcore(r)
    elif args.what == "overhead":
        r = overhead(args.rounds, args.batch, args.workers, args.dtype)
        if args.json:
            print(json.dumps(r))
        else:
            print_overhead(r)
    else:
        rows = model_table(args.per_example_ms / 1e3, args.overhead_ms / 1e3, args.per_task_ms / 1e3, args.param_bytes,
                           args.example_bytes, args.gbit * 1e9 / 8)
        print(f"c = {args.per_example_ms} ms/example, o = {args.overhead_ms} ms/step + {args.per_task_ms} ms/shard, "
              f"P = G = {args.param_bytes:.0f} B, x = {args.example_bytes:.0f} B/example, {args.gbit:g} Gbit/s")
        for r in rows:
            print(f"{r['workers']:>3} workers: fixed {1e3 * r['fixed_s']:.1f} ms/step; faster than one process from a "
                  f"batch of {r['breakeven_batch']:.0f}; half the ideal speed-up ({r['workers'] / 2:g}x) from "
                  f"{r['half_batch']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
