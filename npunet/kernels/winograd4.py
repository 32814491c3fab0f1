"""Winograd F(4x4, 3x3) transforms: the algorithm of :mod:`npunet.kernels.winograd` (its docstring gives
the layouts and the adjoints; Lavin & Gray, CVPR 2016, section 4) on 6x6 input tiles that overlap by 2,
each giving a 4x4 output tile (interpolation points 0, 1, -1, 2, -2 and infinity): 36 multiplications
per 16 outputs instead of 144, and transformed arrays of 36/16 = 2.25x the input/output instead of 4x.
Layouts as there with 36 planes (xi = 6a + b) and tiles of 4x4 outputs (TW = ceil(W_out / 4)).  Its
constants (up to 8 and 1/24) make its float32 error a few times F(2x2, 3x3)'s (measured in tests).
Twins: ``*_4_ref`` in :mod:`npunet.kernels.winograd`.

Where a transform's two 1-D stages can be loops over a 6-element scratch row, they are (the same
arithmetic, so bit for bit the same results): the body Numba types and lowers is one 1-D transform
per stage instead of six written-out copies, which halves these kernels' compilation on a cold start
and measured no slower.  The output transforms keep their written-out first stage (a loop there
measured slower).
"""
import numpy as np
from numba import njit

from .conv import _load_rows, _store_rows, _zero

BT4 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64)
AT4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
               dtype=np.float64)


# The 1-D transforms below take their constants k = (2, 4, 5, 8) in the arrays' dtype, so that
# float32 data is transformed in float32 (an integer constant would promote it to float64).

@njit(inline="always")
def _bt6(d0, d1, d2, d3, d4, d5, k):
    """BT4 d."""
    k2, k4, k5 = k[0], k[1], k[2]
    return (k4 * d0 - k5 * d2 + d4, d3 + d4 - k4 * (d1 + d2), k4 * (d1 - d2) - d3 + d4,
            k2 * (d3 - d1) - d2 + d4, k2 * (d1 - d3) - d2 + d4, k4 * d1 - k5 * d3 + d5)


@njit(inline="always")
def _b6(v0, v1, v2, v3, v4, v5, k):
    """BT4^T v (the adjoint of BT4)."""
    k2, k4, k5 = k[0], k[1], k[2]
    return (k4 * v0, k4 * (v2 - v1 + v5) + k2 * (v4 - v3), -k5 * v0 - k4 * (v1 + v2) - v3 - v4,
            v1 - v2 + k2 * (v3 - v4) - k5 * v5, v0 + v1 + v2 + v3 + v4, v5)


@njit(inline="always")
def _at6(m0, m1, m2, m3, m4, m5, k):
    """AT4 m."""
    k2, k4, k8 = k[0], k[1], k[3]
    a, b, c, d = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + a + c, b + k2 * d, a + k4 * c, b + k8 * d + m5


@njit(inline="always")
def _a6(y0, y1, y2, y3, k):
    """AT4^T y (the adjoint of AT4)."""
    k2, k4, k8 = k[0], k[1], k[3]
    return (y0, y0 + y1 + y2 + y3, y0 - y1 + y2 - y3, y0 + k2 * y1 + k4 * y2 + k8 * y3,
            y0 - k2 * y1 + k4 * y2 - k8 * y3, y3)


# G4's fractions as products with the reciprocals (in float64): a division costs ~10 multiplications,
# and the divisions made these transforms about half of a 128-channel layer's Winograd forward.
_R6, _R12, _R24 = 1.0 / 6, 1.0 / 12, 1.0 / 24


@njit(inline="always")
def _g6(k0, k1, k2):
    """G4 k."""
    return (k0 * 0.25, -(k0 + k1 + k2) * _R6, -(k0 - k1 + k2) * _R6, k0 * _R24 + k1 * _R12 + k2 * _R6,
            k0 * _R24 - k1 * _R12 + k2 * _R6, k2 + 0.0)


@njit(inline="always")
def _gt6(u0, u1, u2, u3, u4, u5):
    """G4^T u (the adjoint of G4)."""
    return (u0 * 0.25 - (u1 + u2) * _R6 + (u3 + u4) * _R24, (u2 - u1) * _R6 + (u3 - u4) * _R12,
            (u3 + u4 - u1 - u2) * _R6 + u5)


