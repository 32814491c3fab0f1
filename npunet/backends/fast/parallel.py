"""Threads and scratch memory shared by the fast backend's strategies.

The tiled im2col convolution runs several *tile pipelines* side by side (each: im2col, then a GEMM
on few BLAS threads); ``blas.plan()`` says how many pipelines and how many BLAS threads each.
Other strategies split index ranges over the cores with ``kernels.util.split`` and keep BLAS on
one thread per calling thread.
"""
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import blas
from ...kernels.util import split


@functools.lru_cache(maxsize=None)
def _executor(workers):
    """The tile pipelines' own pool, apart from kernels.util.split's: a pipeline that called split on a
    pool whose workers all run pipelines would wait for itself."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="npunet-conv")


def pipeline_count(n_tiles):
    """How many tile pipelines a conv should run: blas.plan()'s pipeline count (1 with a single tile)."""
    planned, _ = blas.plan()
    return 1 if planned < 2 or n_tiles < 2 else min(planned, n_tiles)


def run_pipelines(work, pipelines):
    """work(i, pipelines) for i < pipelines, in that many threads with blas.plan()'s BLAS threads each;
    pipelines = 1: inline (on one BLAS thread too where pipelines are available: see blas.single_thread)."""
    if pipelines == 1:
        with blas.single_thread():
            work(0, 1)
        return
    with blas.limited(blas.plan()[1]):
        futures = [_executor(pipelines).submit(work, i, pipelines) for i in range(pipelines)]
        for f in futures:
            f.result()  # re-raises a worker's exception here


def split_columns(f, rows, L, dtype):
    """A GEMM result (rows, L) computed as f(a, b) = its columns a..b, one column range per core in
    threads (each GEMM on the one BLAS thread the caller set)."""
    out = np.empty((rows, L), dtype)

    def part(a, b):
        out[:, a:b] = f(a, b)
    split(part, L)
    return out


_work = threading.local()


def workspace(name, n, dtype):
    """A flat scratch array of n elements, kept per thread and reused across calls: a fresh
    multi-MB array costs page faults on every step, a reused one does not.  Valid until the
    next request of the same name in this thread."""
    key = (name, np.dtype(dtype))
    pool = _work.__dict__.setdefault("pool", {})
    buf = pool.get(key)
    if buf is None or buf.size < n:
        buf = pool[key] = np.empty(n, dtype)
    return buf[:n]


def plane_sums(a):
    """a: (N, C, H, W) -> (N, C): each plane's H*W values summed in a's dtype along contiguous memory
    (NumPy's pairwise summation: error ~log2(H*W) roundings).  3-4x faster than a float64 sum over the
    axes (2, 3) or (0, 2, 3), which converts every value and strides across planes (measured for dbias:
    1.5 ms -> 0.4 ms at 8x16x128^2)."""
    N, C, H, W = a.shape
    return a.reshape(N, C, H * W).sum(axis=2)


def bias_grad(dout):
    """dbias (O,) = dout (N, O, H, W) summed over (N, H, W): plane_sums, then the N plane sums in float64."""
    return plane_sums(dout).sum(axis=0, dtype=np.float64).astype(dout.dtype)
