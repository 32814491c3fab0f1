"""Max pooling over arbitrary (possibly overlapping or uneven) windows.

Output cell (oh, ow) looks at rows hs[oh]..he[oh]-1 and columns ws[ow]..we[ow]-1.
Regular pooling and adaptive pooling only differ in these four index arrays
(see :func:`pool_windows`).  The forward records the flat index h*W + w of the
maximum (first one wins on ties; a NaN always wins, the last one if several: PyTorch's rule), and the
backward routes each gradient there.
"""
import numpy as np
from numba import njit

from ..geometry import pool_windows  # the index arrays the kernels take


@njit(cache=True, nogil=True)
def maxpool_fwd(p0, p1, x, hs, he, ws, we, out, arg):
    """x: (N, C, H, W); out: (N, C, OH, OW); arg: (N, C, OH, OW) int32 flat indices; planes
    n*C + c in [p0, p1)."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for nc in range(p0, p1):
        n = nc // C
        c = nc % C
        xp = x[n, c]
        for oh in range(OH):
            for ow in range(OW):
                h0, w0 = hs[oh], ws[ow]
                best = xp[h0, w0]
                bi = h0 * W + w0
                for h in range(h0, he[oh]):
                    for w in range(w0, we[ow]):
                        v = xp[h, w]
                        if v > best or v != v:  # PyTorch: a NaN always wins
                            best = v
                            bi = h * W + w
                out[n, c, oh, ow] = best
                arg[n, c, oh, ow] = bi


@njit(cache=True, nogil=True)
def maxpool2x2_fwd(p0, p1, x, out, arg):
    """The U-Net case (2x2 windows, stride 2, no padding), unrolled (about 2x faster than the
    general kernel on this case): same results as maxpool_fwd.  Planes in [p0, p1)."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for nc in range(p0, p1):
        n = nc // C
        c = nc % C
        for oh in range(OH):
            h = 2 * oh
            for ow in range(OW):
                w = 2 * ow
                best = x[n, c, h, w]
                bi = h * W + w
                v = x[n, c, h, w + 1]
                if v > best or v != v:
                    best = v
                    bi = h * W + w + 1
                v = x[n, c, h + 1, w]
                if v > best or v != v:
                    best = v
                    bi = (h + 1) * W + w
                v = x[n, c, h + 1, w + 1]
                if v > best or v != v:
                    best = v
                    bi = (h + 1) * W + w + 1
                out[n, c, oh, ow] = best
                arg[n, c, oh, ow] = bi


@njit(cache=True, nogil=True)
def maxpool_bwd(p0, p1, dout, arg, dx):
    """dx (N, C, H, W) += dout routed to the recorded argmax, planes in [p0, p1) (windows may
    overlap, so the work is split over planes, never over output cells)."""
    N, C, H, W = dx.shape
    OH, OW = dout.shape[2], dout.shape[3]
    for nc in range(p0, p1):
        n = nc // C
        c = nc % C
        for oh in range(OH):
            for ow in range(OW):
                k = arg[n, c, oh, ow]
                dx[n, c, k // W, k % W] += dout[n, c, oh, ow]


def maxpool_fwd_ref(x, hs, he, ws, we):
    """Loop twin of :func:`maxpool_fwd`; returns (out, arg)."""
    N, C, H, W = x.shape
    out = np.empty((N, C, len(hs), len(ws)), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=np.int32)
    for oh in range(len(hs)):
        for ow in range(len(ws)):
            win = x[:, :, hs[oh]:he[oh], ws[ow]:we[ow]].reshape(N, C, -1)
            k = np.argmax(win, axis=2)  # first maximum, like the kernel
            out[:, :, oh, ow] = np.take_along_axis(win, k[..., None], 2)[..., 0]
            ww = we[ow] - ws[ow]
            arg[:, :, oh, ow] = (hs[oh] + k // ww) * W + ws[ow] + k % ww
    return out, arg


def maxpool2x2_fwd_ref(x):
    """Twin of :func:`maxpool2x2_fwd`: 2x2 windows, stride 2 -> (out, arg)."""
    H, W = x.shape[2:]
    hs, he = pool_windows(H, H // 2, 2, 2)
    ws, we = pool_windows(W, W // 2, 2, 2)
    return maxpool_fwd_ref(x, hs, he, ws, we)


def maxpool_bwd_ref(dout, arg, x_shape):
    N, C, H, W = x_shape
    dx = np.zeros((N * C, H * W), dtype=dout.dtype)
    rows = np.repeat(np.arange(N * C), dout.shape[2] * dout.shape[3])
    np.add.at(dx, (rows, arg.reshape(-1)), dout.reshape(-1))
    return dx.reshape(x_shape)
