"""BatchNorm as Numba kernels: the statistics per channel, the affine map (optionally fused with the
ReLU that follows) per plane, the backward per channel; split over the cores when the tensor is large
enough to pay for the threads' wake-ups (``ns=``: about 0.2, 0.1 and 0.7 ns per element on one core,
measured; below ``kernels.util.SERIAL_NS`` the kernel runs on one core)."""
import numpy as np

from ... import kernels
from ...kernels.util import split


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """x: (N, C, H, W); gamma, beta, running_*: (C,).

    Training: normalise with the batch mean and biased variance over (N, H, W) and
    return the new running statistics (momentum on the new value, unbiased variance):
    running <- (1 - m) * running + m * batch.  Eval: use the running statistics.
    Returns (out, cache, new_running_mean, new_running_var).
    """
    return _forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, relu=False)


def batchnorm2d_relu_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """relu(batchnorm2d(x)) in one pass over memory (the ReLU applied as each value is written);
    arguments and results as batchnorm2d_forward."""
    return _forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, relu=True)


def _forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, relu):
    N, C, H, W = x.shape
    x3 = np.ascontiguousarray(x).reshape(N, C, H * W)
    if training:
        mean = np.empty(C)
        var = np.empty(C)
        split(kernels.bn_stats, C, x3, mean, var, ns=0.2 * x3.size)
        M = N * H * W
        new_rm = ((1 - momentum) * running_mean + momentum * mean).astype(running_mean.dtype)
        new_rv = ((1 - momentum) * running_var + momentum * var * M / (M - 1)).astype(running_var.dtype)
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
        new_rm, new_rv = running_mean, running_var
    invstd = 1.0 / np.sqrt(var + eps)
    scale = gamma.astype(np.float64) * invstd
    shift = beta.astype(np.float64) - mean * scale
    out = np.empty_like(x3)
    split(kernels.bn_apply, N * C, x3, scale.astype(x.dtype), shift.astype(x.dtype), relu, out, ns=0.1 * x3.size)
    cache = (x3, mean, invstd, gamma, training, x.shape, out if relu else None)  # out: the ReLU mask
    return out.reshape(x.shape), cache, new_rm, new_rv


def batchnorm2d_backward(dout, cache):
    """dout: (N, C, H, W) -> (dx, dgamma (C,), dbeta (C,)).  Also the backward of batchnorm2d_relu_forward:
    its cache keeps the output, whose zeros mask the gradient (the ReLU's backward in the same pass)."""
    x3, mean, invstd, gamma, training, shape, y = cache
    d3 = np.ascontiguousarray(dout).reshape(x3.shape)
    if training:
        dx = np.empty_like(x3)
        dg = np.empty(x3.shape[1])
        db = np.empty(x3.shape[1])
        split(kernels.bn_backward, x3.shape[1], d3, x3, mean, invstd, gamma.astype(np.float64),
              x3 if y is None else y, y is not None, dx, dg, db, ns=0.7 * x3.size)
    else:  # the statistics are constants: y = x * scale + shift
        if y is not None:
            d3 = np.where(y > 0, d3, 0).astype(d3.dtype)
        scale = (gamma.astype(np.float64) * invstd).astype(x3.dtype)
        dx = d3 * scale[None, :, None]
        db = d3.sum(axis=(0, 2), dtype=np.float64)
        dg = (d3 * ((x3 - mean[None, :, None]) * invstd[None, :, None])).sum(axis=(0, 2))
    return dx.reshape(shape), dg.astype(x3.dtype), db.astype(x3.dtype)


batchnorm2d_relu_backward = batchnorm2d_backward
