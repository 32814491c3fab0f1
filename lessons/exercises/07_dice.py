# %% [markdown]
# # Exercise 7: the Dice loss
# Binary segmentation: logits z (N, 1, H, W), target y in {0, 1} of the same shape, p = sigmoid(z).
# Per image n: I = sum(p * y), Sp = sum(p), Sy = sum(y) (over H, W), d_n = (2 I + s) / (Sp + Sy + s),
# and the loss is L = 1 - mean_n(d_n) (s = `smooth`, 1 by default, keeps an empty mask defined).
# This is `npunet.losses.DiceLoss(smooth)`. Note the mean over images: SMP's `DiceLoss` instead pools
# I, Sp and Sy over the whole batch (one d for the batch, per class), which weighs large objects more
# and ranks models differently when images differ in how much foreground they hold.
#
# Backward: return dL/dz (N, 1, H, W). By the quotient rule
# dd_n/dp = (2 y (Sp + Sy + s) - (2 I + s)) / (Sp + Sy + s)^2; then the mean's 1/N, the minus sign, and
# the sigmoid's dp/dz = p (1 - p). Every pixel's gradient depends on the whole image through I and Sp:
# Dice is a global loss, unlike cross-entropy.
#
# Check: the last cell, or `npunet check dice`. Solution: `solutions/07_dice.py`.
# (Calling npunet's own op would pass too: the checker cannot tell. Write it yourself.)

# %%
import numpy as np

from npunet.exercises import check


# %%
def dice_loss_forward(logits, target, smooth=1.0):
    """logits, target: (N, 1, H, W). Returns (loss: float, cache)."""
    # TODO
    raise NotImplementedError("dice_loss_forward: write the forward")


def dice_loss_backward(cache):
    """Returns dL/dlogits: (N, 1, H, W)."""
    # TODO
    raise NotImplementedError("dice_loss_backward: write the backward")


# %%
check("dice", globals())
