# %% [markdown]
# # Exercise 8: a U-Net++ node, and gradients that add
# U-Net++ (Zhou et al. 2018, eq. 1): node X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, U(X^{i+1,j-1})]), where U
# up-samples the node below, [ ] concatenates channels (same-row maps first, the up-sampled map last)
# and H is a conv block. You get U and H as npunet modules: `up(a)` runs the forward, `up.backward(d)`
# returns the input gradient and adds into its parameters' `.grad` (call it exactly once per forward).
#
# 1. `node_forward` / `node_backward`: one node. The backward returns the gradients of the same-row
#    inputs (a list, in order) and of the map below.
# 2. `row_forward` / `row_backward`: the start of row 0, X^{0,1} = H01([X^{0,0}, U(X^{1,0})]) and
#    X^{0,2} = H02([X^{0,0}, X^{0,1}, U(X^{1,1})]). X^{0,0} feeds *two* nodes, so its gradient is the sum
#    of what both send back (and X^{0,1}'s gradient comes from X^{0,2}). Forget the sum and the checker
#    will tell you which element is off.
#
# Check: the last cell, or `npunet check unetpp_node`. Solution: `solutions/08_unetpp_node.py`.
# (Calling npunet's own op would pass too: the checker cannot tell. Write it yourself.)

# %%
import numpy as np

from npunet.exercises import check


# %%
def node_forward(same_row, below, up, conv):
    """same_row: list of (N, f_i, H, W); below: (N, f_{i+1}, H/2, W/2); up, conv: modules.
    Returns (out (N, f_i, H, W), cache)."""
    # TODO
    raise NotImplementedError("node_forward: write the forward")


def node_backward(dout, cache):
    """dout: (N, f_i, H, W). Returns (list of d_same_row, d_below)."""
    # TODO
    raise NotImplementedError("node_backward: write the backward")


def row_forward(x00, x10, x11, ups, convs):
    """x00: (N, f0, H, W); x10, x11: (N, f1, H/2, W/2); ups, convs: the modules of X^{0,1} and X^{0,2}.
    Returns (x02 (N, f0, H, W), cache)."""
    # TODO: two node_forward calls
    raise NotImplementedError("row_forward: write the forward")


def row_backward(dx02, cache):
    """Returns (dx00, dx10, dx11)."""
    # TODO: two node_backward calls, in reverse order, and one sum
    raise NotImplementedError("row_backward: write the backward")


# %%
check("unetpp_node", globals())
