"""Structural similarity: SSIM (Wang et al. 2004) and the MS-SSIM loss (Wang, Simoncelli & Bovik 2003)."""
import numpy as np

from ..functional import sigmoid
from .base import Loss, _check_binary_target, _check_logits

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ================================================================== SSIM / MS-SSIM

def gaussian_window(size=11, sigma=1.5):
    """g_k proportional to exp(-(k - size//2)^2 / (2 sigma^2)), normalised to sum 1."""
    k = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-k ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _filter_matrix(n, g):
    """(n - len(g) + 1, n) matrix of a valid 1-D correlation with g."""
    m = np.zeros((n - len(g) + 1, n))
    for i in range(m.shape[0]):
        m[i, i:i + len(g)] = g
    return m


class _Filter:
    """Separable valid Gaussian filter: F(A) = Gh @ A @ Gw^T on the last two axes."""

    def __init__(self, H, W, g):
        self.Gh, self.Gw = _filter_matrix(H, g), _filter_matrix(W, g)

    def __call__(self, A):
        return self.Gh @ A @ self.Gw.T

    def T(self, D):
        return self.Gh.T @ D @ self.Gw


def _ssim_forward(X, Y, g, C1, C2):
    """X, Y: (N, C, H, W) float64.  Returns (ssim (N, C), cs (N, C), cache)."""
    f = _Filter(X.shape[2], X.shape[3], g)
    mx, my = f(X), f(Y)
    sxx = f(X * X) - mx * mx
    syy = f(Y * Y) - my * my
    sxy = f(X * Y) - mx * my
    A, B = 2 * sxy + C2, sxx + syy + C2
    cs_map = A / B
    Ln, Ld = 2 * mx * my + C1, mx * mx + my * my + C1
    l_map = Ln / Ld
    ssim_map = l_map * cs_map
    cache = (f, X, Y, mx, my, A, B, cs_map, Ln, Ld, l_map)
    return ssim_map.mean(axis=(2, 3)), cs_map.mean(axis=(2, 3)), cache


def _ssim_backward(dssim, dcs, cache):
    """dssim, dcs: (N, C) gradients of the per-map means -> dX (N, C, H, W)."""
    f, X, Y, mx, my, A, B, cs_map, Ln, Ld, l_map = cache
    M = cs_map.shape[2] * cs_map.shape[3]
    g_ssim = dssim[:, :, None, None] / M
    g_cs = dcs[:, :, None, None] / M + g_ssim * l_map    # total d/d cs_map
    g_l = g_ssim * cs_map                                # d/d l_map
    dA, dB = g_cs / B, -g_cs * A / B ** 2
    dsxy, dsxx = 2 * dA, dB
    dmx = g_l * (2 * my / Ld - Ln * 2 * mx / Ld ** 2) - 2 * mx * dsxx - my * dsxy
    return f.T(dmx) + 2 * X * f.T(dsxx) + Y * f.T(dsxy)


