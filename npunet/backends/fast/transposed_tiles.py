"""The general transposed convolution: per tile of input rows cols = W^T @ x (GEMM columns split over
the cores), then col2im scatters the columns into the output.  The tile's column buffer has
col_rows = C_out * kh * kw rows and one column per input pixel of the tile."""
import numpy as np

from ... import kernels
from .. import blas
from ...kernels.util import split
from .gemm import gemm, gemm_nt, gemm_tn, weight_matrix
from .parallel import bias_grad, split_columns
from .tiling import RowTiles


def forward(x, weight, bias, stride, padding, out_size, groups):
    """x: (N, C_in, H, W) contiguous; weight: (C_in, C_out/groups, kh, kw); bias: (C_out,) or None;
    stride, padding: pairs; out_size: (H_out, W_out) -> (out (N, C_out, H_out, W_out), TransposedTilesCache)."""
    (sh, sw), (ph, pw) = stride, padding
    Cin, Og, kh, kw = weight.shape
    N, _, H, W = x.shape
    Cout = Og * groups
    out = np.zeros((N, Cout, *out_size), dtype=x.dtype)
    weight_mat = weight_matrix(weight, Cin, groups)
    col_rows = Cout * kh * kw
    with blas.single_thread():
        for n0, n1, r0, r1 in RowTiles(N, H, W, max(col_rows, Cin)):
            xt = x[n0:n1, :, r0:r1, :].transpose(1, 0, 2, 3).reshape(Cin, -1)  # (C_in, images*rows*W)
            cols = split_columns(lambda a, b: gemm_tn(weight_mat, xt[:, a:b], groups), col_rows, xt.shape[1], x.dtype)
            kernels.col2im(cols, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, W, out)
    if bias is not None:
        out += bias.reshape(1, Cout, 1, 1)
    return out, TransposedTilesCache(x, weight, bias is not None, stride, padding, groups)


class TransposedTilesCache:
    """x (N, C_in, H, W), weight (C_in, C_out/groups, kh, kw), stride and padding pairs, groups."""

    def __init__(self, x, weight, has_bias, stride, padding, groups):
        self.x, self.weight, self.has_bias = x, weight, has_bias
        self.stride, self.padding, self.groups = stride, padding, groups

    def backward(self, dout, weight_grad=True):
        """Per tile of input rows: dcols = im2col(dout); dx = W @ dcols; dW += x_t @ dcols^T.
        dout: (N, C_out, H_out, W_out) -> (dx (N, C_in, H, W), dweight, dbias (C_out,) or None);
        weight_grad=False (a frozen layer): no dW GEMM, dweight and dbias None."""
        x, weight, groups = self.x, self.weight, self.groups
        (sh, sw), (ph, pw) = self.stride, self.padding
        Cin, Og, kh, kw = weight.shape
        N, _, H, W = x.shape
        Cout = Og * groups
        weight_mat = weight_matrix(weight, Cin, groups)
        dout = np.ascontiguousarray(dout)
        dx = np.empty_like(x)
        dW = np.zeros(weight_mat.shape, dtype=x.dtype)
        col_rows = Cout * kh * kw
        tiles = RowTiles(N, H, W, max(col_rows, Cin))
        buf = np.empty(col_rows * tiles.max_columns(W), dtype=x.dtype)
        with blas.single_thread():
            for n0, n1, r0, r1 in tiles:
                dcols = buf[: col_rows * (n1 - n0) * (r1 - r0) * W].reshape(col_rows, -1)
                kernels.im2col(dout, n0, n1, r0, r1, kh, kw, sh, sw, ph, pw, W, dcols)
                xt = x[n0:n1, :, r0:r1, :].transpose(1, 0, 2, 3).reshape(Cin, -1)
                dxt = split_columns(lambda a, b: gemm(weight_mat, dcols[:, a:b], groups), Cin, dcols.shape[1], x.dtype)
                dx[n0:n1, :, r0:r1, :] = dxt.reshape(Cin, n1 - n0, r1 - r0, W).transpose(1, 0, 2, 3)
                if not weight_grad:
                    pass
                elif groups == 1:   # dW rows split over threads (each on one BLAS thread)
                    split(lambda c0, c1: np.add(dW[c0:c1], xt[c0:c1] @ dcols.T, out=dW[c0:c1]), Cin)
                else:
                    dW += gemm_nt(xt, dcols, groups)
        if not weight_grad:
            return dx, None, None
        db = bias_grad(dout) if self.has_bias else None
        return dx, dW.reshape(weight.shape), db
