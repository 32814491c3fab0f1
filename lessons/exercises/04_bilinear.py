# %% [markdown]
# # Exercise 4: bilinear up-sampling
# The "bilinear" U-Net, U-Net++ and UNet 3+ up-sample with `nn.Upsample(scale_factor=s, mode="bilinear")`.
# Along one axis, output pixel i is a weighted average of two input pixels i0 and i1 = min(i0 + 1, n - 1):
# with src its position in input coordinates, i0 = floor(src), t = src - i0, the weights are (1 - t, t).
# - align_corners=False (PyTorch's default): src = (i + 0.5) / s - 0.5, clamped at 0 (pixel centres line up);
# - align_corners=True (the U-Net++ port): src = i * (n - 1) / (n_out - 1) (corner pixels line up).
#
# Write that as an (n_out, n) matrix M per axis; the whole resize is then out = My @ x @ Mx^T
# (NumPy's @ broadcasts over N and C). The resize is linear, so its backward is its transpose:
# dx = My^T @ dout @ Mx.
#
# Check: the last cell, or `npunet check bilinear`. Solution: `solutions/04_bilinear.py`.
# (Calling npunet's own op would pass too: the checker cannot tell. Write it yourself.)

# %%
import numpy as np

from npunet.exercises import check


# %%
def bilinear_forward(x, scale=2, align_corners=False):
    """x: (N, C, H, W); scale: int. Returns (out (N, C, H*scale, W*scale), cache)."""
    # TODO: build My (H*scale, H) and Mx (W*scale, W), then out = My @ x @ Mx.T
    raise NotImplementedError("bilinear_forward: write the forward")


def bilinear_backward(dout, cache):
    """dout: (N, C, H*scale, W*scale). Returns dx: (N, C, H, W)."""
    # TODO
    raise NotImplementedError("bilinear_backward: write the backward")


# %%
check("bilinear", globals())
