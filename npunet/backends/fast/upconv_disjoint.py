"""Transposed convolution whose kernel equals its stride, without padding (U-Net's 2x2 up-conv): the
taps of neighbouring input pixels never overlap, so per image cols = W^T x is one GEMM on the input as
it lies (no im2col, no zero-filled output), and a shuffle kernel puts each product on its own output
pixel."""
import numpy as np

from ... import kernels
from .. import blas
from ...kernels.util import split
from .parallel import bias_grad


def applies(kh, kw, sh, sw, ph, pw, oph, opw, groups):
    """Kernel = stride, no padding or output padding, groups 1."""
    return (kh, kw) == (sh, sw) and (ph, pw, oph, opw) == (0, 0, 0, 0) and groups == 1


def forward(x, weight, bias):
    """Images (or, for one image, output channels) are split over the cores; bias added in the shuffle.
    x: (N, C_in, H, W), weight: (C_in, C_out, k, k), bias: (C_out,) or None
    -> (out (N, C_out, H*k, W*k), DisjointTapsCache)."""
    Cin, Cout, kh, kw = weight.shape
    N, _, H, W = x.shape
    X = np.ascontiguousarray(x).reshape(N, Cin, H * W)
    Wt = np.ascontiguousarray(weight.reshape(Cin, Cout * kh * kw).T)                  # (C_out*k*k, C_in)
    b = bias if bias is not None else np.zeros(Cout, x.dtype)
    out = np.empty((N, Cout, H * kh, W * kw), x.dtype)
    by_image = N >= blas.cores()

    def part(a, c):                         # images a..c-1 (all channels), or channels a..c-1 (all images)
        images, (o0, o1) = (range(a, c), (0, Cout)) if by_image else (range(N), (a, c))
        for n in images:
            kernels.upconv_shuffle(Wt[o0 * kh * kw:o1 * kh * kw] @ X[n], kh, kw, b[o0:o1], out[n, o0:o1])
    with blas.single_thread():
        split(part, N if by_image else Cout)
    return out, DisjointTapsCache(x, weight, bias is not None)


class DisjointTapsCache:
    """x (N, C_in, H, W) and weight (C_in, C_out, k, k)."""

    def __init__(self, x, weight, has_bias):
        self.x, self.weight, self.has_bias = x, weight, has_bias

    def backward(self, dout, weight_grad=True):
        """dcols = the gather of dout per image (upconv_unshuffle); dx = W dcols; dW += x dcols^T;
        images split over the cores (per-core dW summed), or for one image the C_in rows of dx and dW.
        dout: (N, C_out, H*k, W*k) -> (dx, dweight, dbias or None); weight_grad=False (a frozen layer):
        no dW GEMMs, dweight and dbias None."""
        x, weight = self.x, self.weight
        Cin, Cout, kh, kw = weight.shape
        N, _, H, W = x.shape
        X = np.ascontiguousarray(x).reshape(N, Cin, H * W)
        weight_mat = weight.reshape(Cin, Cout * kh * kw)
        dout = np.ascontiguousarray(dout)
        dx = np.empty((N, Cin, H * W), x.dtype)
        dWs = {}
        with blas.single_thread():
            if N >= blas.cores():
                def part(i0, i1):
                    dW = np.zeros(weight_mat.shape, x.dtype)
                    dcols = np.empty((Cout * kh * kw, H * W), x.dtype)
                    for n in range(i0, i1):
                        kernels.upconv_unshuffle(dout[n], kh, kw, dcols)
                        np.matmul(weight_mat, dcols, out=dx[n])                         # (C_in, H*W)
                        if weight_grad:
                            dW += X[n] @ dcols.T                                        # (C_in, C_out*k*k)
                    dWs[i0] = dW
                split(part, N)
                dW = sum(dWs.values())
            else:
                dW = np.zeros(weight_mat.shape, x.dtype)
                dcols = np.empty((Cout * kh * kw, H * W), x.dtype)
                for n in range(N):
                    kernels.upconv_unshuffle(dout[n], kh, kw, dcols)

                    def rows(c0, c1):
                        np.matmul(weight_mat[c0:c1], dcols, out=dx[n, c0:c1])
                        if weight_grad:
                            dW[c0:c1] += X[n, c0:c1] @ dcols.T
                    split(rows, Cin)
        if not weight_grad:
            return dx.reshape(x.shape), None, None
        db = bias_grad(dout) if self.has_bias else None
        return dx.reshape(x.shape), dW.reshape(weight.shape), db
