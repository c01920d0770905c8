"""Data-parallel training on a ``dask.distributed`` cluster: what ``fastnn train --dask`` runs.

Each training step (one mini-batch) of :mod:`fastnn.nn.trainer`'s loop asks
:meth:`DataParallel.gradients` for the batch's gradients instead of computing them itself:

1. the run's parameters (and config) are scattered to every worker once (``broadcast=True``),
   for the step's shards to share;
2. the batch is cut into ``shards`` contiguous pieces along its examples (the same cut every
   step, whatever the cluster does), each sent with its own task, which runs
   :func:`fastnn.nn.trainer.shard_gradients` on a worker: forward and backward with fastnn,
   the shard's share of the batch's mean cost and gradients;
3. the driver gathers the shards' results in shard order and adds them in a fixed pairwise
   tree (:func:`fastnn.dask.tree_sum`), then the run's own step applies them (Adam, SGD).

The result depends on the shard count, the batch order and the kernels' thread counts, not on
which worker ran what, when, or how often: a worker killed mid-step loses nothing, since each
shard's data travels in its task (the scheduler keeps it) and Dask reruns the task elsewhere.
The parameters are on every worker, so one surviving copy is enough; a step whose data was lost
all the same (every worker gone at once) is sent again, whole, up to ``retries`` times.
Against a single-process run of the same seed and batches, the parameters agree to rounding:
the shards' sums are added in another order than one kernel's.

Threads: each task runs fastnn's kernels on its share of its worker's cores
(:mod:`fastnn.dask._threads`); :func:`local_cluster` gives each of its N worker processes
``FASTNN_NUM_THREADS`` = cores // N.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
import warnings
from concurrent.futures import CancelledError
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

import dask

try:
    import distributed
    from distributed import Client, LocalCluster
except ImportError as exc:  # pragma: no cover - exercised without distributed
    raise ImportError(
        "fastnn.dask's data-parallel training needs dask.distributed: pip install 'fastnn[dask]' "
        f"(dask[array,distributed]); importing it failed: {exc}"
    ) from exc

from .. import use_backend
from ..backends.numba import config as _config
from ._threads import _check_threads, task_threads
from .ops import tree_sum

__all__ = ["parse_address", "usable_cores", "local_cluster", "connect", "DataParallel"]

LOCAL = "local"


def usable_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parse_address(address: str) -> Tuple[str, object]:
    """``("local", N)`` for ``"local:N"`` (``"local"``: one worker per core), ``("scheduler",
    address)`` for a scheduler's address with its protocol (``"tcp://host:port"``). Raises
    ValueError naming what is accepted."""
    if not isinstance(address, str):
        raise ValueError(f"must be local:N or a scheduler address such as tcp://host:port, got {address!r}")
    if address == LOCAL:
        return LOCAL, usable_cores()
    if address.startswith(LOCAL + ":"):
        n = address[len(LOCAL) + 1:]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"local:N needs a number of worker processes N >= 1, got {address!r}")
        return LOCAL, int(n)
    if "://" in address and address.split("://", 1)[1]:
        return "scheduler", address
    raise ValueError(f"must be local:N (N worker processes on this machine) or a scheduler address such as "
                     f"tcp://host:port, got {address!r}")


def local_cluster(n_workers: int, *, threads_per_worker: int = 1, **kwargs) -> LocalCluster:
    """A ``LocalCluster`` of ``n_workers`` processes on the loopback interface, no dashboard,
    each worker's fastnn threads set so that workers x threads fit the cores: its
    ``FASTNN_NUM_THREADS`` is max(1, cores // n_workers), fastnn's thread setting here (or
    the cores) shared out, and each of its ``threads_per_worker`` tasks takes a share of that.
    ``kwargs`` go to ``LocalCluster`` (and win)."""
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive int, got {n_workers!r}")
    budget = max(1, min(_config.num_threads(), usable_cores()) // n_workers)
    env = {"FASTNN_NUM_THREADS": str(budget), **kwargs.pop("env", {})}
    # No dashboard; the scheduler's HTTP routes (health, metrics) on a free loopback port, not 8787
    scheduler_kwargs = {"dashboard": False, **kwargs.pop("scheduler_kwargs", {})}
    options = {"n_workers": n_workers, "threads_per_worker": threads_per_worker, "processes": True,
               "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "scheduler_kwargs": scheduler_kwargs,
               "env": env, **kwargs}
    # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's
    # adaptive mmap threshold: every array over 128 KiB is then fresh pages, and a cnn shard's
    # forward and backward took 2.3x as long (docs/bench/2026-12-06-dask.md). Left unset here.
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), "MALLOC_TRIM_THRESHOLD_": None}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):
        return LocalCluster(**options)


def _shard_task(fn: Callable, state, X, Y, m: int, backend: Optional[str], threads: Optional[int]):
    """What a worker runs for one shard: ``fn(state, X, Y, m)`` on the driver's backend and the
    task's share of the cores; returns (its result, seconds it took)."""
    t0 = time.perf_counter()
    with task_threads(threads), use_backend(backend):
        out = fn(state, X, Y, m)
    return out, time.perf_counter() - t0


