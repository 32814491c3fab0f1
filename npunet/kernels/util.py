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


# Handing a range to another thread costs two wake-ups (the worker's, then this thread's when it waits
# for the worker): 60-100 us each split on the 2-core virtual machine it was measured on, while a
# BatchNorm kernel on a 512 x 8 x 8 map takes 4-20 us.  Work estimated below SERIAL_NS on one core runs
# on this thread alone (BatchNorm statistics, 1 x 512 x 8^2: 83 -> 8 us).
SERIAL_NS = 150_000


def split(kernel, n, *args, ns=None):
    """kernel(i0, i1, *args) over range(n) cut into one range per core, run in threads: the kernels
    are serial and release the GIL (nogil=True), which compiles 2-3x faster than Numba's
    parallel=True and leaves the threads to npunet. This thread runs the first range.
    ns: the caller's estimate of the whole call's time on one core, in nanoseconds; below SERIAL_NS
    the whole range runs here (the wake-ups would cost more than the second core saves)."""
    k = 1 if ns is not None and ns < SERIAL_NS else max(1, min(cores(), n))
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
