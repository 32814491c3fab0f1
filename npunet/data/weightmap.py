"""The U-Net paper's pixel-wise loss weight map (Ronneberger et al. 2015, eq. 2)."""
import numpy as np

from ..kernels import two_nearest


def weight_map(instance_labels, w0=10.0, sigma=5.0, class_balance=True, mask=None):
    """w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))  (Ronneberger et al. 2015, eq. 2).

    instance_labels: (H, W) int, 0 = background, 1..K = cells (or (N, H, W): one map each).
    mask: the binary segmentation the net is trained on, same shape.  Give it whenever the labels
    still cover pixels the mask calls background, as the gaps cut between touching cells: the map
    is then computed from the labels restricted to the mask, so the gap pixels are background,
    their d1 + d2 is a few pixels and they get the border term the paper designed for them.
    d1, d2: exact Euclidean distances to the nearest and second-nearest cell.  The border
    term is applied to background pixels (the gaps between cells, which it must force the
    net to learn); cell pixels get w_c only.
    w_c balances the class frequencies: w_c(class) = n_pixels / (2 * n_pixels_of_class),
    so both classes carry equal total weight (1 everywhere when class_balance=False).
    Returns float32 of the labels' shape.
    """
    lab = np.asarray(instance_labels)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != lab.shape:
            raise ValueError(f"weight_map: mask {mask.shape} and instance labels {lab.shape} differ in shape")
        lab = np.where(mask > 0, lab, 0)
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