@njit(cache=True, nogil=True)
def weight_transform_4(c0, c1, w, U):
    """U[6a + b, o, c] = (G4 w[o, c] G4^T)[a, b].  w: (O, C, 3, 3), U: (36, O, C)."""
    C = w.shape[1]
    g = np.empty((6, 3), np.float64)                # G4 w (the helpers compute in float64)
    for o in range(c0, c1):
        for c in range(C):
            for j in range(3):                      # G4 w, column by column
                g[0, j], g[1, j], g[2, j], g[3, j], g[4, j], g[5, j] = _g6(w[o, c, 0, j], w[o, c, 1, j], w[o, c, 2, j])
            for a in range(6):                      # (G4 w) G4^T, row by row
                r = _g6(g[a, 0], g[a, 1], g[a, 2])
                for b in range(6):
                    U[6 * a + b, o, c] = r[b]


@njit(cache=True, nogil=True)
def weight_transform_4_adjoint(c0, c1, dU, dw):
    """dw[o, c] = G4^T dU[:, o, c] G4 (dU read as 6x6).  dU: (36, O, C), dw: (O, C, 3, 3)."""
    C = dw.shape[1]
    t = np.empty((3, 6), np.float64)                # G4^T dU (in float64, as the helpers)
    for o in range(c0, c1):
        for c in range(C):
            for b in range(6):                      # G4^T dU, column b
                t[0, b], t[1, b], t[2, b] = _gt6(dU[b, o, c], dU[6 + b, o, c], dU[12 + b, o, c],
                                                 dU[18 + b, o, c], dU[24 + b, o, c], dU[30 + b, o, c])
            for i in range(3):                      # (G4^T dU) G4, row i
                dw[o, c, i, 0], dw[o, c, i, 1], dw[o, c, i, 2] = _gt6(t[i, 0], t[i, 1], t[i, 2],
                                                                      t[i, 3], t[i, 4], t[i, 5])


@njit(cache=True, nogil=True)
def input_transform_4(c0, c1, x, ph, pw, n0, n1, ty0, ty1, TW, V):
    """V[:, c, t] = BT4 D BT4^T for every 6x6 tile D of the band (x read zero-padded as above)."""
    R = ty1 - ty0
    k = (x.dtype.type(2), x.dtype.type(4), x.dtype.type(5), x.dtype.type(8))
    q = np.empty((6, 6), x.dtype)                   # BT4 D
    rows = np.empty((6, 4 * TW + 2), x.dtype)
    for c in range(c0, c1):
        for n in range(n0, n1):
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                _load_rows(x, n, c, 4 * ty, ph, pw, rows)
                for tx in range(TW):
                    s, t = 4 * tx, base + tx
                    for j in range(6):      # BT4 D, column j
                        q[0, j], q[1, j], q[2, j], q[3, j], q[4, j], q[5, j] = _bt6(
                            rows[0, s + j], rows[1, s + j], rows[2, s + j],
                            rows[3, s + j], rows[4, s + j], rows[5, s + j], k)
                    for a in range(6):      # (BT4 D) BT4^T: row a through BT4 again
                        r = _bt6(q[a, 0], q[a, 1], q[a, 2], q[a, 3], q[a, 4], q[a, 5], k)
                        V[6 * a, c, t], V[6 * a + 1, c, t], V[6 * a + 2, c, t] = r[0], r[1], r[2]
                        V[6 * a + 3, c, t], V[6 * a + 4, c, t], V[6 * a + 5, c, t] = r[3], r[4], r[5]


