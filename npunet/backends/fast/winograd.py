"""3x3 stride-1 convolution by Winograd's minimal filtering F(m x m, 3x3) (Lavin & Gray 2016).

Notation of the paper: the input is cut into overlapping (m+2) x (m+2) tiles d, one per m x m output
tile; ``positions`` = (m+2)^2 is the number of values in a transformed tile.
    U = G w G^T      transformed weights,   (positions, C_out, C_in)
    V = B^T d B      transformed input tiles, (positions, C_in, tiles)
    M[xi] = U[xi] @ V[xi]   one GEMM per tile position xi, (positions, C_out, tiles)
    out = A^T M A    back to m x m output tiles
The transforms are Numba kernels (kernels.winograd); tiles are processed in *bands* (images n0:n1,
tile rows t0:t1) whose V and M stay within a budget (OPTIONS.winograd_band / winograd_pipe_band).
"""
from collections import namedtuple

import numpy as np

from .. import blas
from ...kernels import winograd as winograd_kernels
from ...kernels.util import split
from .options import OPTIONS
from .parallel import bias_grad, workspace

Transforms = namedtuple("Transforms", "weight input output output_adjoint input_adjoint weight_adjoint")


def transforms(m):
    """The Numba transforms of F(m x m, 3x3), m = 2 or 4, and their adjoints (for the backward)."""
    k = winograd_kernels
    if m == 2:
        return Transforms(k.weight_transform, k.input_transform, k.output_transform, k.output_transform_adjoint,
                          k.input_transform_adjoint, k.weight_transform_adjoint)
    return Transforms(k.weight_transform_4, k.input_transform_4, k.output_transform_4, k.output_transform_4_adjoint,
                      k.input_transform_4_adjoint, k.weight_transform_4_adjoint)


