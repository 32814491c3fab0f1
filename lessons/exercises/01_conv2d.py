# %% [markdown]
# # Exercise 1: the convolution, forward and backward
# Write the 2-D convolution of `nn.Conv2d` (PyTorch's cross-correlation) and its backward.
#
# out[n, o, i, j] = sum over c, u, v of x_pad[n, c, i*s + u, j*s + v] * w[o, c, u, v] + b[o],
# with x_pad = x zero-padded by p on every side and H_out = (H + 2p - kh) // s + 1.
#
# The backward gets dout = dL/dout and returns dL/dx, dL/dw, dL/db. Lesson 1 (steps 2 and 4) derives it
# through im2col: with cols = im2col(x) of shape (C*kh*kw, N*H_out*W_out) and dout laid out as
# (O, N*H_out*W_out), dw = dout @ cols^T, db = dout summed, dcols = w^T @ dout, and col2im adds
# every column back onto the pixels it was copied from.
# Four loops are fine too (slow but clear). `im2col` and `col2im` from `npunet.backends.reference` are allowed.
#
# Check: run the last cell, or `npunet check conv2d` (any folder; or `npunet check NAME my_file.py`). It compares your
# functions with npunet's reference op on small float64 cases (odd sizes, stride 2, padding) and says
# which output or gradient is wrong, where, by how much, with a hint.
# The solution is in `solutions/01_conv2d.py`.
# (Calling npunet's own op would pass too: the checker cannot tell. Write it yourself.)

# %%
import numpy as np

from npunet.backends.reference import col2im, im2col   # im2col(x, kh, kw, (sh, sw), (ph, pw)) -> (C*kh*kw, N*Ho*Wo)
from npunet.exercises import check


# %%
def conv2d_forward(x, w, b, stride=1, padding=0):
    """x: (N, C, H, W), w: (O, C, kh, kw), b: (O,); stride, padding: ints.
    Returns (out, cache): out (N, O, H_out, W_out), H_out = (H + 2*padding - kh) // stride + 1;
    cache: whatever your backward needs."""
    # TODO: the forward (for example: im2col, then one matrix product, then back to (N, O, H_out, W_out))
    raise NotImplementedError("conv2d_forward: write the forward")


def conv2d_backward(dout, cache):
    """dout: (N, O, H_out, W_out). Returns (dx (N, C, H, W), dw (O, C, kh, kw), db (O,)).
    Do not modify dout."""
    # TODO: dw, db, then dx through dcols and col2im
    raise NotImplementedError("conv2d_backward: write the backward")


# %%
check("conv2d", globals())
