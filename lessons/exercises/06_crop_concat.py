# %% [markdown]
# # Exercise 6: copy, crop and concatenate
# In the 2015 U-Net the encoder map (the "skip", 64 x 568 x 568 at the top) is larger than the up-sampled
# decoder map (64 x 392 x 392) because every valid convolution lost a border. The skip is cropped to the
# centre, starting at ((Hs - H) // 2, (Ws - W) // 2), and concatenated *before* the decoder map on the
# channel axis: out = [crop(skip), x], shape (N, Cs + Cx, H, W).
#
# Backward: split dout's channels again. The decoder map gets the last Cx channels; the skip gets the
# first Cs placed back into the cropped window, and 0 on the border the crop cut off. That gradient is
# then *added* to what the skip's encoder map receives from the pool below (lesson 2, step 8).
#
# Check: the last cell, or `npunet check crop_concat`. Solution: `solutions/06_crop_concat.py`.
# (Calling npunet's own op would pass too: the checker cannot tell. Write it yourself.)

# %%
import numpy as np

from npunet.exercises import check


# %%
def crop_concat_forward(skip, x):
    """skip: (N, Cs, Hs, Ws), x: (N, Cx, H, W) with H <= Hs, W <= Ws.
    Returns (out (N, Cs + Cx, H, W), cache)."""
    # TODO
    raise NotImplementedError("crop_concat_forward: write the forward")


def crop_concat_backward(dout, cache):
    """dout: (N, Cs + Cx, H, W). Returns (dskip (N, Cs, Hs, Ws), dx (N, Cx, H, W))."""
    # TODO
    raise NotImplementedError("crop_concat_backward: write the backward")


# %%
check("crop_concat", globals())
