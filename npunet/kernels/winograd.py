"""Winograd F(2x2, 3x3) transforms (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016, section 4): a 3x3 stride-1 convolution computed on 4x4 input tiles that
overlap by 2, each giving a 2x2 output tile,

    Y = A^T [ (G W G^T) (.) (B^T D B) ] A           (eq. 8 of the paper; (.) = elementwise)

with D one 4x4 input tile, W one 3x3 kernel, and the transform matrices below.  Summed over
input channels the elementwise products become 16 independent matrix products, one per tile
position xi = 4a + b:  M[xi] = U[xi] (C_out x C_in) @ V[xi] (C_in x tiles).  That is 16
multiplications per output tile per channel pair instead of 36 (2.25x fewer).

Layout (one band = images n0..n1-1, tile rows ty0..ty1-1, TW tiles per row):
  x:  (N, C, H, W)                 read as if zero-padded: ph rows / pw columns before (PyTorch's
                                   padding), zeros after (up to 2*TH + 2 rows, 2*TW + 2 columns)
  V:  (16, C, T)                   T = (n1-n0) * (ty1-ty0) * TW, column t = ((n-n0)*(ty1-ty0) + ty-ty0)*TW + tx
  M:  (16, O, T)                   likewise for the products
  out: (N, O, H_out, W_out)        output tile (ty, tx) covers rows 2ty..2ty+1, columns 2tx..2tx+1

The backward passes are the adjoints (transposes) of the same linear maps:
  dM = A dY A^T  (output_transform_adjoint),  dV = U^T dM,  dU = dM V^T,  dD = B dV B^T
  (input_transform_adjoint, scatter-added: neighbouring tiles overlap),  dW = G^T dU G.
So the Winograd gradient is the exact gradient of the Winograd forward.  Twins: ``*_ref``.

Every kernel takes a channel range c0..c1 first (input channels for the input transforms, output
channels for the others) and releases the GIL: the fast backend runs one range per core in threads.
(Serial kernels compile 2-3x faster than Numba ``parallel=True`` ones, which matters on a cold start.)
"""
import numpy as np
from numba import njit

from .conv import _add, _copy, _zero

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


# ------------------------------------------------------------ Numba kernels
# The 1-D transforms, written out (their matrices above).  Each 2-D transform applies one to the
# rows of a tile, then to the columns.

@njit(inline="always")
def _bt(d0, d1, d2, d3):
    """B^T d."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(inline="always")
def _b(v0, v1, v2, v3):
    """B v (the adjoint of B^T)."""
    return v0, v1 - v2 + v3, v1 + v2 - v0, -v3


@njit(inline="always")
def _at(m0, m1, m2, m3):
    """A^T m."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit(inline="always")
def _a(y0, y1):
    """A y (the adjoint of A^T)."""
    return y0, y0 + y1, y0 - y1, -y1


@njit(inline="always")
def _g(k0, k1, k2):
    """G k."""
    return k0, 0.5 * (k0 + k1 + k2), 0.5 * (k0 - k1 + k2), k2


@njit(inline="always")
def _gt(u0, u1, u2, u3):
    """G^T u (the adjoint of G)."""
    return u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3


@njit(cache=True, nogil=True)
def weight_transform(c0, c1, w, U):
    """U[4a + b, o, c] = (G w[o, c] G^T)[a, b].  w: (O, C, 3, 3), U: (16, O, C)."""
    C = w.shape[1]
    for o in range(c0, c1):
        for c in range(C):
            k = w[o, c]
            # G w: column j of the kernel -> column j of the 4 rows p, q, r, u
            p0, q0, r0, u0 = _g(k[0, 0], k[1, 0], k[2, 0])
            p1, q1, r1, u1 = _g(k[0, 1], k[1, 1], k[2, 1])
            p2, q2, r2, u2 = _g(k[0, 2], k[1, 2], k[2, 2])
            # (G w) G^T: each row through G again
            U[0, o, c], U[1, o, c], U[2, o, c], U[3, o, c] = _g(p0, p1, p2)
            U[4, o, c], U[5, o, c], U[6, o, c], U[7, o, c] = _g(q0, q1, q2)
            U[8, o, c], U[9, o, c], U[10, o, c], U[11, o, c] = _g(r0, r1, r2)
            U[12, o, c], U[13, o, c], U[14, o, c], U[15, o, c] = _g(u0, u1, u2)