@njit(cache=True, nogil=True)
def output_transform_4(c0, c1, M, n0, n1, ty0, ty1, bias, out):
    """out[n, o, 4ty:4ty+4, 4tx:4tx+4] = AT4 m AT4^T (+ bias[o]) for every tile of the band (cropped)."""
    N, O, Ho, Wo = out.shape
    TW = (Wo + 3) // 4
    R = ty1 - ty0
    k = (M.dtype.type(2), M.dtype.type(4), M.dtype.type(5), M.dtype.type(8))
    for o in range(c0, c1):
        bo = bias[o]
        for n in range(n0, n1):
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                r0 = 4 * ty
                full_rows = r0 + 4 <= Ho
                for tx in range(TW):
                    t, c0 = base + tx, 4 * tx
                    # AT4 m: column j -> q{j}, whose element i is row i of AT4 m
                    q0 = _at6(M[0, o, t], M[6, o, t], M[12, o, t], M[18, o, t], M[24, o, t], M[30, o, t], k)
                    q1 = _at6(M[1, o, t], M[7, o, t], M[13, o, t], M[19, o, t], M[25, o, t], M[31, o, t], k)
                    q2 = _at6(M[2, o, t], M[8, o, t], M[14, o, t], M[20, o, t], M[26, o, t], M[32, o, t], k)
                    q3 = _at6(M[3, o, t], M[9, o, t], M[15, o, t], M[21, o, t], M[27, o, t], M[33, o, t], k)
                    q4 = _at6(M[4, o, t], M[10, o, t], M[16, o, t], M[22, o, t], M[28, o, t], M[34, o, t], k)
                    q5 = _at6(M[5, o, t], M[11, o, t], M[17, o, t], M[23, o, t], M[29, o, t], M[35, o, t], k)
                    if full_rows and c0 + 4 <= Wo:      # (AT4 m) AT4^T, row i of the 4x4 output
                        y = _at6(q0[0], q1[0], q2[0], q3[0], q4[0], q5[0], k)
                        out[n, o, r0 + 0, c0], out[n, o, r0 + 0, c0 + 1] = y[0] + bo, y[1] + bo
                        out[n, o, r0 + 0, c0 + 2], out[n, o, r0 + 0, c0 + 3] = y[2] + bo, y[3] + bo
                        y = _at6(q0[1], q1[1], q2[1], q3[1], q4[1], q5[1], k)
                        out[n, o, r0 + 1, c0], out[n, o, r0 + 1, c0 + 1] = y[0] + bo, y[1] + bo
                        out[n, o, r0 + 1, c0 + 2], out[n, o, r0 + 1, c0 + 3] = y[2] + bo, y[3] + bo
                        y = _at6(q0[2], q1[2], q2[2], q3[2], q4[2], q5[2], k)
                        out[n, o, r0 + 2, c0], out[n, o, r0 + 2, c0 + 1] = y[0] + bo, y[1] + bo
                        out[n, o, r0 + 2, c0 + 2], out[n, o, r0 + 2, c0 + 3] = y[2] + bo, y[3] + bo
                        y = _at6(q0[3], q1[3], q2[3], q3[3], q4[3], q5[3], k)
                        out[n, o, r0 + 3, c0], out[n, o, r0 + 3, c0 + 1] = y[0] + bo, y[1] + bo
                        out[n, o, r0 + 3, c0 + 2], out[n, o, r0 + 3, c0 + 3] = y[2] + bo, y[3] + bo
                    else:                               # a tile on the bottom/right edge: cropped
                        for i in range(min(4, Ho - r0)):
                            y = _at6(q0[i], q1[i], q2[i], q3[i], q4[i], q5[i], k)
                            for j in range(min(4, Wo - c0)):
                                out[n, o, r0 + i, c0 + j] = y[j] + bo


@njit(cache=True, nogil=True)
def output_transform_4_adjoint(c0, c1, dout, n0, n1, ty0, ty1, dM):
    """dM[:, o, t] = AT4^T dY AT4 for the 4x4 tile dY of dout (zero past the edge)."""
    N, O, Ho, Wo = dout.shape
    TW = (Wo + 3) // 4
    R = ty1 - ty0
    k = (dout.dtype.type(2), dout.dtype.type(4), dout.dtype.type(5), dout.dtype.type(8))
    for o in range(c0, c1):
        y = np.zeros((4, 4), dout.dtype)
        for n in range(n0, n1):
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                r0 = 4 * ty
                for tx in range(TW):
                    t, c0 = base + tx, 4 * tx
                    hi, wi = min(4, Ho - r0), min(4, Wo - c0)
                    if hi == 4 and wi == 4:
                        d0, d1, d2, d3 = dout[n, o, r0], dout[n, o, r0 + 1], dout[n, o, r0 + 2], dout[n, o, r0 + 3]
                    else:                                   # a tile on the edge: zeros past it
                        y[:] = 0
                        for i in range(hi):
                            for j in range(wi):
                                y[i, j] = dout[n, o, r0 + i, c0 + j]
                        d0, d1, d2, d3, c0 = y[0], y[1], y[2], y[3], 0
                    # AT4^T dY: column j -> q{j}, whose element a is row a
                    q0 = _a6(d0[c0], d1[c0], d2[c0], d3[c0], k)
                    q1 = _a6(d0[c0 + 1], d1[c0 + 1], d2[c0 + 1], d3[c0 + 1], k)
                    q2 = _a6(d0[c0 + 2], d1[c0 + 2], d2[c0 + 2], d3[c0 + 2], k)
                    q3 = _a6(d0[c0 + 3], d1[c0 + 3], d2[c0 + 3], d3[c0 + 3], k)
                    for a in range(6):      # (AT4^T dY) AT4: row a
                        r = _a6(q0[a], q1[a], q2[a], q3[a], k)
                        dM[6 * a, o, t], dM[6 * a + 1, o, t], dM[6 * a + 2, o, t] = r[0], r[1], r[2]
                        dM[6 * a + 3, o, t], dM[6 * a + 4, o, t], dM[6 * a + 5, o, t] = r[3], r[4], r[5]


