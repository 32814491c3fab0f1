"""Solution to exercise 1 (../01_conv2d.py): the convolution through im2col and two matrix products."""
import numpy as np

from npunet.backends.reference import col2im, im2col


def conv2d_forward(x, w, b, stride=1, padding=0):
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    Ho, Wo = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
    cols = im2col(x, kh, kw, (stride, stride), (padding, padding))      # (C*kh*kw, N*Ho*Wo)
    out = w.reshape(O, -1) @ cols + b[:, None]                          # (O, N*Ho*Wo)
    out = out.reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3)               # (N, O, Ho, Wo)
    return out, (x.shape, w, cols, stride, padding)


def conv2d_backward(dout, cache):
    x_shape, w, cols, stride, padding = cache
    O, _, kh, kw = w.shape
    d = dout.transpose(1, 0, 2, 3).reshape(O, -1)                       # (O, N*Ho*Wo)
    dw = (d @ cols.T).reshape(w.shape)                                  # (O, C, kh, kw)
    db = d.sum(axis=1)                                                  # (O,)
    dcols = w.reshape(O, -1).T @ d                                      # (C*kh*kw, N*Ho*Wo)
    dx = col2im(dcols, x_shape, kh, kw, (stride, stride), (padding, padding))  # (N, C, H, W): overlaps add
    return dx, dw, db
