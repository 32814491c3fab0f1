# %% [markdown]
# # Exercise 5: BatchNorm in training mode
# Per channel c, over the M = N*H*W values of the batch:
# mean_c, var_c (biased: divide by M), xhat = (x - mean) / sqrt(var + eps), out = gamma * xhat + beta.
# (`nn.BatchNorm2d` also keeps running statistics for eval; leave them out here.)
#
# The backward is the classic one: dbeta = sum(dout), dgamma = sum(dout * xhat). For dx remember that
# the mean and the variance are functions of x too; with dxhat = dout * gamma it simplifies to
# dx = invstd / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)), all sums per channel.
# Derive it (chain rule through var, then through mean) before you type it.
#
# Check: the last cell, or `npunet check batchnorm`. Solution: `solutions/05_batchnorm.py`.
# (Calling npunet's own op would pass too: the checker cannot tell. Write it yourself.)

# %%
import numpy as np

from npunet.exercises import check


# %%
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """x: (N, C, H, W), gamma, beta: (C,). Returns (out (N, C, H, W), cache)."""
    # TODO: statistics over axes (0, 2, 3)
    raise NotImplementedError("batchnorm_forward: write the forward")


def batchnorm_backward(dout, cache):
    """dout: (N, C, H, W). Returns (dx (N, C, H, W), dgamma (C,), dbeta (C,))."""
    # TODO
    raise NotImplementedError("batchnorm_backward: write the backward")


# %%
check("batchnorm", globals())
