"""SiLU in cache-sized blocks on every core (EfficientNet's activation, 48 per Eff-UNet step), and the
squeeze-and-excitation product x * scale with its backward in two passes.

The reference's SiLU (``reference.silu_forward``) makes eight whole-array passes with temporaries
(|x|, exp, where, ...), one core, memory to memory: 20 % of an Eff-UNet training step at 4x3x256^2,
measured.  Here each block of BLOCK elements goes through all its passes while it sits in the core's
cache, in NumPy ufuncs that write into preallocated blocks (they release the GIL, so ``split`` runs
blocks on every core):

    s = 1 / (1 + exp(-x))              forward, kept for the backward (as the reference keeps it)
    out = x * s
    dx = dout * s * (1 + x * (1 - s))  backward

1 / (1 + exp(-x)) is accurate over the whole range (the reference's two-sided form matters for
log-sigmoid, not for sigmoid): for x < -88, exp(-x) overflows to inf in float32 and s is exactly 0,
the limit; the overflow warning is silenced for that reason.  Twins: the reference pair.
"""
import numpy as np

from .. import reference_joins
from ...kernels.util import split

# Elements per block: 256 KiB of float32; x's, s's and out's blocks fit a core's 1 MiB L2.  Smaller blocks
# pay NumPy's per-call cost more often (6.3M elements, forward: 2^12 27 ms, 2^14 12 ms, 2^16 6.3 ms,
# 2^18 5.3 ms; one whole-array np.exp alone 3.9 ms).
BLOCK = 1 << 16


def _blocks(n):
    return -(-n // BLOCK)


def silu_forward(x):
    """x: (any shape) -> (out = x * sigmoid(x), cache (x, s)), out and s in x's dtype."""
    xf = np.ascontiguousarray(x).reshape(-1)
    s = np.empty_like(xf)
    out = np.empty_like(xf)

    def part(b0, b1):
        lo, hi = b0 * BLOCK, min(xf.size, b1 * BLOCK)
        for i in range(lo, hi, BLOCK):
            xb, sb = xf[i:i + BLOCK], s[i:i + BLOCK]
            np.negative(xb, out=sb)
            with np.errstate(over="ignore"):  # x < -88: exp(-x) = inf, s = 0 (the limit)
                np.exp(sb, out=sb)
            sb += 1
            np.reciprocal(sb, out=sb)
            np.multiply(xb, sb, out=out[i:i + BLOCK])
    split(part, _blocks(xf.size))
    return out.reshape(x.shape), (xf.reshape(x.shape), s.reshape(x.shape))


def silu_backward(dout, cache):
    """dout: x's shape -> dx = dout * s * (1 + x * (1 - s))."""
    x, s = cache
    xf, sf = x.reshape(-1), s.reshape(-1)
    df = np.ascontiguousarray(dout).reshape(-1)
    dx = np.empty_like(df)

    def part(b0, b1):
        lo, hi = b0 * BLOCK, min(df.size, b1 * BLOCK)
        t = np.empty(min(BLOCK, max(hi - lo, 0)), df.dtype)
        for i in range(lo, hi, BLOCK):
            sb, db = sf[i:i + BLOCK], dx[i:i + BLOCK]
            tb = t[:sb.size]
            np.subtract(1, sb, out=tb)               # 1 - s
            tb *= xf[i:i + BLOCK]                     # x (1 - s)
            tb += 1                                   # 1 + x (1 - s)
            np.multiply(sb, tb, out=db)
            db *= df[i:i + BLOCK]
    split(part, _blocks(df.size))
    return dx.reshape(dout.shape)


def mul_forward(a, b):
    """out = a * b (broadcasting), as the reference; cache (a, b)."""
    return reference_joins.mul_forward(a, b)


def mul_backward(dout, cache):
    """-> (dout * b, dout * a), each summed back to its input's shape.  Squeeze-and-excitation's product
    x: (N, C, H, W) times scale: (N, C, 1, 1) (either order) sums dscale per plane along contiguous memory
    (NumPy's pairwise sum in the input dtype); the reference sums over two strided axes after a copy.
    Every other broadcast is the reference's."""
    a, b = cache
    if a.ndim == b.ndim == 4 and dout.shape == a.shape and b.shape == a.shape[:2] + (1, 1):
        return dout * b, _plane_dot(dout, a)
    if a.ndim == b.ndim == 4 and dout.shape == b.shape and a.shape == b.shape[:2] + (1, 1):
        return _plane_dot(dout, b), dout * a
    return reference_joins.mul_backward(dout, cache)


def _plane_dot(d, x):
    """(N, C, 1, 1): sum over each (H, W) plane of d * x."""
    N, C, H, W = d.shape
    return (d * x).reshape(N, C, H * W).sum(axis=2).reshape(N, C, 1, 1)
