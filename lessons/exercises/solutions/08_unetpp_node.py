"""Solution to exercise 8 (../08_unetpp_node.py): a U-Net++ node, and a row whose first map feeds two nodes."""
import numpy as np


def node_forward(same_row, below, up, conv):
    u = up(below)                                                       # (N, f_i, H, W)
    cat = np.concatenate(list(same_row) + [u], axis=1)                  # (N, (j+1) f_i, H, W)
    return conv(cat), (up, conv, [a.shape[1] for a in same_row] + [u.shape[1]])


def node_backward(dout, cache):
    up, conv, sizes = cache
    dcat = conv.backward(dout)
    pieces = np.split(dcat, np.cumsum(sizes)[:-1], axis=1)              # one block per concatenated map
    return pieces[:-1], up.backward(pieces[-1])


def row_forward(x00, x10, x11, ups, convs):
    x01, c01 = node_forward([x00], x10, ups[0], convs[0])
    x02, c02 = node_forward([x00, x01], x11, ups[1], convs[1])
    return x02, (c01, c02)


def row_backward(dx02, cache):
    c01, c02 = cache
    (dx00_direct, dx01), dx11 = node_backward(dx02, c02)
    (dx00_via_x01,), dx10 = node_backward(dx01, c01)
    return dx00_direct + dx00_via_x01, dx10, dx11                       # X^{0,0} has two consumers: add
