"""Shared helpers of the kernels: ``split`` runs a serial kernel over index ranges on every core, and
the finite scan behind the NaN/Inf checks."""
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from numba import njit


def cores():
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@lru_cache(maxsize=None)
def _executor(workers):
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="npunet-kernel")


def split(kernel, n, *args):
    """kernel(i0, i1, *args) over range(n) cut into one range per core, run in threads: the kernels
    are serial and release the GIL (nogil=True), which compiles 2-3x faster than Numba's
    parallel=True and leaves the threads to npunet. This thread runs the first range."""
    k = max(1, min(cores(), n))
    bounds = [n * i // k for i in range(k + 1)]
    futures = [_executor(k).submit(kernel, bounds[i], bounds[i + 1], *args) for i in range(1, k)]
    kernel(bounds[0], bounds[1], *args)
    for f in futures:
        f.result()  # re-raises a worker's exception here


@njit(cache=True, nogil=True)
def _finite_rows(r0, r1, a, bad):
    for r in range(r0, r1):
        acc = 0.0
        for k in range(a.shape[1]):
            acc += a[r, k] * 0.0  # 0*inf and 0*nan are nan; finite values add 0
        bad[r] = acc != 0.0


def all_finite(a):
    """True when every element of the float array ``a`` is finite (one pass, rows split over the cores)."""
    if a.size < 1 << 16:  # small: waking the thread pool costs more than the scan
        return bool(np.isfinite(a).all())
    a = np.ascontiguousarray(a)
    rows = max(1, min(a.size, 256))
    while a.size % rows:
        rows -= 1
    bad = np.zeros(rows, dtype=np.bool_)
    split(_finite_rows, rows, a.reshape(rows, -1), bad)
    return not bad.any()


def all_finite_ref(a):
    return bool(np.isfinite(a).all())