@njit(cache=True, nogil=True)
def weight_transform_adjoint(c0, c1, dU, dw):
    """dw[o, c] = G^T dU[:, o, c] G (dU read as 4x4).  dU: (16, O, C), dw: (O, C, 3, 3)."""
    C = dw.shape[1]
    for o in range(c0, c1):
        for c in range(C):
            # G^T dU: column b of dU -> column b of the 3 rows p, q, r
            p0, q0, r0 = _gt(dU[0, o, c], dU[4, o, c], dU[8, o, c], dU[12, o, c])
            p1, q1, r1 = _gt(dU[1, o, c], dU[5, o, c], dU[9, o, c], dU[13, o, c])
            p2, q2, r2 = _gt(dU[2, o, c], dU[6, o, c], dU[10, o, c], dU[14, o, c])
            p3, q3, r3 = _gt(dU[3, o, c], dU[7, o, c], dU[11, o, c], dU[15, o, c])
            # (G^T dU) G: each row through G^T again
            dw[o, c, 0, 0], dw[o, c, 0, 1], dw[o, c, 0, 2] = _gt(p0, p1, p2, p3)
            dw[o, c, 1, 0], dw[o, c, 1, 1], dw[o, c, 1, 2] = _gt(q0, q1, q2, q3)
            dw[o, c, 2, 0], dw[o, c, 2, 1], dw[o, c, 2, 2] = _gt(r0, r1, r2, r3)


@njit(cache=True, nogil=True)
def _load_rows(x, n, c, r0, ph, pw, rows):
    """rows[i] = row r0 + i of x[n, c] zero-padded by ph (top) and pw (left), zeros past the edges
    (rows: (tile height, padded width), 4 rows for F(2x2, 3x3), 6 for F(4x4, 3x3))."""
    H, W = x.shape[2], x.shape[3]
    w_lo, w_hi = max(0, -pw), min(W, rows.shape[1] - pw)
    for i in range(rows.shape[0]):  # element loops over views: see conv._copy
        h = r0 + i - ph
        _zero(rows[i], rows.shape[1])
        if 0 <= h < H and w_lo < w_hi:
            _copy(rows[i, w_lo + pw:], x[n, c, h, w_lo:], w_hi - w_lo)


@njit(cache=True, nogil=True)
def input_transform(c0, c1, x, ph, pw, n0, n1, ty0, ty1, TW, V):
    """V[:, c, t] = B^T D B for every 4x4 tile D of the band, D read from x (N, C, H, W) zero-padded
    by ph rows on top and pw columns on the left (and zeros past the bottom/right edge)."""
    R = ty1 - ty0
    for c in range(c0, c1):
        rows = np.empty((4, 2 * TW + 2), x.dtype)
        for n in range(n0, n1):
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                _load_rows(x, n, c, 2 * ty, ph, pw, rows)
                x0, x1, x2, x3 = rows[0], rows[1], rows[2], rows[3]
                for tx in range(TW):
                    s, t = 2 * tx, base + tx
                    # B^T D: column j of the tile -> column j of the 4 rows p, q, r, u
                    p0, q0, r0, u0 = _bt(x0[s], x1[s], x2[s], x3[s])
                    p1, q1, r1, u1 = _bt(x0[s + 1], x1[s + 1], x2[s + 1], x3[s + 1])
                    p2, q2, r2, u2 = _bt(x0[s + 2], x1[s + 2], x2[s + 2], x3[s + 2])
                    p3, q3, r3, u3 = _bt(x0[s + 3], x1[s + 3], x2[s + 3], x3[s + 3])
                    # (B^T D) B: each row through B^T again
                    V[0, c, t], V[1, c, t], V[2, c, t], V[3, c, t] = _bt(p0, p1, p2, p3)
                    V[4, c, t], V[5, c, t], V[6, c, t], V[7, c, t] = _bt(q0, q1, q2, q3)
                    V[8, c, t], V[9, c, t], V[10, c, t], V[11, c, t] = _bt(r0, r1, r2, r3)
                    V[12, c, t], V[13, c, t], V[14, c, t], V[15, c, t] = _bt(u0, u1, u2, u3)


