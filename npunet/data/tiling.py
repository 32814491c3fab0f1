"""Prediction on images of any size: overlap-tile for valid-conv U-Nets, pad-and-crop for
same-padded models."""
from contextlib import contextmanager

import numpy as np

from ..models.sizes import is_legal, output_size
from ..nn.module import check_finite, no_grad


def _predict(model, x):
    from ..models.pretrained import normalize_input
    out = model(normalize_input(model, x))  # a pretrained encoder's ImageNet mean/std, when recorded
    if isinstance(out, tuple):  # (seg, cls) of a CGM model in training mode
        out = out[0]
    if isinstance(out, list):
        out = out[0]
    return out


def _predict_same_batch(model, x, depth):
    """Same-padded model on images x (N, C, H, W): mirror-pad H and W up to multiples of 2^depth,
    predict, crop back.  Returns (N, num_classes, H, W) logits."""
    H, W = x.shape[2:]
    m = 2 ** depth
    ph, pw = (-H) % m, (-W) % m
    xp = np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect")
    y = _predict(model, xp.astype(model.dtype))
    return y[:, :, ph // 2:ph // 2 + H, pw // 2:pw // 2 + W]


def predict_same(model, image, depth):
    """Same-padded model: mirror-pad (C, H, W) up to multiples of 2^depth, predict, crop back.
    Returns (num_classes, H, W) logits."""
    return _predict_same_batch(model, image[None], depth)[0]


def overlap_tile(model, image, tile=None, depth=4):
    """Overlap-tile prediction with a valid-conv U-Net (Ronneberger et al. 2015, Fig. 2).

    image: (C, H, W) of any size.  The border is mirrored by the network's context
    c = (S_in - S_out) / 2 (92 px for the paper's 572 -> 388 net): the pixels beyond the image that
    a border pixel's receptive field needs are filled with the image reflected at its edge.
    Windows of S_in step by the largest multiple of 2^depth that fits in S_out (384 for 388), so every
    window sees the same max-pool grid as a single pass over the whole mirrored image would: the
    stitched logits equal that pass (no seams), and neighbouring output tiles overlap by
    S_out mod 2^depth pixels (4 for every legal depth-4 size, S_out = 16k - 60).
    tile: input tile size (a legal size; default the smallest legal size >= 188 that covers the
    image, capped at 572).  Returns (num_classes, H, W) logits.
    """
    C, H, W = image.shape
    if tile is None:
        tile = next(s for s in range(188, 4096) if is_legal(s, depth, "valid")
                    and (output_size(s, depth) >= max(H, W) or s >= 572))
    if not is_legal(tile, depth, "valid"):
        raise ValueError(f"overlap_tile: tile {tile} is not a legal input size for a depth-{depth} valid U-Net")
    out_t = output_size(tile, depth)
    step = out_t // 2 ** depth * 2 ** depth            # keeps every window on the whole image's pool grid
    if step == 0:
        raise ValueError(f"overlap_tile: tile {tile} gives {out_t} output pixels, fewer than the 2^depth = "
                         f"{2 ** depth} a window must step by; use a larger tile")
    ctx = (tile - out_t) // 2
    ny, nx = (1 + max(0, -(-(n - out_t) // step)) for n in (H, W))
    Hp, Wp = (ny - 1) * step + out_t, (nx - 1) * step + out_t
    # mirror the border by the context, and pad the far side up to whole tiles
    x = np.pad(image, ((0, 0), (ctx, ctx + Hp - H), (ctx, ctx + Wp - W)), mode="symmetric")
    result = None
    for ty in range(ny):
        for tx in range(nx):
            y0, x0 = ty * step, tx * step
            win = x[None, :, y0:y0 + tile, x0:x0 + tile].astype(model.dtype)
            y = _predict(model, win)[0]
            if result is None:
                result = np.zeros((y.shape[0], Hp, Wp), y.dtype)
            result[:, y0:y0 + out_t, x0:x0 + out_t] = y
    return result[:, :H, :W]


def tile_same(model, image, depth, tile=512, margin=64):
    """Same-padded model on a large image (C, H, W) with memory bounded by the window: output tiles
    of ``tile`` px, each predicted from a window with ``margin`` px of mirrored context on every side
    (both rounded up to multiples of 2^depth, so every window sits on the whole image's pool grid),
    only the window's centre kept.  Returns (num_classes, H, W) logits."""
    m = 2 ** depth
    tile, margin = -(-tile // m) * m, -(-margin // m) * m
    C, H0, W0 = image.shape
    ph, pw = (-H0) % m, (-W0) % m  # the padding of a whole-image pass (predict_same): the same pool grid
    image = np.pad(image, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect")
    H, W = image.shape[1:]
    ny, nx = -(-H // tile), -(-W // tile)
    x = np.pad(image, ((0, 0), (margin, margin + ny * tile - H), (margin, margin + nx * tile - W)), mode="reflect")
    result = None
    for ty in range(ny):
        for tx in range(nx):
            y0, x0 = ty * tile, tx * tile
            win = x[None, :, y0:y0 + tile + 2 * margin, x0:x0 + tile + 2 * margin].astype(model.dtype)
            y = _predict(model, win)[0]
            if result is None:
                result = np.zeros((y.shape[0], ny * tile, nx * tile), y.dtype)
            result[:, y0:y0 + tile, x0:x0 + tile] = y[:, margin:margin + tile, margin:margin + tile]
    return result[:, ph // 2:ph // 2 + H0, pw // 2:pw // 2 + W0]


# Same-padded models predict an image in one pass up to this many pixels, tile by tile above it.
WHOLE_IMAGE_PIXELS = 1024 * 1024


@contextmanager
def _evaluating(model):
    """model.eval() and no_grad() for the block (no layer keeps a cache: prediction needs only the
    live activations), its previous mode restored after."""
    was = model.training
    model.eval()
    try:
        with no_grad():
            yield
    finally:
        model.train(was)


def predict_image(model, image):
    """Logits (num_classes, H, W) for one image (C, H, W) with any npunet model, in eval mode."""
    with _evaluating(model):
        if getattr(model, "padding", "same") == "valid":
            y = overlap_tile(model, image, depth=model.depth)
        elif image.shape[1] * image.shape[2] > WHOLE_IMAGE_PIXELS:
            y = tile_same(model, image, getattr(model, "depth", 4))
        else:
            y = predict_same(model, image, getattr(model, "depth", 4))
        check_finite(model, y, "output")  # layers scan only the model's input (nn.set_checks)
        return y


def predict_images(model, images, batch=8):
    """Logits for several images (N, C, H, W) (or a list of (C, H, W)): same-padded models predict
    up to ``batch`` equally sized images per forward pass (eval-mode layers treat every image on its
    own, so the result is predict_image's); valid-conv U-Nets tile each image.  Returns a list of
    (num_classes, H, W) arrays."""
    if getattr(model, "padding", "same") == "valid" or len({np.shape(im) for im in images}) != 1 or \
            np.shape(images[0])[-1] * np.shape(images[0])[-2] > WHOLE_IMAGE_PIXELS:
        return [predict_image(model, im) for im in images]
    x = np.asarray(images)
    out = []
    with _evaluating(model):
        for i in range(0, len(x), batch):
            y = _predict_same_batch(model, x[i:i + batch], getattr(model, "depth", 4))
            check_finite(model, y, "output")
            out.extend(y)
    return out
