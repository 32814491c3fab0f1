"""SiLU in cache-sized blocks on every core (EfficientNet's activation, 48 per Eff-UNet step), and the
squeeze-and-excitation product x * scale with its backward in two passes.  (ReLU and ReLU6 the same
way were tried: whole steps in-process A/B 1.06x for the ResNet-34 U-Net, 0.99x for MobileNetV2:
memory-bound passes gain little from a second core, so they stay the reference's.)

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
from .parallel import plane_sums, workspace

# Elements per block: 256 KiB of float32; x's, s's and out's blocks fit a core's 1 MiB L2.  Smaller blocks
# pay NumPy's per-call cost more often (6.3M elements, forward: 2^12 27 ms, 2^14 12 ms, 2^16 6.3 ms,
# 2^18 5.3 ms; one whole-array np.exp alone 3.9 ms).
BLOCK = 1 << 16


def _each_block(n, body):
    """body(lo, hi) for every block [lo, hi) of BLOCK elements of range(n), the blocks split over the cores."""
    def part(b0, b1):
        for lo in range(b0 * BLOCK, min(n, b1 * BLOCK), BLOCK):
            body(lo, min(n, lo + BLOCK))
    split(part, -(-n // BLOCK))


def silu_forward(x):
    """x: (any shape) -> (out = x * sigmoid(x), cache (x, s)), out and s in x's dtype."""
    xf = np.ascontiguousarray(x).reshape(-1)
    s = np.empty_like(xf)
    out = np.empty_like(xf)

    def body(lo, hi):
        xb, sb = xf[lo:hi], s[lo:hi]
        np.negative(xb, out=sb)
        with np.errstate(over="ignore"):  # x < -88: exp(-x) = inf, s = 0 (the limit)
            np.exp(sb, out=sb)
        sb += 1
        np.reciprocal(sb, out=sb)
        np.multiply(xb, sb, out=out[lo:hi])
    _each_block(xf.size, body)
    return out.reshape(x.shape), (xf.reshape(x.shape), s.reshape(x.shape))


def silu_backward(dout, cache):
    """dout: x's shape -> dx = dout * s * (1 + x * (1 - s))."""
    x, s = cache
    xf, sf = x.reshape(-1), s.reshape(-1)
    df = np.ascontiguousarray(dout).reshape(-1)
    dx = np.empty_like(df)

    def body(lo, hi):
        sb, db = sf[lo:hi], dx[lo:hi]
        t = workspace("silu", hi - lo, df.dtype)   # this thread's scratch block
        np.subtract(1, sb, out=t)                   # 1 - s
        t *= xf[lo:hi]                              # x (1 - s)
        t += 1                                      # 1 + x (1 - s)
        np.multiply(sb, t, out=db)
        db *= df[lo:hi]
    _each_block(df.size, body)
    return dx.reshape(dout.shape)


def mul_backward(dout, cache):
    """-> (dout * b, dout * a), each summed back to its input's shape.  Squeeze-and-excitation's product
    x: (N, C, H, W) times scale: (N, C, 1, 1) (either order) sums dscale per plane along contiguous memory
    (``plane_sums``, in the input dtype); the reference sums over two strided axes after a copy.
    Every other broadcast is the reference's."""
    a, b = cache
    if a.ndim == b.ndim == 4 and dout.shape == a.shape and b.shape == a.shape[:2] + (1, 1):
        return dout * b, plane_sums(dout * a).reshape(b.shape)
    if a.ndim == b.ndim == 4 and dout.shape == b.shape and a.shape == b.shape[:2] + (1, 1):
        return plane_sums(dout * b).reshape(a.shape), dout * a
    return reference_joins.mul_backward(dout, cache)
