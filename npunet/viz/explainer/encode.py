"""Arrays for the page: base64 PNGs (feature grids, maps) and base64 float32 (exact numbers)."""
import base64
import io
import math

import numpy as np

# Display limits: a block's feature grid holds at most this many pixels (channels x tile^2); larger
# maps are block-averaged for display, the page states the true shape.
GRID_PIXELS = 160_000
MAX_TILE = 128
SNAP_PIXELS = 20_000      # per block and training snapshot


def _b64(raw):
    return base64.b64encode(raw).decode("ascii")


def _f32(a):
    """base64 of little-endian float32 values (decoded by the page into a Float32Array)."""
    return _b64(np.ascontiguousarray(a, dtype="<f4").tobytes())


def _png(rgb):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + _b64(buf.getvalue())


_WHITE = 255   # palette index of the grid's separators


def _levels(a, lo, hi):
    """Values -> palette indices 0..254 on [lo, hi] (display only; the numbers shown are exact)."""
    t = (np.asarray(a, np.float64) - lo) / (hi - lo) if hi > lo else np.zeros(np.shape(a)) + 0.5
    return np.rint(np.clip(t, 0, 1) * 254).astype(np.uint8)


def _png_indexed(idx, cmap):
    """A palette PNG: one byte a pixel, the colour map as its palette (a third of an RGB PNG)."""
    import matplotlib
    from PIL import Image
    pal = matplotlib.colormaps[cmap](np.linspace(0, 1, 255), bytes=True)[:, :3]
    pal = np.concatenate([pal, [[255, 255, 255]]]).astype(np.uint8)
    img = Image.fromarray(idx).convert("P")
    img.putpalette(pal.ravel().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + _b64(buf.getvalue())


def _shrink(a, tile):
    """(C, H, W) -> (C, h, w) with max(h, w) <= tile by block averaging (whole factors)."""
    C, H, W = a.shape
    f = max(1, math.ceil(max(H, W) / tile))
    if f == 1:
        return a, 1
    h, w = H // f, W // f
    if h == 0 or w == 0:
        return a[:, ::f, ::f], f
    return a[:, :h * f, :w * f].reshape(C, h, f, w, f).mean(axis=(2, 4)), f


def _grid(a, cmap, symmetric=False, pixels=GRID_PIXELS, max_channels=None):
    """A feature grid: every channel of a (C, H, W) map as one tile, one colour scale for all.
    Returns dict(png, lo, hi, cols, rows, tile_h, tile_w, shown, channels, factor, cmap)."""
    a = np.asarray(a, np.float64)
    C, H, W = a.shape
    shown = C if max_channels is None else min(C, max_channels)
    tile = int(max(4, min(MAX_TILE, math.sqrt(pixels / shown))))
    small, f = _shrink(a[:shown], tile)
    if symmetric:
        m = float(np.abs(a).max()) or 1.0
        lo, hi = -m, m
    else:
        lo, hi = float(a.min()), float(a.max())
    cols = int(math.ceil(math.sqrt(shown * small.shape[1] / small.shape[2])))
    cols = max(1, min(shown, cols))
    rows = int(math.ceil(shown / cols))
    th, tw = small.shape[1], small.shape[2]
    canvas = np.full((rows * (th + 1) - 1, cols * (tw + 1) - 1), _WHITE, np.uint8)
    idx = _levels(small, lo, hi)
    for c in range(shown):
        r, q = divmod(c, cols)
        canvas[r * (th + 1):r * (th + 1) + th, q * (tw + 1):q * (tw + 1) + tw] = idx[c]
    return dict(png=_png_indexed(canvas, cmap), lo=lo, hi=hi, cols=cols, rows=rows, tile_h=th, tile_w=tw, shown=shown,
                channels=C, factor=f, cmap=cmap)


def _map(a, cmap, lo=None, hi=None, tile=256):
    """One 2-D map as a coloured PNG (block-averaged to <= tile pixels a side)."""
    a = np.asarray(a, np.float64)
    small, f = _shrink(a[None], tile)
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    return dict(png=_png_indexed(_levels(small[0], lo, hi), cmap), cmap=cmap, lo=lo, hi=hi, factor=f, shape=list(a.shape))


def _cnorm(g):
    """Per-pixel gradient norm over channels: (C, H, W) -> (H, W)."""
    return np.sqrt((np.asarray(g, np.float64) ** 2).sum(axis=0))