@njit(cache=True, nogil=True)
def output_transform(c0, c1, M, n0, n1, ty0, ty1, bias, out):
    """out[n, o, 2ty:2ty+2, 2tx:2tx+2] = A^T m A (+ bias[o]) for every tile m = M[:, o, t] of the band;
    rows/columns past H_out/W_out (odd sizes) are dropped.  bias: (O,) (zeros for none)."""
    N, O, Ho, Wo = out.shape
    TW = (Wo + 1) // 2
    R = ty1 - ty0
    for o in range(c0, c1):
        b = bias[o]
        for n in range(n0, n1):
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                r = 2 * ty
                for tx in range(TW):
                    t, c = base + tx, 2 * tx
                    # A^T m: the two output rows, column by column
                    a0, b0 = _at(M[0, o, t], M[4, o, t], M[8, o, t], M[12, o, t])
                    a1, b1 = _at(M[1, o, t], M[5, o, t], M[9, o, t], M[13, o, t])
                    a2, b2 = _at(M[2, o, t], M[6, o, t], M[10, o, t], M[14, o, t])
                    a3, b3 = _at(M[3, o, t], M[7, o, t], M[11, o, t], M[15, o, t])
                    y00, y01 = _at(a0, a1, a2, a3)
                    y10, y11 = _at(b0, b1, b2, b3)
                    out[n, o, r, c] = y00 + b
                    if c + 1 < Wo:
                        out[n, o, r, c + 1] = y01 + b
                    if r + 1 < Ho:
                        out[n, o, r + 1, c] = y10 + b
                        if c + 1 < Wo:
                            out[n, o, r + 1, c + 1] = y11 + b


@njit(cache=True, nogil=True)
def output_transform_adjoint(c0, c1, dout, n0, n1, ty0, ty1, dM):
    """dM[:, o, t] = A dY A^T for the 2x2 tile dY of dout (N, O, H_out, W_out) (zero past the edge)."""
    N, O, Ho, Wo = dout.shape
    TW = (Wo + 1) // 2
    R = ty1 - ty0
    zero = dout.dtype.type(0)
    for o in range(c0, c1):
        for n in range(n0, n1):
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                r = 2 * ty
                for tx in range(TW):
                    t, c = base + tx, 2 * tx
                    y00 = dout[n, o, r, c]
                    y01 = dout[n, o, r, c + 1] if c + 1 < Wo else zero
                    y10 = dout[n, o, r + 1, c] if r + 1 < Ho else zero
                    y11 = dout[n, o, r + 1, c + 1] if r + 1 < Ho and c + 1 < Wo else zero
                    p0, p1, p2, p3 = _a(y00, y10)  # A dY, column 0
                    q0, q1, q2, q3 = _a(y01, y11)  # column 1
                    dM[0, o, t], dM[1, o, t], dM[2, o, t], dM[3, o, t] = _a(p0, q0)   # (A dY) A^T, row by row
                    dM[4, o, t], dM[5, o, t], dM[6, o, t], dM[7, o, t] = _a(p1, q1)
                    dM[8, o, t], dM[9, o, t], dM[10, o, t], dM[11, o, t] = _a(p2, q2)
                    dM[12, o, t], dM[13, o, t], dM[14, o, t], dM[15, o, t] = _a(p3, q3)


@njit(cache=True, nogil=True)
def _store_rows(acc, k, n, c, r0, ph, pw, dx):
    """dx[n, c, r0 + i - ph, :] += the valid part of acc[i] (padded coordinates) for i < k."""
    H, W = dx.shape[2], dx.shape[3]
    w_lo, w_hi = max(0, -pw), min(W, acc.shape[1] - pw)
    for i in range(k):
        h = r0 + i - ph
        if 0 <= h < H and w_lo < w_hi:
            _add(dx[n, c, h, w_lo:], acc[i, w_lo + pw:], w_hi - w_lo)


