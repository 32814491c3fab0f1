"""The input and gradient checks every layer runs: one clear line naming the layer, what was expected
and what came."""
import numpy as np

from ..kernels import all_finite
from .mode import Meta, _mode

_FLOATS = (np.float32, np.float64)


def fingerprint(a):
    """A cheap checksum of an array's bytes: the sum of its 32-bit words modulo 2**32.  One read pass at
    memory speed (threads do not help; a classroom U-Net step reads ~300 MB here in forward and backward,
    ~5 % of the step, measured A/B); PyTorch's version counter costs nothing, but a NumPy array has none.
    Any change of one element changes it; several changes escape only if their differences cancel exactly
    modulo 2**32."""
    if not isinstance(a, np.ndarray) or a.dtype.itemsize % 4 or a.size == 0:
        return None if not isinstance(a, np.ndarray) else a.tobytes()
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return int(a.reshape(-1).view(np.uint32).sum(dtype=np.uint32))


def check_array(layer, x, ndim=4, channels=None, dtype=None, what="input"):
    """Validate one input of ``layer``; raise a message naming layer, expectation and what came."""
    if isinstance(x, Meta):
        pass
    elif not isinstance(x, np.ndarray):
        raise TypeError(f"{layer.label}: expected the {what} to be a numpy array, got {type(x).__name__}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{layer.label}: expected a float32 or float64 {what}, got dtype {x.dtype}"
                        + (" (cast images with x.astype(np.float32))" if x.dtype.kind in "iub" else ""))
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{layer.label}: {what} dtype {x.dtype} does not match the layer's {np.dtype(dtype)} "
                        f"parameters; convert the model with .to(np.{x.dtype}) or the {what} with "
                        f".astype(np.{np.dtype(dtype)})")
    if x.ndim != ndim:
        expect = "(N, C, H, W)" if ndim == 4 else f"{ndim} dimensions"
        raise ValueError(f"{layer.label}: expected a {ndim}-D {what} {expect}, got shape {tuple(x.shape)}"
                         + (" (add the batch axis with x[None])" if ndim == 4 and x.ndim == 3 else ""))
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{layer.label}: expected {channels} channels in the {what}, "
                         f"got {x.shape[1]} (shape {tuple(x.shape)})")
    if _mode.check_finite == "every":
        check_finite(layer, x, what)


def check_finite(layer, x, what="input"):
    """Raise FloatingPointError naming ``layer`` when the float array ``x`` holds NaN or Inf."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and not all_finite(x):
        n_bad = int(np.count_nonzero(~np.isfinite(x)))
        raise FloatingPointError(f"{layer.label}: the {what} contains {n_bad} NaN/Inf value(s) "
                                 f"(shape {tuple(x.shape)}); the previous layer or the data produced them "
                                 f"(npunet.nn.set_checks(finite='every') names the first layer that saw them)")


def check_grad(layer, g, shape, dtype):
    if isinstance(g, Meta) or not isinstance(g, np.ndarray):
        raise TypeError(f"{layer.label}: backward expected a numpy array gradient, got {type(g).__name__}")
    if tuple(g.shape) != tuple(shape):
        raise ValueError(f"{layer.label}: backward expected a gradient of shape {tuple(shape)} "
                         f"(the forward output), got {tuple(g.shape)}")
    if g.dtype != dtype:
        raise TypeError(f"{layer.label}: backward expected a {np.dtype(dtype)} gradient, got {g.dtype}")
