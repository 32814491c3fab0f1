# %% [markdown]
# # Exercise 2: max-pool
# U-Net halves its maps with a 2x2 max-pool of stride 2. Write `nn.MaxPool2d(kernel_size, stride)`
# without padding: out[n, c, i, j] = the max of x[n, c, i*s : i*s + k, j*s : j*s + k], with
# H_out = (H - k) // s + 1 (an odd last row or column is dropped: that is why the 2015 U-Net needs
# even sizes at every level).
#
# The backward routes each window's gradient to the pixel that held its maximum; every other pixel gets 0.
# Remember in the forward *where* each maximum was. When the windows overlap (k = 3, s = 2 is one of
# the checked cases) a pixel can be the maximum of two windows: its gradients add.
#
# Check: the last cell, or `npunet check maxpool`. Solution: `solutions/02_maxpool.py`.
# (Calling npunet's own op would pass too: the checker cannot tell. Write it yourself.)

# %%
import numpy as np

from npunet.exercises import check


# %%
def maxpool_forward(x, kernel_size=2, stride=2):
    """x: (N, C, H, W). Returns (out (N, C, H_out, W_out), cache), H_out = (H - k) // s + 1."""
    # TODO: the max of every window, and where it was (for the backward)
    raise NotImplementedError("maxpool_forward: write the forward")


def maxpool_backward(dout, cache):
    """dout: (N, C, H_out, W_out). Returns dx: (N, C, H, W)."""
    # TODO: send each dout[n, c, i, j] to its window's maximum (adding, where windows overlap)
    raise NotImplementedError("maxpool_backward: write the backward")


# %%
check("maxpool", globals())
