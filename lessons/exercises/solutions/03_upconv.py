"""Solution to exercise 3 (../03_upconv.py): the transposed convolution as k*k stamps."""
import numpy as np


def upconv_forward(x, w, b, stride=2):
    N, C, H, W = x.shape
    _, O, k, _ = w.shape
    s = stride
    Ho, Wo = (H - 1) * s + k, (W - 1) * s + k
    out = np.zeros((N, O, Ho, Wo), dtype=x.dtype) + b[:, None, None]   # (N, O, Ho, Wo)
    for u in range(k):
        for v in range(k):
            # input pixel (i, j) lands on output pixel (i*s + u, j*s + v), weighted by w[:, :, u, v]
            out[:, :, u:u + (H - 1) * s + 1:s, v:v + (W - 1) * s + 1:s] += np.einsum("nchw,co->nohw", x, w[:, :, u, v])
    return out, (x, w, s)


def upconv_backward(dout, cache):
    x, w, s = cache
    H, W = x.shape[2:]
    k = w.shape[2]
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for u in range(k):
        for v in range(k):
            d = dout[:, :, u:u + (H - 1) * s + 1:s, v:v + (W - 1) * s + 1:s]   # (N, O, H, W): what (u, v) touched
            dx += np.einsum("nohw,co->nchw", d, w[:, :, u, v])
            dw[:, :, u, v] = np.einsum("nchw,nohw->co", x, d)
    return dx, dw, dout.sum(axis=(0, 2, 3))
