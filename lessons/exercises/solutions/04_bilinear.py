"""Solution to exercise 4 (../04_bilinear.py): bilinear up-sampling as out = My @ x @ Mx^T."""
import numpy as np


def interp_matrix(n_in, scale, align_corners):
    """(n_in * scale, n_in): row i holds the two weights of output pixel i."""
    n_out = n_in * scale
    M = np.zeros((n_out, n_in))
    for i in range(n_out):
        if align_corners:
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((i + 0.5) / scale - 0.5, 0.0)     # half-pixel centres, clamped at the first pixel
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        t = src - i0
        M[i, i0] += 1 - t
        M[i, i1] += t
    return M


def bilinear_forward(x, scale=2, align_corners=False):
    H, W = x.shape[2:]
    My = interp_matrix(H, scale, align_corners).astype(x.dtype)        # (H*scale, H)
    Mx = interp_matrix(W, scale, align_corners).astype(x.dtype)        # (W*scale, W)
    return My @ x @ Mx.T, (My, Mx)                                      # (N, C, H*scale, W*scale)


def bilinear_backward(dout, cache):
    My, Mx = cache
    return My.T @ dout @ Mx                                             # (N, C, H, W)