def shard_bounds(m: int, shards: int) -> List[Tuple[int, int]]:
    """``shards`` contiguous (start, stop) ranges of m examples, sizes differing by at most one
    (the larger first); ranges with no example left out."""
    sizes = [m // shards + (k < m % shards) for k in range(shards)]
    bounds, lo = [], 0
    for n in sizes:
        if n:
            bounds.append((lo, lo + n))
        lo += n
    return bounds


def _take(a: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    index = [slice(None)] * a.ndim
    index[axis] = slice(lo, hi)
    return a[tuple(index)]


#: What a step whose data were lost raises: its futures cancelled (every holder of the data gone).
_LOST = (CancelledError,)  # (distributed's FutureCancelledError is one)


class DataParallel:
    """A batch's gradients computed by a Dask cluster's workers, shard by shard.

    Parameters
    ----------
    client : distributed.Client
        The cluster to run on.
    shards : int, optional
        Pieces each batch is cut into (default: the threads of the cluster's workers now, so each
        runs one shard task at a time, on its share of the cores). Fixed for the run:
        the result depends on it, not on the workers that come and go.
    backend : str, optional
        The fastnn backend the workers use (default ``"auto"``).
    threads : int, optional
        fastnn's threads per shard task (default: the task's share of its worker's cores).
    retries : int, optional
        Times a step is sent again, whole, when its data were lost (every holder gone).
    description : str, optional
        How :meth:`describe` names the cluster.
    """

    def __init__(self, client: Client, shards: Optional[int] = None, *, backend: Optional[str] = None,
                 threads: Optional[int] = None, retries: int = 2, description: Optional[str] = None) -> None:
        _check_threads(threads)
        if shards is None:
            shards = max(1, sum(client.nthreads().values()))
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise ValueError(f"shards must be a positive int, got {shards!r}")
        self.client, self.shards, self.threads, self.retries = client, shards, threads, int(retries)
        self.backend = backend
        self.description = description or str(client.scheduler.address)
        #: Per step: seconds to scatter the parameters, submit, wait for and gather the shards,
        #: the whole step, and each shard's compute on its worker; bytes sent and received.
        self.timings: List[dict] = []

    def describe(self) -> str:
        return f"dask {self.description}, {self.shards} shards"

    def __repr__(self) -> str:
        return f"DataParallel({self.describe()})"

    def gradients(self, fn: Callable, state, X: np.ndarray, Y: np.ndarray, *, axis: int = 0
                  ) -> Tuple[float, float, Dict[str, np.ndarray]]:
        """The batch (X, Y)'s (cost, correct, grads): ``fn(state, X_k, Y_k, m)`` on each shard k
        (``m`` the batch's examples), run on the workers, added in shard order (cost, correct)
        and in a fixed pairwise tree (each gradient). ``axis``: the examples' axis of X and Y."""
        m = X.shape[axis]
        if Y.shape[axis] != m:
            raise ValueError(f"X and Y must hold the same examples along axis {axis}: X {X.shape}, Y {Y.shape}")
        for attempt in range(self.retries + 1):
            try:
                results = self._run_step(fn, state, X, Y, m, axis)
                break
            except _LOST as exc:
                if attempt == self.retries:
                    raise
                warnings.warn(f"fastnn.dask: a step's data were lost ({type(exc).__name__}: {exc}); sending it again",
                              RuntimeWarning, stacklevel=2)
        cost = float(sum(r[0] for r in results))
        correct = float(sum(r[1] for r in results))
        grads = {k: tree_sum([r[2][k] for r in results]) for k in results[0][2]}
        return cost, correct, grads

    def _run_step(self, fn, state, X, Y, m, axis) -> list:
        client, tag = self.client, uuid.uuid4().hex
        t0 = time.perf_counter()
        state_f = client.scatter([state], broadcast=True, hash=False)[0]  # one key, on every worker
        t1 = time.perf_counter()
        futures = []
        with warnings.catch_warnings():
            # The shards travel in their tasks on purpose: the scheduler keeps them, and reruns a
            # task whose worker died; Dask's advice to scatter large arguments would lose that.
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            for k, (lo, hi) in enumerate(shard_bounds(m, self.shards)):
                futures.append(client.submit(_shard_task, fn, state_f, _take(X, axis, lo, hi), _take(Y, axis, lo, hi), m,
                                             self.backend, self.threads, key=f"fastnn-shard-{tag}-{k}", pure=False))
        t2 = time.perf_counter()
        done = client.gather(futures)
        t3 = time.perf_counter()
        client.cancel(futures + [state_f])
        self.timings.append({"scatter_s": t1 - t0, "submit_s": t2 - t1, "gather_s": t3 - t2, "step_s": t3 - t0,
                             "shard_s": [d[1] for d in done], "shards": len(futures)})
        return [d[0] for d in done]


@contextlib.contextmanager
def connect(address: str, *, shards: Optional[int] = None, backend: Optional[str] = None,
            threads: Optional[int] = None, timeout: Optional[float] = None, **cluster_options
            ) -> Iterator[DataParallel]:
    """A :class:`DataParallel` on ``address`` (``"local:N"``: :func:`local_cluster` of N workers,
    closed at the end; else a running scheduler's address), for the ``with`` block.
    ``timeout``: seconds to reach the scheduler (default Dask's ``distributed.comm.timeouts.connect``)
    and then to wait for a first worker (default 60)."""
    kind, where = parse_address(address)
    with contextlib.ExitStack() as stack:
        if kind == LOCAL:
            cluster = stack.enter_context(local_cluster(where, **cluster_options))
            client = stack.enter_context(Client(cluster, set_as_default=False))
            description = f"local:{where} ({where} worker processes)"
        else:
            options = {} if timeout is None else {"timeout": timeout}
            client = stack.enter_context(Client(where, set_as_default=False, **options))
            client.wait_for_workers(1, timeout=60 if timeout is None else timeout)
            description = str(where)
        yield DataParallel(client, shards, backend=backend, threads=threads, description=description)