@njit(cache=True, nogil=True)
def input_transform_4_adjoint(c0, c1, dV, ph, pw, n0, n1, ty0, ty1, TW, dx):
    """dx += BT4^T dV BT4 for every tile of the band (6x6 tiles at rows 4ty - ph.., columns 4tx - pw..),
    summed per channel in a 6-row buffer whose first four rows are complete after each tile row."""
    R = ty1 - ty0
    k = (dV.dtype.type(2), dV.dtype.type(4), dV.dtype.type(5), dV.dtype.type(8))
    q = np.empty((6, 6), dV.dtype)                  # dV BT4
    acc = np.empty((6, 4 * TW + 2), dV.dtype)
    for c in range(c0, c1):
        for n in range(n0, n1):
            for i in range(6):
                _zero(acc[i], acc.shape[1])
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                for tx in range(TW):
                    s, t = 4 * tx, base + tx
                    for a in range(6):      # dV BT4, row a
                        q[a, 0], q[a, 1], q[a, 2], q[a, 3], q[a, 4], q[a, 5] = _b6(
                            dV[6 * a, c, t], dV[6 * a + 1, c, t], dV[6 * a + 2, c, t], dV[6 * a + 3, c, t],
                            dV[6 * a + 4, c, t], dV[6 * a + 5, c, t], k)
                    for j in range(6):      # BT4^T (dV BT4): column j, added into the six buffered rows
                        e = _b6(q[0, j], q[1, j], q[2, j], q[3, j], q[4, j], q[5, j], k)
                        acc[0, s + j] += e[0]
                        acc[1, s + j] += e[1]
                        acc[2, s + j] += e[2]
                        acc[3, s + j] += e[3]
                        acc[4, s + j] += e[4]
                        acc[5, s + j] += e[5]
                _store_rows(acc, np.int64(4), n, c, 4 * ty, ph, pw, dx)    # rows 4ty..4ty+3 are complete
                for j in range(acc.shape[1]):      # slide the buffer by four rows
                    acc[0, j], acc[1, j] = acc[4, j], acc[5, j]
                    acc[2, j] = acc[3, j] = acc[4, j] = acc[5, j] = 0
            _store_rows(acc, np.int64(2), n, c, 4 * ty1, ph, pw, dx)   # the band's last two rows


# ------------------------------------------------------------ NumPy twins

def weight_transform_4_ref(w):
    """NumPy twin of :func:`weight_transform_4`: ``winograd.weight_transform_ref`` with m = 4."""
    from .winograd import weight_transform_ref
    return weight_transform_ref(w, 4)


def weight_transform_4_adjoint_ref(dU):
    """NumPy twin of :func:`weight_transform_4_adjoint`: ``winograd.weight_transform_adjoint_ref`` with m = 4."""
    from .winograd import weight_transform_adjoint_ref
    return weight_transform_adjoint_ref(dU, 4)


def input_transform_4_ref(x, ph, pw, n0, n1, ty0, ty1, TW):
    """NumPy twin of :func:`input_transform_4`: ``winograd.input_transform_ref`` with m = 4."""
    from .winograd import input_transform_ref
    return input_transform_ref(x, ph, pw, n0, n1, ty0, ty1, TW, 4)


def output_transform_4_ref(M, out_shape, n0, n1, ty0, ty1, bias):
    """NumPy twin of :func:`output_transform_4`: ``winograd.output_transform_ref`` with m = 4."""
    from .winograd import output_transform_ref
    return output_transform_ref(M, out_shape, n0, n1, ty0, ty1, bias, 4)


def output_transform_4_adjoint_ref(dout, n0, n1, ty0, ty1):
    """NumPy twin of :func:`output_transform_4_adjoint`: ``winograd.output_transform_adjoint_ref`` with m = 4."""
    from .winograd import output_transform_adjoint_ref
    return output_transform_adjoint_ref(dout, n0, n1, ty0, ty1, 4)


def input_transform_4_adjoint_ref(dV, x_shape, ph, pw, n0, n1, ty0, ty1, TW):
    """NumPy twin of :func:`input_transform_4_adjoint`: ``winograd.input_transform_adjoint_ref`` with m = 4."""
    from .winograd import input_transform_adjoint_ref
    return input_transform_adjoint_ref(dV, x_shape, ph, pw, n0, n1, ty0, ty1, TW, 4)
