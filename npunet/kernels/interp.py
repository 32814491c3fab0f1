"""Separable interpolation (nearest and bilinear) as gather / scatter.

Along each axis an output position o reads input positions i0[o] and i1[o]
with weights (1 - l[o]) and l[o]; nearest is the special case i1 = i0, l = 0.
out[n, c, y, x] = sum over a in {i0,i1}(y), b in {i0,i1}(x) of wy * wx * in[n, c, a, b].
"""
import numpy as np
from numba import njit

from ..geometry import interp_indices  # noqa: F401  (the (i0, i1, lam) the kernels take)


@njit(cache=True, nogil=True)
def interp_fwd(p0, p1, x, y0, y1, ly, x0, x1, lx, out):
    """x: (N, C, H, W) -> out: (N, C, OH, OW), planes n*C + c in [p0, p1) (the fast backend gives each
    core a range of planes). Separable: every input row is first resampled along x into a (H, OW)
    buffer (a gather), then each output row is a blend of two buffer rows, which vectorises: the
    large output is written in contiguous runs."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    tmp = np.empty((H, OW), out.dtype)
    for nc in range(p0, p1):
        n = nc // C
        c = nc % C
        for h in range(H):
            for ox in range(OW):
                wx = lx[ox]
                tmp[h, ox] = (1 - wx) * x[n, c, h, x0[ox]] + wx * x[n, c, h, x1[ox]]
        for oy in range(OH):
            a, b, wy = y0[oy], y1[oy], ly[oy]
            for ox in range(OW):
                out[n, c, oy, ox] = (1 - wy) * tmp[a, ox] + wy * tmp[b, ox]


@njit(cache=True, nogil=True)
def interp_bwd(p0, p1, dout, y0, y1, ly, x0, x1, lx, dx):
    """Adjoint of interp_fwd: dx (N, C, H, W) += scatter, planes in [p0, p1), separably in the
    reverse order: the large dout is first folded along y into a (H, OW) buffer, row into row
    (contiguous, so it vectorises), then the small buffer is scattered along x."""
    N, C, H, W = dx.shape
    OH, OW = dout.shape[2], dout.shape[3]
    tmp = np.empty((H, OW), dx.dtype)
    for nc in range(p0, p1):
        n = nc // C
        c = nc % C
        for h in range(H):
            for ox in range(OW):
                tmp[h, ox] = 0
        for oy in range(OH):
            a, b, wy = y0[oy], y1[oy], ly[oy]
            for ox in range(OW):                 # two loops: rows a and b may be the same row
                tmp[a, ox] += (1 - wy) * dout[n, c, oy, ox]
            for ox in range(OW):
                tmp[b, ox] += wy * dout[n, c, oy, ox]
        for h in range(H):
            for ox in range(OW):
                t = tmp[h, ox]
                dx[n, c, h, x0[ox]] += (1 - lx[ox]) * t
                dx[n, c, h, x1[ox]] += lx[ox] * t


def _interp_matrix(i0, i1, lam, size_in, dtype):
    m = np.zeros((len(i0), size_in), dtype=np.float64)
    np.add.at(m, (np.arange(len(i0)), i0), 1 - lam)
    np.add.at(m, (np.arange(len(i0)), i1), lam)
    return m.astype(dtype)


def interp_fwd_ref(x, y0, y1, ly, x0, x1, lx):
    """Twin: out = My @ x @ Mx^T with dense interpolation matrices."""
    My = _interp_matrix(y0, y1, ly, x.shape[2], x.dtype)
    Mx = _interp_matrix(x0, x1, lx, x.shape[3], x.dtype)
    return np.einsum("yh,nchw,xw->ncyx", My, x, Mx)


def interp_bwd_ref(dout, y0, y1, ly, x0, x1, lx, x_shape):
    My = _interp_matrix(y0, y1, ly, x_shape[2], dout.dtype)
    Mx = _interp_matrix(x0, x1, lx, x_shape[3], dout.dtype)
    return np.einsum("yh,ncyx,xw->nchw", My, dout, Mx)
