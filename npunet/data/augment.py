"""Joint image/mask augmentation: flips, 90-degree rotations, the U-Net paper's elastic
deformation, gray-value changes and random crops.

Image arrays: (C, H, W) float; label arrays (masks, instance labels, weight maps): (H, W) or
(K, H, W).  Geometric transforms move images and labels together; labels are resampled with
nearest neighbour so they stay labels.
"""
import numpy as np
from numba import njit

from ..kernels.util import split


def _cubic_weights(t, a=-0.5):
    """Keys cubic-convolution weights for the 4 taps around fractional offset t in [0, 1)."""
    x = np.stack([1 + t, t, 1 - t, 2 - t])
    ax = np.abs(x)
    w = np.where(ax <= 1, (a + 2) * ax ** 3 - (a + 3) * ax ** 2 + 1,
                 np.where(ax < 2, a * ax ** 3 - 5 * a * ax ** 2 + 8 * a * ax - 4 * a, 0.0))
    return w


def _cubic_upsample_matrix(n_in, n_out):
    """(n_out, n_in) bicubic interpolation matrix with the coarse grid spanning the image
    (align-corners style: the 3x3 grid's outer points sit on the image corners)."""
    src = np.arange(n_out) * (n_in - 1) / max(n_out - 1, 1)
    i0 = np.floor(src).astype(int)
    t = src - i0
    w = _cubic_weights(t)
    M = np.zeros((n_out, n_in))
    for k, off in enumerate((-1, 0, 1, 2)):
        np.add.at(M, (np.arange(n_out), np.clip(i0 + off, 0, n_in - 1)), w[k])
    return M


def elastic_displacement(H, W, rng, grid=3, sigma=10.0):
    """Per-pixel displacements (dy, dx), each (H, W): random vectors on a coarse grid x grid
    lattice with std sigma px, interpolated bicubically (Ronneberger et al. 2015)."""
    coarse = rng.normal(0, sigma, (2, grid, grid))
    My, Mx = _cubic_upsample_matrix(grid, H), _cubic_upsample_matrix(grid, W)
    return My @ coarse[0] @ Mx.T, My @ coarse[1] @ Mx.T


@njit(cache=True)
def _reflect(i, n):
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = abs(i) % period
    return period - i if i >= n else i