@njit(cache=True, nogil=True)
def input_transform_adjoint(c0, c1, dV, ph, pw, n0, n1, ty0, ty1, TW, dx):
    """dx += B dV B^T for every tile of the band, each 4x4 tile added at rows 2ty - ph.., columns
    2tx - pw.. (the padding dropped).  Tiles overlap by 2 rows and columns: per channel, the rows of one
    tile row are summed in a 4-row buffer whose first two rows are complete once the tile row is done."""
    R = ty1 - ty0
    for c in range(c0, c1):
        acc = np.zeros((4, 2 * TW + 2), dV.dtype)
        for n in range(n0, n1):
            acc[:] = 0
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                x0, x1, x2, x3 = acc[0], acc[1], acc[2], acc[3]
                for tx in range(TW):
                    s, t = 2 * tx, base + tx
                    # dV B^T: row a of the tile (p, q, r, u = rows 0..3)
                    p0, p1, p2, p3 = _b(dV[0, c, t], dV[1, c, t], dV[2, c, t], dV[3, c, t])
                    q0, q1, q2, q3 = _b(dV[4, c, t], dV[5, c, t], dV[6, c, t], dV[7, c, t])
                    r0, r1, r2, r3 = _b(dV[8, c, t], dV[9, c, t], dV[10, c, t], dV[11, c, t])
                    u0, u1, u2, u3 = _b(dV[12, c, t], dV[13, c, t], dV[14, c, t], dV[15, c, t])
                    # B (dV B^T): column j, added into the 4 buffered rows
                    e0, e1, e2, e3 = _b(p0, q0, r0, u0)
                    x0[s] += e0
                    x1[s] += e1
                    x2[s] += e2
                    x3[s] += e3
                    e0, e1, e2, e3 = _b(p1, q1, r1, u1)
                    x0[s + 1] += e0
                    x1[s + 1] += e1
                    x2[s + 1] += e2
                    x3[s + 1] += e3
                    e0, e1, e2, e3 = _b(p2, q2, r2, u2)
                    x0[s + 2] += e0
                    x1[s + 2] += e1
                    x2[s + 2] += e2
                    x3[s + 2] += e3
                    e0, e1, e2, e3 = _b(p3, q3, r3, u3)
                    x0[s + 3] += e0
                    x1[s + 3] += e1
                    x2[s + 3] += e2
                    x3[s + 3] += e3
                _store_rows(acc, 2, n, c, 2 * ty, ph, pw, dx)  # rows 2ty, 2ty+1 are complete
                for j in range(acc.shape[1]):      # slide the buffer by two rows
                    acc[0, j], acc[1, j] = acc[2, j], acc[3, j]
                    acc[2, j] = acc[3, j] = 0
            _store_rows(acc, 2, n, c, 2 * ty1, ph, pw, dx)     # the band's last two rows


# ------------------------------------------------------------ F(4x4, 3x3)
# The same algorithm on 6x6 input tiles that overlap by 2, each giving a 4x4 output tile
# (interpolation points 0, 1, -1, 2, -2 and infinity): 36 multiplications per 16 outputs instead
# of 144, and transformed arrays of 36/16 = 2.25x the input/output instead of 4x.  Layouts as
# above with 36 planes (xi = 6a + b) and tiles of 4x4 outputs (TW = ceil(W_out / 4)).  Its
# constants (up to 8 and 1/24) make its float32 error a few times F(2x2, 3x3)'s (measured in tests).

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


@njit(inline="always")
def _g6(k0, k1, k2):
    """G4 k."""
    return (k0 / 4, -(k0 + k1 + k2) / 6, -(k0 - k1 + k2) / 6, k0 / 24 + k1 / 12 + k2 / 6,
            k0 / 24 - k1 / 12 + k2 / 6, k2 + 0.0)


@njit(inline="always")
def _gt6(u0, u1, u2, u3, u4, u5):
    """G4^T u (the adjoint of G4)."""
    return (u0 / 4 - (u1 + u2) / 6 + (u3 + u4) / 24, (u2 - u1) / 6 + (u3 - u4) / 12,
            (u3 + u4 - u1 - u2) / 6 + u5)


@njit(cache=True, nogil=True)
def weight_transform_4(c0, c1, w, U):
    """U[6a + b, o, c] = (G4 w[o, c] G4^T)[a, b].  w: (O, C, 3, 3), U: (36, O, C)."""
    C = w.shape[1]
    for o in range(c0, c1):
        for c in range(C):
            k = w[o, c]
            g0 = _g6(k[0, 0], k[1, 0], k[2, 0])      # G4 w, column by column
            g1 = _g6(k[0, 1], k[1, 1], k[2, 1])
            g2 = _g6(k[0, 2], k[1, 2], k[2, 2])
            for a in range(6):                      # (G4 w) G4^T, row by row
                r = _g6(g0[a], g1[a], g2[a])
                for b in range(6):
                    U[6 * a + b, o, c] = r[b]


