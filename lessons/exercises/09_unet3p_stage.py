# %% [markdown]
# # Exercise 9: a UNet 3+ decoder stage
# UNet 3+ (Huang et al. 2020, eq. 1) builds decoder stage X_De^i from all five scales:
# - encoder maps X_En^k with k < i, max-pooled by 2^(i-k) (`nn.MaxPool2d(2 ** (i - k))`);
# - the encoder map X_En^i itself;
# - deeper decoder maps X_De^k with k > i (X_De^5 is X_En^5), bilinearly up-sampled by 2^(k-i)
#   (`nn.Upsample(scale_factor=2 ** (k - i), mode="bilinear", align_corners=False)`);
# each through its own conv block (`convs[k-1]`: 3x3 conv to cat_channels + BN + ReLU), concatenated in
# order k = 1..5 (5 x cat_channels), then the fuse block (`fuse`: 3x3 conv + BN + ReLU).
#
# `enc` holds X_En^1..X_En^i (so i = len(enc)), `dec` holds X_De^{i+1}..X_De^5. The backward returns the
# gradients of both lists. In the whole network every map feeds several stages, so these gradients are
# later summed per map: that is the model's `backward` in `npunet/models/unet3plus.py`.
# Modules: `m(a)` forward, `m.backward(d)` backward (once per forward); create the resampling modules in
# the forward and keep them in the cache.
#
# Check: the last cell, or `npunet check unet3p_stage`. Solution: `solutions/09_unet3p_stage.py`.
# (Calling npunet's own op would pass too: the checker cannot tell. Write it yourself.)

# %%
import numpy as np

from npunet import nn
from npunet.exercises import check


# %%
def stage_forward(enc, dec, convs, fuse):
    """enc: list of i maps (N, f_k, H_k, W_k); dec: list of 5 - i maps; convs: 5 conv blocks; fuse: 1 block.
    Returns (hd (N, 5 * cat_channels, H_i, W_i), cache)."""
    # TODO
    raise NotImplementedError("stage_forward: write the forward")


def stage_backward(dout, cache):
    """dout: (N, 5 * cat_channels, H_i, W_i). Returns (list of d_enc, list of d_dec)."""
    # TODO
    raise NotImplementedError("stage_backward: write the backward")


# %%
check("unet3p_stage", globals())