@njit(cache=True, nogil=True)
def warp_bicubic(h0, h1, img, sy, sx, out):
    """out[c, h, w] = img[c] sampled bicubically at (sy[h, w], sx[h, w]), mirrored borders; output
    rows h0..h1-1."""
    C, H, W = img.shape
    a = -0.5
    for h in range(h0, h1):
        wy = np.empty(4)
        wx = np.empty(4)
        for w in range(W):
            y, x = sy[h, w], sx[h, w]
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            ty, tx = y - y0, x - x0
            for k in range(4):
                d = abs(k - 1 - ty)
                wy[k] = (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1 if d <= 1 else a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
                d = abs(k - 1 - tx)
                wx[k] = (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1 if d <= 1 else a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
            for c in range(C):
                acc = 0.0
                for i in range(4):
                    yy = _reflect(y0 - 1 + i, H)
                    row = 0.0
                    for j in range(4):
                        row += wx[j] * img[c, yy, _reflect(x0 - 1 + j, W)]
                    acc += wy[i] * row
                out[c, h, w] = acc


@njit(cache=True, nogil=True)
def warp_nearest(h0, h1, lab, sy, sx, out):
    """Nearest-neighbour twin of warp_bicubic for labels: lab (K, H, W); output rows h0..h1-1."""
    K, H, W = lab.shape
    for h in range(h0, h1):
        for w in range(W):
            yy = _reflect(int(np.floor(sy[h, w] + 0.5)), H)
            xx = _reflect(int(np.floor(sx[h, w] + 0.5)), W)
            for k in range(K):
                out[k, h, w] = lab[k, yy, xx]


def _reflect_ref(i, n):
    """Vectorised twin of _reflect: mirror indices into [0, n) (edge pixel not repeated)."""
    if n == 1:
        return np.zeros_like(i)
    p = 2 * (n - 1)
    i = np.abs(i) % p
    return np.where(i >= n, p - i, i)


def warp_bicubic_ref(img, sy, sx):
    """Loop-free NumPy twin of :func:`warp_bicubic`."""
    C, H, W = img.shape
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    wy = _cubic_weights(sy - y0)  # (4, H, W)
    wx = _cubic_weights(sx - x0)

    refl = _reflect_ref
    out = np.zeros((C, H, W))
    for i in range(4):
        for j in range(4):
            out += wy[i] * wx[j] * img[:, refl(y0 - 1 + i, H), refl(x0 - 1 + j, W)]
    return out


def warp_nearest_ref(lab, sy, sx):
    """NumPy twin of :func:`warp_nearest`."""
    H, W = lab.shape[1:]
    refl = _reflect_ref
    return lab[:, refl(np.floor(sy + 0.5).astype(int), H), refl(np.floor(sx + 0.5).astype(int), W)]


def elastic(image, labels, rng, grid=3, sigma=10.0):
    """Elastic deformation as the U-Net paper: image (C, H, W) bicubic, labels (K, H, W) nearest."""
    C, H, W = image.shape
    dy, dx = elastic_displacement(H, W, rng, grid, sigma)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    sy, sx = yy + dy, xx + dx
    img_out = np.empty(image.shape, np.float64)
    split(warp_bicubic, H, np.ascontiguousarray(image, dtype=np.float64), sy, sx, img_out)
    lab_out = np.empty_like(labels)
    split(warp_nearest, H, np.ascontiguousarray(labels), sy, sx, lab_out)
    return img_out.astype(image.dtype), lab_out


def flip_rotate(image, labels, rng):
    """Random horizontal/vertical flip and rotation by a multiple of 90 degrees (all 8 symmetries)."""
    k = int(rng.integers(4))
    image, labels = np.rot90(image, k, axes=(1, 2)), np.rot90(labels, k, axes=(1, 2))
    if rng.random() < 0.5:
        image, labels = image[:, :, ::-1], labels[:, :, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def gray_values(image, rng, gain=(0.8, 1.2), bias=(-0.1, 0.1), gamma=(0.8, 1.25)):
    """Random gain, bias and gamma of the gray values."""
    g, b, gm = rng.uniform(*gain), rng.uniform(*bias), rng.uniform(*gamma)
    lo = image.min()
    x = (image - lo) / max(float(image.max() - lo), 1e-6)
    return ((x ** gm) * (image.max() - lo) + lo) * g + b


def random_crop(image, labels, size, rng):
    """Random (size x size) crop of image (C, H, W) and labels (K, H, W)."""
    H, W = image.shape[1:]
    if size > H or size > W:
        raise ValueError(f"random_crop: crop {size} is larger than the image {H}x{W}")
    y, x = rng.integers(H - size + 1), rng.integers(W - size + 1)
    return image[:, y:y + size, x:x + size], labels[:, y:y + size, x:x + size]


class Augment:
    """Callable (image, labels, rng) -> (image, labels) applying the enabled transforms."""

    def __init__(self, flips=True, elastic_p=0.5, elastic_sigma=10.0, gray=True, crop=None):
        self.flips, self.elastic_p, self.elastic_sigma, self.gray, self.crop = flips, elastic_p, elastic_sigma, gray, crop

    def __call__(self, image, labels, rng):
        if self.crop is not None:
            image, labels = random_crop(image, labels, self.crop, rng)
        if self.flips:
            image, labels = flip_rotate(image, labels, rng)
        if self.elastic_p and rng.random() < self.elastic_p:
            image, labels = elastic(image, labels, rng, sigma=self.elastic_sigma)
        if self.gray:
            image = gray_values(image, rng)
        return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(labels)
