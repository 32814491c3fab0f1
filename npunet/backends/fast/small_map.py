"""im2col convolution of a small output map (deep, wide layers such as 512 channels at 8x8): the whole
map's column buffer at once, its GEMMs split over channels instead of tiles (tiles of a few rows would
make thin GEMMs and per-thread dW)."""
import numpy as np

from .. import blas
from ...kernels.util import split
from .options import OPTIONS
from .parallel import bias_grad


def applies(x, geo, groups):
    """True for groups 1 with pipelines available and at most OPTIONS.small_map_columns output columns
    (N * H_out * row length).  geo: the conv's tiling.ConvGeometry."""
    return groups == 1 and blas.plan()[0] > 1 and x.shape[0] * geo.Ho * geo.row_len <= OPTIONS.small_map_columns


def _whole_cols(x, geo, col_rows):
    """im2col of the whole map in one piece: (col_rows, N * H_out * row_len), input channels split
    over the cores (channel c owns the rows c*kh*kw ... (c+1)*kh*kw - 1).  Each core reads a
    contiguous copy of its channels (a small map's input is small): a strided view would make Numba
    compile the kernel again for non-contiguous arrays."""
    cols = np.empty((col_rows, x.shape[0] * geo.Ho * geo.row_len), x.dtype)
    src, taps = geo.source(x), geo.k[0] * geo.k[1]

    def part(c0, c1):
        geo.im2col(np.ascontiguousarray(src[:, c0:c1]), 0, x.shape[0], 0, geo.Ho, cols[c0 * taps:c1 * taps])
    split(part, x.shape[1])
    return cols


def _whole_col2im(dcols, geo, dtype):
    """The adjoint of _whole_cols: the gradient of the source, input channels split over the cores
    (each scatters into a contiguous piece of its own, then copies it into place)."""
    dsrc, taps = geo.dsource(dtype), geo.k[0] * geo.k[1]

    def part(c0, c1):
        piece = np.zeros((dsrc.shape[0], c1 - c0) + dsrc.shape[2:], dtype)
        geo.col2im(dcols[c0 * taps:c1 * taps], 0, geo.N, 0, geo.Ho, piece)
        dsrc[:, c0:c1] = piece
    split(part, geo.C)
    return dsrc


def forward(x, weight, bias, geo):
    """out = W @ im2col(x) for the whole (small) map, output channels split over threads.
    x: (N, C, H, W) contiguous, weight: (O, C, kh, kw) -> (out (N, O, H_out, W_out), SmallMapCache)."""
    O = weight.shape[0]
    geo = geo.exact()                                                   # no junk columns in the GEMMs
    weight_mat = weight.reshape(O, -1)                                  # (O, C*kh*kw)
    out = np.empty((x.shape[0], O, geo.Ho, geo.Wo), dtype=x.dtype)
    cols = _whole_cols(x, geo, weight_mat.shape[1])
    y = np.empty((O, cols.shape[1]), x.dtype)

    def part(o0, o1):
        np.matmul(weight_mat[o0:o1], cols, out=y[o0:o1])
    with blas.single_thread():
        split(part, O)
    geo.cols_to_tile(y, out, 0, x.shape[0], 0, geo.Ho, bias)
    return out, SmallMapCache(x, weight, bias is not None, geo)


class SmallMapCache:
    """x (N, C, H, W), weight (O, C, kh, kw) and the geometry; the columns are rebuilt in backward."""

    def __init__(self, x, weight, has_bias, geo):
        self.x, self.weight, self.has_bias, self.geo = x, weight, has_bias, geo

    def backward(self, dout, weight_grad=True):
        """dW = d @ cols^T (split over output channels), dcols = W^T @ d (split over column rows), col2im.
        dout: (N, O, H_out, W_out) -> (dx, dweight, dbias or None); weight_grad=False (a frozen layer):
        no dW GEMM, dweight and dbias None."""
        x, geo = self.x, self.geo
        weight_mat = self.weight.reshape(self.weight.shape[0], -1)
        cols = _whole_cols(x, geo, weight_mat.shape[1])
        d = geo.tile_to_cols(dout, 0, x.shape[0], 0, geo.Ho, np.empty(weight_mat.shape[0] * cols.shape[1], x.dtype))
        dW = np.empty(weight_mat.shape, x.dtype)
        dcols = np.empty_like(cols)

        def part_w(o0, o1):
            np.matmul(d[o0:o1], cols.T, out=dW[o0:o1])

        def part_c(k0, k1):
            np.matmul(weight_mat[:, k0:k1].T, d, out=dcols[k0:k1])
        with blas.single_thread():
            if weight_grad:
                split(part_w, weight_mat.shape[0])
            split(part_c, weight_mat.shape[1])
        dsrc = _whole_col2im(dcols, geo, x.dtype)
        if not weight_grad:
            return geo.crop_dsource(dsrc), None, None
        db = bias_grad(dout) if self.has_bias else None
        return geo.crop_dsource(dsrc), dW.reshape(self.weight.shape), db
