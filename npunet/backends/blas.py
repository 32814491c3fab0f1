"""How many threads the fast convolution uses, and BLAS thread control (through threadpoolctl).

The tiled convolution runs P tile pipelines side by side (each: im2col, then a GEMM).  That pays
only when each GEMM uses few threads, so that every core is busy with im2col or GEMM all the time
instead of alternating between a serial im2col and a GEMM on every core.  ``plan()`` chooses
P x threads-per-GEMM from the cores this process may use; ``limited(t)`` caps the BLAS threads for
a block and restores the previous count afterwards.  Where threadpoolctl finds no BLAS it can
control, ``plan()`` says one pipeline: same results, less speed.
"""
import functools
import os
from contextlib import contextmanager, nullcontext

from ..kernels.util import cores  # noqa: F401  (the cores this process may run on)

MAX_PIPELINES = 4  # each backward pipeline keeps its own input-gradient buffer


@functools.lru_cache(maxsize=1)
def _controller():

    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def available():
    """True when the BLAS thread count can be controlled and pipelines are not disabled
    (NPUNET_BLAS_PIPELINES=0)."""
    if os.environ.get("NPUNET_BLAS_PIPELINES", "1") == "0":
        return False
    return bool(_controller().select(user_api="blas").lib_controllers)


def plan():
    """(pipelines, BLAS threads per pipeline) for this machine: P = min(cores, 4), threads = cores // P.
    (1, None) when pipelines are unavailable (None: leave BLAS as it is)."""
    n = cores()
    if n < 2 or not available():
        return 1, None
    p = min(n, MAX_PIPELINES)
    return p, n // p


def num_threads():
    """The BLAS thread count now in force (None where threadpoolctl sees no BLAS)."""
    info = _controller().select(user_api="blas").info()
    return info[0]["num_threads"] if info else None


@contextmanager
def limited(threads):
    """Run the body with at most ``threads`` BLAS threads; the previous count is restored after."""
    with _controller().limit(limits=threads, user_api="blas"):
        yield


def single_thread():
    """BLAS on one thread (per calling thread) for a block, where npunet runs its own threads: OpenBLAS's
    workers keep spinning after each multi-threaded GEMM and take the cores from the kernel that runs
    next (measured: classroom step 0.57 s with them, 0.38 s without).  A no-op on one core or where
    BLAS cannot be controlled (or NPUNET_BLAS_PIPELINES=0)."""
    return limited(1) if cores() > 1 and available() else nullcontext()
