"""npunet: the U-Net family in NumPy + Numba, with hand-written, gradient-checked backprop."""
import os as _os

# Numba's OpenMP workers must not spin between kernels: they would steal the cores BLAS needs
# for the GEMM that follows (measured 5x slower GEMMs).  Only when the user has not chosen.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import backends, functional, kernels, nn, init  # noqa: E402
from .backends import backend, get_backend, set_backend  # noqa: E402
from .backends.fast.options import fast_options  # noqa: E402
from .init import manual_seed  # noqa: E402
from .gradcheck import gradcheck, gradcheck_fn  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name):  # lazy: models pull in more code
    if name == "summary":
        from .models.summary import summary
        return summary
    import importlib
    if name in ("models", "losses", "metrics", "data", "optim", "train", "viz", "bench"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(name)
