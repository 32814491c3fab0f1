"""Depthwise convolution (groups = C_in = C_out): direct Numba loops (kernels.depthwise) instead of
C tiny GEMMs.  The kernels pad one plane at a time in the core's cache, so neither pass makes a
padded copy of the whole tensor."""
import numpy as np

from ... import kernels
from ...geometry import conv_out_size
from .parallel import bias_grad


class DepthwiseCache:
    """What the backward needs: the input x (N, C, H, W), the weight as (C, kh, kw), and the
    stride, padding and weight shape."""

    def __init__(self, x, weight3, has_bias, stride, padding, weight_shape):
        self.x, self.weight3, self.has_bias = x, weight3, has_bias
        self.stride, self.padding, self.weight_shape = stride, padding, weight_shape

    def backward(self, dout, weight_grad=True):
        """dout: (N, C, H_out, W_out) -> (dx (N, C, H, W), dweight (C, 1, kh, kw), dbias (C,) or None);
        a frozen layer (weight_grad=False) skips dweight's pass and gets None for dweight and dbias."""
        (sh, sw), (ph, pw) = self.stride, self.padding
        dx = np.empty_like(self.x)
        # summed over N*H*W: accumulate in float64
        dw = np.zeros(self.weight3.shape, dtype=np.float64) if weight_grad else None
        kernels.depthwise_bwd(np.ascontiguousarray(dout), self.x, self.weight3, sh, sw, ph, pw, dx, dw)
        if not weight_grad:
            return dx, None, None
        db = bias_grad(dout) if self.has_bias else None
        return dx, dw.astype(dout.dtype).reshape(self.weight_shape), db


def forward(x, weight, bias, stride, padding):
    """x: (N, C, H, W), weight: (C, 1, kh, kw), bias: (C,) or None, stride and padding pairs
    -> (out (N, C, H_out, W_out), DepthwiseCache), H_out = (H + 2p - kh) // s + 1."""
    (sh, sw), (ph, pw) = stride, padding
    O, _, kh, kw = weight.shape
    x = np.ascontiguousarray(x)
    Ho, Wo = conv_out_size(x.shape[2], kh, sh, ph), conv_out_size(x.shape[3], kw, sw, pw)
    out = np.empty((x.shape[0], O, Ho, Wo), dtype=x.dtype)
    weight3 = np.ascontiguousarray(weight.reshape(O, kh, kw))
    kernels.depthwise_fwd(x, weight3, sh, sw, ph, pw, out)
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out, DepthwiseCache(x, weight3, bias is not None, stride, padding, weight.shape)
