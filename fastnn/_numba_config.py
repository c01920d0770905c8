"""The one place that holds fastnn's Numba compile options.

Kernel modules import ``NJIT`` / ``NJIT_PARALLEL`` from here and never spell options
themselves, so caching, parallelism and fast-math flags are switched in one place.
"""

from __future__ import annotations

#: Options for serial kernels: cached on disk, release the GIL.
NJIT = dict(cache=True, nogil=True)
#: Options for parallel (prange) kernels.
NJIT_PARALLEL = dict(NJIT, parallel=True)