def applies(x, weight, stride, padding, groups):
    """True when conv.py should take Winograd: OPTIONS.winograd on, float32, groups 1, a 3x3 kernel at
    stride 1, at least OPTIONS.winograd_min_channels input channels and OPTIONS.winograd_min_tiles
    2x2 output tiles (OPTIONS.winograd_wide_min_tiles for wide layers: C_in x C_out >= 512 x 512)."""
    O, Cg, kh, kw = weight.shape
    if not OPTIONS.winograd or x.dtype != np.float32 or groups != 1 or (kh, kw) != (3, 3) or stride != (1, 1):
        return False
    (ph, pw) = padding
    tiles = x.shape[0] * -(-(x.shape[2] + 2 * ph - 2) // 2) * -(-(x.shape[3] + 2 * pw - 2) // 2)
    wide = O * Cg >= 512 * 512
    return Cg >= OPTIONS.winograd_min_channels and tiles >= (
        OPTIONS.winograd_wide_min_tiles if wide else OPTIONS.winograd_min_tiles)


def bands(N, tile_rows, tile_cols, chans, positions=16, band=None, first=0):
    """(n0, n1, t0, t1) bands of tiles (images n0:n1, tile rows t0:t1) of the N images first:first + N,
    whose transformed arrays (positions, chans, tiles) stay within ``band`` elements (default
    OPTIONS.winograd_band)."""
    per_row = positions * chans * tile_cols
    rows = max(1, (band or OPTIONS.winograd_band) // per_row)
    end = first + N
    if rows >= tile_rows:
        nn = max(1, min(N, rows // tile_rows))
        return [(n0, min(end, n0 + nn), 0, tile_rows) for n0 in range(first, end, nn)]
    return [(n, n + 1, r0, min(tile_rows, r0 + rows)) for n in range(first, end) for r0 in range(0, tile_rows, rows)]


def position_stack(name, C, T, dtype, positions=16):
    """A (positions, C, T) array whose planes lie C*T + 16 elements apart: the transforms write all
    planes at once, and planes a power of two apart would compete for the same cache sets (measured
    8x slower).  name: a reused per-thread workspace; None: a new array."""
    stride = C * T + 16
    buf = workspace(name, positions * stride, dtype) if name else np.empty(positions * stride, dtype)
    return np.lib.stride_tricks.as_strided(buf, (positions, C, T),
                                           (stride * buf.itemsize, T * buf.itemsize, buf.itemsize))


def transformed_weights(tf, weight, positions):
    """U = G w G^T for every (o, c): weight (O, C, 3, 3) -> U (positions, O, C)."""
    O, C = weight.shape[:2]
    U = position_stack(None, O, C, weight.dtype, positions)
    split(tf.weight, O, np.ascontiguousarray(weight), U)
    return U


def forward(x, weight, bias, padding, m=None):
    """Winograd F(m x m, 3x3), band by band.  A batch runs one pipeline of bands per core; a single
    image runs each stage on all cores.
    x: (N, C, H, W), weight: (O, C, 3, 3), bias: (O,) or None, padding: (ph, pw)
    -> (out (N, O, H + 2ph - 2, W + 2pw - 2), WinogradCache).
    m: 2 or 4 (None: OPTIONS.winograd_tile, or chosen from the tile count by OPTIONS.winograd_f4_min_tiles)."""
    (ph, pw), (N, C, H, W), O = padding, x.shape, weight.shape[0]
    Ho, Wo = H + 2 * ph - 2, W + 2 * pw - 2
    m = m or OPTIONS.winograd_tile or (
        4 if N * -(-Ho // 4) * -(-Wo // 4) >= OPTIONS.winograd_f4_min_tiles[max(C, O) <= 128] else 2)
    tf = transforms(m)
    positions = (m + 2) ** 2
    tile_rows, tile_cols = (Ho + m - 1) // m, (Wo + m - 1) // m     # output tiles per column, per row
    x = np.ascontiguousarray(x)
    U = transformed_weights(tf, weight, positions)
    b = bias if bias is not None else np.zeros(O, x.dtype)
    out = np.empty((N, O, Ho, Wo), x.dtype)
    if N >= blas.cores() > 1:
        # one pipeline per core over whole images, as the backward: split gives each core N / cores images
        # (splitting a list of budget-sized bands instead gave 8 images as bands of 7 + 1: one core did most)
        def pipeline(i0, i1):               # one core: its images' bands start to end, in its own buffers
            for n0, n1, t0, t1 in bands(i1 - i0, tile_rows, tile_cols, max(C, O), positions,
                                        OPTIONS.winograd_pipe_band, first=i0):
                band_tiles = (n1 - n0) * (t1 - t0) * tile_cols
                V = position_stack("V", C, band_tiles, x.dtype, positions)
                M = position_stack("M", O, band_tiles, x.dtype, positions)
                tf.input(0, C, x, ph, pw, n0, n1, t0, t1, tile_cols, V)
                np.matmul(U, V, out=M)                                          # (positions, O, tiles)
                tf.output(0, O, M, n0, n1, t0, t1, b, out)                      # output tiles are disjoint
        with blas.single_thread():
            split(pipeline, N)
    else:                                   # one image: each stage split over the cores
        with blas.single_thread():
            for n0, n1, t0, t1 in bands(N, tile_rows, tile_cols, max(C, O), positions):
                band_tiles = (n1 - n0) * (t1 - t0) * tile_cols
                V = position_stack("V", C, band_tiles, x.dtype, positions)
                M = position_stack("M", O, band_tiles, x.dtype, positions)
                split(tf.input, C, x, ph, pw, n0, n1, t0, t1, tile_cols, V)
                split(lambda p0, p1: np.matmul(U[p0:p1], V[p0:p1], out=M[p0:p1]), positions)   # by position
                split(tf.output, O, M, n0, n1, t0, t1, b, out)
    return out, WinogradCache(x, weight, bias is not None, padding, m)


class WinogradCache:
    """What the backward needs: x (N, C, H, W), weight (O, C, 3, 3), the padding and the output tile
    size m (2 or 4).  The transformed weights U (positions, O, C) are not kept: they are 4x (F(4x4)) the
    weight's size (0.2 GiB over the 572 U-Net's step), and recomputing them costs far less than a GEMM."""

    def __init__(self, x, weight, has_bias, padding, m):
        self.x, self.weight, self.has_bias, self.padding, self.m = x, weight, has_bias, padding, m

    def backward(self, dout, weight_grad=True):
        """The adjoint of forward: dM = A dY A^T, dU += dM V^T, dV = U^T dM, dx += B dV B^T (scatter),
        dW = G^T dU G.  Exactly the gradient of the Winograd forward.
        dout: (N, O, H_out, W_out) -> (dx (N, C, H, W), dweight (O, C, 3, 3), dbias (O,) or None).
        weight_grad=False (a frozen layer): no input transform, no dU GEMM, dweight and dbias None."""
        x, weight, m = self.x, self.weight, self.m
        ph, pw = self.padding
        tf = transforms(m)
        positions = (m + 2) ** 2
        (N, C), O = x.shape[:2], weight.shape[0]
        U = transformed_weights(tf, weight, positions)                   # as in forward: not kept
        Ho, Wo = dout.shape[2:]
        tile_rows, tile_cols = (Ho + m - 1) // m, (Wo + m - 1) // m
        dx = np.zeros(x.shape, x.dtype)
        dout = np.ascontiguousarray(dout)
        Ut = U.transpose(0, 2, 1)
        if N >= blas.cores() > 1:
            # one pipeline per core over whole images: input tiles of neighbouring tile rows overlap in dx,
            # those of different images do not, so the scatters never race
            dUs = {}                            # per pipeline: dU summed after

            def pipeline(i0, i1):
                dU = np.zeros((positions, O, C), x.dtype)
                for n0, n1, t0, t1 in bands(i1 - i0, tile_rows, tile_cols, max(C, O), positions,
                                            OPTIONS.winograd_pipe_band, first=i0):
                    band_tiles = (n1 - n0) * (t1 - t0) * tile_cols
                    V = position_stack("V", C, band_tiles, x.dtype, positions)
                    dM = position_stack("M", O, band_tiles, x.dtype, positions)
                    tf.output_adjoint(0, O, dout, n0, n1, t0, t1, dM)                   # dM = A dY A^T
                    if weight_grad:
                        tf.input(0, C, x, ph, pw, n0, n1, t0, t1, tile_cols, V)
                        dU += np.matmul(dM, V.transpose(0, 2, 1))                       # (positions, O, C)
                    np.matmul(Ut, dM, out=V)                                            # V now holds dV
                    tf.input_adjoint(0, C, V, ph, pw, n0, n1, t0, t1, tile_cols, dx)    # dx += B dV B^T
                dUs[i0] = dU
            with blas.single_thread():
                split(pipeline, N)
            dU = sum(dUs.values())
        else:                                   # one image: each stage split over the cores by channel
            dU = np.zeros((positions, O, C), x.dtype)

            def gemms(p0, p1):
                if weight_grad:
                    dU[p0:p1] += np.matmul(dM[p0:p1], V[p0:p1].transpose(0, 2, 1))
                np.matmul(Ut[p0:p1], dM[p0:p1], out=V[p0:p1])                          # V now holds dV

            with blas.single_thread():
                for n0, n1, t0, t1 in bands(N, tile_rows, tile_cols, max(C, O), positions):
                    band_tiles = (n1 - n0) * (t1 - t0) * tile_cols
                    V = position_stack("V", C, band_tiles, x.dtype, positions)
                    dM = position_stack("M", O, band_tiles, x.dtype, positions)
                    split(tf.output_adjoint, O, dout, n0, n1, t0, t1, dM)
                    if weight_grad:
                        split(tf.input, C, x, ph, pw, n0, n1, t0, t1, tile_cols, V)
                    split(gemms, positions)                                     # by tile position
                    split(tf.input_adjoint, C, V, ph, pw, n0, n1, t0, t1, tile_cols, dx)
        if not weight_grad:
            return dx, None, None
        dW = np.empty(weight.shape, x.dtype)
        split(tf.weight_adjoint, O, np.ascontiguousarray(dU), dW)              # dW = G^T dU G
        db = bias_grad(dout) if self.has_bias else None
        return dx, dW, db
