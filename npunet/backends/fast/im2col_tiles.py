"""The general convolution: im2col + GEMM in tiles of output rows, run as parallel tile pipelines.

Any kernel, stride, padding and groups.  Each tile's column buffer (col_rows = C_in * kh * kw rows,
one column per output pixel of the tile) stays within OPTIONS.tile_elems elements and is rebuilt in
backward, never kept.  Several pipelines (blas.plan()) work on alternate tiles side by side.
"""
import numpy as np

from .gemm import gemm, gemm_nt, gemm_tn, weight_matrix
from .parallel import bias_grad, pipeline_count, run_pipelines
from .tiling import RowTiles


def forward(x, weight, bias, geo, groups):
    """x: (N, C, H, W) contiguous, weight: (O, C/groups, kh, kw), bias: (O,) or None, geo: the conv's
    tiling.ConvGeometry -> (out (N, O, H_out, W_out), Im2colTilesCache)."""
    O, _, kh, kw = weight.shape
    weight_mat = weight_matrix(weight, O, groups)
    src = geo.source(x)
    col_rows = x.shape[1] * kh * kw
    out = np.empty((x.shape[0], O, geo.Ho, geo.Wo), dtype=x.dtype)
    tiles = RowTiles(x.shape[0], geo.Ho, geo.row_len, col_rows)
    tile_list = list(tiles)
    size = col_rows * tiles.max_columns(geo.row_len)

    def work(first, step):                  # one pipeline: tiles first, first + step, ...
        buf = np.empty(size, dtype=x.dtype)
        for n0, n1, r0, r1 in tile_list[first::step]:
            cols = buf[: col_rows * (n1 - n0) * (r1 - r0) * geo.row_len].reshape(col_rows, -1)
            geo.im2col(src, n0, n1, r0, r1, cols)
            geo.cols_to_tile(gemm(weight_mat, cols, groups), out, n0, n1, r0, r1, bias)  # tiles write disjoint rows

    run_pipelines(work, pipeline_count(len(tile_list)))
    return out, Im2colTilesCache(x, weight, bias is not None, geo, groups)


class Im2colTilesCache:
    """x (N, C, H, W), weight (O, C/groups, kh, kw), the geometry and groups; columns rebuilt in backward."""

    def __init__(self, x, weight, has_bias, geo, groups):
        self.x, self.weight, self.has_bias, self.geo, self.groups = x, weight, has_bias, geo, groups

    def backward(self, dout, weight_grad=True):
        """Per tile: cols = im2col(x); dW += dout_t @ cols^T; dcols = W^T @ dout_t; dx += col2im(dcols).
        dout: (N, O, H_out, W_out) -> (dx (N, C, H, W), dweight (O, C/g, kh, kw), dbias (O,) or None);
        weight_grad=False (a frozen layer): no dW GEMM, dweight and dbias None."""
        x, weight, geo, groups = self.x, self.weight, self.geo, self.groups
        O, _, kh, kw = weight.shape
        weight_mat = weight_matrix(weight, O, groups)
        src = geo.source(x)
        col_rows = x.shape[1] * kh * kw
        dsrc = geo.dsource(x.dtype)
        dW = np.zeros(weight_mat.shape, dtype=np.float64 if x.dtype == np.float64 else x.dtype)
        tiles = RowTiles(x.shape[0], geo.Ho, geo.row_len, max(col_rows, O))
        tile_list = list(tiles)
        L = tiles.max_columns(geo.row_len)
        pipelines = pipeline_count(len(tile_list))
        dsrcs, dWs = [dsrc] + [None] * (pipelines - 1), [dW] + [None] * (pipelines - 1)

        def work(first, step):
            buf = np.empty(col_rows * L, dtype=x.dtype)
            dbuf = np.empty(O * L, dtype=x.dtype)
            if dsrcs[first] is None:  # every further pipeline scatters into its own buffer:
                dsrcs[first] = geo.dsource(x.dtype)  # neighbouring tiles overlap by kh - 1 input rows
                dWs[first] = np.zeros_like(dW)
            for n0, n1, r0, r1 in tile_list[first::step]:
                cols = buf[: col_rows * (n1 - n0) * (r1 - r0) * geo.row_len].reshape(col_rows, -1)
                d = geo.tile_to_cols(dout, n0, n1, r0, r1, dbuf)
                if weight_grad:
                    geo.im2col(src, n0, n1, r0, r1, cols)
                    dWs[first] += gemm_nt(d, cols, groups)
                geo.col2im(gemm_tn(weight_mat, d, groups), n0, n1, r0, r1, dsrcs[first])

        run_pipelines(work, pipelines)
        for i in range(1, pipelines):
            dsrc += dsrcs[i]
            dW += dWs[i]
        dx = geo.crop_dsource(dsrc)
        if not weight_grad:
            return dx, None, None
        db = bias_grad(dout) if self.has_bias else None
        return dx, dW.astype(x.dtype).reshape(weight.shape), db
