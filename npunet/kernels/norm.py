"""BatchNorm2d per-channel reductions and the fused normalise / backward passes.

x is viewed as (N, C, M) with M = H*W; statistics are per channel over (N, M).
Sums are accumulated in float64 whatever the input dtype (float32 sums of 20M
values would lose digits).
"""
import numpy as np
from numba import njit

# Reassociation lets LLVM vectorise the float64 sums (several partial sums instead of one chain);
# no "nnan"/"ninf": NaN and Inf still propagate, so the NaN checks downstream still see them.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, nogil=True, fastmath=_FAST)
def bn_stats(c0, c1, x, mean, var):
    """x: (N, C, M) -> mean (C,), biased var (C,) of channels c0..c1-1, in one pass: sums of (x - K)
    and (x - K)^2 in float64 with K = the channel's first value (the shift keeps the subtraction well
    conditioned)."""
    N, C, M = x.shape
    for c in range(c0, c1):
        K = x[0, c, 0]
        s = 0.0
        q = 0.0
        for n in range(N):
            for k in range(M):
                d = x[n, c, k] - K
                s += d
                q += d * d
        m = s / (N * M)
        mean[c] = K + m
        var[c] = max(q / (N * M) - m * m, 0.0)


@njit(cache=True, nogil=True)
def bn_apply(p0, p1, x, scale, shift, relu, out):
    """out = x * scale[c] + shift[c], then max(out, 0) when relu (BatchNorm + ReLU in one pass);
    x, out: (N, C, M); planes n*C + c in [p0, p1)."""
    N, C, M = x.shape
    zero = out.dtype.type(0)
    for nc in range(p0, p1):
        n = nc // C
        c = nc % C
        a = scale[c]
        b = shift[c]
        if relu:
            for k in range(M):
                out[n, c, k] = max(x[n, c, k] * a + b, zero)
        else:
            for k in range(M):
                out[n, c, k] = x[n, c, k] * a + b


@njit(cache=True, fastmath=_FAST, inline="always")
def _bn_bwd_channel(dout, x, y, relu, c, mu, ist, a, Mt, dx):
    """One channel of bn_backward: the two sums, then dx; returns (dbeta, dgamma)."""
    N, M = x.shape[0], x.shape[2]
    sb = 0.0
    sx = 0.0  # sum(g * (x - mean))
    for n in range(N):
        for k in range(M):
            g = np.float64(dout[n, c, k])
            if relu:
                g = g if y[n, c, k] > 0 else 0.0
            sb += g
            sx += g * (np.float64(x[n, c, k]) - mu)
    sg = sx * ist                                   # sum(g * xhat)
    k2 = a * ist * sg / Mt                          # dx = a g - a mean(g) - a xhat mean(g xhat)
    k0 = -a * sb / Mt
    for n in range(N):
        for k in range(M):
            g = np.float64(dout[n, c, k])
            if relu:
                g = g if y[n, c, k] > 0 else 0.0
            dx[n, c, k] = a * g - k2 * (np.float64(x[n, c, k]) - mu) + k0
    return sb, sg


@njit(cache=True, nogil=True, fastmath=_FAST)
def bn_backward(c0, c1, dout, x, mean, invstd, gamma, y, relu, dx, dgamma, dbeta):
    """Training-mode backward.  xhat = (x - mean) * invstd, y = gamma * xhat + beta:
    dbeta = sum(dout), dgamma = sum(dout * xhat),
    dx = gamma * invstd * (dout - dbeta/Mt - xhat * dgamma/Mt), Mt = N*M.
    relu: the forward was relu(BN(x)) with output y, so dout counts only where y > 0.
    Channels c0..c1-1."""
    N, C, M = x.shape
    Mt = N * M
    for c in range(c0, c1):
        a = gamma[c] * invstd[c]
        # one copy of the loops: LLVM moves the loop-invariant relu test out of them (measured as fast as
        # two hand-written copies, and 0.2 s less to compile)
        sb, sg = _bn_bwd_channel(dout, x, y, relu, c, mean[c], invstd[c], a, Mt, dx)
        dbeta[c] = sb
        dgamma[c] = sg


def bn_stats_ref(x):
    x64 = x.astype(np.float64)
    return x64.mean(axis=(0, 2)), x64.var(axis=(0, 2))


def bn_apply_ref(x, scale, shift, relu=False):
    """Twin of :func:`bn_apply`."""
    out = (x * scale[None, :, None] + shift[None, :, None]).astype(x.dtype)
    return np.maximum(out, 0) if relu else out


def bn_backward_ref(dout, x, mean, invstd, gamma, y=None, relu=False):
    d = dout.astype(np.float64) * ((y > 0) if relu else 1)
    xhat = (x - mean[None, :, None]) * invstd[None, :, None]
    dbeta = d.sum(axis=(0, 2))
    dgamma = (d * xhat).sum(axis=(0, 2))
    Mt = x.shape[0] * x.shape[2]
    dx = (gamma * invstd)[None, :, None] * (d - dbeta[None, :, None] / Mt - xhat * dgamma[None, :, None] / Mt)
    return dx.astype(dout.dtype), dgamma, dbeta
