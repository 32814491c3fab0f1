"""Control of the BLAS thread count, for the tiled convolution.

The convolution runs two tile pipelines side by side (each: im2col, then a GEMM); that only pays
when each GEMM uses one thread, so that every core is busy with im2col or GEMM all the time
instead of alternating between serial im2col and a two-thread GEMM.  NumPy has no API for this,
so we look for OpenBLAS's own ``*_set_num_threads`` in the loaded libraries (Linux: the numpy
wheels' scipy-openblas).  Where none is found (Accelerate, MKL, other systems) ``available()`` is
False and the convolution keeps its single-pipeline path: same results, less speed.
"""
import ctypes
import os
import threading
from contextlib import contextmanager

_SYMBOLS = [("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads")]
_lock = threading.Lock()
_api = None


def _find():
    global _api
    if _api is not None:
        return _api
    _api = False
    if os.environ.get("NPUNET_BLAS_PIPELINES", "1") == "0":
        return _api
    try:
        import numpy  # noqa: F401  (make sure numpy's BLAS is loaded)
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return _api
    for p in paths:
        try:
            lib = ctypes.CDLL(p)
        except OSError:
            continue
        for setter, getter in _SYMBOLS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                s, g = getattr(lib, setter), getattr(lib, getter)
                s.argtypes, s.restype, g.restype = [ctypes.c_int], None, ctypes.c_int
                _api = (s, g)
                return _api
    return _api


def available():
    """True when the BLAS thread count can be set (and pipelines are not disabled with
    NPUNET_BLAS_PIPELINES=0)."""
    return bool(_find()) and (os.cpu_count() or 1) >= 2


@contextmanager
def single_threaded():
    """Run the body with one BLAS thread, restoring the previous count afterwards."""
    api = _find()
    if not api:
        yield
        return
    setter, getter = api
    with _lock:
        prev = getter()
        setter(1)
        try:
            yield
        finally:
            setter(prev)
