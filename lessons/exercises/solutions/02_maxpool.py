"""Solution to exercise 2 (../02_maxpool.py): max-pool with the argmax remembered per window."""
import numpy as np


def maxpool_forward(x, kernel_size=2, stride=2):
    N, C, H, W = x.shape
    k, s = kernel_size, stride
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    arg = np.empty((N, C, Ho, Wo), dtype=np.int64)                      # where the max sits inside its window
    for i in range(Ho):
        for j in range(Wo):
            win = x[:, :, i * s:i * s + k, j * s:j * s + k].reshape(N, C, k * k)   # (N, C, k*k)
            arg[:, :, i, j] = win.argmax(axis=2)
            out[:, :, i, j] = win.max(axis=2)
    return out, (x.shape, arg, k, s)


def maxpool_backward(dout, cache):
    x_shape, arg, k, s = cache
    N, C, Ho, Wo = dout.shape
    dx = np.zeros(x_shape, dtype=dout.dtype)                            # (N, C, H, W)
    n, c = np.indices((N, C))                                           # (N, C) each
    for i in range(Ho):
        for j in range(Wo):
            u, v = np.divmod(arg[:, :, i, j], k)                        # row, column inside the window
            dx[n, c, i * s + u, j * s + v] += dout[:, :, i, j]          # overlapping windows: gradients add
    return dx
