"""Solution to exercise 5 (../05_batchnorm.py): training-mode BatchNorm over (N, H, W) per channel."""
import numpy as np


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    c = (None, slice(None), None, None)                                 # (C,) -> (1, C, 1, 1)
    mean = x.mean(axis=(0, 2, 3))                                       # (C,)
    var = x.var(axis=(0, 2, 3))                                         # (C,), biased: / M
    invstd = 1 / np.sqrt(var + eps)
    xhat = (x - mean[c]) * invstd[c]                                    # (N, C, H, W)
    return gamma[c] * xhat + beta[c], (xhat, gamma, invstd)


def batchnorm_backward(dout, cache):
    xhat, gamma, invstd = cache
    c = (None, slice(None), None, None)
    M = xhat.shape[0] * xhat.shape[2] * xhat.shape[3]                   # values per channel
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    dxhat = dout * gamma[c]
    dx = invstd[c] / M * (M * dxhat - dxhat.sum(axis=(0, 2, 3))[c] - xhat * (dxhat * xhat).sum(axis=(0, 2, 3))[c])
    return dx, dgamma, dbeta