def _avgpool2(X):
    """2x2 average pooling, stride 2; an odd side is zero-padded by one at both ends first and the zeros
    count (pytorch_msssim's avg_pool2d(padding=s % 2))."""
    ph, pw = X.shape[2] % 2, X.shape[3] % 2
    Xp = np.pad(X, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = (Xp.shape[2] - 2) // 2 + 1, (Xp.shape[3] - 2) // 2 + 1
    Xp = Xp[:, :, :2 * Ho, :2 * Wo]
    return Xp.reshape(X.shape[0], X.shape[1], Ho, 2, Wo, 2).mean(axis=(3, 5)), (ph, pw, X.shape)


def _avgpool2_backward(d, cache):
    ph, pw, shape = cache
    up = np.repeat(np.repeat(d, 2, axis=2), 2, axis=3) / 4
    full = np.zeros((shape[0], shape[1], shape[2] + 2 * ph, shape[3] + 2 * pw))
    full[:, :, :up.shape[2], :up.shape[3]] = up
    return full[:, :, ph:ph + shape[2], pw:pw + shape[3]]


def ssim(x, y, data_range=1.0, win_size=11, sigma=1.5):
    """Single-scale SSIM (Wang et al. 2004) of images x, y: (N, C, H, W); mean over everything."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim: expected two (N, C, H, W) arrays of one shape, got {x.shape} and {y.shape}")
    if min(x.shape[2:]) < win_size:
        raise ValueError(f"ssim: images {x.shape[2:]} are smaller than the {win_size}-tap window")
    s, _, _ = _ssim_forward(x, y, gaussian_window(win_size, sigma), (0.01 * data_range) ** 2, (0.03 * data_range) ** 2)
    return float(s.mean())


class MSSSIMLoss(Loss):
    """L = 1 - MS-SSIM(sigmoid(z), y), data range 1 (Wang, Simoncelli & Bovik 2003, eq. 7; computed as
    pytorch_msssim does: valid Gaussian filtering, 2x2 average pooling between scales).

    z: (N, C, H, W) logits; target y in {0, 1} of the same shape.
    MS-SSIM = prod_{l<L} relu(cs_l)^{w_l} * relu(ssim_L)^{w_L} per (n, c), then the mean.
    weights: the per-scale exponents (default the 5 of Wang et al. 2003); pass fewer, e.g.
    ``weights=(0.5, 0.5)`` or ``scales=3``, for small images: the smaller side must exceed
    (win_size - 1) * 2^(scales - 1) (160 for 5 scales).
    """

    def __init__(self, weights=None, scales=None, win_size=11, sigma=1.5):
        if weights is None:
            weights = MS_SSIM_WEIGHTS if scales is None else MS_SSIM_WEIGHTS[:scales]
            if scales is not None and scales < 5:  # renormalise the truncated weights
                weights = tuple(w / sum(weights) for w in weights)
        self.weights = np.asarray(weights, np.float64)
        self.win_size, self.sigma = int(win_size), float(sigma)
        self.g = gaussian_window(self.win_size, self.sigma)

    def min_size(self):
        return (self.win_size - 1) * 2 ** (len(self.weights) - 1)

    def loss_forward(self, z, target, weight=None):
        _check_logits(self, z)
        if z.ndim != 4:
            raise ValueError(f"MSSSIMLoss: expected (N, C, H, W) logits, got {z.shape}")
        y = _check_binary_target(self, z, target).astype(np.float64)
        if min(z.shape[2:]) <= self.min_size():
            raise ValueError(f"MSSSIMLoss: {len(self.weights)} scales need the smaller image side > "
                             f"{self.min_size()}, got {z.shape[2:]}; use MSSSIMLoss(scales=k) with fewer scales")
        X = sigmoid(z.astype(np.float64))
        C1, C2 = 0.01 ** 2, 0.03 ** 2
        L = len(self.weights)
        caches, pools, vals = [], [], []
        Xl, Yl = X, y
        for l in range(L):
            s, cs, c = _ssim_forward(Xl, Yl, self.g, C1, C2)
            caches.append(c)
            vals.append(s if l == L - 1 else cs)
            if l < L - 1:
                Xl, pc = _avgpool2(Xl)
                Yl, _ = _avgpool2(Yl)
                pools.append(pc)
        V = np.stack(vals)                        # (L, N, C)
        R = np.maximum(V, 0)
        terms = R ** self.weights[:, None, None]
        ms = terms.prod(axis=0)                   # (N, C)
        return float(1 - ms.mean()), (z, X, V, R, terms, ms, caches, pools)

    def loss_backward(self, cache):
        z, X, V, R, terms, ms, caches, pools = cache
        L = len(self.weights)
        dms = -np.ones_like(ms) / ms.size
        dV = np.zeros_like(V)
        for l in range(L):
            others = np.prod(np.delete(terms, l, axis=0), axis=0) if L > 1 else np.ones_like(ms)
            w = self.weights[l]
            with np.errstate(divide="ignore", invalid="ignore"):
                dterm = np.where(R[l] > 0, w * R[l] ** (w - 1), 0.0)  # relu: no gradient below 0
            dV[l] = dms * others * dterm
        dX = None
        for l in reversed(range(L)):
            zeros = np.zeros_like(dV[l])
            dl = _ssim_backward(dV[l], zeros, caches[l]) if l == L - 1 else _ssim_backward(zeros, dV[l], caches[l])
            dX = dl if dX is None else dl + _avgpool2_backward(dX, pools[l])
        return (dX * X * (1 - X)).astype(z.dtype)
