"""Synthetic fluorescence-microscopy cells: varied sizes and shapes, many touching,
uneven illumination, blur and noise, with instance labels and binary masks.

Touching cells share a boundary that is only slightly darker than their interiors,
as in real images, so a model has to learn that thin cue (the U-Net weight map is
what makes it learn it).  Everything is drawn from one seed.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def _rasterise(H, W, cy, cx, ry, rx, theta, harm_a, harm_p):
    """Assign every pixel to the cell with the smallest normalised radius d < 1.
    Returns (labels int32 (H, W), d (H, W) float64: normalised radius in the owning cell)."""
    lab = np.zeros((H, W), np.int32)
    dist = np.full((H, W), np.inf)
    K = cy.shape[0]
    for k in range(K):
        r = max(ry[k], rx[k]) * 1.4
        h0, h1 = max(int(cy[k] - r), 0), min(int(cy[k] + r) + 2, H)
        w0, w1 = max(int(cx[k] - r), 0), min(int(cx[k] + r) + 2, W)
        c, s = np.cos(theta[k]), np.sin(theta[k])
        for h in range(h0, h1):
            for w in range(w0, w1):
                dy, dx = h - cy[k], w - cx[k]
                u = (c * dx + s * dy) / rx[k]
                v = (-s * dx + c * dy) / ry[k]
                phi = np.arctan2(v, u)
                wob = 1.0
                for j in range(harm_a.shape[1]):
                    wob += harm_a[k, j] * np.cos((j + 2) * phi + harm_p[k, j])
                d = np.sqrt(u * u + v * v) / wob
                if d < 1.0 and d < dist[h, w]:
                    dist[h, w] = d
                    lab[h, w] = k + 1
    return lab, dist


def _rasterise_ref(H, W, cy, cx, ry, rx, theta, harm_a, harm_p):
    """NumPy twin of :func:`_rasterise` (whole-image arrays per cell instead of bounding boxes)."""
    hh, ww = np.mgrid[0:H, 0:W].astype(np.float64)
    lab = np.zeros((H, W), np.int32)
    dist = np.full((H, W), np.inf)
    for k in range(len(cy)):
        c, s = np.cos(theta[k]), np.sin(theta[k])
        dy, dx = hh - cy[k], ww - cx[k]
        u = (c * dx + s * dy) / rx[k]
        v = (-s * dx + c * dy) / ry[k]
        phi = np.arctan2(v, u)
        wob = 1 + sum(harm_a[k, j] * np.cos((j + 2) * phi + harm_p[k, j]) for j in range(harm_a.shape[1]))
        d = np.sqrt(u * u + v * v) / wob
        take = (d < 1) & (d < dist)
        dist[take] = d[take]
        lab[take] = k + 1
    return lab, dist


def _blur(img, sigma):
    """Separable Gaussian blur (reflect border) by dense matrices: fine for the sizes used here."""
    if sigma <= 0:
        return img
    r = int(3 * sigma + 0.5)
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    p = np.pad(img, r, mode="reflect")
    from numpy.lib.stride_tricks import sliding_window_view
    p = sliding_window_view(p, 2 * r + 1, axis=0) @ k
    return sliding_window_view(p, 2 * r + 1, axis=1) @ k


def touching_borders(labels):
    """Pixels of a cell that touch (8-neighbourhood) a different cell."""
    H, W = labels.shape
    p = np.pad(labels, 1)
    border = np.zeros((H, W), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            nb = p[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
            border |= (nb != labels) & (nb > 0) & (labels > 0)
    return border


def _relabel(lab):
    ids = np.unique(lab)
    ids = ids[ids > 0]
    out = np.zeros_like(lab)
    for i, k in enumerate(ids):
        out[lab == k] = i + 1
    return out


def make_cell_image(size=128, rng=None, density=1.0, radius=(6.0, 12.0), touching=0.7, noise=0.06, blur=1.0,
                    membrane=0.75):
    """One image.  Returns (image float32 (H, W) in ~[0, 1], labels int32 (H, W), mask uint8 (H, W)).

    touching: fraction of cells placed right next to an existing one (clusters of touching cells).
    membrane: intensity factor on the pixels where two cells touch (1 = no cue at all).
    The mask is the foreground with the touching borders removed (the gap the U-Net must learn).
    """
    rng = np.random.default_rng(rng)
    H = W = int(size)
    n = max(1, int(density * H * W / (np.pi * np.mean(radius) ** 2) * 0.55))
    cy, cx, ry, rx = [], [], [], []
    for _ in range(n):
        r1, r2 = rng.uniform(*radius), rng.uniform(*radius)
        if cy and rng.random() < touching:
            j = rng.integers(len(cy))
            ang = rng.uniform(0, 2 * np.pi)
            dist = (max(ry[j], rx[j]) + max(r1, r2)) * rng.uniform(0.75, 0.95)
            y, x = cy[j] + dist * np.sin(ang), cx[j] + dist * np.cos(ang)
        else:
            y, x = rng.uniform(0, H), rng.uniform(0, W)
        cy.append(y); cx.append(x); ry.append(r1); rx.append(r2)
    K = len(cy)
    harm_a = rng.uniform(0, 0.08, (K, 3))
    harm_p = rng.uniform(0, 2 * np.pi, (K, 3))
    lab, d = _rasterise(H, W, np.array(cy), np.array(cx), np.array(ry), np.array(rx),
                        rng.uniform(0, np.pi, K), harm_a, harm_p)
    lab = _relabel(lab)
    fg = lab > 0
    border = touching_borders(lab)
    # intensity: per-cell brightness, bright interior fading to the edge, a little texture
    bright = np.concatenate([[0.0], rng.uniform(0.45, 1.0, lab.max())])
    dd = np.where(fg, d, 1.0)
    img = bright[lab] * (0.55 + 0.45 * (1 - dd ** 2))
    img *= 1 + 0.15 * _blur(rng.standard_normal((H, W)), 2.0)
    img = np.where(border, img * membrane, img)
    img = np.where(fg, img, 0.08)
    # uneven illumination: a tilted plane times a broad bump
    yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
    g = rng.uniform(-0.35, 0.35, 2)
    c = rng.uniform(0, 1, 2)
    illum = (1 + g[0] * (yy - 0.5) + g[1] * (xx - 0.5)) * (0.75 + 0.35 * np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / 0.3))
    img = _blur(img * illum, blur)
    img = img + rng.normal(0, noise, img.shape) + rng.normal(0, noise / 2, img.shape) * np.sqrt(np.maximum(img, 0))
    mask = (fg & ~border).astype(np.uint8)
    return img.astype(np.float32), lab.astype(np.int32), mask


def make_cells(n, size=128, seed=0, **kw):
    """n images: (images float32 (n, 1, H, W), labels int32 (n, H, W), masks uint8 (n, H, W))."""
    rng = np.random.default_rng(seed)
    out = [make_cell_image(size, rng, **kw) for _ in range(n)]
    return (np.stack([o[0] for o in out])[:, None], np.stack([o[1] for o in out]), np.stack([o[2] for o in out]))


def make_noise_task(n, size=64, seed=0, threshold=0.99):
    """The trivial data of a common tutorial pattern (e.g. the blog post "이미지 분할의 혁명 U-Net 아키텍처
    탐구", TIL, 14 July 2024): uniform noise, "mask" = pixels above a threshold.
    A model that predicts background everywhere scores ~99% pixel accuracy on it: the lesson uses
    it to show why accuracy means nothing for segmentation."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, size, size)).astype(np.float32)
    return x, (x[:, 0] > threshold).astype(np.uint8)
