"""The U-Net paper's pixel-wise loss weight map (Ronneberger et al. 2015, eq. 2)."""
import numpy as np

from ..kernels import two_nearest


def weight_map(instance_labels, w0=10.0, sigma=5.0, class_balance=True):
    """w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)).

    instance_labels: (H, W) int, 0 = background, 1..K = cells (or (N, H, W): one map each).
    d1, d2: exact Euclidean distances to the nearest and second-nearest cell.  The border
    term is applied to background pixels (the gaps between cells, which it must force the
    net to learn); cell pixels get w_c only.
    w_c balances the class frequencies: w_c(class) = n_pixels / (2 * n_pixels_of_class),
    so both classes carry equal total weight (1 everywhere when class_balance=False).
    Returns float32 of the labels' shape.
    """
    lab = np.asarray(instance_labels)
    if lab.ndim == 3:
        return np.stack([weight_map(l, w0, sigma, class_balance) for l in lab])
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"weight_map: expected integer instance labels (H, W) or (N, H, W), got "
                         f"{lab.dtype} {lab.shape}")
    if lab.min(initial=0) < 0:
        raise ValueError("weight_map: instance labels must be >= 0 (0 = background)")
    # relabel to 1..K so the kernel loops over present instances only
    ids, inv = np.unique(lab, return_inverse=True)
    inv = inv.reshape(lab.shape).astype(np.int64)
    if ids[0] != 0:
        inv += 1
    K = int(inv.max())
    fg = lab > 0
    w = np.ones(lab.shape)
    if class_balance:
        n, nf = fg.size, fg.sum()
        if 0 < nf < n:
            w = np.where(fg, n / (2.0 * nf), n / (2.0 * (n - nf)))
    if K >= 2:
        d1, d2 = two_nearest(np.ascontiguousarray(inv), K)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma ** 2))
        w = w + np.where(fg, 0.0, border)
    return w.astype(np.float32)