@njit(cache=True, nogil=True)
def weight_transform_4_adjoint(c0, c1, dU, dw):
    """dw[o, c] = G4^T dU[:, o, c] G4 (dU read as 6x6).  dU: (36, O, C), dw: (O, C, 3, 3)."""
    C = dw.shape[1]
    for o in range(c0, c1):
        for c in range(C):
            # G4^T dU, column b -> t{b}, whose element i is row i
            t0 = _gt6(dU[0, o, c], dU[6, o, c], dU[12, o, c], dU[18, o, c], dU[24, o, c], dU[30, o, c])
            t1 = _gt6(dU[1, o, c], dU[7, o, c], dU[13, o, c], dU[19, o, c], dU[25, o, c], dU[31, o, c])
            t2 = _gt6(dU[2, o, c], dU[8, o, c], dU[14, o, c], dU[20, o, c], dU[26, o, c], dU[32, o, c])
            t3 = _gt6(dU[3, o, c], dU[9, o, c], dU[15, o, c], dU[21, o, c], dU[27, o, c], dU[33, o, c])
            t4 = _gt6(dU[4, o, c], dU[10, o, c], dU[16, o, c], dU[22, o, c], dU[28, o, c], dU[34, o, c])
            t5 = _gt6(dU[5, o, c], dU[11, o, c], dU[17, o, c], dU[23, o, c], dU[29, o, c], dU[35, o, c])
            for i in range(3):                      # (G4^T dU) G4, row i
                dw[o, c, i, 0], dw[o, c, i, 1], dw[o, c, i, 2] = _gt6(t0[i], t1[i], t2[i], t3[i], t4[i], t5[i])


@njit(cache=True, nogil=True)
def input_transform_4(c0, c1, x, ph, pw, n0, n1, ty0, ty1, TW, V):
    """V[:, c, t] = BT4 D BT4^T for every 6x6 tile D of the band (x read zero-padded as above)."""
    R = ty1 - ty0
    k = (x.dtype.type(2), x.dtype.type(4), x.dtype.type(5), x.dtype.type(8))
    for c in range(c0, c1):
        rows = np.empty((6, 4 * TW + 2), x.dtype)
        for n in range(n0, n1):
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                _load_rows(x, n, c, 4 * ty, ph, pw, rows)
                x0, x1, x2, x3, x4, x5 = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]
                for tx in range(TW):
                    s, t = 4 * tx, base + tx
                    # BT4 D: column j of the tile -> q{j}, whose element a is row a of BT4 D
                    q0 = _bt6(x0[s], x1[s], x2[s], x3[s], x4[s], x5[s], k)
                    q1 = _bt6(x0[s + 1], x1[s + 1], x2[s + 1], x3[s + 1], x4[s + 1], x5[s + 1], k)
                    q2 = _bt6(x0[s + 2], x1[s + 2], x2[s + 2], x3[s + 2], x4[s + 2], x5[s + 2], k)
                    q3 = _bt6(x0[s + 3], x1[s + 3], x2[s + 3], x3[s + 3], x4[s + 3], x5[s + 3], k)
                    q4 = _bt6(x0[s + 4], x1[s + 4], x2[s + 4], x3[s + 4], x4[s + 4], x5[s + 4], k)
                    q5 = _bt6(x0[s + 5], x1[s + 5], x2[s + 5], x3[s + 5], x4[s + 5], x5[s + 5], k)
                    for a in range(6):      # (BT4 D) BT4^T: row a through BT4 again
                        r = _bt6(q0[a], q1[a], q2[a], q3[a], q4[a], q5[a], k)
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
    for c in range(c0, c1):
        acc = np.zeros((6, 4 * TW + 2), dV.dtype)
        for n in range(n0, n1):
            acc[:] = 0
            for ty in range(ty0, ty1):
                base = ((n - n0) * R + (ty - ty0)) * TW
                a0, a1, a2, a3, a4, a5 = acc[0], acc[1], acc[2], acc[3], acc[4], acc[5]
                for tx in range(TW):
                    s, t = 4 * tx, base + tx
                    # dV BT4: row a -> q{a}, whose element j is column j
                    q0 = _b6(dV[0, c, t], dV[1, c, t], dV[2, c, t], dV[3, c, t], dV[4, c, t], dV[5, c, t], k)
                    q1 = _b6(dV[6, c, t], dV[7, c, t], dV[8, c, t], dV[9, c, t], dV[10, c, t], dV[11, c, t], k)
                    q2 = _b6(dV[12, c, t], dV[13, c, t], dV[14, c, t], dV[15, c, t], dV[16, c, t], dV[17, c, t], k)
                    q3 = _b6(dV[18, c, t], dV[19, c, t], dV[20, c, t], dV[21, c, t], dV[22, c, t], dV[23, c, t], k)
                    q4 = _b6(dV[24, c, t], dV[25, c, t], dV[26, c, t], dV[27, c, t], dV[28, c, t], dV[29, c, t], k)
                    q5 = _b6(dV[30, c, t], dV[31, c, t], dV[32, c, t], dV[33, c, t], dV[34, c, t], dV[35, c, t], k)
                    for j in range(6):      # BT4^T (dV BT4): column j, added into the six buffered rows
                        e = _b6(q0[j], q1[j], q2[j], q3[j], q4[j], q5[j], k)
                        a0[s + j] += e[0]
                        a1[s + j] += e[1]
                        a2[s + j] += e[2]
                        a3[s + j] += e[3]
                        a4[s + j] += e[4]
                        a5[s + j] += e[5]
                _store_rows(acc, 4, n, c, 4 * ty, ph, pw, dx)     # rows 4ty..4ty+3 are complete
                for j in range(acc.shape[1]):      # slide the buffer by four rows
                    acc[0, j], acc[1, j] = acc[4, j], acc[5, j]
                    acc[2, j] = acc[3, j] = acc[4, j] = acc[5, j] = 0
            _store_rows(acc, 2, n, c, 4 * ty1, ph, pw, dx)        # the band's last two rows


