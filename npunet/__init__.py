"""npunet: the U-Net family in NumPy + Numba, with hand-written, gradient-checked backprop."""
import os as _os

# An OpenMP-built BLAS (MKL, OpenBLAS's OpenMP builds) keeps its workers spinning after each GEMM;
# npunet's own kernel threads (kernels/util.split) run between GEMMs and would find both cores busy.
# (When Numba kernels used parallel=True, its OpenMP pool did the same to BLAS: 5x slower GEMMs.)
# PASSIVE lets idle workers sleep.  Only when the user has not chosen.
# Why here, at import, and not in npunet.settings: the OpenMP runtime reads this variable once, when
# its first parallel region starts, and never again, so it can only be set before any kernel runs;
# it is process state of the OpenMP library, not a setting that npunet could change later.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import allocator as _allocator  # noqa: E402

_allocator.keep_freed_memory()  # large arrays reused step to step instead of page-faulted afresh (allocator.py)

from . import jitcache as _jitcache  # noqa: E402

_jitcache.install()  # before any kernel module: where Numba caches them, and the first-compile line

from . import backends, functional, kernels, nn, init, settings  # noqa: E402
from .backends import backend, get_backend, set_backend  # noqa: E402
from .backends.fast.options import fast_options  # noqa: E402
from .init import manual_seed  # noqa: E402
from .nn.module import inference_mode, is_grad_enabled, no_grad  # noqa: E402
from .gradcheck import gradcheck, gradcheck_fn  # noqa: E402



def _version():
    """The version in the package metadata (pyproject.toml's, single source); from a clone that was not
    installed, pyproject.toml itself."""
    here = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    project = _os.path.join(here, "pyproject.toml")
    if _os.path.isfile(project):
        import re
        with open(project, encoding="utf-8") as f:
            m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
        if m:
            return m.group(1)
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("npunet")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _version()
_LAZY = ("models", "losses", "metrics", "data", "optim", "train", "viz", "bench", "teach")


def __getattr__(name):  # lazy: models pull in more code
    if name == "summary":
        from .models.summary import summary
        return summary
    if name == "predict":  # the facade may reach the app: a checkpoint path is read with its config schema
        from .app.cmd_predict import predict
        return predict
    import importlib
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(name)


def __dir__():  # tab completion finds the lazily imported submodules too
    return sorted(set(globals()) | set(_LAZY) | {"summary"})
