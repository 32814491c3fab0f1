"""Exercise 5, BatchNorm (training mode)
(lessons/exercises/05_batchnorm.py): the reference built from npunet's ops, the cases and the hints."""
from types import SimpleNamespace

import numpy as np

from ..spec import Exercise, arr, unpack


def _bn_ref():
    from ...backends import reference as R

    def forward(x, gamma, beta, eps=1e-5):
        C = x.shape[1]
        return R.batchnorm2d_forward(x, gamma, beta, np.zeros(C), np.ones(C), True, eps=eps)[:2]
    return SimpleNamespace(batchnorm_forward=forward, batchnorm_backward=R.batchnorm2d_backward)


def _bn_make(rng, N, C, H, W):
    return dict(x=3 * arr(rng, N, C, H, W) + 1, gamma=arr(rng, C), beta=arr(rng, C))


def _bn_fwd(impl, inp, case):
    out, cache = unpack(impl.batchnorm_forward(inp["x"], inp["gamma"], inp["beta"]), 2, "batchnorm_forward")
    return {"out": out}, cache


def _bn_bwd(impl, cache, d):
    dx, dg, db = unpack(impl.batchnorm_backward(d["out"], cache), 3, "batchnorm_backward")
    return {"dx": dx, "dgamma": dg, "dbeta": db}


EXERCISE = Exercise(
    name="batchnorm",
    file="05_batchnorm.py",
    title="BatchNorm (training mode)",
    functions=("batchnorm_forward", "batchnorm_backward"),
    reference=_bn_ref,
    cases=[dict(N=2, C=3, H=4, W=5), dict(N=4, C=2, H=3, W=3)],
    make=_bn_make,
    forward=_bn_fwd,
    backward=_bn_bwd,
    hints={"out": "per channel over (N, H, W): xhat = (x - mean) / sqrt(var + eps) with the biased variance "
          "(divide by M = N*H*W), out = gamma * xhat + beta",
          "dx": "the mean and the variance depend on x too: dx = invstd / M * (M * dxhat - sum(dxhat) - xhat * "
          "sum(dxhat * xhat)), dxhat = dout * gamma, sums per channel",
          "dgamma": "dgamma = sum of dout * xhat over (N, H, W)",
          "dbeta": "dbeta = sum of dout over (N, H, W)"},
)
