"""Separable interpolation (nearest and bilinear) as gather / scatter.

Along each axis an output position o reads input positions i0[o] and i1[o]
with weights (1 - l[o]) and l[o]; nearest is the special case i1 = i0, l = 0.
out[n, c, y, x] = sum over a in {i0,i1}(y), b in {i0,i1}(x) of wy * wx * in[n, c, a, b].
"""
import numpy as np
from numba import njit, prange

from ..backends.geometry import interp_indices  # noqa: F401  (the (i0, i1, lam) the kernels take)


@njit(cache=True, parallel=True)
def interp_fwd(x, y0, y1, ly, x0, x1, lx, out):
    """x: (N, C, H, W) -> out: (N, C, OH, OW)."""
    N, C = x.shape[0], x.shape[1]
    OH, OW = out.shape[2], out.shape[3]
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        for oy in range(OH):
            a, b, wy = y0[oy], y1[oy], ly[oy]
            for ox in range(OW):
                p, q, wx = x0[ox], x1[ox], lx[ox]
                top = (1 - wx) * x[n, c, a, p] + wx * x[n, c, a, q]
                bot = (1 - wx) * x[n, c, b, p] + wx * x[n, c, b, q]
                out[n, c, oy, ox] = (1 - wy) * top + wy * bot


@njit(cache=True, parallel=True)
def interp_bwd(dout, y0, y1, ly, x0, x1, lx, dx):
    """Adjoint of interp_fwd: dx (N, C, H, W) += scatter, done separably per plane (planes in
    parallel): first along x into a (OH, W) buffer, then along y; 4 weights per output pixel
    become 2 + 2, and every add stays inside one row."""
    N, C, H, W = dx.shape
    OH, OW = dout.shape[2], dout.shape[3]
    for nc in prange(N * C):
        n = nc // C
        c = nc % C
        tmp = np.zeros((OH, W), dx.dtype)
        for oy in range(OH):
            for ox in range(OW):
                g = dout[n, c, oy, ox]
                wx = lx[ox]
                tmp[oy, x0[ox]] += (1 - wx) * g
                tmp[oy, x1[ox]] += wx * g
        for oy in range(OH):
            a, b, wy = y0[oy], y1[oy], ly[oy]
            for w in range(W):
                t = tmp[oy, w]
                dx[n, c, a, w] += (1 - wy) * t
                dx[n, c, b, w] += wy * t


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