# ------------------------------------------------------------ NumPy twins (m = 2: F(2x2, 3x3), m = 4: F(4x4, 3x3))

def _mats(m):
    return (BT, G, AT) if m == 2 else (BT4, G4, AT4)


def weight_transform_ref(w, m=2):
    """NumPy twin of :func:`weight_transform` (m = 4: :func:`weight_transform_4`); returns U (a*a, O, C)."""
    _, g, _ = _mats(m)
    U = np.einsum("ai,ocij,bj->aboc", g, w, g)
    return U.reshape((m + 2) ** 2, w.shape[0], w.shape[1]).astype(w.dtype)


def weight_transform_adjoint_ref(dU, m=2):
    """NumPy twin of :func:`weight_transform_adjoint`; returns dw (O, C, 3, 3)."""
    _, g, _ = _mats(m)
    dw = np.einsum("ai,aboc,bj->ocij", g, dU.reshape(m + 2, m + 2, dU.shape[1], dU.shape[2]), g)
    return dw.astype(dU.dtype)


def _pad_ref(x, ph, pw, TH, TW, m=2):
    """x zero-padded to (N, C, m*TH + 2, m*TW + 2): ph rows on top, pw columns on the left, zeros after."""
    N, C, H, W = x.shape
    Hp, Wp = m * TH + 2, m * TW + 2
    xp = np.zeros((N, C, max(Hp, H + ph), max(Wp, W + pw)), x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    return xp[:, :, :Hp, :Wp]


def _tiles_ref(xp, n0, n1, ty0, ty1, m=2):
    """The (m+2) x (m+2) tiles of the band, m apart: (C, n, R, TW, m+2, m+2)."""
    a = m + 2
    TW = (xp.shape[3] - 2) // m
    D = np.empty((xp.shape[1], n1 - n0, ty1 - ty0, TW, a, a), xp.dtype)
    for i in range(a):
        for j in range(a):
            D[..., i, j] = xp[n0:n1, :, m * ty0 + i:m * ty1 + i:m, j:j + m * TW:m].transpose(1, 0, 2, 3)
    return D


def input_transform_ref(x, ph, pw, n0, n1, ty0, ty1, TW, m=2):
    """NumPy twin of :func:`input_transform`; returns V ((m+2)^2, C, T)."""
    bt, _, _ = _mats(m)
    xp = _pad_ref(x, ph, pw, ty1, TW, m)
    D = _tiles_ref(xp, n0, n1, ty0, ty1, m)
    V = np.einsum("ai,...ij,bj->ab...", bt, D, bt)                   # (a, a, C, n, R, TW)
    return V.reshape((m + 2) ** 2, xp.shape[1], -1).astype(xp.dtype)


def output_transform_ref(M, out_shape, n0, n1, ty0, ty1, bias, m=2):
    """NumPy twin of :func:`output_transform`; returns the band's output rows (n, O, m*R', W_out)."""
    _, _, at = _mats(m)
    N, O, Ho, Wo = out_shape
    TW, R = (Wo + m - 1) // m, ty1 - ty0
    mm = M.reshape(m + 2, m + 2, O, n1 - n0, R, TW)
    y = np.einsum("ai,ij...,bj->...ab", at, mm, at)                  # (O, n, R, TW, m, m)
    y = y.transpose(1, 0, 2, 4, 3, 5).reshape(n1 - n0, O, m * R, m * TW)
    y = y + bias.reshape(1, -1, 1, 1)
    return y[:, :, :min(m * R, Ho - m * ty0), :Wo].astype(M.dtype)


def output_transform_adjoint_ref(dout, n0, n1, ty0, ty1, m=2):
    """NumPy twin of :func:`output_transform_adjoint`; returns dM ((m+2)^2, O, T)."""
    _, _, at = _mats(m)
    N, O, Ho, Wo = dout.shape
    TW, R = (Wo + m - 1) // m, ty1 - ty0
    dy = np.zeros((n1 - n0, O, m * R, m * TW), dout.dtype)
    rows = dout[n0:n1, :, m * ty0:m * ty1]
    dy[:, :, :rows.shape[2], :Wo] = rows
    dy = dy.reshape(n1 - n0, O, R, m, TW, m).transpose(1, 0, 2, 4, 3, 5)   # (O, n, R, TW, m, m)
    dM = np.einsum("ai,...ab,bj->ij...", at, dy, at)                 # (a, a, O, n, R, TW)
    return dM.reshape((m + 2) ** 2, O, -1).astype(dout.dtype)


def input_transform_adjoint_ref(dV, x_shape, ph, pw, n0, n1, ty0, ty1, TW, m=2):
    """NumPy twin of :func:`input_transform_adjoint`; returns the scattered dx (N, C, H, W)."""
    bt, _, _ = _mats(m)
    a = m + 2
    N, C, H, W = x_shape
    R = ty1 - ty0
    Hp, Wp = max(m * ty1 + 2, H + ph), max(m * TW + 2, W + pw)
    dD = np.einsum("ai,ab...,bj->...ij", bt, dV.reshape(a, a, C, n1 - n0, R, TW), bt)   # (C, n, R, TW, a, a)
    dxp = np.zeros((N, C, Hp, Wp), dV.dtype)
    for i in range(a):
        for j in range(a):
            dxp[n0:n1, :, m * ty0 + i:m * ty1 + i:m, j:j + m * TW:m] += dD[..., i, j].transpose(1, 0, 2, 3)
    return dxp[:, :, ph:ph + H, pw:pw + W]


def weight_transform_4_ref(w):
    return weight_transform_ref(w, 4)


def weight_transform_4_adjoint_ref(dU):
    return weight_transform_adjoint_ref(dU, 4)


def input_transform_4_ref(x, ph, pw, n0, n1, ty0, ty1, TW):
    return input_transform_ref(x, ph, pw, n0, n1, ty0, ty1, TW, 4)


def output_transform_4_ref(M, out_shape, n0, n1, ty0, ty1, bias):
    return output_transform_ref(M, out_shape, n0, n1, ty0, ty1, bias, 4)


def output_transform_4_adjoint_ref(dout, n0, n1, ty0, ty1):
    return output_transform_adjoint_ref(dout, n0, n1, ty0, ty1, 4)


def input_transform_4_adjoint_ref(dV, x_shape, ph, pw, n0, n1, ty0, ty1, TW):
    return input_transform_adjoint_ref(dV, x_shape, ph, pw, n0, n1, ty0, ty1, TW, 4)
