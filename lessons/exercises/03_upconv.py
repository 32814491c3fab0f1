# %% [markdown]
# # Exercise 3: the up-convolution (transposed convolution)
# The paper's "2x2 up-convolution" is `nn.ConvTranspose2d(C, O, 2, stride=2)`. Its weight has PyTorch's
# layout (C_in, C_out, k, k). Every input pixel x[n, c, i, j] stamps the k x k pattern w[c, o] (times
# itself) onto the output at (i*s, j*s), and the stamps add where they overlap:
#
# out[n, o, i*s + u, j*s + v] += sum over c of x[n, c, i, j] * w[c, o, u, v]   (+ b[o] everywhere),
# H_out = (H - 1) * s + k.
#
# Backward: every output pixel looked at the input pixels that stamped it. So dx[n, c, i, j] sums
# dout[n, o, i*s + u, j*s + v] * w[c, o, u, v] over o, u, v; dw collects x * dout the same way; db sums dout.
# (This is exactly the input gradient of a convolution, which is why it is called "transposed".)
# Checked: k = 2, s = 2 (U-Net), k = 3, s = 2 (overlapping stamps) and k = 2, s = 1.
#
# Check: the last cell, or `npunet check upconv`. Solution: `solutions/03_upconv.py`.
# (Calling npunet's own op would pass too: the checker cannot tell. Write it yourself.)

# %%
import numpy as np

from npunet.exercises import check


# %%
def upconv_forward(x, w, b, stride=2):
    """x: (N, C, H, W), w: (C, O, k, k), b: (O,).
    Returns (out (N, O, H_out, W_out), cache), H_out = (H - 1) * stride + k."""
    # TODO: one loop over (u, v) and an einsum over c is enough
    raise NotImplementedError("upconv_forward: write the forward")


def upconv_backward(dout, cache):
    """dout: (N, O, H_out, W_out). Returns (dx (N, C, H, W), dw (C, O, k, k), db (O,))."""
    # TODO
    raise NotImplementedError("upconv_backward: write the backward")


# %%
check("upconv", globals())
